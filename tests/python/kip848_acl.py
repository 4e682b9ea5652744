"""KIP-848 ACLs on a SASL_SSL broker whose only rules are

    - {allow: "User:bob", operations: [read], topic: orders}
    - {allow: "User:bob", operations: [read], group: billing}
    - {allow: "User:bob", operations: [describe], group: other}

(`admin` is the super user). With group.protocol=consumer:

1. bob in `billing` on `orders` consumes everything and commits;
2. bob in `other` (Describe, so FindCoordinator answers, but no Read) gets GROUP_AUTHORIZATION_FAILED
   (30) and no partitions;
3. bob in `billing` subscribing to `orders` and `secret` (no Describe on
   `secret`) gets TOPIC_AUTHORIZATION_FAILED (29), as Kafka 4 answers a
   heartbeat naming a topic its member may not describe;
4. bob may describe `billing` (ConsumerGroupDescribe) but not admin's
   consumer group `admin-only` (30).

Usage: kip848_acl.py ENV_JSON
    {"bootstrap", "ca", "admin_password", "bob_password"}
"""

import json
import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from group_common import OP_TIMEOUT, base_conf, check, committed_offsets, create_topic, log, produce
from kip848_common import Member848, poll_until

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

a = Member848("admin-consumer", admin, ["orders"], "admin-only")
poll_until("admin's records", [a], lambda: len(a.messages) >= N, commit=True)

b = Member848("bob-billing", bob, ["orders"], "billing")
poll_until("bob's records through billing", [b], lambda: len(b.messages) >= N, commit=True)
check(not b.fatal_errors(), f"bob/billing errors: {[str(e) for e in b.fatal_errors()]}")
b.close()
committed = committed_offsets(bob, "billing", "orders", PARTITIONS)
check(committed == {p: N // PARTITIONS for p in range(PARTITIONS)}, f"billing's commits: {committed}")
log(f"bob consumed {N} records through billing; committed {committed}")


def refused(member, code, what):
    deadline = time.monotonic() + OP_TIMEOUT
    while not any(code == e.code() or f"{code}" in str(e) or
                  ("authorization" in str(e).lower() and what in str(e).lower())
                  for e in member.errors):
        check(time.monotonic() < deadline,
              f"no {what} authorization failure for {member.name}: {[str(e) for e in member.errors]}")
        member.poll(timeout=0.2)
    check(not member.messages, f"{member.name} got {len(member.messages)} records")
    check(not member.partitions(), f"{member.name} got partitions {member.partitions()}")
    err = member.errors[-1]
    log(f"{member.name}: {err.str()}")
    member.close()
    return err


o = Member848("bob-other", bob, ["orders"], "other")
e = refused(o, GROUP_AUTHORIZATION_FAILED, "group")
check("group" in str(e).lower(), f"bob in other: {e}")
s = Member848("bob-secret", bob, ["orders", "secret"], "billing")
e = refused(s, TOPIC_AUTHORIZATION_FAILED, "topic")
check("topic" in str(e).lower(), f"bob subscribing secret: {e}")

bob_admin = AdminClient(dict(bob))
try:
    d = bob_admin.describe_consumer_groups(["admin-only"], request_timeout=OP_TIMEOUT)[
        "admin-only"].result(timeout=OP_TIMEOUT)
    check(False, f"bob described admin-only: {d}")
except KafkaException as ex:
    check(ex.args[0].code() == GROUP_AUTHORIZATION_FAILED, f"bob describing admin-only: {ex}")
admin_admin = AdminClient(dict(admin))
d = admin_admin.describe_consumer_groups(["admin-only"], request_timeout=OP_TIMEOUT)[
    "admin-only"].result(timeout=OP_TIMEOUT)
check([m.client_id for m in d.members] == ["admin-consumer"], f"admin describing admin-only: {d}")
a.close()
log("ALL OK")
