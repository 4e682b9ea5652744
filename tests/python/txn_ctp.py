"""A consume-transform-produce loop: a consumer in group `group` reads
`input` (read_committed, no auto commit), a transactional producer writes
out-<value> for each record to `output` and commits the consumed offsets
with send_offsets_to_transaction, one transaction per batch.

env: bootstrap, txn_id, group, mode, and
  mode "commit": process exactly `limit` records, committing each batch,
                 then leave cleanly.
  mode "hang":   in one transaction, process `limit` records (produce them,
                 flush, stage their offsets), print "MID-TXN" and sleep:
                 the test SIGKILLs this process.
  mode "drain":  process until every input partition is consumed to its
                 end, committing each batch.
The last line before "ALL OK" is RESULT {"processed": n, "offsets": {...}}.
"""

import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from txn_common import (OP_TIMEOUT, check, conf, fail, load_env, log, result, txn_producer)

env = load_env()
mode = env["mode"]
limit = env.get("limit")
INPUT, OUTPUT = "input", "output"

producer = txn_producer(env, env["txn_id"], timeout_ms=env.get("txn_timeout_ms", 5000))
producer.init_transactions(OP_TIMEOUT)
log("initialized")

consumer = Consumer(conf(env, **{
    "group.id": env["group"],
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
}))
consumer.subscribe([INPUT])

processed = 0
# Next offset to commit per input partition, for everything processed.
next_offsets = {}


def take(max_records, deadline):
    """Up to max_records input records (fewer only once the deadline is
    near or none came for a while)."""
    got = []
    while len(got) < max_records:
        msgs = consumer.consume(num_messages=max_records - len(got), timeout=0.5)
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                fail(f"consume: {m.error()}")
            got.append(m)
        if not msgs and (got or time.monotonic() > deadline):
            break
    return got


def at_end():
    """Every input partition is assigned to us and consumed to its end."""
    assignment = consumer.assignment()
    md = consumer.list_topics(INPUT, timeout=OP_TIMEOUT)
    if len(assignment) < len(md.topics[INPUT].partitions):
        return False
    committed = {(tp.topic, tp.partition): tp.offset
                 for tp in consumer.committed(assignment, timeout=OP_TIMEOUT)}
    for tp in consumer.position(assignment):
        # No record consumed here yet: the group's committed offset (or the
        # start) is where this partition stands.
        pos = tp.offset if tp.offset >= 0 else max(committed[(tp.topic, tp.partition)], 0)
        _lo, hi = consumer.get_watermark_offsets(tp, timeout=OP_TIMEOUT, cached=False)
        if pos < hi:
            return False
    return True


def process(batch):
    """Inside the current transaction: produce and stage offsets."""
    global processed
    for m in batch:
        producer.produce(OUTPUT, key=m.key(), value=b"out-" + m.value())
        next_offsets[(m.topic(), m.partition())] = m.offset() + 1
    offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(next_offsets.items())]
    producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), OP_TIMEOUT)
    processed += len(batch)


deadline = time.monotonic() + 2 * OP_TIMEOUT
if mode == "hang":
    producer.begin_transaction()
    while processed < limit:
        check(time.monotonic() < deadline, f"hang: only {processed} of {limit} records came")
        batch = take(limit - processed, deadline)
        if batch:
            process(batch)
    check(producer.flush(OP_TIMEOUT) == 0, "hang: output not delivered")
    log("MID-TXN")
    time.sleep(3600)
    fail("not killed")

while True:
    check(time.monotonic() < deadline, f"{mode}: timed out after {processed} records")
    if mode == "commit" and processed >= limit:
        break
    want = 7 if mode == "drain" else min(7, limit - processed)
    batch = take(want, time.monotonic() + 2.0)
    if not batch:
        if mode == "drain" and at_end():
            break
        continue
    producer.begin_transaction()
    process(batch)
    producer.commit_transaction(OP_TIMEOUT)

check(mode != "commit" or processed == limit, f"processed {processed}, limit {limit}")
consumer.close()
producer.flush(OP_TIMEOUT)
result({"processed": processed,
        "offsets": {f"{t}-{p}": o for (t, p), o in sorted(next_offsets.items())}})
log("ALL OK")
