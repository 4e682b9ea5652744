"""Shared helpers for the gateway scripts (tests/python/gateway_*.py),
driven by tests/gateway.rs.

A Portcullis gateway (`backend: gateway`) sits in front of an upstream
Portcullis broker. Every script takes one argument, a JSON object:

    bootstrap       host:port of the gateway's SASL_SSL listener
    ca              the gateway's dev CA certificate
    admin_password  password of the gateway's super user `admin`
    passwords       {user: password} of the gateway's ordinary users
    upstream        host:port of the upstream's PLAINTEXT listener (when
                    the upstream has one; for reading it directly)

It prints machine-readable "RESULT <json>" lines for the Rust side and
"ALL OK" as its last line on success; it exits non-zero with a
"FAIL: ..." line naming the first mismatch otherwise.
"""

import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, fail, load_env, log, quiet_logger, result  # noqa: F401  (re-exported to the scripts)

# Generous: CI machines are small and busy. Nothing bounded by these takes
# more than a fraction of them on an idle machine.
OP_TIMEOUT = 60.0
DEADLINE = 90.0

TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
SASL_AUTHENTICATION_FAILED = 58


def password(env, user):
    return env["admin_password"] if user == "admin" else env["passwords"][user]


def ck_conf(env, user, pw=None, **extra):
    """confluent-kafka config for `user` through the gateway (SASL_SSL,
    SCRAM-SHA-512); `pw` overrides the user's password."""
    conf = {
        "bootstrap.servers": env["bootstrap"],
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": env["ca"],
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": pw if pw is not None else password(env, user),
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 2000,
        "logger": quiet_logger(),
    }
    conf.update(extra)
    return conf


def upstream_conf(env, **extra):
    """confluent-kafka config for the upstream's PLAINTEXT listener."""
    conf = {
        "bootstrap.servers": env["upstream"],
        "security.protocol": "PLAINTEXT",
        "logger": quiet_logger(),
    }
    conf.update(extra)
    return conf


def kp_conf(env, user, pw=None):
    return dict(
        bootstrap_servers=env["bootstrap"],
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=pw if pw is not None else password(env, user),
        ssl_cafile=env["ca"],
    )


def kafka_error(e):
    """The KafkaError inside a KafkaException (or the KafkaError itself)."""
    if isinstance(e, KafkaException):
        return e.args[0]
    return e


def create_topics(conf, names, partitions=1):
    """Creates topics with the AdminClient config `conf` (fails the script
    on any error)."""
    admin = AdminClient(dict(conf))
    futs = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1)
                                for n in names],
                               operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    for name, fut in futs.items():
        try:
            fut.result(timeout=OP_TIMEOUT)
        except KafkaException as e:
            fail(f"could not create {name} as {conf.get('sasl.username')}: {e}")


def seq_of(msg):
    return int(msg.key().decode().split("-", 1)[1])


def produce(conf, topic, seqs, partitions, idempotent=True):
    """Produces seq i to partition i % partitions, key b"seq-<i>", value
    b"value-<i>" (acks=all) and checks every delivery report; returns
    {seq: (partition, offset)}."""
    producer = Producer({**conf, "acks": "all", "enable.idempotence": idempotent,
                         "linger.ms": 5, "message.timeout.ms": int(DEADLINE * 1000)})
    reports, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            reports[seq_of(msg)] = (msg.partition(), msg.offset())

    n = 0
    for i in seqs:
        while True:
            try:
                producer.produce(topic, partition=i % partitions, key=f"seq-{i}".encode(),
                                 value=f"value-{i}".encode(), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        n += 1
    left = producer.flush(DEADLINE)
    check(left == 0, f"{topic}: {left} records undelivered")
    check(not errors, f"{topic}: delivery errors: {errors[:3]}")
    check(len(reports) == n, f"{topic}: {len(reports)} delivery reports for {n} records")
    return reports


def produce_one(conf, topic, value=b"probe", partition=0, **extra):
    """One record from a fresh producer (no retries): None on success, else
    the KafkaError."""
    p = Producer({**conf, "acks": "all", "enable.idempotence": False, "linger.ms": 0,
                  "retries": 0, "message.timeout.ms": 30_000, **extra})
    out = []
    try:
        try:
            p.produce(topic, value=value, partition=partition,
                      on_delivery=lambda err, msg: out.append(err))
        except KafkaException as e:
            # librdkafka refuses at once when the topic's last metadata
            # answer was an error.
            return e.args[0]
        deadline = time.monotonic() + OP_TIMEOUT
        while not out:
            check(time.monotonic() < deadline, f"no delivery report for {topic}")
            p.poll(0.05)
        return out[0]
    finally:
        p.flush(5)


def read_all(conf, topic, partitions, want, timeout=DEADLINE):
    """Assigns every partition from the beginning (no group, no commits)
    and polls until `want` records came back; returns [(partition, offset,
    key, value)]. Stops at the first error other than end-of-partition and
    returns it as the second value."""
    c = Consumer({**conf, "group.id": "gateway-test-reader", "enable.auto.commit": False,
                  "enable.auto.offset.store": False})
    out = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while len(out) < want:
            check(time.monotonic() < deadline,
                  f"reading {topic} timed out with {len(out)} of {want} records")
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() in (KafkaError._PARTITION_EOF, GROUP_AUTHORIZATION_FAILED):
                    continue
                return out, msg.error()
            out.append((msg.partition(), msg.offset(), msg.key(), msg.value()))
        return out, None
    finally:
        c.close()


def high_watermarks(conf, topic, partitions):
    c = Consumer({**conf, "group.id": "gateway-test-watermarks", "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT)[1]
                for p in range(partitions)}
    finally:
        c.close()


def login_error(conf, timeout=OP_TIMEOUT):
    """Starts a producer with `conf` and waits for the refused login
    (KafkaError._AUTHENTICATION through error_cb); returns that error.
    Also checks that the client never got metadata."""
    errors = []
    p = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + timeout
    try:
        while True:
            for e in errors:
                if e.code() == KafkaError._AUTHENTICATION:
                    try:
                        md = p.list_topics(timeout=1.0)
                        fail(f"metadata served despite {e}: {sorted(md.topics)}")
                    except KafkaException:
                        pass
                    return e
            check(time.monotonic() < deadline,
                  f"no authentication error within {timeout}s; got {[str(e) for e in errors]}")
            p.poll(0.1)
    finally:
        p.flush(0)


def wait_until(what, f, timeout=DEADLINE, interval=0.1):
    """Calls f() until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        check(time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
