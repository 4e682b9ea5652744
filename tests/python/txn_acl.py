"""Authorization of producer ids and transactional ids on a SASL_SSL broker
whose only rules are the test's (tests/transactions.rs writes them):

  alice: WRITE topic orders, DESCRIBE transactional_id t1 (no WRITE),
         WRITE transactional_id t2
  bob:   READ topic orders (no topic WRITE, no IDEMPOTENT_WRITE)
  carol: IDEMPOTENT_WRITE on the cluster (no topic WRITE)
  dave:  WRITE topic orders (nothing on transactional ids)

env: bootstrap, ca, admin_password, passwords
"""

import time

from confluent_kafka import KafkaException, Producer

from txn_common import (CLUSTER_AUTHORIZATION_FAILED, OP_TIMEOUT,
                        TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, check,
                        conf, create_topics, kafka_error, load_env, log, result, txn_producer)

env = load_env()
env["passwords"]["admin"] = env["admin_password"]
create_topics(env, {"orders": 1}, user="admin")
seen = {}


def init_txn_error(user, txn_id):
    p = txn_producer(env, txn_id, user=user)
    try:
        p.init_transactions(OP_TIMEOUT)
    except KafkaException as e:
        return kafka_error(e)
    return None


# WRITE on the transactional id is what InitProducerId checks (alice may
# DESCRIBE t1, so FindCoordinator answers; InitProducerId refuses).
err = init_txn_error("alice", "t1")
check(err is not None, "alice initialized transactions for t1 without WRITE on it")
check(err.code() == TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
      f"alice/t1: expected 53, got {err.code()} ({err})")
seen["alice/t1"] = [err.code(), err.fatal(), err.str()]

# Nothing at all on t1: FindCoordinator already refuses, with the same code.
err = init_txn_error("dave", "t1")
check(err is not None, "dave initialized transactions for t1 without any rule for it")
check(err.code() == TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
      f"dave/t1: expected 53, got {err.code()} ({err})")
seen["dave/t1"] = [err.code(), err.fatal(), err.str()]

# Control: with WRITE on t2, alice runs a transaction.
p = txn_producer(env, "t2", user="alice")
p.init_transactions(OP_TIMEOUT)
p.begin_transaction()
p.produce("orders", value=b"alice-t2", partition=0)
p.commit_transaction(OP_TIMEOUT)
p.flush(OP_TIMEOUT)


def idempotent_outcome(user):
    """Produces one record with an idempotent producer; returns
    (delivery error or None, [errors from error_cb])."""
    errors = []
    p = Producer(conf(env, user, **{
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 20_000,
        "error_cb": lambda e: errors.append(e),
    }))
    delivered = []
    try:
        p.produce("orders", value=f"idem-{user}".encode(), partition=0,
                  on_delivery=lambda err, msg: delivered.append(err))
    except KafkaException as e:
        delivered.append(kafka_error(e))
    deadline = time.monotonic() + OP_TIMEOUT
    while not delivered:
        check(time.monotonic() < deadline, f"{user}: no delivery report")
        try:
            p.poll(0.1)
        except KafkaException as e:
            # A fatal error surfaces from poll() as well.
            errors.append(kafka_error(e))
    try:
        p.flush(5)
    except KafkaException as e:
        errors.append(kafka_error(e))
    return delivered[0], errors


# No topic WRITE and no IDEMPOTENT_WRITE: InitProducerId gets 31, which
# librdkafka reports as a fatal error, failing the record.
err, errors = idempotent_outcome("bob")
check(err is not None, "bob's idempotent produce succeeded")
cluster_denied = [e for e in errors if e.code() == CLUSTER_AUTHORIZATION_FAILED]
# (The record itself then fails as purged by the fatal error, or with 31.)
check(cluster_denied and cluster_denied[0].fatal(),
      f"bob: expected a fatal CLUSTER_AUTHORIZATION_FAILED (31), got delivery error "
      f"{err.code()} ({err}) and errors {[(e.code(), e.str()) for e in errors]}")
seen["bob/idempotent"] = [err.code(), [(e.code(), e.str()) for e in errors]]

# Controls: WRITE on a topic suffices (alice), and so does IDEMPOTENT_WRITE
# on the cluster (carol gets her producer id; her record is then refused
# for the topic, not for the cluster).
err, errors = idempotent_outcome("alice")
check(err is None, f"alice's idempotent produce failed: {err} {errors}")
err, errors = idempotent_outcome("carol")
check(err is not None and err.code() == TOPIC_AUTHORIZATION_FAILED,
      f"carol: expected TOPIC_AUTHORIZATION_FAILED (29), got {err} {errors}")
check(not [e for e in errors if e.code() == CLUSTER_AUTHORIZATION_FAILED],
      f"carol was refused a producer id: {errors}")
seen["carol/idempotent"] = [err.code(), [(e.code(), e.str()) for e in errors]]

for k, v in seen.items():
    log(f"{k}: {v}")
result(seen)
log("ALL OK")
