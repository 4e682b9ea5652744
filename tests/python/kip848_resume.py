"""Committed offsets of a consumer-protocol group survive a broker restart.

    kip848_resume.py BOOTSTRAP first   # 300 records consumed and committed
    (the harness restarts the broker)
    kip848_resume.py BOOTSTRAP second  # 150 more produced: a new member of
                                       # the group gets exactly those

Usage: kip848_resume.py BOOTSTRAP first|second
"""

import sys

from group_common import (base_conf, check, committed_offsets, create_topic, log, produce, seq_of)
from kip848_common import Member848, poll_until

BOOTSTRAP, PHASE = sys.argv[1], sys.argv[2]
TOPIC, GROUP, PARTITIONS = "kip848-resume", "kip848-resume-group", 3
conf = base_conf(BOOTSTRAP)

if PHASE == "first":
    create_topic(conf, TOPIC, PARTITIONS)
    produce(conf, TOPIC, range(300), PARTITIONS)
    m = Member848("first", conf, [TOPIC], GROUP)
    poll_until("300 records", [m], lambda: len(m.messages) >= 300, commit=True)
    check(sorted(seq_of(x) for x in m.messages) == list(range(300)), "first: wrong records")
    m.close()
    got = committed_offsets(conf, GROUP, TOPIC, PARTITIONS)
    check(got == {p: 100 for p in range(PARTITIONS)}, f"committed {got}")
    log(f"committed {got}")
else:
    got = committed_offsets(conf, GROUP, TOPIC, PARTITIONS)
    check(got == {p: 100 for p in range(PARTITIONS)}, f"after the restart: committed {got}")
    produce(conf, TOPIC, range(300, 450), PARTITIONS)
    m = Member848("second", conf, [TOPIC], GROUP)
    poll_until("150 records", [m], lambda: len(m.messages) >= 150, commit=True)
    m.poll(timeout=1.0)
    seqs = sorted(seq_of(x) for x in m.messages)
    check(seqs == list(range(300, 450)), f"second got {len(seqs)} records, from {seqs[:3]}")
    m.close()
    log("resumed at the commits: 150 new records, none of the 300 committed")
log("ALL OK")
