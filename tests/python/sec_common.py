"""Shared helpers for the security-edge scripts (tests/python/sec_*.py),
driven by tests/security_python.rs.

Every script prints "ALL OK" as its last line on success and exits non-zero
with a "FAIL: ..." line naming the first mismatch otherwise.
"""

import random
import subprocess
import time

import kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, fail, log, quiet_logger  # noqa: F401  (re-exported to the scripts)

# Generous: CI machines are small and busy. None of these bound anything
# that takes more than a fraction of a second on an idle machine.
OP_TIMEOUT = 60.0
CONSUME_DEADLINE = 300.0


# ---------------------------------------------------------------- confluent


def ck_conf(bootstrap, ca, user=None, password=None, mechanism="SCRAM-SHA-512",
            protocol="SASL_SSL", **extra):
    """librdkafka config for a SASL_SSL (or SSL/PLAINTEXT) client."""
    conf = {
        "bootstrap.servers": bootstrap,
        "security.protocol": protocol,
        # Fewer reconnect storms on a busy machine when a login is refused.
        "reconnect.backoff.ms": 200,
        "reconnect.backoff.max.ms": 2000,
        "logger": quiet_logger("rdkafka"),
    }
    if protocol in ("SSL", "SASL_SSL"):
        conf["ssl.ca.location"] = ca
    if protocol.startswith("SASL"):
        conf.update({
            "sasl.mechanism": mechanism,
            "sasl.username": user,
            "sasl.password": password,
        })
    conf.update(extra)
    return conf


def create_topic(conf, topic, partitions):
    admin = AdminClient(dict(conf))
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                              operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)[topic]
    fut.result(timeout=OP_TIMEOUT)


def expected_record(i, partitions):
    """(partition, key, value, headers) for seq i, recomputable by the reader.
    Values mix empty, short text and ~1 KiB binary with every byte value."""
    key = f"key-{i}".encode()
    if i % 97 == 0:
        value = b""
    elif i % 31 == 0:
        value = random.Random(i).randbytes(1024 + i % 17)
    else:
        value = f"value-{i}-".encode() + b"s" * (i % 40)
    headers = [("seq", str(i).encode())] if i % 5 == 0 else None
    return i % partitions, key, value, headers


def produce_records(conf, topic, n, partitions, acks="all"):
    """Produces seqs 0..n-1 (acks=all by default) and checks every delivery
    report; returns {seq: (partition, offset)}."""
    producer = Producer({**conf, "acks": acks, "enable.idempotence": False, "linger.ms": 5,
                         "message.timeout.ms": int(CONSUME_DEADLINE * 1000)})
    reports, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.key()!r}: {err}")
        else:
            reports[int(msg.key().decode().split("-", 1)[1])] = (msg.partition(), msg.offset())

    for i in range(n):
        partition, key, value, headers = expected_record(i, partitions)
        kwargs = {"partition": partition, "key": key, "value": value, "on_delivery": on_delivery}
        if headers is not None:
            kwargs["headers"] = headers
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(CONSUME_DEADLINE)
    check(remaining == 0, f"{topic}: {remaining} records undelivered after flush")
    check(not errors, f"{topic}: delivery errors, first: {errors[:3]}")
    check(len(reports) == n, f"{topic}: {len(reports)} delivery reports for {n} records")
    return reports


def consume_and_verify(conf, topic, n, partitions, reports=None):
    """Reads every partition from the beginning (assign, no group) and checks
    that exactly seqs 0..n-1 come back, byte for byte, in order per
    partition, at the offsets the producer was told."""
    consumer = Consumer({**conf, "group.id": "portcullis-test-unused",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "auto.offset.reset": "error"})
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    want = {p: 0 for p in range(partitions)}
    for i in range(n):
        want[expected_record(i, partitions)[0]] += 1
    got = {p: [] for p in range(partitions)}
    deadline = time.monotonic() + CONSUME_DEADLINE
    try:
        while any(len(got[p]) < want[p] for p in range(partitions)):
            check(time.monotonic() < deadline,
                  f"{topic}: consume timed out with {[len(got[p]) for p in got]} of {list(want.values())}")
            for msg in consumer.consume(num_messages=1000, timeout=0.5):
                if msg.error():
                    fail(f"{topic}: consumer error {msg.error()}")
                got[msg.partition()].append(msg)
        # Nothing extra either: a last short poll must bring nothing new.
        for msg in consumer.consume(num_messages=1000, timeout=0.5):
            if not msg.error():
                got[msg.partition()].append(msg)
    finally:
        consumer.close()
    for p in range(partitions):
        check(len(got[p]) == want[p], f"{topic}[{p}]: consumed {len(got[p])}, produced {want[p]}")
    seen = set()
    for p in range(partitions):
        last = -1
        for msg in got[p]:
            seq = int(msg.key().decode().split("-", 1)[1])
            where = f"{topic}[{p}]@{msg.offset()} (seq {seq})"
            check(seq not in seen, f"{where}: duplicate")
            seen.add(seq)
            check(seq > last, f"{where}: out of order after seq {last}")
            last = seq
            partition, key, value, headers = expected_record(seq, partitions)
            check(msg.partition() == partition, f"{where}: expected partition {partition}")
            check(msg.key() == key, f"{where}: key differs")
            check((msg.value() or b"") == value, f"{where}: value differs")
            check(msg.headers() == headers, f"{where}: headers {msg.headers()!r} != {headers!r}")
            if reports is not None:
                check(reports[seq] == (msg.partition(), msg.offset()),
                      f"{where}: delivery report said {reports[seq]}")
    check(seen == set(range(n)), f"{topic}: {n - len(seen)} seqs missing")


