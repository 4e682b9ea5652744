"""Consumer groups through the gateway (confluent-kafka, user alice).

- `gw-groups` (4 partitions) is created through the gateway;
- two members of `gw-split` split it 2/2 (disjoint, covering all four),
  then consume 400 records exactly once between them, committing as they
  go; the committed offsets end at the high watermarks;
- list_consumer_groups through the gateway lists `gw-split`;
- both members leave; 200 more records are produced; a new member of the
  same group (a restarted consumer) resumes from the committed offsets: it
  gets exactly the 200 new records, none of the first 400;
- the committed offsets end at the new high watermarks.

RESULT {"first": {member: count}, "resumed": count, "committed": {...}}
"""

from confluent_kafka.admin import AdminClient

from gateway_common import (OP_TIMEOUT, check, ck_conf, create_topics, high_watermarks, load_env,
                            log, produce, result, seq_of, wait_until)
from group_common import (Member, check_each_consumed_once, committed_offsets, poll_for,
                          poll_until, split_evenly)

env = load_env()
TOPIC, GROUP, PARTITIONS, N1, N2 = "gw-groups", "gw-split", 4, 400, 200

alice = ck_conf(env, "alice")
create_topics(alice, [TOPIC], PARTITIONS)

members = [Member(f"gw-member-{i}", alice, [TOPIC], **{"group.id": GROUP}) for i in range(2)]
took = poll_until("a 2/2 split through the gateway", members,
                  lambda: split_evenly(members, PARTITIONS, 2))
log(f"split after {took:.1f}s: {[m.partitions() for m in members]}")

reports = produce(alice, TOPIC, range(N1), PARTITIONS)
poll_until(f"{N1} records consumed", members,
           lambda: sum(len(m.messages) for m in members) >= N1, commit=True)
poll_for(members, 1.0, commit=True)

check_each_consumed_once(members, reports, N1)
first = {m.name: len(m.messages) for m in members}
log(f"consumed per member: {first}")
for m in members:
    check(not m.fatal_errors(), f"{m.name} errors: {[str(e) for e in m.fatal_errors()]}")

committed = committed_offsets(alice, GROUP, TOPIC, PARTITIONS)
high = high_watermarks(alice, TOPIC, PARTITIONS)
check(committed == high, f"committed {committed} != high watermarks {high}")
check(sum(high.values()) == N1, f"high watermarks {high} do not add up to {N1}")

admin = AdminClient(dict(alice))


def listed():
    res = admin.list_consumer_groups(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    check(not res.errors, f"list_consumer_groups errors: {res.errors}")
    ids = sorted(g.group_id for g in res.valid)
    return ids if GROUP in ids else None


groups = wait_until(f"{GROUP} in list_consumer_groups", listed, timeout=OP_TIMEOUT)
log(f"list_consumer_groups: {groups}")

for m in members:
    m.close()

produce(alice, TOPIC, range(N1, N1 + N2), PARTITIONS)

again = Member("gw-member-restarted", alice, [TOPIC], **{"group.id": GROUP})
poll_until(f"{N2} new records for the restarted member", [again],
           lambda: len(again.messages) >= N2, commit=True)
poll_for([again], 1.0, commit=True)
got = sorted(seq_of(m) for m in again.messages)
old = [s for s in got if s < N1]
check(not old, f"the restarted member re-read {len(old)} committed records, e.g. {old[:5]}")
check(got == list(range(N1, N1 + N2)),
      f"the restarted member got {len(got)} records, expected seqs {N1}..{N1 + N2 - 1}")
check(not again.fatal_errors(), f"restarted member errors: {[str(e) for e in again.fatal_errors()]}")
again.close()

committed = committed_offsets(alice, GROUP, TOPIC, PARTITIONS)
high = high_watermarks(alice, TOPIC, PARTITIONS)
check(committed == high, f"after the resume: committed {committed} != high watermarks {high}")
result(first=first, resumed=len(got), committed={str(k): v for k, v in committed.items()},
       groups=groups)
log("ALL OK")
