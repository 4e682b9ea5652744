"""Reads partition 0 of a compacted topic from the log start to its end
with kafka-python (a client with its own protocol implementation, so it
catches batch layouts librdkafka happens to tolerate: offset gaps inside
and between batches, batches emptied by the cleaner).

Usage: compaction_reader.py BOOTSTRAP TOPIC

Prints one line per record, `REC <offset> <key hex> <value hex or ->`, in
the order the client delivered them, then ALL OK. The Rust test compares
them with what it wrote.
"""

import sys
import time

from kafka import KafkaConsumer, TopicPartition

from harness import check, fail, log

BOOTSTRAP, TOPIC = sys.argv[1], sys.argv[2]
DEADLINE = 90.0


def main():
    # No group: assigned partition, no commits.
    c = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP,
        group_id=None,
        enable_auto_commit=False,
        request_timeout_ms=30_000,
    )
    tp = TopicPartition(TOPIC, 0)
    c.assign([tp])
    c.seek_to_beginning(tp)
    end = c.end_offsets([tp])[tp]
    check(end > 0, f"{TOPIC} is empty")
    records = 0
    started = time.monotonic()
    while c.position(tp) < end:
        if time.monotonic() - started > DEADLINE:
            fail(f"at position {c.position(tp)} of {end} after {DEADLINE}s ({records} records)")
        for msgs in c.poll(timeout_ms=500).values():
            for m in msgs:
                value = "-" if m.value is None else m.value.hex()
                print(f"REC {m.offset} {m.key.hex()} {value}")
                records += 1
    log(f"kafka-python: {records} records up to offset {end}")
    c.close()
    print("ALL OK", flush=True)


main()