def high_watermarks(conf, topic, partitions):
    consumer = Consumer({**conf, "group.id": "portcullis-test-unused", "enable.auto.commit": False})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT)[1]
                for p in range(partitions)]
    finally:
        consumer.close()


def ck_first_error(conf, want_codes=(KafkaError._AUTHENTICATION,), timeout=60.0):
    """Starts a producer with `conf` and returns the first KafkaError that
    error_cb reports with one of `want_codes` (the broker's own message for
    a refused login travels in its text). Fails after `timeout` seconds.
    Also checks that the client never got metadata, i.e. never got in."""
    errors = []
    producer = Producer({**conf, "error_cb": errors.append})
    deadline = time.monotonic() + timeout
    try:
        while True:
            for e in errors:
                if e.code() in want_codes:
                    try:
                        producer.list_topics(timeout=1.0)
                        fail(f"metadata served despite {e}")
                    except KafkaException:
                        pass
                    return e
            check(time.monotonic() < deadline,
                  f"no error with code in {want_codes} within {timeout}s; got {[str(e) for e in errors]}")
            producer.poll(0.1)
    finally:
        producer.flush(0)


def sasl_error_text(err):
    """The broker's message inside librdkafka's error string, without the
    per-connection prefix and the timing suffix."""
    s = err.str()
    s = s.split("SASL authentication error: ", 1)[-1]
    return s.split(" (after", 1)[0]


# ------------------------------------------------------------- kafka-python


def kp_conf(bootstrap, ca, user, password, mechanism="SCRAM-SHA-512"):
    return dict(
        bootstrap_servers=bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
        ssl_cafile=ca,
    )


_KP_PATCHED = False


def kp_deliver_data_before_eof():
    """Works around a kafka-python 3.x client bug, process-wide.

    kafka/net/transport.py `_read_from_sock` reads until EAGAIN; when the
    last read returns end-of-stream it aborts the connection with
    KafkaConnectionError('socket disconnected') and *drops the bytes read
    in the same batch*. Portcullis sends the error response of a refused
    login and closes the connection at once (Kafka delays that close by
    connection.failed.authentication.delay.ms, 100 ms by default), so the
    response and the end of the stream usually arrive together and the
    client never sees the Kafka error. This hands the data to the protocol
    first and closes a moment later, which is what the client would see
    from a Kafka broker. Only the order of delivery changes; nothing the
    broker sent is interpreted differently."""
    global _KP_PATCHED
    if _KP_PATCHED:
        return
    import kafka.errors as Errors
    from kafka.net import transport

    if not hasattr(transport.KafkaTCPTransport, "_read_from_sock"):
        # A kafka-python whose transport no longer has this reader; the
        # tests then see the client as it is.
        _KP_PATCHED = True
        return

    async def _read_from_sock(self):
        while self._read and not self._closed:
            await self._net.wait_read(self._sock)
            data, err = self._sock_recv()
            if data:
                self.last_read = time.monotonic()
                try:
                    self._protocol.data_received(data)
                except Errors.KafkaProtocolError as e:
                    return self.abort(error=e)
            if err:
                self._read = False
                self._net.call_later(0.2, lambda: self.abort(error=err))
                return

    transport.KafkaTCPTransport._read_from_sock = _read_from_sock
    _KP_PATCHED = True


def kp_try_login(conf, timeout_ms=20_000, deliver_data_before_eof=True):
    """One connection attempt (TLS, ApiVersions, SASL) with kafka-python's
    own connection code; returns None on success or the exception.

    kafka-python 3.x's producer/consumer/admin constructors retry a failed
    bootstrap until their timeout and then only raise KafkaTimeoutError
    (the refused login is only logged), so this drives one connection
    directly, as the bootstrap does, and returns what it raised."""
    try:
        from kafka.net.compat import KafkaNetClient
    except ImportError:
        fail(f"kafka-python {kafka.__version__}: these tests drive kafka-python 3.x's "
             "connection manager (kafka.net) directly")

    if deliver_data_before_eof:
        kp_deliver_data_before_eof()
    client = KafkaNetClient(**conf)
    manager = client._manager
    node = manager.cluster.bootstrap_brokers()[0]

    async def connect():
        return await manager.get_connection(node.node_id, timeout_ms=timeout_ms)

    try:
        client._net.run(connect)
        return None
    except Exception as e:  # the point is to look at it
        return e
    finally:
        client.close()


def kp_login_error(conf, expect_cls):
    """The exception of a refused kafka-python login; fails unless it is
    exactly `expect_cls` (a Kafka error class, so it has an errno)."""
    e = kp_try_login(conf)
    if e is None:
        fail(f"kafka-python login with {conf.get('sasl_plain_username')}/"
             f"{conf.get('sasl_mechanism')} succeeded; expected {expect_cls.__name__}")
    check(type(e) is expect_cls, f"expected {expect_cls.__name__}, got {type(e).__name__}: {e}")
    return e


# ---------------------------------------------------------------------- CLI


def portcullis_cli(binary, config, args, stdin=""):
    out = subprocess.run([binary, *args, "--config", config], input=stdin.encode(),
                         capture_output=True, timeout=60)
    check(out.returncode == 0,
          f"portcullis {' '.join(args)} failed: {out.stderr.decode(errors='replace')}")
    return out.stdout.decode()


def wait_until(what, timeout, f, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        check(time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
