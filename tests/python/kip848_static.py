"""KIP-848 static membership with librdkafka (group.instance.id,
group.protocol=consumer) on a 4-partition topic:

1. static members inst-1 and inst-2 split the partitions 2/2;
2. inst-1 closes (a static leave, epoch -2) and a new process with the
   same instance id comes back well within the session: it gets the same
   two partitions, and inst-2 sees no revocation or assignment meanwhile;
3. a second process with the instance id of an active member is refused
   with UNRELEASED_INSTANCE_ID (fatal for it); the group is unchanged.

Usage: kip848_static.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka import KafkaError

from group_common import base_conf, check, create_topic, log
from kip848_common import Member848, poll_until, split

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS = "kip848-static", "kip848-static-group", 4

conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
one = Member848("inst-1", conf, [TOPIC], GROUP, **{"group.instance.id": "inst-1"})
two = Member848("inst-2", conf, [TOPIC], GROUP, **{"group.instance.id": "inst-2"})
poll_until("a 2/2 split", [one, two], lambda: split([one, two], PARTITIONS, [2, 2]))
first = one.partitions()
log(f"2/2: inst-1={first} inst-2={two.partitions()}")

t0 = time.monotonic()
events_before = len(two.events)
one.close()
back = Member848("inst-1-again", conf, [TOPIC], GROUP, **{"group.instance.id": "inst-1"})
poll_until("inst-1's partitions back", [back, two], lambda: back.partitions() == first)
log(f"inst-1 back with {back.partitions()} after {time.monotonic() - t0:.1f}s")
# A little longer: nothing else happens to inst-2.
end = time.monotonic() + 2.0
while time.monotonic() < end:
    back.poll()
    two.poll()
check(len(two.events) == events_before, f"inst-2 saw {two.events[events_before:]}")
check(back.partitions() == first, f"inst-1 now has {back.partitions()}")

dup = Member848("inst-2-dup", conf, [TOPIC], GROUP, **{"group.instance.id": "inst-2"})
deadline = time.monotonic() + 30
while not any(e.code() == KafkaError.UNRELEASED_INSTANCE_ID or "UNRELEASED_INSTANCE_ID" in str(e)
              or "instance id" in str(e).lower() for e in dup.errors):
    check(time.monotonic() < deadline, f"no UNRELEASED_INSTANCE_ID for the duplicate: {dup.errors}")
    dup.poll()
    back.poll()
    two.poll()
log(f"duplicate refused: {dup.errors[0]}")
check(not dup.partitions(), f"the duplicate got {dup.partitions()}")
check(split([back, two], PARTITIONS, [2, 2]), "the group changed")
for m in (back, two):
    check(not m.fatal_errors(), f"{m.name} errors: {[str(e) for e in m.fatal_errors()]}")
dup.close()
back.close()
two.close()
log("ALL OK")
