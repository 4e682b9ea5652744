"""Two librdkafka members of a consumer-protocol group that stay until
stdin closes, for the `portcullis group` CLI test: they split a
4-partition topic 2/2, consume its 100 records and commit them, print
READY, and keep heartbeating until stdin is closed.

Usage: kip848_hold.py BOOTSTRAP GROUP TOPIC
"""

import select
import sys

from group_common import base_conf, create_topic, log, produce
from kip848_common import Member848, poll_until, split

BOOTSTRAP, GROUP, TOPIC = sys.argv[1:4]
PARTITIONS, N = 4, 100

conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
members = [Member848(f"hold-{i}", conf, [TOPIC], GROUP) for i in range(2)]
poll_until("a 2/2 split", members, lambda: split(members, PARTITIONS, [2, 2]))
# Produced once the split is done, so that each member commits its own.
produce(conf, TOPIC, range(N), PARTITIONS)
poll_until(f"{N} records", members, lambda: sum(len(m.messages) for m in members) >= N,
           commit=True)
log("READY " + " ".join(f"{m.name}={m.partitions()}" for m in members))
while True:
    ready, _, _ = select.select([sys.stdin], [], [], 0.1)
    if ready and not sys.stdin.readline():
        break
    for m in members:
        m.poll()
for m in members:
    m.close()
log("ALL OK")
