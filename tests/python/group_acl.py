"""Group ACLs on a SASL_SSL broker whose only rules are

    - {allow: "User:bob", operations: [read], topic: orders}
    - {allow: "User:bob", operations: [read], group: billing}

(`admin` is the super user). bob reads `orders` through the group
`billing`: he consumes everything and commits; committing a topic he may
not read fails with TOPIC_AUTHORIZATION_FAILED (29). A bob consumer in the
group `other` gets GROUP_AUTHORIZATION_FAILED (30) and no records.
ListGroups as bob shows only `billing` (not admin's group `admin-only`),
DescribeGroups and OffsetFetch of `admin-only` are refused with 30.

Usage: group_acl.py ENV_JSON
    {"bootstrap", "ca", "admin_password", "bob_password"}
"""

import json
import sys
import time

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, committed_offsets, create_topic,
                          fail, log, poll_for, poll_until, produce, seq_of)

env = json.loads(sys.argv[1])
GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED = 30, 29
N, PARTITIONS = 300, 3


def conf_for(user, password):
    return base_conf(env["bootstrap"], **{
        "security.protocol": "SASL_SSL", "ssl.ca.location": env["ca"],
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password})


admin = conf_for("admin", env["admin_password"])
bob = conf_for("bob", env["bob_password"])
create_topic(admin, "orders", PARTITIONS)
create_topic(admin, "secret", 1)
produce(admin, "orders", range(N), PARTITIONS)

# admin's own group, which bob must not see.
a = Member("admin-consumer", admin, ["orders"], **{"group.id": "admin-only"})
poll_until("admin's records", [a], lambda: len(a.messages) >= N, commit=True)
a.close()

# bob through billing: allowed.
b = Member("bob-billing", bob, ["orders"], **{"group.id": "billing"})
poll_until("bob's records through billing", [b], lambda: len(b.messages) >= N, commit=True)
poll_for([b], 0.5, commit=True)
check(sorted(seq_of(m) for m in b.messages) == list(range(N)),
      f"bob consumed {len(b.messages)} records through billing")
check(not b.fatal_errors(), f"bob/billing errors: {[str(e) for e in b.fatal_errors()]}")
b.close()
committed = committed_offsets(bob, "billing", "orders", PARTITIONS)
check(committed == {p: N // PARTITIONS for p in range(PARTITIONS)}, f"billing's commits: {committed}")
log(f"bob consumed {N} records through billing; committed {committed}")
# A topic bob may not read cannot be committed, even in his own group; the
# partitions he may read in the same request are committed.
c = Consumer({**bob, "group.id": "billing", "enable.auto.commit": False})
try:
    c.commit(offsets=[TopicPartition("orders", 0, 1), TopicPartition("secret", 0, 1)],
             asynchronous=False)
    fail("bob committed an offset of `secret`")
except KafkaException as e:
    check(e.args[0].code() == TOPIC_AUTHORIZATION_FAILED, f"committing `secret` as bob: {e}")
c.close()
committed = committed_offsets(bob, "billing", "orders", PARTITIONS)
check(committed[0] == 1, f"the authorized part of the commit did not land: {committed}")

# bob through other: refused.
o = Member("bob-other", bob, ["orders"], **{"group.id": "other"})
deadline = time.monotonic() + OP_TIMEOUT


def group_denied():
    return any(e.code() == GROUP_AUTHORIZATION_FAILED for e in o.errors)


while not group_denied():
    check(time.monotonic() < deadline,
          f"no GROUP_AUTHORIZATION_FAILED for bob in `other`: {[str(e) for e in o.errors]}")
    o.poll(timeout=0.2)
check(not o.messages, f"bob got {len(o.messages)} records through `other`")
check(not o.partitions(), f"bob got partitions {o.partitions()} in `other`")
err = next(e for e in o.errors if e.code() == GROUP_AUTHORIZATION_FAILED)
log(f"bob in `other`: {err.str()}")
o.close()

# ListGroups / DescribeGroups / OffsetFetch as bob.
def listed(conf):
    ac = AdminClient(dict(conf))
    res = ac.list_consumer_groups(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    return sorted(g.group_id for g in res.valid)


as_admin, as_bob = listed(admin), listed(bob)
check("admin-only" in as_admin and "billing" in as_admin, f"admin lists {as_admin}")
check(as_bob == ["billing"], f"bob lists {as_bob}, should see only billing")
log(f"ListGroups: admin sees {as_admin}, bob sees {as_bob}")

bob_admin = AdminClient(dict(bob))
try:
    d = bob_admin.describe_consumer_groups(["admin-only"], request_timeout=OP_TIMEOUT)[
        "admin-only"].result(timeout=OP_TIMEOUT)
    check(False, f"bob described admin-only: {d}")
except KafkaException as e:
    check(e.args[0].code() == GROUP_AUTHORIZATION_FAILED, f"bob describing admin-only: {e}")
d = bob_admin.describe_consumer_groups(["billing"], request_timeout=OP_TIMEOUT)[
    "billing"].result(timeout=OP_TIMEOUT)
check(d.group_id == "billing", f"bob describing billing: {d}")
try:
    r = bob_admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions("admin-only")],
                                              request_timeout=OP_TIMEOUT)["admin-only"].result(
        timeout=OP_TIMEOUT)
    check(False, f"bob fetched admin-only's offsets: {r}")
except KafkaException as e:
    check(e.args[0].code() == GROUP_AUTHORIZATION_FAILED, f"bob fetching admin-only's offsets: {e}")
log("ALL OK")
