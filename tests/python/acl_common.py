"""Shared helpers for the ACL scripts (tests/python/acl_*.py), driven by
tests/acl_clients.rs.

Every script takes one argument, a JSON object describing the broker:

    bootstrap       host:port of the SASL_SSL listener
    plaintext       host:port of a SASL_PLAINTEXT listener (optional)
    ca              the dev CA certificate
    admin_password  password of the super user `admin`
    passwords       {user: password} of the ordinary users
    acl_file        the ACL file the broker watches
    log_file        the broker's log
    bin, config     the portcullis binary and the broker's config

and prints "ALL OK" as its last line on success; it exits non-zero with a
"FAIL: ..." line naming the first mismatch otherwise.
"""

import os
import re
import subprocess
import tempfile
import time

from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer,
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, fail, load_env, log, quiet_logger  # noqa: F401  (re-exported to the scripts)

# Kafka's error codes (org.apache.kafka.common.protocol.Errors).
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
INVALID_CONFIG = 40
INVALID_REQUEST = 42

# Generous: CI machines are small and busy. Nothing bounded by these takes
# more than a fraction of a second on an idle machine.
OP_TIMEOUT = 60.0
# How long a change of the ACL file may take to reach a running broker. The
# promise is "within a second" (notify, plus a 250 ms poll as a fallback);
# the deadline leaves room for a loaded machine, and the measured latency
# is printed.
RELOAD_DEADLINE = 10.0


def wait_until(what, timeout, f, interval=0.05):
    """Polls f() until it returns a truthy value; returns (value, seconds)."""
    start = time.monotonic()
    while True:
        v = f()
        if v:
            return v, time.monotonic() - start
        check(time.monotonic() - start < timeout, f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def password(env, user):
    return env["admin_password"] if user == "admin" else env["passwords"][user]


# ---------------------------------------------------------------- confluent


def ck_conf(env, user, protocol="SASL_SSL", **extra):
    addr = env["bootstrap"] if protocol == "SASL_SSL" else env["plaintext"]
    conf = {
        "bootstrap.servers": addr,
        "security.protocol": protocol,
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": user,
        "sasl.password": password(env, user),
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 2000,
        "logger": quiet_logger("rdkafka"),
    }
    if protocol == "SASL_SSL":
        conf["ssl.ca.location"] = env["ca"]
    conf.update(extra)
    return conf


def admin_client(env, user="admin", **kw):
    return AdminClient(ck_conf(env, user, **kw))


def create_topics(env, names, partitions=1):
    """Creates topics as the super user (fails the script on any error)."""
    admin = admin_client(env)
    futs = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1)
                                for n in names],
                               operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    for name, fut in futs.items():
        try:
            fut.result(timeout=OP_TIMEOUT)
        except KafkaException as e:
            fail(f"admin could not create {name}: {e}")


def kafka_error(e):
    """The KafkaError inside a KafkaException (or the KafkaError itself)."""
    if isinstance(e, KafkaException):
        return e.args[0]
    return e


def expect_code(err, code, what):
    """err is a KafkaError (or None for success); checks its code."""
    check(err is not None, f"{what}: succeeded, expected error {code}")
    err = kafka_error(err)
    check(err.code() == code, f"{what}: expected error {code}, got {err.code()} ({err})")
    return err


class Prod:
    """A confluent producer that sends one record at a time and reports
    its delivery: None on success, else the KafkaError. Keeps its
    connection between sends, like a real application."""

    def __init__(self, env, user, protocol="SASL_SSL", message_timeout_ms=30_000, **extra):
        self.p = Producer(ck_conf(env, user, protocol, **{
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 0,
            "retries": 0,
            "message.timeout.ms": message_timeout_ms,
            **extra,
        }))
        self.what = f"{user}/{protocol}"

    def send(self, topic, value=b"v", key=None, partition=0):
        result = []
        try:
            self.p.produce(topic, value=value, key=key, partition=partition,
                           on_delivery=lambda err, msg: result.append((err, msg)))
        except KafkaException as e:
            # librdkafka refuses at once when the topic's last metadata
            # answer was an error (e.g. 29 from the broker).
            return e.args[0]
        deadline = time.monotonic() + OP_TIMEOUT
        while not result:
            check(time.monotonic() < deadline, f"{self.what}: no delivery report for {topic}")
            self.p.poll(0.05)
        err, msg = result[0]
        return err if err is not None else None

    def send_ok(self, topic, value=b"v", key=None, partition=0):
        err = self.send(topic, value, key, partition)
        check(err is None, f"{self.what}: produce to {topic} failed: {err}")

    def close(self):
        self.p.flush(5)


def produce_error(env, user, topic, protocol="SASL_SSL"):
    """One record from a fresh producer (a new connection): None or the error."""
    p = Prod(env, user, protocol, message_timeout_ms=15_000)
    try:
        return p.send(topic, value=b"probe")
    finally:
        p.close()


