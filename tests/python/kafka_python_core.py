"""Round trips and admin operations through kafka-python, a pure-Python
client with its own protocol implementation (so it catches encoding
assumptions librdkafka happens to tolerate).

Usage: kafka_python_core.py BOOTSTRAP

Exits non-zero with a message naming the first mismatch.
"""

import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import AlterConfigOp, ConfigResource, ConfigResourceType, KafkaAdminClient
from kafka.errors import KafkaError

from harness import check, fail

BOOTSTRAP = sys.argv[1]
TOPIC = "kp-core"
PARTITIONS = 3
N = 20_000
# A fixed past time, so a broker substituting append time would be caught.
BASE_TS = 1_600_000_000_000
# Generous because CI machines are small and busy.
TIMEOUT_MS = 60_000
CONSUME_DEADLINE = 600.0


def expected_record(i):
    """(partition, key, value, headers) for seq i: the reader recomputes it.

    Values include empty ones and binary ones with every byte value; header
    counts vary from one to two, with an empty header value on some.
    """
    key = f"key-{i}".encode()
    if i % 89 == 0:
        value = b""
    elif i % 83 == 0:
        value = bytes(range(256)) * 8
    else:
        value = f"kp-value-{i}-".encode() + b"y" * (i % 50)
    headers = [("seq", str(i).encode())]
    if i % 3 == 0:
        headers.append(("extra", b"" if i % 6 == 0 else b"\x00\xff"))
    return i % PARTITIONS, key, value, headers


def new_consumer():
    # No group_id: kafka-python then runs without a coordinator, which the
    # broker does not have yet, and never commits.
    return KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=TIMEOUT_MS + 5_000,
    )


def round_trip(admin):
    admin.create_topics({TOPIC: {"num_partitions": PARTITIONS, "replication_factor": 1}},
                        timeout_ms=TIMEOUT_MS)
    producer = KafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        # kafka-python 3.x defaults to idempotence, which needs InitProducerId;
        # the broker does not serve that yet (a later issue).
        enable_idempotence=False,
        acks="all",
        compression_type="gzip",
        linger_ms=10,
        request_timeout_ms=TIMEOUT_MS,
    )
    t0 = time.monotonic()
    futures = []
    for i in range(N):
        partition, key, value, headers = expected_record(i)
        futures.append(producer.send(TOPIC, key=key, value=value, headers=headers,
                                     partition=partition))
    producer.flush(timeout=CONSUME_DEADLINE)
    reported = {}
    for i, fut in enumerate(futures):
        md = fut.get(timeout=TIMEOUT_MS / 1000)
        reported[(md.partition, md.offset)] = (i, md.timestamp)
    producer.close()
    check(len(reported) == N, f"{len(reported)} distinct (partition, offset) pairs for {N} sends")
    t_produce = time.monotonic() - t0

    counts = {p: sum(1 for i in range(N) if i % PARTITIONS == p) for p in range(PARTITIONS)}
    consumer = new_consumer()
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    consumer.assign(tps)
    consumer.seek_to_beginning()
    got = {p: [] for p in range(PARTITIONS)}
    deadline = time.monotonic() + CONSUME_DEADLINE
    while any(len(got[p]) < counts[p] for p in range(PARTITIONS)):
        check(time.monotonic() < deadline,
              f"consume timed out with {[len(got[p]) for p in range(PARTITIONS)]} of "
              f"{[counts[p] for p in range(PARTITIONS)]}")
        for tp, records in consumer.poll(timeout_ms=1000, max_records=5000).items():
            got[tp.partition].extend(records)
    consumer.close()

    for p, records in got.items():
        check(len(records) == counts[p], f"[{p}]: consumed {len(records)}, produced {counts[p]}")
        for pos, r in enumerate(records):
            where = f"{TOPIC}[{p}]@{r.offset}"
            check(r.offset == pos, f"{where}: record #{pos} has offset {r.offset}")
            # The send reported for this exact offset is the one expected here.
            i, ts = reported[(p, r.offset)]
            partition, key, value, headers = expected_record(i)
            check(partition == p, f"{where}: seq {i} belongs in partition {partition}")
            check(r.key == key, f"{where}: key {r.key!r} != {key!r}")
            check(r.value == value, f"{where}: value differs ({len(r.value or b'')} vs {len(value)} bytes)")
            check(list(r.headers) == headers, f"{where}: headers {r.headers!r} != {headers!r}")
            check(r.timestamp == ts, f"{where}: timestamp {r.timestamp} != reported {ts}")
            check(r.timestamp_type == 0, f"{where}: timestamp type {r.timestamp_type}")
    print(f"ok: {TOPIC}: {N} records acks=all gzip round-trip byte-identical and in offset "
          f"order (produce {t_produce:.1f}s, total {time.monotonic() - t0:.1f}s)", flush=True)
    return counts


