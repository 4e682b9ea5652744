"""Shared helpers for the transaction scripts (tests/python/txn_*.py),
driven by tests/transactions.rs.

Every script takes one argument, a JSON object describing the broker and
what to do (at least `bootstrap`; a secure broker adds `ca` and the users'
`passwords`). Scripts print "ALL OK" as their last line on success and exit
non-zero with a "FAIL: ..." line naming the first mismatch otherwise.
Results the Rust side checks are printed as one line `RESULT <json>`.
"""

import json
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, fail, load_env, log, quiet_logger  # noqa: F401  (re-exported to the scripts)

# Generous: CI machines are small and busy. Nothing bounded by these takes
# more than a fraction of them on an idle machine.
OP_TIMEOUT = 60.0

# Kafka's error codes (org.apache.kafka.common.protocol.Errors).
TOPIC_AUTHORIZATION_FAILED = 29
CLUSTER_AUTHORIZATION_FAILED = 31
INVALID_PRODUCER_EPOCH = 47
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
PRODUCER_FENCED = 90


def result(obj):
    print("RESULT " + json.dumps(obj, sort_keys=True), flush=True)


def conf(env, user=None, **extra):
    """Client config for env's broker; with `user`, SCRAM over SASL_SSL."""
    c = {
        "bootstrap.servers": env["bootstrap"],
        "logger": quiet_logger(),
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    }
    if user is not None:
        c.update({
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": user,
            "sasl.password": env["passwords"][user],
            "ssl.ca.location": env["ca"],
        })
    c.update(extra)
    return c


def kafka_error(e):
    """The KafkaError inside a KafkaException (or the KafkaError itself)."""
    if isinstance(e, KafkaException):
        return e.args[0]
    return e


def create_topics(env, topics, user=None):
    """topics: {name: partitions}. Fails the script on any error."""
    admin = AdminClient(conf(env, user))
    futs = admin.create_topics(
        [NewTopic(n, num_partitions=p, replication_factor=1) for n, p in topics.items()],
        operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    for name, fut in futs.items():
        try:
            fut.result(timeout=OP_TIMEOUT)
        except KafkaException as e:
            fail(f"could not create {name}: {e}")


def produce_plain(env, topic, records, user=None):
    """Non-transactional, acks=all; records are (key, value, partition)."""
    p = Producer(conf(env, user, **{"acks": "all", "linger.ms": 5}))
    errors = []
    for k, v, part in records:
        p.produce(topic, key=k, value=v, partition=part,
                  on_delivery=lambda err, msg: err and errors.append(err))
    left = p.flush(OP_TIMEOUT)
    check(left == 0, f"{left} records to {topic} not delivered")
    check(not errors, f"delivery errors for {topic}: {errors}")


def txn_producer(env, txn_id, timeout_ms=60_000, user=None, **extra):
    return Producer(conf(env, user, **{
        "transactional.id": txn_id,
        "transaction.timeout.ms": timeout_ms,
        "linger.ms": 5,
        **extra,
    }))


def partitions_of(client, topic):
    md = client.list_topics(topic, timeout=OP_TIMEOUT)
    t = md.topics.get(topic)
    check(t is not None and t.error is None and t.partitions,
          f"no metadata for {topic}: {t and t.error}")
    return sorted(t.partitions)


def read_all(env, topic, isolation, user=None):
    """Every record of every partition of `topic` from the beginning up to
    the end the broker reports for `isolation` ("read_committed": the last
    stable offset; "read_uncommitted": the high watermark), as a list of
    (partition, offset, key, value). The end is seen as librdkafka's
    partition EOF on each partition."""
    c = Consumer(conf(env, user, **{
        "group.id": "txn-test-reader-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "isolation.level": isolation,
    }))
    out = []
    try:
        parts = partitions_of(c, topic)
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_eof = set()
        deadline = time.monotonic() + OP_TIMEOUT
        while len(at_eof) < len(parts):
            check(time.monotonic() < deadline,
                  f"{isolation} read of {topic} did not reach the end of partitions "
                  f"{sorted(set(parts) - at_eof)} ({len(out)} records so far)")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                fail(f"{isolation} read of {topic}: {m.error()}")
            at_eof.discard(m.partition())
            out.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def values(records):
    return [r[3].decode() for r in records]


def committed_offsets(env, group, topic, user=None):
    """{partition: committed offset} of `group` for `topic` (-1001: none)."""
    c = Consumer(conf(env, user, **{"group.id": group, "enable.auto.commit": False}))
    try:
        parts = partitions_of(c, topic)
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=OP_TIMEOUT)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def expect_fatal_fenced(e, what):
    """A KafkaException that says this producer was fenced, fatally."""
    err = kafka_error(e)
    check(isinstance(err, KafkaError), f"{what}: not a KafkaError: {e!r}")
    check(err.fatal(), f"{what}: error is not fatal: {err}")
    check(err.code() in (KafkaError._FENCED, PRODUCER_FENCED),
          f"{what}: expected _FENCED or PRODUCER_FENCED, got {err.code()} ({err})")
    return err
