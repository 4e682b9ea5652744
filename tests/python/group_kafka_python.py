"""kafka-python (its own group protocol code) against the coordinator:
a KafkaConsumer with group_id subscribes, consumes everything, commits,
and committed() returns the end offsets; then two KafkaConsumers (one
thread each) split a 4-partition topic 2/2 and together consume what is
produced next exactly once.

Usage: group_kafka_python.py BOOTSTRAP
"""

import sys
import threading
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from group_common import DEADLINE, check, fail, kp_check_nothing_left, log

BOOTSTRAP = sys.argv[1]
PARTITIONS = 4


def create_topic(name):
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    admin.close()


def produce(topic, seqs):
    p = KafkaProducer(bootstrap_servers=BOOTSTRAP, acks="all", enable_idempotence=False)
    futs = [p.send(topic, key=f"seq-{i}".encode(), value=f"value-{i}".encode(),
                   partition=i % PARTITIONS) for i in seqs]
    for f in futs:
        f.get(timeout=DEADLINE)
    p.close()


def consumer(group, topic, client_id):
    c = KafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id=group, client_id=client_id,
                      enable_auto_commit=False, auto_offset_reset="earliest",
                      heartbeat_interval_ms=500, session_timeout_ms=10000)
    c.subscribe([topic])
    return c


def seq(rec):
    return int(rec.key.decode().split("-", 1)[1])


# ------------------------------------------------------------ one consumer
TOPIC1, GROUP1, N1 = "kp-group-topic", "kp-group", 600
create_topic(TOPIC1)
produce(TOPIC1, range(N1))
c = consumer(GROUP1, TOPIC1, "kp-single")
got = []
deadline = time.monotonic() + DEADLINE
while len(got) < N1:
    check(time.monotonic() < deadline, f"kafka-python consumed {len(got)} of {N1}")
    for tp, recs in c.poll(timeout_ms=200).items():
        got.extend(seq(r) for r in recs)
check(sorted(got) == list(range(N1)), f"kafka-python consumed {len(got)} records, "
                                      f"{len(set(got))} distinct")
check(len(c.assignment()) == PARTITIONS, f"assignment {c.assignment()}")
c.commit()
tps = [TopicPartition(TOPIC1, p) for p in range(PARTITIONS)]
ends = c.end_offsets(tps)
for tp in tps:
    check(c.committed(tp) == ends[tp], f"committed({tp}) = {c.committed(tp)}, end {ends[tp]}")
c.close()
# A fresh consumer of the group has nothing left to read.
c = consumer(GROUP1, TOPIC1, "kp-single-2")
kp_check_nothing_left(c, PARTITIONS, DEADLINE)
for tp in tps:
    check(c.position(tp) == ends[tp], f"position({tp}) = {c.position(tp)}, committed {ends[tp]}")
c.close()
log("single kafka-python consumer: consumed, committed, resumed at the commits")

# ------------------------------------------------------------ two consumers
TOPIC2, GROUP2, N2 = "kp-split-topic", "kp-split", 800
create_topic(TOPIC2)
stop = threading.Event()
state = {}
lock = threading.Lock()
errors = []


def run(name):
    try:
        c = consumer(GROUP2, TOPIC2, name)
        mine = []
        while not stop.is_set():
            batch = c.poll(timeout_ms=100)
            for tp, recs in batch.items():
                mine.extend((tp.partition, seq(r)) for r in recs)
            if batch:
                c.commit()
            with lock:
                state[name] = (sorted(tp.partition for tp in c.assignment()), list(mine))
        c.close()
    except Exception as e:  # reported by the main thread
        errors.append(f"{name}: {e!r}")


threads = [threading.Thread(target=run, args=(f"kp-{i}",)) for i in range(2)]
for t in threads:
    t.start()


def snapshot():
    with lock:
        return {k: (list(a), list(r)) for k, (a, r) in state.items()}


def wait(what, cond):
    deadline = time.monotonic() + DEADLINE
    while True:
        check(not errors, f"consumer thread failed: {errors}")
        s = snapshot()
        if len(s) == 2 and cond(s):
            return s
        if time.monotonic() > deadline:
            stop.set()
            fail(f"timed out waiting for {what}: {({k: v[0] for k, v in s.items()})}")
        time.sleep(0.05)


try:
    s = wait("a 2/2 split", lambda s: all(len(a) == 2 for a, _ in s.values())
             and sorted(p for a, _ in s.values() for p in a) == list(range(PARTITIONS)))
    log(f"split: {({k: v[0] for k, v in s.items()})}")
    produce(TOPIC2, range(N2))
    s = wait(f"{N2} records", lambda s: sum(len(r) for _, r in s.values()) >= N2)
    time.sleep(0.5)  # let anything extra arrive before the exactly-once check
    s = snapshot()
finally:
    stop.set()
    for t in threads:
        t.join(timeout=DEADLINE)
check(not errors, f"consumer thread failed: {errors}")
seen = []
for name, (assigned, recs) in s.items():
    for p, q in recs:
        check(p in assigned, f"{name} got partition {p}, assigned {assigned}")
    seen.extend(q for _, q in recs)
check(sorted(seen) == list(range(N2)),
      f"two consumers got {len(seen)} records, {len(set(seen))} distinct, of {N2}")
log(f"per consumer: {({k: len(v[1]) for k, v in s.items()})}")
log("ALL OK")