def offsets_checks(counts):
    consumer = new_consumer()
    tps = [TopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    end = consumer.end_offsets(tps)
    begin = consumer.beginning_offsets(tps)
    for tp in tps:
        check(begin[tp] == 0, f"beginning_offsets[{tp.partition}] = {begin[tp]}")
        check(end[tp] == counts[tp.partition],
              f"end_offsets[{tp.partition}] = {end[tp]}, expected {counts[tp.partition]}")

    # Timestamp lookups on a separate one-partition topic where each record
    # is its own batch (sent and awaited one at a time), so the broker's
    # batch-granular answer is an exact record offset.
    topic = "kp-times"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=TIMEOUT_MS)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}},
                        timeout_ms=TIMEOUT_MS)
    admin.close()
    producer = KafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=False, acks="all",
                             request_timeout_ms=TIMEOUT_MS)
    n, step = 10, 1000
    for k in range(n):
        producer.send(topic, value=f"t{k}".encode(), partition=0,
                      timestamp_ms=BASE_TS + k * step).get(timeout=TIMEOUT_MS / 1000)
    producer.close()
    tp = TopicPartition(topic, 0)
    for ts, want in [(BASE_TS - 5, 0), (BASE_TS + 4 * step, 4), (BASE_TS + 4 * step + 1, 5)]:
        res = consumer.offsets_for_times({tp: ts})[tp]
        check(res is not None and res.offset == want,
              f"offsets_for_times({ts}) = {res}, expected offset {want}")
        check(res.timestamp == BASE_TS + want * step,
              f"offsets_for_times({ts}) timestamp {res.timestamp}")
    # Later than every record: kafka-python maps Kafka's -1 answer to None.
    res = consumer.offsets_for_times({tp: BASE_TS + n * step})[tp]
    check(res is None, f"offsets_for_times(after all) = {res}, expected None")
    consumer.close()
    print("ok: beginning_offsets, end_offsets and offsets_for_times exact", flush=True)


def config_checks(admin):
    def topic_res(configs=None):
        return ConfigResource(ConfigResourceType.TOPIC, TOPIC, configs)

    described = admin.describe_configs([topic_res()], config_filter="all")["topic"][TOPIC]
    check("retention.ms" in described, f"describe_configs lacks retention.ms: {sorted(described)}")
    before = described["retention.ms"]["value"]
    print(f"ok: describe_configs shows retention.ms={before}", flush=True)

    # kafka-python picks IncrementalAlterConfigs when the broker advertises
    # it; force it so a fallback to the (unsupported) legacy AlterConfigs
    # shows up as a failure rather than being silently tried.
    new_value = "3600000"
    result = admin.alter_configs([topic_res({"retention.ms": (AlterConfigOp.SET, new_value)})],
                                 incremental=True)
    check(result.get("topic", {}).get(TOPIC) == "OK", f"incremental alter_configs: {result}")
    after = admin.describe_configs([topic_res(["retention.ms"])], config_filter="all")
    entry = after["topic"][TOPIC]["retention.ms"]
    check(entry["value"] == new_value, f"retention.ms after SET: {entry}")
    check(entry["config_source"] == "DYNAMIC_TOPIC_CONFIG", f"retention.ms source after SET: {entry}")

    result = admin.alter_configs([topic_res({"retention.ms": (AlterConfigOp.DELETE, None)})],
                                 incremental=True)
    check(result.get("topic", {}).get(TOPIC) == "OK", f"incremental alter_configs DELETE: {result}")
    entry = admin.describe_configs([topic_res(["retention.ms"])],
                                   config_filter="all")["topic"][TOPIC]["retention.ms"]
    check(entry["value"] == before, f"retention.ms after DELETE: {entry}, expected {before}")
    print("ok: incremental alter_configs SET/DELETE of retention.ms", flush=True)


def delete_checks(admin):
    check(TOPIC in admin.list_topics(), f"{TOPIC} missing from list_topics before delete")
    admin.delete_topics([TOPIC], timeout_ms=TIMEOUT_MS)
    # Deletion is synchronous in this broker, but allow for a client-side
    # metadata refresh without sleeping a fixed time.
    deadline = time.monotonic() + 60
    while TOPIC in admin.list_topics():
        check(time.monotonic() < deadline, f"{TOPIC} still listed 60s after delete")
        time.sleep(0.2)
    print(f"ok: {TOPIC} deleted and gone from list_topics", flush=True)


def main():
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=TIMEOUT_MS)
    counts = round_trip(admin)
    offsets_checks(counts)
    config_checks(admin)
    delete_checks(admin)
    admin.close()
    print("ALL OK", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KafkaError as e:
        fail(f"client error: {e!r}")
