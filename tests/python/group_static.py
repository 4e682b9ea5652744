"""Static membership (KIP-345): a member with group.instance.id=static-1
closes (librdkafka sends no LeaveGroup for a static member) and a new
consumer with the same instance id joins within the session timeout: it
gets the same partitions back, and the other member sees no rebalance at
all (no revoke, no assign callback).

Usage: group_static.py BOOTSTRAP follower|leader|cooperative
  follower:    the other member joined first, so it leads the group;
  leader:      the static member joined first and is the group's leader;
  cooperative: as follower, both members with cooperative-sticky.
"""

import sys
import time

from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, create_topic, fail, log,
                          poll_for, poll_until, split_evenly)

BOOTSTRAP, MODE = sys.argv[1], sys.argv[2]
TOPIC, GROUP, PARTITIONS = f"static-topic-{MODE}", f"static-group-{MODE}", 6
SESSION_MS = 30000
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
common = {"group.id": GROUP, "session.timeout.ms": SESSION_MS}
if MODE == "cooperative":
    common["partition.assignment.strategy"] = "cooperative-sticky"
static = {**common, "group.instance.id": "static-1"}


def describe():
    admin = AdminClient(dict(conf))
    return admin.describe_consumer_groups([GROUP], request_timeout=OP_TIMEOUT)[GROUP].result(
        timeout=OP_TIMEOUT)


if MODE in ("follower", "cooperative"):
    other = Member("dynamic", conf, [TOPIC], **common)
    poll_until("the first member to hold everything", [other],
               lambda: len(other.partitions()) == PARTITIONS)
    first = Member("static-a", conf, [TOPIC], **static)
elif MODE == "leader":
    first = Member("static-a", conf, [TOPIC], **static)
    poll_until("the static member to hold everything", [first],
               lambda: len(first.partitions()) == PARTITIONS)
    other = Member("dynamic", conf, [TOPIC], **common)
else:
    fail(f"unknown mode {MODE}")
poll_until("a 3/3 split", [first, other], lambda: split_evenly([first, other], PARTITIONS, 3))
owned = first.partitions()
d = describe()
check(sorted(m.group_instance_id or "" for m in d.members) == ["", "static-1"],
      f"describe: instance ids {[m.group_instance_id for m in d.members]}")
log(f"static member holds {owned}, the other {other.partitions()}")
# Settle: no rebalance is still going on.
poll_for([first, other], 1.5)
check(split_evenly([first, other], PARTITIONS, 3), "the split did not last")
mark = len(other.events)

t0 = time.monotonic()
first.close()
# The member is still in the group: its session has not expired.
d = describe()
check(len(d.members) == 2, f"after close() the group has {len(d.members)} members: "
                           "a static member must not leave on close")
again = Member("static-a2", conf, [TOPIC], **static)
poll_until("the restarted static member's assignment", [again, other],
           lambda: bool(again.partitions()))
took = time.monotonic() - t0
check(took < SESSION_MS / 1000, f"rejoined after {took:.1f}s, beyond the session timeout")
log(f"restarted static member got {again.partitions()} after {took:.2f}s")
check(again.partitions() == owned, f"restarted static member got {again.partitions()}, had {owned}")
# Several heartbeat intervals (500 ms): a rebalance would show by now.
poll_for([again, other], 3.0)
events = other.events[mark:]
check(not events, f"the other member saw a rebalance: {[(k, ps) for _, k, ps in events]}")
check(again.partitions() == owned and len(other.partitions()) == 3,
      f"assignments changed: {again.partitions()} / {other.partitions()}")
d = describe()
check(len(d.members) == 2 and str(d.state).endswith("STABLE"),
      f"group after the restart: {d.state}, {len(d.members)} members")
again.close()
other.close()
log("ALL OK")
