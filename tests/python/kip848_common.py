"""Shared helpers for the KIP-848 scripts (tests/python/kip848_*.py), driven
by tests/consumer_protocol.rs: librdkafka consumers with
`group.protocol=consumer`, whose assignment the broker computes and hands
out incrementally (on_assign/on_revoke carry only what changes).

The broker's group.consumer.* settings decide heartbeats and sessions, so
the consumers set none of session.timeout.ms, heartbeat.interval.ms or
partition.assignment.strategy (librdkafka refuses them with this
protocol)."""

import time

from confluent_kafka import Consumer, KafkaError

from group_common import DEADLINE, fail, tps


class Member848:
    """A consumer of the consumer protocol that keeps its assignment from
    its incremental callbacks and records every callback."""

    def __init__(self, name, conf, topics, group, **extra):
        self.name = name
        self.events = []  # (monotonic time, "assign"|"revoke"|"lost", [(topic, partition)])
        self.assigned = set()
        self.messages = []
        self.errors = []
        full = {
            **conf,
            "client.id": name,
            "group.id": group,
            "group.protocol": "consumer",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "error_cb": lambda e: self.errors.append(e),
        }
        full.update(extra)
        self.c = Consumer(full)
        self.c.subscribe(topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                         on_lost=self._on_lost)
        self.closed = False

    def _on_assign(self, consumer, parts):
        got = tps(parts)
        self.events.append((time.monotonic(), "assign", got))
        self.assigned |= set(got)

    def _on_revoke(self, consumer, parts):
        got = tps(parts)
        self.events.append((time.monotonic(), "revoke", got))
        self.assigned -= set(got)

    def _on_lost(self, consumer, parts):
        got = tps(parts)
        self.events.append((time.monotonic(), "lost", got))
        self.assigned -= set(got)

    def partitions(self):
        return sorted(p for _, p in self.assigned)

    def revoked_since(self, t0):
        return sorted({p for t, kind, parts in self.events if t >= t0 and kind in ("revoke", "lost")
                       for _, p in parts})

    def poll(self, timeout=0.05, commit=False):
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


def split(members, partitions, sizes):
    """Disjoint, covering 0..partitions-1, with these sizes (sorted)."""
    open_ = [m for m in members if not m.closed]
    got = [set(m.partitions()) for m in open_]
    union = set().union(*got) if got else set()
    return (sorted(len(g) for g in got) == sorted(sizes) and sum(len(g) for g in got) == len(union)
            and union == set(range(partitions)))