def consume(env, user, topic, want, protocol="SASL_SSL", timeout=OP_TIMEOUT):
    """Assigns partition 0 of `topic` from the beginning and polls until
    `want` records came back or a consumer error about the topic arrived.
    Returns (values, error or None).

    No consumer group is used (assign() with explicit offsets, no commits),
    but confluent-kafka insists on a group.id and librdkafka then looks up
    its coordinator; a principal without a rule for that group gets
    GROUP_AUTHORIZATION_FAILED (30) from FindCoordinator, which says
    nothing about the topic and does not stop the fetches, so it is
    skipped here."""
    c = Consumer(ck_conf(env, user, protocol, **{
        "group.id": "acl-test-unused",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
    }))
    values = []
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + timeout
        while len(values) < want:
            check(time.monotonic() < deadline,
                  f"{user}: consuming {topic} timed out with {len(values)} of {want} records")
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() in (KafkaError._PARTITION_EOF, GROUP_AUTHORIZATION_FAILED):
                    continue
                return values, msg.error()
            values.append(msg.value())
        return values, None
    finally:
        c.close()


def consume_error(env, user, topic, protocol="SASL_SSL"):
    """The consumer error a reader of `topic` gets (fails if it reads)."""
    values, err = consume(env, user, topic, want=1, protocol=protocol)
    check(err is not None, f"{user} read {values!r} from {topic}; expected an error")
    return err


# ------------------------------------------------------------- kafka-python


def kp_conf(env, user, protocol="SASL_SSL"):
    conf = dict(
        bootstrap_servers=env["bootstrap"] if protocol == "SASL_SSL" else env["plaintext"],
        security_protocol=protocol,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username=user,
        sasl_plain_password=password(env, user),
    )
    if protocol == "SASL_SSL":
        conf["ssl_cafile"] = env["ca"]
    return conf


def kp_expect(exc_cls, errno, what, f):
    """Runs f(); it must raise exactly exc_cls with errno. Returns it."""
    try:
        got = f()
    except Exception as e:  # the point is to look at it
        check(type(e) is exc_cls,
              f"{what}: expected {exc_cls.__name__}, got {type(e).__name__}: {e}")
        check(getattr(e, "errno", None) == errno, f"{what}: errno {getattr(e, 'errno', None)} != {errno}")
        return e
    fail(f"{what}: returned {got!r}; expected {exc_cls.__name__} ({errno})")


def kp_produce(env, user, topic, value=b"kp", protocol="SASL_SSL"):
    """One record with kafka-python; returns the RecordMetadata or raises."""
    from kafka import KafkaProducer

    p = KafkaProducer(**kp_conf(env, user, protocol), enable_idempotence=False, acks="all",
                      retries=0, max_block_ms=int(OP_TIMEOUT * 1000),
                      request_timeout_ms=int(OP_TIMEOUT * 1000))
    try:
        return p.send(topic, value).get(timeout=OP_TIMEOUT)
    finally:
        p.close(timeout=5)


def kp_consume(env, user, topic, want, protocol="SASL_SSL", timeout=OP_TIMEOUT):
    """assign() + seek_to_beginning(), polls until `want` values; raises
    whatever the fetcher raises (e.g. TopicAuthorizationFailedError)."""
    from kafka import KafkaConsumer, TopicPartition as KTP

    c = KafkaConsumer(**kp_conf(env, user, protocol), group_id=None, enable_auto_commit=False,
                      request_timeout_ms=int(OP_TIMEOUT * 1000) + 5000)
    values = []
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + timeout
        while len(values) < want:
            check(time.monotonic() < deadline,
                  f"{user}: kafka-python consuming {topic} timed out with {len(values)} of {want}")
            for recs in c.poll(timeout_ms=200).values():
                values.extend(r.value for r in recs)
        return values
    finally:
        c.close()


def kp_end_offsets(env, user, topics):
    """{topic: end offset of partition 0}; raises what kafka-python raises."""
    from kafka import KafkaConsumer, TopicPartition as KTP

    c = KafkaConsumer(**kp_conf(env, user), group_id=None, enable_auto_commit=False)
    try:
        ends = c.end_offsets([KTP(t, 0) for t in topics], timeout_ms=int(OP_TIMEOUT * 1000))
        return {tp.topic: off for tp, off in ends.items()}
    finally:
        c.close()


# ---------------------------------------------------------------- ACL file


def write_acls(env, rules, header="# written by an acl_* test\n", allow_everyone=False, raw=None):
    """Replaces the ACL file atomically (write a temporary file, rename), as
    an editor or config management would. `rules` are flow-style entries,
    one per line; `raw` replaces the whole text."""
    text = raw if raw is not None else (
        header + f"allow_everyone_if_no_acl_found: {'true' if allow_everyone else 'false'}\n"
        + ("rules:\n" + "".join(f"  - {r}\n" for r in rules) if rules else "rules: []\n"))
    path = env["acl_file"]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".acl-test-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)
    return text


def read_acls(env):
    with open(env["acl_file"]) as f:
        return f.read()


def rule_lines(text):
    """The rule lines of an ACL file as the broker writes them."""
    return [l.strip()[2:] for l in text.splitlines() if l.strip().startswith("- {")]


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def broker_log(env):
    with open(env["log_file"], errors="replace") as f:
        return _ANSI.sub("", f.read())


def cli(env, args, stdin=""):
    """Runs `portcullis <args> --config <broker config>`: (rc, stdout, stderr)."""
    out = subprocess.run([env["bin"], *args, "--config", env["config"]], input=stdin.encode(),
                         capture_output=True, timeout=OP_TIMEOUT)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


def cli_ok(env, args):
    rc, out, err = cli(env, args)
    check(rc == 0, f"portcullis {' '.join(args)} failed ({rc}): {err}")
    return out
