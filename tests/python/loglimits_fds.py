"""Produces `rounds` records to every partition of a wide topic, then
consumes them all back from the beginning and checks each one, so every
segment file is written, evicted from the broker's descriptor cache and
reopened. The Rust test samples the broker's descriptors meanwhile.

Usage: loglimits_fds.py ENV_JSON  (bootstrap, topic, partitions, rounds)
"""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from harness import check, fail, load_env, log, quiet_logger


def main():
    env = load_env()
    bootstrap, topic = env["bootstrap"], env["topic"]
    partitions, rounds = env["partitions"], env["rounds"]
    logger = quiet_logger()

    p = Producer({
        "bootstrap.servers": bootstrap,
        "linger.ms": 5,
        "acks": "all",
        "queue.buffering.max.messages": 1_000_000,
        "logger": logger,
    })
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"{msg.partition()}: {err}")

    for r in range(rounds):
        for part in range(partitions):
            p.produce(topic, value=f"{part}:{r}".encode(), partition=part,
                      on_delivery=on_delivery)
            p.poll(0)
        # Each round is flushed, so the next writes to files the cache had
        # to close meanwhile.
        left = p.flush(120)
        check(left == 0, f"{left} records not delivered in round {r}")
    check(not errors, f"delivery errors: {errors[:5]} ({len(errors)} in all)")
    log(f"produced {partitions * rounds}")

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "loglimits-fds",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 100,
        "logger": logger,
    })
    c.assign([TopicPartition(topic, part, 0) for part in range(partitions)])
    want = partitions * rounds
    seen = {}
    deadline = time.time() + 180
    while sum(len(v) for v in seen.values()) < want and time.time() < deadline:
        for m in c.consume(1000, 1.0):
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                fail(f"consume error: {m.error()}")
            part, r = m.value().decode().split(":")
            check(int(part) == m.partition(), f"record {m.value()} on partition {m.partition()}")
            check(int(r) == m.offset(), f"record {m.value()} at offset {m.offset()}")
            seen.setdefault(m.partition(), []).append(int(r))
    c.close()
    got = sum(len(v) for v in seen.values())
    check(got == want, f"consumed {got} of {want} records")
    check(all(v == list(range(rounds)) for v in seen.values()), "records out of order")
    log(f"consumed {got}")
    log("ALL OK")


if __name__ == "__main__":
    main()
