"""Shared helpers for the audit-log scripts (tests/python/audit_*.py),
driven by tests/audit_log.rs.

Every script takes one argument, a JSON object describing the broker:

    bootstrap       host:port of the SASL_SSL listener
    ca              the dev CA certificate
    admin_password  password of the super user `admin`
    passwords       {user: password} of the ordinary users

It prints one JSON line starting with "RESULT " (what it did, for the Rust
side to match against the audit log) and "ALL OK" as its last line on
success; it exits non-zero with a "FAIL: ..." line otherwise. The audit
log itself is checked on the Rust side.
"""

import json
import sys
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)

from harness import check, fail, log, quiet_logger, result  # noqa: F401  (re-exported to the scripts)

# Generous: CI machines are small and busy.
OP_TIMEOUT = 60.0

TOPIC_AUTHORIZATION_FAILED = 29


def env_from_argv():
    check(len(sys.argv) == 2, "usage: script.py '<env json>'")
    return json.loads(sys.argv[1])


def conf(env, user, password, **extra):
    c = {
        "bootstrap.servers": env["bootstrap"],
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": env["ca"],
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password,
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 2000,
        "logger": quiet_logger("rdkafka"),
    }
    c.update(extra)
    return c


def user_conf(env, user, **extra):
    pw = env["admin_password"] if user == "admin" else env["passwords"][user]
    return conf(env, user, pw, **extra)


def login_error(c, timeout=OP_TIMEOUT):
    """Starts a producer with `c` and waits for the refused login
    (KafkaError._AUTHENTICATION through error_cb); returns that error."""
    errors = []
    p = Producer({**c, "error_cb": errors.append})
    deadline = time.monotonic() + timeout
    try:
        while True:
            for e in errors:
                if e.code() == KafkaError._AUTHENTICATION:
                    return e
            check(time.monotonic() < deadline,
                  f"no authentication error within {timeout}s; got {[str(e) for e in errors]}")
            p.poll(0.1)
    finally:
        p.flush(0)


def produce_sync(p, topic, value, partition=0):
    """One record, waiting for its delivery report: None or the error."""
    out = []
    try:
        p.produce(topic, value=value, partition=partition,
                  on_delivery=lambda err, msg: out.append(err))
    except KafkaException as e:
        return e.args[0]
    deadline = time.monotonic() + OP_TIMEOUT
    while not out:
        check(time.monotonic() < deadline, f"no delivery report for {topic}")
        p.poll(0.05)
    return out[0]


GROUP = "audit-test-unused"


def consume(c, topic, want, timeout=OP_TIMEOUT):
    """Assigns partition 0 of `topic` from the beginning on the Consumer
    config `c` (no commits; librdkafka insists on a group.id, and looks up
    its coordinator, which a principal without group rules is refused) and
    polls until `want` values or an error about the topic arrived.
    Returns (values, error or None)."""
    consumer = Consumer({**c, "group.id": GROUP, "enable.auto.commit": False,
                         "enable.auto.offset.store": False})
    values, others = [], []
    try:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while len(values) < want:
            check(time.monotonic() < deadline,
                  f"consuming {topic} timed out with {len(values)} of {want} values; "
                  f"other errors: {others}")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                code = msg.error().code()
                if code in (KafkaError._PARTITION_EOF, KafkaError.GROUP_AUTHORIZATION_FAILED):
                    others.append(str(msg.error()))
                    continue
                return values, msg.error()
            values.append(msg.value())
        return values, None
    finally:
        consumer.close()
