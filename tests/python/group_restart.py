"""Committed offsets across broker restarts, in phases driven by the Rust
side (which restarts the broker in between).

Usage:
  group_restart.py BOOTSTRAP setup
      creates the topic and produces 1,200 records over 3 partitions.
  group_restart.py BOOTSTRAP commit GROUP TARGETS_JSON
      a group member consumes up to TARGETS_JSON ({partition: offset}) and
      commits exactly those offsets synchronously: the commit is
      acknowledged before this exits.
  group_restart.py BOOTSTRAP verify GROUP TARGETS_JSON
      committed() returns exactly the targets, and a new member of the
      group starts at them and reads everything after, once.
"""

import json
import sys

from confluent_kafka import TopicPartition

from group_common import (Member, base_conf, check, committed_offsets, create_topic,
                          fail, log, poll_for, poll_until, produce, seq_of)

BOOTSTRAP, PHASE = sys.argv[1], sys.argv[2]
TOPIC, PARTITIONS, TOTAL = "restart-topic", 3, 1200
PER_PARTITION = TOTAL // PARTITIONS
conf = base_conf(BOOTSTRAP)


def targets():
    return {int(p): o for p, o in json.loads(sys.argv[4]).items()}


def commit(group, want):
    """Consumes up to the targets as a member of `group`, then commits
    exactly the targets (synchronously: acknowledged when this returns),
    also where a target is behind what the group committed before."""
    m = Member("committer", conf, [TOPIC], **{"group.id": group,
                                               "auto.offset.reset": "earliest"})
    poll_until("an assignment", [m], lambda: len(m.partitions()) == PARTITIONS)
    # Consumption starts at this group's earlier commits, if any: where
    # those are at or past the target already there is nothing to read.
    before = committed_offsets(conf, group, TOPIC, PARTITIONS)
    reached = {p: before[p] >= want[p] for p in want}
    pending = list(m.messages)  # whatever arrived while waiting for the assignment
    while not all(reached.values()):
        for msg in pending:
            if msg.offset() + 1 >= want[msg.partition()]:
                reached[msg.partition()] = True
        pending = m.poll(timeout=0.2)
    result = m.c.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in want.items()],
                        asynchronous=False)
    for tp in result:
        check(tp.error is None, f"commit {tp}: {tp.error}")
    m.close()
    got = committed_offsets(conf, group, TOPIC, PARTITIONS)
    check(got == want, f"before the restart: committed {got}, wanted {want}")
    log(f"committed {want} for {group}")


def verify(group, want):
    got = committed_offsets(conf, group, TOPIC, PARTITIONS)
    check(got == want, f"after the restart committed() says {got}, was {want}")
    m = Member("resumer", conf, [TOPIC], **{"group.id": group, "auto.offset.reset": "error"})
    expect = sum(PER_PARTITION - o for o in want.values())
    poll_until(f"{expect} records after the commits", [m], lambda: len(m.messages) >= expect)
    poll_for([m], 1.0)
    check(not m.fatal_errors(), f"consumer errors: {[str(e) for e in m.fatal_errors()]}")
    firsts, counts = {}, {}
    for msg in m.messages:
        firsts.setdefault(msg.partition(), msg.offset())
        counts[msg.partition()] = counts.get(msg.partition(), 0) + 1
        check(seq_of(msg) % PARTITIONS == msg.partition(), "record in the wrong partition")
    seqs = [seq_of(msg) for msg in m.messages]
    check(len(seqs) == len(set(seqs)), "duplicates after the restart")
    check(firsts == {p: o for p, o in want.items() if o < PER_PARTITION},
          f"resumed at {firsts}, committed {want}")
    check(counts == {p: PER_PARTITION - o for p, o in want.items() if o < PER_PARTITION},
          f"read {counts} per partition after commits {want}")
    m.close()
    log(f"{group} resumed at {firsts}")


if PHASE == "setup":
    create_topic(conf, TOPIC, PARTITIONS)
    produce(conf, TOPIC, range(TOTAL), PARTITIONS)
elif PHASE == "commit":
    commit(sys.argv[3], targets())
elif PHASE == "verify":
    verify(sys.argv[3], targets())
else:
    fail(f"unknown phase {PHASE}")
log("ALL OK")
