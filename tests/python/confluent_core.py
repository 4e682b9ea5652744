"""Core produce/consume/list-offsets round trips through confluent-kafka
(librdkafka), the client most Kafka users actually run.

Usage: confluent_core.py BOOTSTRAP

Every record is a pure function of its sequence number, so the reader can
recompute exactly what the writer sent and compare byte for byte.
Exits non-zero with a message naming the first mismatch.
"""

import random
import sys
import time

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    Consumer,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from harness import check, fail

BOOTSTRAP = sys.argv[1]
PARTITIONS = 3
# A fixed past time for explicit timestamps: far enough from "now" that a
# broker mixing up create time and append time would be caught.
BASE_TS = 1_600_000_000_000
# Generous because CI machines are small and busy; nothing here should take
# more than a fraction of these on an idle machine.
OP_TIMEOUT = 60.0
CONSUME_DEADLINE = 600.0


def expected_record(i):
    """(partition, key, value, headers, explicit timestamp or None) for seq i.

    The mix exercises the record encoding: empty values, ~2 KiB binary
    values (with every byte value, including NUL), short text values of
    varying lengths, zero/one/two headers (one with a null value, one with an
    empty value), and explicit timestamps on a subset. The key carries the
    sequence number, so ordering can be checked even when the value is empty
    or the producer reports no offsets (acks=0).
    """
    key = f"key-{i}".encode()
    if i % 97 == 0:
        value = b""
    elif i % 101 == 0:
        value = random.Random(i).randbytes(2048 - i % 13)
    else:
        value = f"value-{i}-".encode() + b"x" * (i % 64)
    if i % 15 == 0:
        headers = [("h1", f"one-{i}".encode()), ("h2", None if i % 30 == 0 else b"")]
    elif i % 5 == 0:
        headers = [("h1", f"one-{i}".encode())]
    else:
        headers = None
    ts = BASE_TS + i if i % 7 == 0 else None
    return i % PARTITIONS, key, value, headers, ts


def seq_of(key):
    return int(key.decode().split("-", 1)[1])


def create_topics(admin, names, partitions=PARTITIONS):
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
        operation_timeout=OP_TIMEOUT,
        request_timeout=OP_TIMEOUT,
    )
    for fut in futures.values():
        fut.result(timeout=OP_TIMEOUT)


def new_producer(**extra):
    conf = {
        "bootstrap.servers": BOOTSTRAP,
        # Idempotence needs InitProducerId, which the broker does not serve
        # yet (a later issue); librdkafka defaults it off, but say so.
        "enable.idempotence": False,
        "linger.ms": 10,
        "message.timeout.ms": 300_000,
    }
    conf.update(extra)
    return Producer(conf)


def new_consumer():
    return Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            # librdkafka insists on a group.id even for assign(); it is never
            # used because we neither subscribe nor commit (no group APIs yet).
            "group.id": "portcullis-test-unused",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
        }
    )


def produce_all(topic, n, acks, compression="none"):
    """Produces seqs 0..n-1 and returns {seq: (partition, offset, timestamp)}
    from the delivery reports."""
    producer = new_producer(**{"acks": acks, "compression.type": compression})
    reports = {}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
            return
        _, ts = msg.timestamp()
        reports[seq_of(msg.key())] = (msg.partition(), msg.offset(), ts)

    for i in range(n):
        partition, key, value, headers, ts = expected_record(i)
        kwargs = {"partition": partition, "key": key, "value": value, "on_delivery": on_delivery}
        if headers is not None:
            kwargs["headers"] = headers
        if ts is not None:
            kwargs["timestamp"] = ts
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                # Local queue full: let delivery reports drain it.
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(CONSUME_DEADLINE)
    check(remaining == 0, f"{topic}: {remaining} records still undelivered after flush")
    check(not errors, f"{topic}: delivery errors, first: {errors[:3]}")
    check(len(reports) == n, f"{topic}: {len(reports)} delivery reports for {n} records")
    return reports


def consume_all(topic, partitions, counts):
    """Reads each partition from the beginning up to counts[p] records and
    returns {partition: [message, ...]} in fetch order."""
    consumer = new_consumer()
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    got = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + CONSUME_DEADLINE
    try:
        while any(len(got[p]) < counts[p] for p in range(partitions)):
            check(time.monotonic() < deadline,
                  f"{topic}: consume timed out with {[len(got[p]) for p in range(partitions)]} "
                  f"of {[counts[p] for p in range(partitions)]} records")
            for msg in consumer.consume(num_messages=5000, timeout=1.0):
                if msg.error():
                    fail(f"{topic}: consumer error {msg.error()}")
                got[msg.partition()].append(msg)
        # Nothing beyond what was produced may show up.
        for p in range(partitions):
            check(len(got[p]) == counts[p],
                  f"{topic}[{p}]: {len(got[p])} records consumed, {counts[p]} produced")
    finally:
        consumer.close()
    return got


def check_message(topic, msg, i, reported_ts):
    partition, key, value, headers, ts = expected_record(i)
    where = f"{topic}[{msg.partition()}]@{msg.offset()} (seq {i})"
    check(msg.partition() == partition, f"{where}: expected partition {partition}")
    check(msg.key() == key, f"{where}: key {msg.key()!r} != {key!r}")
    # confluent-kafka gives None for an empty value only if it was null;
    # an empty value we sent must come back as b"".
    check(msg.value() == value,
          f"{where}: value differs ({len(msg.value() or b'')} vs {len(value)} bytes)")
    check(msg.headers() == headers, f"{where}: headers {msg.headers()!r} != {headers!r}")
    ts_type, got_ts = msg.timestamp()
    check(ts_type == TIMESTAMP_CREATE_TIME, f"{where}: timestamp type {ts_type}")
    want_ts = ts if ts is not None else reported_ts
    check(got_ts == want_ts, f"{where}: timestamp {got_ts} != {want_ts}")


