"""cooperative-sticky (KIP-429) through the classic protocol: two members
split six partitions 3/3; when a third joins, the two keep the partitions
they still own: each gives up exactly one, through an incremental revoke
of just that partition, and is never revoked everything. The newcomer
gets the two moved partitions. Records produced before and after the
third member joined are consumed exactly once, with commits.

Usage: group_cooperative.py BOOTSTRAP
"""

import sys

from group_common import (Member, base_conf, check, create_topic, log, poll_for, poll_until,
                          produce, seq_of, split_evenly)

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS = "coop-topic", "coop-group", 6
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
extra = {"group.id": GROUP, "partition.assignment.strategy": "cooperative-sticky"}

first = [Member(f"coop-{i}", conf, [TOPIC], **extra) for i in range(2)]
poll_until("a 3/3 split", first, lambda: split_evenly(first, PARTITIONS, 3))
before = {m.name: set(m.partitions()) for m in first}
marks = {m.name: len(m.events) for m in first}
log(f"before: {({k: sorted(v) for k, v in before.items()})}")
produce(conf, TOPIC, range(600), PARTITIONS)
poll_until("the first batch", first, lambda: sum(len(m.messages) for m in first) >= 600,
           commit=True)

third = Member("coop-2", conf, [TOPIC], **extra)
everyone = first + [third]
took = poll_until("a 2/2/2 split", everyone, lambda: split_evenly(everyone, PARTITIONS, 2),
                  commit=True)
# Let the second (assigning) round of the cooperative rebalance settle.
poll_for(everyone, 2.0, commit=True)
check(split_evenly(everyone, PARTITIONS, 2), "the 2/2/2 split did not last")
log(f"after {took:.1f}s: {[m.partitions() for m in everyone]}")

for m in first:
    events = m.events[marks[m.name]:]
    log(f"{m.name} callbacks: {[(k, [p for _, p in ps]) for _, k, ps in events]}")
    kept = set(m.partitions())
    check(kept <= before[m.name], f"{m.name} got new partitions {sorted(kept - before[m.name])}")
    check(len(kept) == 2, f"{m.name} kept {sorted(kept)} of {sorted(before[m.name])}")
    revoked = [p for _, kind, ps in events if kind == "revoke" for _, p in ps]
    check(sorted(revoked) == sorted(before[m.name] - kept),
          f"{m.name}: revoked {revoked}, but only {sorted(before[m.name] - kept)} moved")
    for _, kind, ps in events:
        check(kind != "lost", f"{m.name}: partitions lost {ps}")
        check(not (kind == "revoke" and {p for _, p in ps} == before[m.name]),
              f"{m.name}: revoked everything it owned ({ps}): not incremental")
        check(not (kind == "assign" and {p for _, p in ps} & before[m.name]),
              f"{m.name}: re-assigned partitions it kept ({ps})")
    actual = sorted(tp.partition for tp in m.c.assignment())
    check(actual == m.partitions(), f"{m.name}: assignment() {actual} != tracked {m.partitions()}")
check(set(third.partitions()) == set(range(PARTITIONS)) - set().union(*[set(m.partitions())
                                                                        for m in first]),
      "the newcomer does not hold the moved partitions")

produce(conf, TOPIC, range(600, 1200), PARTITIONS)
poll_until("the second batch", everyone,
           lambda: sum(len(m.messages) for m in everyone) >= 1200, commit=True)
poll_for(everyone, 1.0, commit=True)
seqs = [seq_of(msg) for m in everyone for msg in m.messages]
check(sorted(seqs) == list(range(1200)),
      f"{len(seqs)} records consumed, {len(set(seqs))} distinct, of 1200")
for m in everyone:
    check(not m.fatal_errors(), f"{m.name} errors: {[str(e) for e in m.fatal_errors()]}")
    m.close()
log("ALL OK")
