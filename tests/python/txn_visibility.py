"""Aborted transactions are invisible to read_committed and visible to
read_uncommitted; committed ones are visible to both, in order, around
non-transactional records on the same partitions.

env: bootstrap
"""

from txn_common import (check, create_topics, load_env, log, produce_plain, read_all, result,
                        txn_producer, values, OP_TIMEOUT)

env = load_env()
topic = "vis"
create_topics(env, {topic: 2})

p = txn_producer(env, "vis-txn")
p.init_transactions(OP_TIMEOUT)

# 1: committed
p.begin_transaction()
for i in range(10):
    p.produce(topic, key=f"k{i}".encode(), value=f"c1-{i}".encode(), partition=i % 2)
p.commit_transaction(OP_TIMEOUT)

# 2: aborted (flushed first, so the records really are in the log)
p.begin_transaction()
for i in range(10):
    p.produce(topic, key=f"k{i}".encode(), value=f"a-{i}".encode(), partition=i % 2)
check(p.flush(OP_TIMEOUT) == 0, "aborted-to-be records not delivered")
p.abort_transaction(OP_TIMEOUT)

# plain records between transactions
produce_plain(env, topic, [(b"plain", f"plain-{i}".encode(), i % 2) for i in range(4)])

# 3: committed again, after the abort
p.begin_transaction()
for i in range(10):
    p.produce(topic, key=f"k{i}".encode(), value=f"c2-{i}".encode(), partition=i % 2)
p.commit_transaction(OP_TIMEOUT)

# 4: aborted without a flush before the abort
p.begin_transaction()
for i in range(6):
    p.produce(topic, key=f"k{i}".encode(), value=f"a2-{i}".encode(), partition=i % 2)
p.abort_transaction(OP_TIMEOUT)
p.flush(OP_TIMEOUT)

committed = read_all(env, topic, "read_committed")
uncommitted = read_all(env, topic, "read_uncommitted")


def per_partition(records):
    out = {}
    for part, _off, _k, v in sorted(records, key=lambda r: (r[0], r[1])):
        out.setdefault(part, []).append(v.decode())
    return out


want_committed = {
    part: [f"c1-{i}" for i in range(part, 10, 2)]
    + [f"plain-{i}" for i in range(part, 4, 2)]
    + [f"c2-{i}" for i in range(part, 10, 2)]
    for part in (0, 1)
}
got = per_partition(committed)
check(got == want_committed, f"read_committed saw {got}, expected {want_committed}")

vals = set(values(uncommitted))
check(len(values(uncommitted)) == len(vals), "read_uncommitted returned a record twice")
for i in range(10):
    for prefix in ("c1", "a", "c2"):
        check(f"{prefix}-{i}" in vals, f"read_uncommitted is missing {prefix}-{i}")
aborted_seen = sorted(v for v in vals if v.startswith("a"))

# 5: interleaved on one partition: an open transaction holds back what
# follows it, even another producer's committed records; once aborted,
# only its own records disappear.
t2 = "vis2"
create_topics(env, {t2: 1})
x = txn_producer(env, "vis-x")
y = txn_producer(env, "vis-y")
x.init_transactions(OP_TIMEOUT)
y.init_transactions(OP_TIMEOUT)
x.begin_transaction()
for i in range(3):
    x.produce(t2, value=f"x-{i}".encode(), partition=0)
check(x.flush(OP_TIMEOUT) == 0, "x records not delivered")
y.begin_transaction()
for i in range(3):
    y.produce(t2, value=f"y-{i}".encode(), partition=0)
y.commit_transaction(OP_TIMEOUT)
produce_plain(env, t2, [(None, b"plain-after", 0)])
held = values(read_all(env, t2, "read_committed"))
check(held == [], f"read_committed past the open transaction's first offset: {held}")
everything = values(read_all(env, t2, "read_uncommitted"))
check(everything == [f"x-{i}" for i in range(3)] + [f"y-{i}" for i in range(3)]
      + ["plain-after"], f"read_uncommitted of {t2}: {everything}")
for i in range(3, 5):
    x.produce(t2, value=f"x-{i}".encode(), partition=0)
check(x.flush(OP_TIMEOUT) == 0, "x records not delivered")
x.abort_transaction(OP_TIMEOUT)
got = values(read_all(env, t2, "read_committed"))
check(got == ["y-0", "y-1", "y-2", "plain-after"], f"read_committed of {t2} after the abort: {got}")
log(f"read_committed: {len(committed)} records; read_uncommitted: {len(uncommitted)} "
    f"records, {len(aborted_seen)} of them aborted")
result({"committed": len(committed), "uncommitted": len(uncommitted)})
log("ALL OK")
