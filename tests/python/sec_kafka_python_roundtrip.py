"""kafka-python over SASL_SSL + SCRAM-SHA-512: create a topic, produce N
records with acks=all, read them back byte for byte with assign().

Usage: sec_kafka_python_roundtrip.py BOOTSTRAP CA_FILE USER PASSWORD TOPIC N
"""

import sys
import time

import kafka
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from sec_common import CONSUME_DEADLINE, check, expected_record, fail, kp_conf, log

PARTITIONS = 2
TIMEOUT_MS = 60_000


def main():
    bootstrap, ca, user, password, topic, n = sys.argv[1:7]
    n = int(n)
    conf = kp_conf(bootstrap, ca, user, password)
    log(f"kafka-python {kafka.__version__}")
    t0 = time.monotonic()

    admin = KafkaAdminClient(**conf, request_timeout_ms=TIMEOUT_MS)
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)],
                        timeout_ms=TIMEOUT_MS)
    admin.close()

    producer = KafkaProducer(**conf, acks="all", enable_idempotence=False, linger_ms=5,
                             request_timeout_ms=TIMEOUT_MS, max_block_ms=TIMEOUT_MS)
    futures = []
    for i in range(n):
        partition, key, value, headers = expected_record(i, PARTITIONS)
        futures.append(producer.send(topic, key=key, value=value, partition=partition,
                                     headers=headers or []))
    producer.flush(timeout=CONSUME_DEADLINE)
    reports = {}
    for i, f in enumerate(futures):
        md = f.get(timeout=TIMEOUT_MS / 1000)
        reports[i] = (md.partition, md.offset)
    producer.close()
    t1 = time.monotonic()
    log(f"produced {n} records with acks=all in {t1 - t0:.1f}s")

    # No group_id: no coordinator needed (groups are not implemented).
    consumer = KafkaConsumer(**conf, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="none", request_timeout_ms=TIMEOUT_MS + 5000,
                             fetch_max_wait_ms=200)
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    got = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + CONSUME_DEADLINE
    total = 0
    while total < n:
        check(time.monotonic() < deadline, f"consume timed out with {total} of {n} records")
        for tp, msgs in consumer.poll(timeout_ms=500).items():
            got[tp.partition].extend(msgs)
            total += len(msgs)
    # Nothing beyond what was produced.
    for tp, msgs in consumer.poll(timeout_ms=500).items():
        got[tp.partition].extend(msgs)
        total += len(msgs)
    consumer.close()
    check(total == n, f"consumed {total} records, produced {n}")

    seen = set()
    for p, msgs in got.items():
        last = -1
        for m in msgs:
            seq = int(m.key.decode().split("-", 1)[1])
            where = f"{topic}[{p}]@{m.offset} (seq {seq})"
            check(seq not in seen and seq > last, f"{where}: duplicate or out of order")
            seen.add(seq)
            last = seq
            partition, key, value, headers = expected_record(seq, PARTITIONS)
            check(p == partition and m.key == key, f"{where}: wrong partition or key")
            check((m.value or b"") == value, f"{where}: value differs")
            check(list(m.headers or []) == list(headers or []), f"{where}: headers {m.headers!r}")
            check(reports[seq] == (p, m.offset), f"{where}: producer was told {reports[seq]}")
    if seen != set(range(n)):
        fail(f"{n - len(seen)} records missing")
    log(f"consumed and verified {n} records in {time.monotonic() - t1:.1f}s")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
