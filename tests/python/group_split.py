"""Three confluent-kafka consumers in one group on a 6-partition topic:
they split the partitions 2/2/2 (disjoint, covering all six) and together
consume every record exactly once, committing as they go; the group's
committed offsets end at the high watermarks.

Usage: group_split.py BOOTSTRAP
"""

import sys

from group_common import (Member, base_conf, check, check_each_consumed_once, committed_offsets,
                          create_topic, high_watermarks, log, poll_for, poll_until, produce,
                          split_evenly)

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS, N = "split-topic", "split-group", 6, 3000

conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
members = [Member(f"split-{i}", conf, [TOPIC], **{"group.id": GROUP}) for i in range(3)]
took = poll_until("a 2/2/2 split", members, lambda: split_evenly(members, PARTITIONS, 2))
log(f"split after {took:.1f}s: {[m.partitions() for m in members]}")

reports = produce(conf, TOPIC, range(N), PARTITIONS)
poll_until(f"{N} records consumed", members,
           lambda: sum(len(m.messages) for m in members) >= N, commit=True)
# Nothing more arrives either.
poll_for(members, 1.0, commit=True)

check_each_consumed_once(members, reports, N)
counts = {m.name: len(m.messages) for m in members}
log(f"consumed per member: {counts}")
for m in members:
    check(not m.fatal_errors(), f"{m.name} errors: {[str(e) for e in m.fatal_errors()]}")

committed = committed_offsets(conf, GROUP, TOPIC, PARTITIONS)
high = high_watermarks(conf, TOPIC, PARTITIONS)
check(committed == high, f"committed {committed} != high watermarks {high}")
for m in members:
    m.close()
log("ALL OK")
