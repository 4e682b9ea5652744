"""Probes for tests/hostile_clients/revocation.rs: what a new client gets
from the broker right now.

Usage: revocation_probe.py ENV_JSON PROBE...

ENV_JSON: {"bootstrap": host:port of the SASL_SSL listener, "ca": CA file}.
Each PROBE, run in order on a new connection:

    create:USER:PASSWORD:TOPIC     create TOPIC (one partition)
    login:USER:PASSWORD            SCRAM login with kafka-python
    produce:USER:PASSWORD:TOPIC    one record with confluent-kafka

prints one `RESULT {"probe": ..., "code": N}` line per probe (0: success;
otherwise the Kafka error code: 58 SASL_AUTHENTICATION_FAILED, 29
TOPIC_AUTHORIZATION_FAILED; -1 anything else, with its text), then
"ALL OK". Passwords are test-only values.
"""

import json
import sys
import time

import kafka.errors as Errors
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, fail, result
from sec_common import ck_conf, kp_conf, kp_try_login

OP_TIMEOUT = 60.0


def login(env, user, pw):
    e = kp_try_login(kp_conf(env["bootstrap"], env["ca"], user, pw))
    if e is None:
        return 0, ""
    if isinstance(e, Errors.KafkaError) and getattr(e, "errno", None) is not None:
        return e.errno, type(e).__name__
    return -1, f"{type(e).__name__}: {e}"


def produce(env, user, pw, topic):
    p = Producer(ck_conf(env["bootstrap"], env["ca"], user, pw, **{
        "acks": "all", "enable.idempotence": False, "linger.ms": 0, "retries": 0,
        "message.timeout.ms": 15_000}))
    out = []
    try:
        p.produce(topic, value=b"probe", partition=0,
                  on_delivery=lambda err, msg: out.append(err))
    except KafkaException as e:
        return e.args[0].code(), e.args[0].str()
    deadline = time.monotonic() + OP_TIMEOUT
    while not out:
        check(time.monotonic() < deadline, f"no delivery report for {topic}")
        p.poll(0.05)
    p.flush(5)
    err = out[0]
    return (0, "") if err is None else (err.code(), err.str())


def create(env, user, pw, topic):
    admin = AdminClient(ck_conf(env["bootstrap"], env["ca"], user, pw))
    fut = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                              operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)[topic]
    try:
        fut.result(timeout=OP_TIMEOUT)
        return 0, ""
    except KafkaException as e:
        return e.args[0].code(), e.args[0].str()


def main():
    check(len(sys.argv) >= 3, f"usage: {sys.argv[0]} ENV_JSON PROBE...")
    env = json.loads(sys.argv[1])
    for probe in sys.argv[2:]:
        kind, *args = probe.split(":")
        f = {"login": login, "produce": produce, "create": create}.get(kind)
        if f is None:
            fail(f"unknown probe {kind}")
        code, text = f(env, *args)
        result(probe=f"{kind}:{args[0]}", code=code, text=text)
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
