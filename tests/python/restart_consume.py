"""Durability across a broker restart, driven in two separate runs so no
client state survives between them.

Usage:
  restart_consume.py BOOTSTRAP produce TOPIC N   create TOPIC if missing, write N records (acks=all)
  restart_consume.py BOOTSTRAP verify TOPIC N    read TOPIC from the start: exactly those N records

Exits non-zero with a message on any failure.
"""

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT = 60.0
DEADLINE = 300.0
PARTITIONS = 2


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def expected(i):
    # Sizes vary so records straddle batch and index boundaries differently.
    return f"key-{i}".encode(), f"value-{i}-".encode() + b"z" * (i % 300)


def produce(bootstrap, topic, n):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    fut = admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                              operation_timeout=TIMEOUT, request_timeout=TIMEOUT)[topic]
    try:
        fut.result(timeout=TIMEOUT)
    except KafkaException as e:
        if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        # Idempotence needs InitProducerId, not served yet (a later issue).
        "enable.idempotence": False,
        "linger.ms": 5,
    })
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")

    for i in range(n):
        key, value = expected(i)
        while True:
            try:
                producer.produce(topic, key=key, value=value, partition=i % PARTITIONS,
                                 on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(DEADLINE)
    if remaining or errors:
        fail(f"{remaining} undelivered, delivery errors: {errors[:3]}")
    # acks=all means the broker answered only once the records were stored;
    # nothing else may be needed for them to survive the restart.
    print(f"ok: produced {n} records to {topic}", flush=True)


def verify(bootstrap, topic, n):
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        # Required by librdkafka, unused: no subscribe, no commits.
        "group.id": "portcullis-test-unused",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    want = {p: [expected(i) for i in range(n) if i % PARTITIONS == p] for p in range(PARTITIONS)}
    got = {p: [] for p in range(PARTITIONS)}
    at_eof = set()
    deadline = time.monotonic() + DEADLINE
    # Reading to end-of-partition (not just to N) catches extra records too.
    while len(at_eof) < PARTITIONS:
        if time.monotonic() > deadline:
            fail(f"timed out: {[len(got[p]) for p in range(PARTITIONS)]} records, eof {at_eof}")
        for msg in consumer.consume(num_messages=5000, timeout=1.0):
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    continue
                fail(f"consumer error: {err}")
            at_eof.discard(msg.partition())
            if msg.offset() != len(got[msg.partition()]):
                fail(f"[{msg.partition()}]: offset {msg.offset()} after {len(got[msg.partition()])} records")
            got[msg.partition()].append((msg.key(), msg.value()))
    consumer.close()
    for p in range(PARTITIONS):
        if got[p] != want[p]:
            # Where they diverge: the first differing record, else where one ends.
            first_bad = next((k for k, (a, b) in enumerate(zip(got[p], want[p])) if a != b),
                             min(len(got[p]), len(want[p])))
            fail(f"[{p}]: {len(got[p])} records read, {len(want[p])} expected; "
                 f"first mismatch at offset {first_bad}")
    print(f"ok: {topic}: all {n} records read back after restart", flush=True)


def main():
    bootstrap, mode, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if mode == "produce":
        produce(bootstrap, topic, n)
    elif mode == "verify":
        verify(bootstrap, topic, n)
    else:
        fail(f"unknown mode {mode!r}")


if __name__ == "__main__":
    try:
        main()
    except KafkaException as e:
        fail(f"client error: {e!r}")
