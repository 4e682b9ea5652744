"""Client side of the `portcullis group` CLI test (tests/consumer_groups.rs).

Usage:
  group_cli.py BOOTSTRAP setup|setup-batched
      topic cli-topic, 3 partitions, 100 records each; seq i (partition
      i % 3, offset i // 3) has timestamp BASE_MS + i * 1000. `setup`
      produces every record as a batch of its own, `setup-batched` lets
      the producer batch them (many records per batch).
  group_cli.py BOOTSTRAP member GROUP
      joins GROUP as client.id cli-member, commits offsets 60/70/80, prints
      "READY <json>" and stays in the group until its stdin closes.
  group_cli.py BOOTSTRAP reread GROUP
      a new member of GROUP gets every record from the committed offsets
      on and prints "FIRSTS <json>" ({partition: first offset read}) and
      "COUNT <n>"; it commits nothing.
"""

import sys
import threading

from confluent_kafka import TopicPartition

from group_common import (Member, base_conf, check, create_topic, emit, fail, log, poll_for,
                          poll_until, produce)

BOOTSTRAP, MODE = sys.argv[1], sys.argv[2]
TOPIC, PARTITIONS, TOTAL = "cli-topic", 3, 300
BASE_MS = 1_700_000_000_000
COMMITS = {0: 60, 1: 70, 2: 80}
conf = base_conf(BOOTSTRAP)

if MODE in ("setup", "setup-batched"):
    create_topic(conf, TOPIC, PARTITIONS)
    produce(conf, TOPIC, range(TOTAL), PARTITIONS, timestamp_of=lambda i: BASE_MS + i * 1000,
            one_per_batch=MODE == "setup")
elif MODE == "member":
    m = Member("cli-member", conf, [TOPIC], **{"group.id": sys.argv[3]})
    poll_until("an assignment", [m], lambda: len(m.partitions()) == PARTITIONS)
    res = m.c.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in COMMITS.items()],
                     asynchronous=False)
    check(all(tp.error is None for tp in res), f"commit: {res}")
    emit("READY", {"partitions": m.partitions()})
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    while not done.is_set():
        m.c.poll(0.2)
    m.close()
elif MODE == "reread":
    m = Member("cli-reader", conf, [TOPIC], **{"group.id": sys.argv[3],
                                                "auto.offset.reset": "error"})
    poll_until("an assignment", [m], lambda: len(m.partitions()) == PARTITIONS)
    poll_until("records", [m], lambda: bool(m.messages))
    poll_for([m], 1.5)
    firsts = {}
    for msg in m.messages:
        firsts.setdefault(msg.partition(), msg.offset())
    check(not m.fatal_errors(), f"errors: {[str(e) for e in m.fatal_errors()]}")
    emit("FIRSTS", firsts)
    emit("COUNT", len(m.messages))
    m.close()
else:
    fail(f"unknown mode {MODE}")
log("ALL OK")
