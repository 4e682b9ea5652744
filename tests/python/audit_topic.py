"""The audit topic: the super user `admin` reads JSON audit records from
it; `alice` may not read it (29), even with `allow User:* all topic *`,
and does not see it in a metadata listing."""

import json
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KTP
import kafka.errors as KafkaErrors

from audit_common import (OP_TIMEOUT, TOPIC_AUTHORIZATION_FAILED, check, env_from_argv, fail,
                          log, produce_sync, result, user_conf)

AUDIT_TOPIC = "__portcullis_audit"


def main():
    env = env_from_argv()
    admin = AdminClient(user_conf(env, "admin"))
    admin.create_topics([NewTopic("plain", num_partitions=1, replication_factor=1)],
                        operation_timeout=OP_TIMEOUT,
                        request_timeout=OP_TIMEOUT)["plain"].result(timeout=OP_TIMEOUT)

    # alice may use an ordinary topic (the wildcard rule works) ...
    p = Producer(user_conf(env, "alice", **{"client.id": "audit-topic-alice",
                                            "enable.idempotence": False, "linger.ms": 0}))
    err = produce_sync(p, "plain", b"hello")
    check(err is None, f"alice: produce to plain failed: {err}")
    # ... but not write to the audit topic,
    err = produce_sync(p, AUDIT_TOPIC, b"forged")
    check(err is not None and err.code() == TOPIC_AUTHORIZATION_FAILED,
          f"alice writing {AUDIT_TOPIC}: expected TOPIC_AUTHORIZATION_FAILED, got {err}")
    p.flush(5)
    log(f"alice writing {AUDIT_TOPIC}: {err}")

    # nor see it listed,
    c = Consumer(user_conf(env, "alice", **{"group.id": "audit-test-unused"}))
    try:
        md = c.list_topics(timeout=OP_TIMEOUT)
    finally:
        c.close()
    check("plain" in md.topics, f"alice's metadata lacks plain: {sorted(md.topics)}")
    check(AUDIT_TOPIC not in md.topics,
          f"alice's all-topics metadata lists {AUDIT_TOPIC}: {sorted(md.topics)}")

    # nor read it: a reader needs the partition's offsets first, and is
    # refused with 29. (confluent-kafka's consumer only retries a refused
    # metadata request quietly under assign(), and a subscription needs
    # consumer groups, which are not implemented; kafka-python raises.)
    # The Rust side checks a raw Fetch as well.
    kc = KafkaConsumer(bootstrap_servers=env["bootstrap"], security_protocol="SASL_SSL",
                       sasl_mechanism="SCRAM-SHA-512", sasl_plain_username="alice",
                       sasl_plain_password=env["passwords"]["alice"], ssl_cafile=env["ca"],
                       group_id=None, enable_auto_commit=False,
                       client_id="audit-topic-alice-reader")
    try:
        try:
            got = kc.beginning_offsets([KTP(AUDIT_TOPIC, 0)], timeout_ms=int(OP_TIMEOUT * 1000))
            fail(f"alice got the offsets of {AUDIT_TOPIC}: {got}")
        except KafkaErrors.TopicAuthorizationFailedError as e:
            err = e
    finally:
        kc.close()
    check(err.errno == TOPIC_AUTHORIZATION_FAILED,
          f"alice reading {AUDIT_TOPIC}: errno {err.errno}, expected TOPIC_AUTHORIZATION_FAILED")
    log(f"alice reading {AUDIT_TOPIC}: {err}")

    # The super user reads it: JSON records, keyed by principal. Wait for
    # the record of alice's refused read, which was written just now.
    records = []
    consumer = Consumer(user_conf(env, "admin", **{
        "client.id": "audit-topic-admin-reader", "group.id": "audit-test-unused",
        "enable.auto.commit": False}))
    consumer.assign([TopicPartition(AUDIT_TOPIC, 0, OFFSET_BEGINNING)])
    deadline = time.monotonic() + OP_TIMEOUT
    try:
        def have_alice_denial():
            return any(r.get("event") == "authorization" and r.get("principal") == "User:alice"
                       and r.get("client_id") == "audit-topic-alice-reader"
                       and r.get("resource_name") == AUDIT_TOPIC
                       and r.get("decision") == "deny" for r in records)

        while not have_alice_denial():
            check(time.monotonic() < deadline,
                  f"admin: no record of alice's refused read in {AUDIT_TOPIC} "
                  f"after {len(records)} records")
            msg = consumer.poll(0.2)
            if msg is None or (msg.error() and msg.error().code() < 0):
                continue
            check(not msg.error(), f"admin reading {AUDIT_TOPIC}: {msg.error()}")
            rec = json.loads(msg.value())
            check(rec.get("v") == 1 and isinstance(rec.get("event"), str) and "time" in rec,
                  f"not an audit record: {rec!r}")
            key = msg.key().decode() if msg.key() is not None else None
            check(key == rec.get("principal"),
                  f"record key {key!r} differs from its principal {rec.get('principal')!r}")
            records.append(rec)
    finally:
        consumer.close()
    # A fresh log begins its hash chain, then the broker starts.
    check([r["event"] for r in records[:2]] == ["audit_chain_start", "broker_start"],
          f"first records of {AUDIT_TOPIC} are {records[:2]!r}, not the chain's and broker's start")
    kinds = sorted({r["event"] for r in records})
    log(f"admin read {len(records)} records from {AUDIT_TOPIC}: {kinds}")
    result(records=len(records), kinds=kinds)
    log("ALL OK")


if __name__ == "__main__":
    main()
