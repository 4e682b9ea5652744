"""Shared helpers for the consumer-group scripts (tests/python/group_*.py),
driven by tests/consumer_groups.rs.

Every script prints "ALL OK" as its last line on success and exits non-zero
with a "FAIL: ..." line naming the first mismatch otherwise.

Records are a pure function of their sequence number: seq i goes to
partition i % partitions with key b"seq-<i>", so a reader can tell exactly
which records it got, which it missed and which it got twice.
"""

import json
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from harness import check, fail, log, quiet_logger  # noqa: F401  (re-exported to the scripts)

# Generous: CI machines are small and busy. Nothing bounded by these takes
# more than a fraction of them on an idle machine.
OP_TIMEOUT = 60.0
DEADLINE = 90.0


def base_conf(bootstrap, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "logger": quiet_logger(),
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 1000,
    }
    conf.update(extra)
    return conf


def create_topic(conf, topic, partitions):
    admin = AdminClient(dict(conf))
    fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                              operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)[topic]
    fut.result(timeout=OP_TIMEOUT)


def seq_of(msg):
    return int(msg.key().decode().split("-", 1)[1])


def produce(conf, topic, seqs, partitions, timestamp_of=None, one_per_batch=False):
    """Produces the records of `seqs` (acks=all) and checks every delivery
    report; returns {seq: (partition, offset)}. With one_per_batch, each
    record is flushed on its own, so every record is its own batch."""
    producer = Producer({**conf, "acks": "all", "enable.idempotence": False,
                         "linger.ms": 0 if one_per_batch else 5,
                         "message.timeout.ms": int(DEADLINE * 1000)})
    reports, errors = {}, []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            reports[seq_of(msg)] = (msg.partition(), msg.offset())

    n = 0
    for i in seqs:
        kwargs = {"partition": i % partitions, "key": f"seq-{i}".encode(),
                  "value": f"value-{i}".encode(), "on_delivery": on_delivery}
        if timestamp_of is not None:
            kwargs["timestamp"] = timestamp_of(i)
        while True:
            try:
                producer.produce(topic, **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        if one_per_batch:
            check(producer.flush(DEADLINE) == 0, f"{topic}: record {i} undelivered")
        n += 1
    left = producer.flush(DEADLINE)
    check(left == 0, f"{topic}: {left} records undelivered")
    check(not errors, f"{topic}: delivery errors: {errors[:3]}")
    check(len(reports) == n, f"{topic}: {len(reports)} delivery reports for {n} records")
    return reports


def committed_offsets(conf, group, topic, partitions):
    """{partition: committed offset (or a negative logical offset)} of a
    group, read by a consumer that never joins it."""
    c = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=OP_TIMEOUT)
        for tp in tps:
            check(tp.error is None, f"committed() {topic}[{tp.partition}]: {tp.error}")
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


def high_watermarks(conf, topic, partitions):
    c = Consumer({**conf, "group.id": "group-test-watermarks", "enable.auto.commit": False})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=OP_TIMEOUT)[1]
                for p in range(partitions)}
    finally:
        c.close()


def tps(parts):
    return sorted((tp.topic, tp.partition) for tp in parts)


