"""Transactions across a broker kill -9, in phases (env["phase"]):

  "commit": create `events` (2 partitions) and `src` (1 partition, 10
            plain records); in transaction `r-commit` write committed-<i>
            to events and commit offset 7 of src/0 for group `r-group`
            with send_offsets_to_transaction.
  "hang":   in transaction `r-open` (timeout env["txn_timeout_ms"]) write
            open-<i> to events, flush, stage offset 9 of src/0 for
            r-group, print "OPEN" and sleep (the test kills this process,
            then the broker).
  "after":  (after the restart and the broker's abort of r-open) events
            read_committed is exactly the committed records; the open ones
            are in the log (read_uncommitted) but invisible; r-group's
            offset is 7; both transactional ids work again.

env: bootstrap, phase
"""

import time

from confluent_kafka import Consumer, TopicPartition

from txn_common import (OP_TIMEOUT, check, committed_offsets, conf, create_topics, fail, load_env,
                        log, produce_plain, read_all, txn_producer, values)

env = load_env()
phase = env["phase"]
COMMITTED = [f"committed-{i}" for i in range(12)]
OPEN = [f"open-{i}" for i in range(8)]


def group_metadata():
    c = Consumer(conf(env, **{"group.id": "r-group", "enable.auto.commit": False}))
    return c, c.consumer_group_metadata()


if phase == "commit":
    create_topics(env, {"events": 2, "src": 1})
    produce_plain(env, "src", [(None, f"s-{i}".encode(), 0) for i in range(10)])
    c, meta = group_metadata()
    p = txn_producer(env, "r-commit")
    p.init_transactions(OP_TIMEOUT)
    p.begin_transaction()
    for i, v in enumerate(COMMITTED):
        p.produce("events", value=v.encode(), partition=i % 2)
    p.send_offsets_to_transaction([TopicPartition("src", 0, 7)], meta, OP_TIMEOUT)
    p.commit_transaction(OP_TIMEOUT)
    c.close()
    offs = committed_offsets(env, "r-group", "src")
    check(offs == {0: 7}, f"r-group offsets after the commit: {offs}")
elif phase == "hang":
    c, meta = group_metadata()
    p = txn_producer(env, "r-open", timeout_ms=env["txn_timeout_ms"])
    p.init_transactions(OP_TIMEOUT)
    p.begin_transaction()
    for i, v in enumerate(OPEN):
        p.produce("events", value=v.encode(), partition=i % 2)
    check(p.flush(OP_TIMEOUT) == 0, "open records not delivered")
    p.send_offsets_to_transaction([TopicPartition("src", 0, 9)], meta, OP_TIMEOUT)
    log("OPEN")
    time.sleep(3600)
    fail("not killed")
elif phase == "after":
    got = sorted(values(read_all(env, "events", "read_committed")))
    check(got == sorted(COMMITTED), f"read_committed after the restart: {got}")
    everything = sorted(values(read_all(env, "events", "read_uncommitted")))
    check(everything == sorted(COMMITTED + OPEN),
          f"read_uncommitted after the restart: {everything}")
    offs = committed_offsets(env, "r-group", "src")
    check(offs == {0: 7}, f"r-group offsets after the restart: {offs} (expected 7: the "
          "aborted transaction's offset 9 must not apply)")
    # Both ids work again; the new commits are visible.
    for tid in ("r-commit", "r-open"):
        p = txn_producer(env, tid)
        p.init_transactions(OP_TIMEOUT)
        p.begin_transaction()
        p.produce("events", value=f"again-{tid}".encode(), partition=0)
        p.commit_transaction(OP_TIMEOUT)
        p.flush(OP_TIMEOUT)
    got = sorted(values(read_all(env, "events", "read_committed")))
    want = sorted(COMMITTED + ["again-r-commit", "again-r-open"])
    check(got == want, f"read_committed after new commits: {got}")
else:
    fail(f"unknown phase {phase}")
log("ALL OK")