def round_trip(topic, n, acks, compression="none"):
    t0 = time.monotonic()
    reports = produce_all(topic, n, acks, compression)
    t_produce = time.monotonic() - t0
    counts = {p: 0 for p in range(PARTITIONS)}
    for i in range(n):
        counts[expected_record(i)[0]] += 1
    got = consume_all(topic, PARTITIONS, counts)

    seen = set()
    for p, msgs in got.items():
        prev_seq = -1
        for pos, msg in enumerate(msgs):
            i = seq_of(msg.key())
            check(i not in seen, f"{topic}[{p}]: seq {i} consumed twice")
            seen.add(i)
            # Offsets are dense from 0 on a fresh topic: a gap or repeat means
            # the broker lost, duplicated or misnumbered a record.
            check(msg.offset() == pos, f"{topic}[{p}]: record #{pos} has offset {msg.offset()}")
            rep_partition, rep_offset, rep_ts = reports[i]
            if acks == 0:
                # No broker response, so no offsets: order must follow the
                # send order, which within a partition is seq order.
                check(i > prev_seq, f"{topic}[{p}]@{msg.offset()}: seq {i} after seq {prev_seq}")
            else:
                check((rep_partition, rep_offset) == (p, msg.offset()),
                      f"{topic}: seq {i} reported at [{rep_partition}]@{rep_offset}, "
                      f"consumed at [{p}]@{msg.offset()}")
            prev_seq = i
            check_message(topic, msg, i, rep_ts)
    check(len(seen) == n, f"{topic}: {len(seen)} distinct records consumed of {n}")

    # The high watermark of each partition is exactly what was written.
    wm = new_consumer()
    try:
        for p in range(PARTITIONS):
            low, high = wm.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT)
            check((low, high) == (0, counts[p]),
                  f"{topic}[{p}]: watermarks ({low}, {high}), expected (0, {counts[p]})")
    finally:
        wm.close()
    print(f"ok: {topic}: acks={acks} compression={compression} {n} records round-trip "
          f"byte-identical (produce {t_produce:.1f}s, total {time.monotonic() - t0:.1f}s)",
          flush=True)


def list_offsets_checks(admin):
    """Timestamp lookups at exact offsets: every record is flushed on its own,
    so each is its own batch and batch-granular answers are exact."""
    topic = "offsets-by-time"
    create_topics(admin, [topic], partitions=1)
    n = 20
    step = 1000
    producer = new_producer(acks="all")
    for k in range(n):
        producer.produce(topic, partition=0, key=f"key-{k}".encode(), value=f"v{k}".encode(),
                         timestamp=BASE_TS + k * step)
        check(producer.flush(OP_TIMEOUT) == 0, f"{topic}: record {k} not delivered")

    consumer = new_consumer()
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=OP_TIMEOUT)
        check((low, high) == (0, n), f"{topic}: watermarks ({low}, {high}), expected (0, {n})")

        def offset_for(ts):
            res = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=OP_TIMEOUT)
            check(res[0].error is None, f"{topic}: offsets_for_times({ts}) error {res[0].error}")
            return res[0].offset

        cases = [
            (BASE_TS - 1, 0),                   # before everything: the first record
            (BASE_TS, 0),                       # exact hit on the first
            (BASE_TS + 10 * step, 10),          # exact hit in the middle
            (BASE_TS + 10 * step + 1, 11),      # between two: the later one
            (BASE_TS + (n - 1) * step, n - 1),  # exact hit on the last
        ]
        for ts, want in cases:
            got = offset_for(ts)
            check(got == want, f"{topic}: offsets_for_times({ts}) = {got}, expected {want}")
        # Later than every record: Kafka answers offset -1, which
        # librdkafka passes through as OFFSET_END (-1).
        got = offset_for(BASE_TS + n * step)
        check(got == -1, f"{topic}: offsets_for_times(after all) = {got}, expected -1")
    finally:
        consumer.close()

    # The admin ListOffsets API also covers max-timestamp (KIP-734).
    tp = TopicPartition(topic, 0)
    specs = {
        "earliest": (OffsetSpec.earliest(), 0),
        "latest": (OffsetSpec.latest(), n),
        "max_timestamp": (OffsetSpec.max_timestamp(), n - 1),
        "for_timestamp": (OffsetSpec.for_timestamp(BASE_TS + 5 * step + 1), 6),
    }
    for name, (spec, want) in specs.items():
        res = admin.list_offsets({tp: spec}, request_timeout=OP_TIMEOUT)[tp].result(timeout=OP_TIMEOUT)
        check(res.offset == want, f"{topic}: list_offsets {name} = {res.offset}, expected {want}")
        if name == "max_timestamp":
            check(res.timestamp == BASE_TS + (n - 1) * step,
                  f"{topic}: max_timestamp timestamp {res.timestamp}")
    print(f"ok: {topic}: watermarks, offsets_for_times and admin list_offsets exact", flush=True)


def main():
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    acks_levels = [(0, "acks-0"), (1, "acks-1"), ("all", "acks-all")]
    codecs = ["gzip", "snappy", "lz4", "zstd"]
    create_topics(admin, [t for _, t in acks_levels] + [f"codec-{c}" for c in codecs])
    print("ok: topics created", flush=True)

    for acks, topic in acks_levels:
        round_trip(topic, 100_000, acks)
    for codec in codecs:
        round_trip(f"codec-{codec}", 5_000, "all", codec)
    list_offsets_checks(admin)
    print("ALL OK", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        fail(f"client error: {e!r}")
