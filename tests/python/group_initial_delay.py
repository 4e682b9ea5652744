"""groups.initial_rebalance_delay_ms (5 s on this broker): the first member
of a new group waits that long for more members, so a second member that
joins during the delay is part of the first generation: each gets three
partitions in one assignment, and neither is ever revoked.

Usage: group_initial_delay.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka import ConsumerGroupState
from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, create_topic, log, poll_for,
                          poll_until, split_evenly)

BOOTSTRAP = sys.argv[1]
DELAY_S = 5.0
TOPIC, GROUP, PARTITIONS = "delay-topic", "delay-group", 6
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
admin = AdminClient(dict(conf))


def state():
    return admin.describe_consumer_groups([GROUP], request_timeout=OP_TIMEOUT)[GROUP].result(
        timeout=OP_TIMEOUT)


t0 = time.monotonic()
first = Member("delay-0", conf, [TOPIC], **{"group.id": GROUP})
# Wait until the first member has joined (the group is waiting out the delay).
poll_until("the first member to join", [first],
           lambda: state().state == ConsumerGroupState.PREPARING_REBALANCING)
joined = time.monotonic() - t0
check(not first.partitions(), "the first member got partitions at once")
second = Member("delay-1", conf, [TOPIC], **{"group.id": GROUP})
poll_until("a 3/3 split", [first, second], lambda: split_evenly([first, second], PARTITIONS, 3))
poll_for([first, second], 1.0)
assigned = first.events[0][0] - t0
log(f"first member joined within {joined:.1f}s, first assignment after {assigned:.1f}s")
check(assigned >= DELAY_S - 0.1,
      f"the first rebalance completed {assigned:.1f}s after the first member subscribed, "
      f"before the {DELAY_S}s initial delay")
for m in (first, second):
    kinds = [(k, [p for _, p in ps]) for _, k, ps in m.events]
    check(len(kinds) == 1 and kinds[0][0] == "assign" and len(kinds[0][1]) == 3,
          f"{m.name}: expected one assignment of 3 partitions, got {kinds}")
    m.close()
log("ALL OK")
