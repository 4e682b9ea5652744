"""KIP-848 with librdkafka (group.protocol=consumer) on a 6-partition topic:

1. two members split the partitions 3/3 (server-side `uniform` assignor);
2. a third joins: the split becomes 2/2/2 and each of the first two gives
   up exactly one partition (incremental: the partitions that stay are
   never revoked, and they keep consuming while the others move);
3. the third leaves: back to 3/3, the two remaining members revoke nothing;
4. every record produced along the way is consumed exactly once, committed
   as it goes, and the commits end at the high watermarks;
5. ListGroups and DescribeConsumerGroups (ConsumerGroupDescribe) show the
   group as a `consumer` group with its members and assignments.

Usage: kip848_split.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka import ConsumerGroupType
from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, base_conf, check, check_each_consumed_once, committed_offsets,
                          create_topic, high_watermarks, log, produce)
from kip848_common import Member848, poll_until, split

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS = "kip848-topic", "kip848-group", 6

conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
a = Member848("m-a", conf, [TOPIC], GROUP)
b = Member848("m-b", conf, [TOPIC], GROUP)
took = poll_until("a 3/3 split", [a, b], lambda: split([a, b], PARTITIONS, [3, 3]))
log(f"3/3 after {took:.1f}s: a={a.partitions()} b={b.partitions()}")

reports = produce(conf, TOPIC, range(0, 600), PARTITIONS)
poll_until("600 records", [a, b], lambda: len(a.messages) + len(b.messages) >= 600, commit=True)

# 2. A third member: incremental hand-over.
before = {m.name: set(m.partitions()) for m in (a, b)}
t0 = time.monotonic()
c = Member848("m-c", conf, [TOPIC], GROUP)
# Records keep arriving while the partitions move: the members that keep
# theirs consume them meanwhile.
reports.update(produce(conf, TOPIC, range(600, 1200), PARTITIONS))
took = poll_until("a 2/2/2 split", [a, b, c], lambda: split([a, b, c], PARTITIONS, [2, 2, 2]),
                  commit=True)
log(f"2/2/2 after {took:.1f}s: a={a.partitions()} b={b.partitions()} c={c.partitions()}")
for m in (a, b):
    kept = before[m.name] & set(m.partitions())
    revoked = m.revoked_since(t0)
    check(len(kept) == 2, f"{m.name} kept {sorted(kept)} of {sorted(before[m.name])}")
    check(len(revoked) == 1 and not (set(revoked) & kept),
          f"{m.name} revoked {revoked}, kept {sorted(kept)}: a stop-the-world revocation")
    check(not any(kind == "lost" for _, kind, _ in m.events), f"{m.name} lost partitions")
log(f"revoked: a={a.revoked_since(t0)} b={b.revoked_since(t0)}")
poll_until("1200 records", [a, b, c],
           lambda: sum(len(m.messages) for m in (a, b, c)) >= 1200, commit=True)

# 5. The group as the admin APIs show it, while it has three members.
admin = AdminClient(dict(conf))
listed = admin.list_consumer_groups(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
mine = [g for g in listed.valid if g.group_id == GROUP]
check(len(mine) == 1, f"ListGroups: {[g.group_id for g in listed.valid]}")
log(f"listed: {mine[0].group_id} type={mine[0].type} state={mine[0].state}")
check(mine[0].type == ConsumerGroupType.CONSUMER, f"listed type {mine[0].type}")
desc = admin.describe_consumer_groups([GROUP], request_timeout=OP_TIMEOUT)[GROUP].result(
    timeout=OP_TIMEOUT)
log(f"described: state={desc.state} type={desc.type} assignor={desc.partition_assignor} "
    f"members={[(m.client_id, sorted(tp.partition for tp in m.assignment.topic_partitions)) for m in desc.members]}")
check(desc.type == ConsumerGroupType.CONSUMER, f"described type {desc.type}")
check(desc.partition_assignor == "uniform", f"assignor {desc.partition_assignor}")
check(sorted(m.client_id for m in desc.members) == ["m-a", "m-b", "m-c"],
      f"members {[m.client_id for m in desc.members]}")
by_client = {m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
             for m in desc.members}
for m in (a, b, c):
    check(by_client[m.name] == m.partitions(),
          f"{m.name}: described {by_client[m.name]}, has {m.partitions()}")

# 3. The third leaves: its partitions go back, nobody else revokes.
t1 = time.monotonic()
c.close()
took = poll_until("3/3 again", [a, b], lambda: split([a, b], PARTITIONS, [3, 3]), commit=True)
log(f"3/3 again after {took:.1f}s: a={a.partitions()} b={b.partitions()}")
for m in (a, b):
    check(not m.revoked_since(t1), f"{m.name} revoked {m.revoked_since(t1)} when c left")

reports.update(produce(conf, TOPIC, range(1200, 1800), PARTITIONS))
poll_until("1800 records", [a, b],
           lambda: sum(len(m.messages) for m in (a, b, c)) >= 1800, commit=True)
time.sleep(0.5)
for m in (a, b):
    m.poll(timeout=0.5, commit=True)

# 4. Exactly once overall (each record by whoever held its partition then).
seen = {}
for m in (a, b, c):
    for msg in m.messages:
        s = int(msg.key().decode().split("-", 1)[1])
        check(s not in seen, f"seq {s} consumed twice ({seen.get(s)} and {m.name})")
        seen[s] = m.name
        check(reports[s] == (msg.partition(), msg.offset()), f"seq {s} at the wrong place")
check(set(seen) == set(range(1800)), f"{1800 - len(seen)} records never consumed")
for m in (a, b, c):
    check(not m.fatal_errors(), f"{m.name} errors: {[str(e) for e in m.fatal_errors()]}")
a.close()
b.close()
committed = committed_offsets(conf, GROUP, TOPIC, PARTITIONS)
high = high_watermarks(conf, TOPIC, PARTITIONS)
check(committed == high, f"committed {committed} != high watermarks {high}")
log("ALL OK")
