"""A consumer-protocol member across a broker restart: it consumes and
commits 300 records, prints READY and waits for a line on stdin (the
harness restarts the broker meanwhile); its next heartbeats get
UNKNOWN_MEMBER_ID (the membership was in memory) and it rejoins by itself;
then it consumes the 150 records produced after the restart, and none of
the 300 again (it resumes at its commits).

Usage: kip848_live.py BOOTSTRAP
"""

import sys

from group_common import base_conf, check, create_topic, log, produce, seq_of
from kip848_common import Member848, poll_until

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS = "kip848-live", "kip848-live-group", 3
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
m = Member848("live", conf, [TOPIC], GROUP)
poll_until("an assignment", [m], lambda: len(m.partitions()) == PARTITIONS)
produce(conf, TOPIC, range(300), PARTITIONS)
poll_until("300 records", [m], lambda: len(m.messages) >= 300, commit=True)
log("READY")
sys.stdin.readline()
produce(conf, TOPIC, range(300, 450), PARTITIONS)
poll_until("150 more records after the restart", [m], lambda: len(m.messages) >= 450, commit=True)
m.poll(timeout=1.0)
seqs = [seq_of(x) for x in m.messages]
check(sorted(seqs) == list(range(450)), f"{len(seqs)} records, {len(set(seqs))} distinct")
check(len(m.partitions()) == PARTITIONS, f"after the restart: {m.partitions()}")
log(f"errors seen across the restart: {sorted({str(e.code()) for e in m.errors})}")
m.close()
log("ALL OK")
