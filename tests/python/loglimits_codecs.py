"""Produces records with keys, headers and null values under every codec
librdkafka offers, then consumes them back: the broker's record-batch
validation (every codec decompressed, bounded, and its records walked) must
accept every batch a real client builds.

Usage: loglimits_codecs.py ENV_JSON  (bootstrap, topic)
"""

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from harness import check, fail, load_env, log, quiet_logger

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 300


def main():
    env = load_env()
    bootstrap, topic = env["bootstrap"], env["topic"]
    logger = quiet_logger()
    sent = []
    for part, codec in enumerate(CODECS):
        p = Producer({
            "bootstrap.servers": bootstrap,
            "compression.type": codec,
            "linger.ms": 20,
            "acks": "all",
            "logger": logger,
        })
        errors = []

        def on_delivery(err, msg):
            if err is not None:
                errors.append(str(err))

        for i in range(PER_CODEC):
            value = None if i % 7 == 0 else (f"{codec}-{i}-" + "x" * (i % 50)).encode()
            headers = [("h", f"{i}".encode()), ("empty", b"")] if i % 3 == 0 else None
            p.produce(topic, key=f"k{i}".encode(), value=value, partition=part,
                      headers=headers, on_delivery=on_delivery)
            sent.append((part, f"k{i}", value))
        left = p.flush(60)
        check(left == 0 and not errors, f"{codec}: {left} undelivered, errors {errors[:3]}")
        log(f"{codec}: {PER_CODEC} delivered")

    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "loglimits-codecs",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "logger": logger,
    })
    c.assign([TopicPartition(topic, part, 0) for part in range(len(CODECS))])
    got, eof = [], set()
    while len(eof) < len(CODECS):
        m = c.poll(10)
        if m is None:
            fail(f"no record within 10 s; {len(got)} consumed")
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            fail(f"consume error: {m.error()}")
        got.append((m.partition(), m.key().decode(), m.value()))
    c.close()
    check(sorted(got, key=repr) == sorted(sent, key=repr),
          f"consumed {len(got)} records, sent {len(sent)}; they differ")
    log(f"consumed {len(got)} records intact")
    log("ALL OK")


if __name__ == "__main__":
    main()