class Member:
    """A confluent-kafka consumer in a group that records its rebalance
    callbacks and keeps its current assignment (eager or incremental)."""

    def __init__(self, name, conf, topics, **extra):
        self.name = name
        self.events = []  # (monotonic time, "assign"|"revoke"|"lost", [(topic, partition)])
        self.assigned = set()
        self.messages = []
        self.errors = []
        full = {
            **conf,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "heartbeat.interval.ms": 500,
            "session.timeout.ms": 10000,
            "error_cb": lambda e: self.errors.append(e),
        }
        full.update(extra)
        self.cooperative = "cooperative" in str(full.get("partition.assignment.strategy", ""))
        self.c = Consumer(full)
        self.c.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_lost)
        self.closed = False

    def _on_assign(self, consumer, parts):
        got = tps(parts)
        self.events.append((time.monotonic(), "assign", got))
        if self.cooperative:
            self.assigned |= set(got)
        else:
            self.assigned = set(got)

    def _on_revoke(self, consumer, parts):
        got = tps(parts)
        self.events.append((time.monotonic(), "revoke", got))
        if self.cooperative:
            self.assigned -= set(got)
        else:
            self.assigned = set()

    def _on_lost(self, consumer, parts):
        got = tps(parts)
        self.events.append((time.monotonic(), "lost", got))
        self.assigned -= set(got)

    def partitions(self):
        return sorted(p for _, p in self.assigned)

    def poll(self, timeout=0.05, commit=False):
        """One consume round; with commit, commits what it got (sync)."""
        msgs = self.c.consume(num_messages=500, timeout=timeout)
        got = []
        for m in msgs:
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                self.errors.append(m.error())
                continue
            got.append(m)
        self.messages.extend(got)
        if commit and got:
            self.c.commit(asynchronous=False)
        return got

    def close(self):
        if not self.closed:
            self.c.close()
            self.closed = True

    def fatal_errors(self):
        return [e for e in self.errors
                if e.code() not in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN)]


def poll_until(what, members, cond, timeout=DEADLINE, commit=False):
    """Polls every open member in turn until cond() is true; returns the
    seconds it took."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            state = {m.name: m.partitions() for m in members if not m.closed}
            fail(f"timed out after {timeout}s waiting for {what}; assignments {state}; "
                 f"errors {[str(e) for m in members for e in m.errors][:5]}")
        for m in members:
            if not m.closed:
                m.poll(commit=commit)
    return time.monotonic() - start


def poll_for(members, seconds, commit=False):
    """Keeps every open member polling for `seconds` (for checks that
    something does *not* happen)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for m in members:
            if not m.closed:
                m.poll(commit=commit)


def wait_until(what, f, timeout=DEADLINE, interval=0.1):
    """Calls f() until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        check(time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def check_each_consumed_once(members, reports, n):
    """Seqs 0..n-1 were each consumed exactly once, by the member assigned
    their partition, at the partition and offset `reports` says they were
    produced at."""
    seen = {}
    for m in members:
        mine = set(m.partitions())
        for msg in m.messages:
            check(msg.partition() in mine,
                  f"{m.name} got a record of partition {msg.partition()}, assigned {sorted(mine)}")
            s = seq_of(msg)
            check(s not in seen, f"seq {s} consumed twice ({seen.get(s)} and {m.name})")
            seen[s] = m.name
            check(reports[s] == (msg.partition(), msg.offset()),
                  f"seq {s} at {msg.partition()}@{msg.offset()}, produced at {reports[s]}")
    check(set(seen) == set(range(n)), f"{n - len(seen)} records never consumed")


def kp_check_nothing_left(c, partitions, timeout):
    """A fresh kafka-python consumer `c` of a group whose offsets are all
    committed gets its `partitions` assigned and reads nothing, then or in
    the next second."""
    deadline = time.monotonic() + timeout
    while len(c.assignment()) < partitions:
        check(time.monotonic() < deadline, "no assignment for the second kafka-python consumer")
        extra = c.poll(timeout_ms=200)
        check(not extra, f"records after the commit: {extra}")
    for _ in range(5):
        extra = c.poll(timeout_ms=200)
        check(not extra, f"records after the commit: {extra}")


def split_evenly(members, partitions, each):
    """True when every member holds `each` partitions, disjoint, covering
    0..partitions-1."""
    sets = [set(m.partitions()) for m in members]
    if any(len(s) != each for s in sets):
        return False
    union = set().union(*sets)
    return len(union) == partitions and sum(len(s) for s in sets) == partitions


def emit(key, value):
    """A machine-readable line for the Rust side: KEY <json>."""
    print(f"{key} {json.dumps(value)}", flush=True)
