"""groups.offsets_retention_ms (2 s on this broker): the committed offsets of
a group that has been empty that long expire; those of a group with an
active member do not.

Usage: group_retention.py BOOTSTRAP offsets|group
  offsets: the offsets expire (and not before the retention time);
  group:   then the empty group without offsets is gone too, as in Kafka
           (Empty and no offsets -> Dead, removed): ListGroups no longer
           lists it and DescribeGroups says Dead.
"""

import sys
import time

from confluent_kafka import ConsumerGroupState, TopicPartition
from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, committed_offsets, create_topic,
                          fail, log, poll_for, poll_until, produce)

BOOTSTRAP, MODE = sys.argv[1], sys.argv[2]
RETENTION_S = 2.0
TOPIC = "retention-topic"
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, 1)
produce(conf, TOPIC, range(100), 1)


def commit(m, offset):
    poll_until(f"{m.name}: an assignment", [m], lambda: bool(m.partitions()))
    res = m.c.commit(offsets=[TopicPartition(TOPIC, 0, offset)], asynchronous=False)
    check(all(tp.error is None for tp in res), f"commit: {res}")


kept = Member("kept", conf, [TOPIC], **{"group.id": "retention-kept"})
commit(kept, 50)
gone = Member("gone", conf, [TOPIC], **{"group.id": "retention-gone"})
commit(gone, 30)
gone.close()
t0 = time.monotonic()
check(committed_offsets(conf, "retention-gone", TOPIC, 1) == {0: 30}, "commit did not land")

while committed_offsets(conf, "retention-gone", TOPIC, 1)[0] >= 0:
    check(time.monotonic() - t0 < 60, "the empty group's offsets never expired")
    poll_for([kept], 0.2)
took = time.monotonic() - t0
log(f"offsets of the empty group expired after {took:.1f}s (retention {RETENTION_S}s)")
check(took >= RETENTION_S - 0.2, f"offsets expired after {took:.1f}s, before the retention time")
# Well past the retention time, the active group's offsets are still there.
poll_for([kept], max(0.0, 2 * RETENTION_S - (time.monotonic() - t0)))
check(committed_offsets(conf, "retention-kept", TOPIC, 1) == {0: 50},
      "the offsets of a group with a member expired")
kept.close()

if MODE == "group":
    admin = AdminClient(dict(conf))

    def listed():
        res = admin.list_consumer_groups(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
        return {g.group_id: str(g.state) for g in res.valid}

    deadline = time.monotonic() + 10
    while "retention-gone" in listed():
        check(time.monotonic() < deadline,
              f"the empty group without offsets is still listed: {listed()}")
        time.sleep(0.2)
    d = admin.describe_consumer_groups(["retention-gone"], request_timeout=OP_TIMEOUT)[
        "retention-gone"].result(timeout=OP_TIMEOUT)
    check(d.state == ConsumerGroupState.DEAD, f"described as {d.state}")
elif MODE != "offsets":
    fail(f"unknown mode {MODE}")
log("ALL OK")
