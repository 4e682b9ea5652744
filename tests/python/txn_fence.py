"""Fencing: a second producer with the same transactional.id calling
init_transactions fences the first, whose next transactional operation
fails fatally with a fenced error. Two ways to meet the fence:

  A. the zombie is inside an open transaction (its partition already
     added) and produces again, then tries to commit;
  B. the zombie starts a new transaction on a partition it has not added
     yet (AddPartitionsToTxn is what fails).

Nothing the zombies wrote after being fenced is visible to read_committed.

env: bootstrap
"""

from confluent_kafka import KafkaException

from txn_common import (OP_TIMEOUT, check, create_topics, expect_fatal_fenced, fail, load_env,
                        log, read_all, result, txn_producer, values)

env = load_env()
topic = "fenced"
create_topics(env, {topic: 2})
fenced = []

# --- A: fenced inside an open transaction --------------------------------
p1 = txn_producer(env, "fence-a")
p1.init_transactions(OP_TIMEOUT)
p1.begin_transaction()
p1.produce(topic, value=b"a-p1-committed", partition=0)
p1.commit_transaction(OP_TIMEOUT)

p1.begin_transaction()
p1.produce(topic, value=b"a-p1-open", partition=0)
check(p1.flush(OP_TIMEOUT) == 0, "a-p1-open not delivered")

p2 = txn_producer(env, "fence-a")
p2.init_transactions(OP_TIMEOUT)  # aborts p1's open transaction, bumps the epoch
p2.begin_transaction()
p2.produce(topic, value=b"a-p2-committed", partition=0)
p2.commit_transaction(OP_TIMEOUT)

errors = []
try:
    p1.produce(topic, value=b"a-p1-zombie", partition=0,
               on_delivery=lambda err, msg: err and errors.append(err))
    p1.commit_transaction(OP_TIMEOUT)
    fail("A: the fenced producer committed")
except KafkaException as e:
    err = expect_fatal_fenced(e, "A: zombie commit")
    fenced.append(f"A: {err.name()} ({err.code()}): {err.str()}")
p1.flush(OP_TIMEOUT)

# --- B: fenced when adding a partition ------------------------------------
p3 = txn_producer(env, "fence-b")
p3.init_transactions(OP_TIMEOUT)
p4 = txn_producer(env, "fence-b")
p4.init_transactions(OP_TIMEOUT)
p3.begin_transaction()
try:
    p3.produce(topic, value=b"b-p3-zombie", partition=1)
    p3.commit_transaction(OP_TIMEOUT)
    fail("B: the fenced producer committed")
except KafkaException as e:
    err = expect_fatal_fenced(e, "B: zombie commit")
    fenced.append(f"B: {err.name()} ({err.code()}): {err.str()}")
p3.flush(OP_TIMEOUT)

# The producer that fenced it works.
p4.begin_transaction()
p4.produce(topic, value=b"b-p4-committed", partition=1)
p4.commit_transaction(OP_TIMEOUT)

got = sorted(values(read_all(env, topic, "read_committed")))
want = sorted(["a-p1-committed", "a-p2-committed", "b-p4-committed"])
check(got == want, f"read_committed saw {got}, expected {want}")
everything = values(read_all(env, topic, "read_uncommitted"))
check("a-p1-open" in everything, f"a-p1-open was never written: {everything}")
for line in fenced:
    log(line)
result({"fenced": fenced, "uncommitted": sorted(everything)})
log("ALL OK")
