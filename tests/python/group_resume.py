"""Commit, stop, restart: a consumer stores and commits the offsets of the
first N records it processes, processes M more without committing, and
closes. A new consumer in the same group starts exactly at the commits:
it gets every record after them (the M uncommitted ones again, as
at-least-once allows) and none of the N committed ones.

Usage: group_resume.py BOOTSTRAP
"""

import sys

from group_common import (Member, base_conf, check, committed_offsets, create_topic, log,
                          poll_for, poll_until, produce, seq_of)

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS = "resume-topic", "resume-group", 3
TOTAL, N, M = 3000, 700, 200

conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
reports = produce(conf, TOPIC, range(TOTAL), PARTITIONS)

# Small fetches, so that the first consumer's records interleave the
# partitions and its commits fall inside all of them.
first = Member("first", conf, [TOPIC], **{"group.id": GROUP, "enable.auto.offset.store": False,
                                          "max.partition.fetch.bytes": 2048})
processed = []
poll_until("an assignment", [first], lambda: bool(first.partitions()))
pending = list(first.messages)  # whatever arrived with the assignment
while len(processed) < N + M:
    for msg in pending:
        if len(processed) == N + M:
            break  # delivered but never processed: not committed either
        processed.append(msg)
        if len(processed) <= N:
            first.c.store_offsets(message=msg)
        if len(processed) == N:
            first.c.commit(asynchronous=False)
            log(f"committed after {N} records")
    pending = first.poll(timeout=0.2)
first.close()
committed_seqs = {seq_of(m) for m in processed[:N]}
uncommitted_seqs = {seq_of(m) for m in processed[N:]}

# The commits are exactly "one past the last committed record" per partition.
want = {p: 0 for p in range(PARTITIONS)}
for m in processed[:N]:
    want[m.partition()] = max(want[m.partition()], m.offset() + 1)
got = committed_offsets(conf, GROUP, TOPIC, PARTITIONS)
check(all(got[p] == want[p] for p in range(PARTITIONS) if want[p] > 0),
      f"committed offsets {got}, expected {want}")
check(all(got[p] < 0 for p in range(PARTITIONS) if want[p] == 0),
      f"a partition without commits has offset {got}")

second = Member("second", conf, [TOPIC], **{"group.id": GROUP})
poll_until("the rest of the records", [second], lambda: len(second.messages) >= TOTAL - N)
poll_for([second], 1.0)
seqs = [seq_of(m) for m in second.messages]
check(len(seqs) == len(set(seqs)), "the second consumer got duplicates")
check(not (set(seqs) & committed_seqs),
      f"{len(set(seqs) & committed_seqs)} committed records delivered again, "
      f"e.g. {sorted(set(seqs) & committed_seqs)[:5]}")
check(set(seqs) == set(range(TOTAL)) - committed_seqs,
      f"gap: {len(set(range(TOTAL)) - committed_seqs - set(seqs))} records never delivered")
check(uncommitted_seqs <= set(seqs), "uncommitted records were not redelivered")
firsts = {}
for m in second.messages:
    firsts.setdefault(m.partition(), m.offset())
per_partition = TOTAL // PARTITIONS
expect_firsts = {p: want[p] for p in range(PARTITIONS) if want[p] < per_partition}
check(firsts == expect_firsts, f"second consumer started at {firsts}, commits were {want}")
log(f"first processed {N}+{M}, second resumed at {firsts} and read {len(seqs)}")
second.close()
log("ALL OK")
