"""A real client session whose audit records tests/audit_log.rs checks
field by field: a wrong password, an unknown user, a good login that
produces to `orders` (allowed by `allow User:alice write topic orders`),
and a read of `orders` (no read rule: default deny, 29)."""

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from audit_common import (OP_TIMEOUT, TOPIC_AUTHORIZATION_FAILED, check, conf, consume,
                          env_from_argv, log, login_error, produce_sync, result, user_conf)

PRODUCED = 5


def main():
    env = env_from_argv()
    admin = AdminClient(user_conf(env, "admin", **{"client.id": "audit-admin"}))
    admin.create_topics([NewTopic("orders", num_partitions=1, replication_factor=1)],
                        operation_timeout=OP_TIMEOUT,
                        request_timeout=OP_TIMEOUT)["orders"].result(timeout=OP_TIMEOUT)

    e = login_error(conf(env, "alice", "certainly-not-alices-password",
                         **{"client.id": "audit-wrong-password"}))
    log(f"wrong password refused: {e}")
    # The reason is for the log only: the client hears a generic refusal.
    check("wrong_password" not in str(e), f"the client saw the log-only reason: {e}")
    e = login_error(conf(env, "mallory", "whatever-password",
                         **{"client.id": "audit-unknown-user"}))
    log(f"unknown user refused: {e}")
    check("unknown_user" not in str(e), f"the client saw the log-only reason: {e}")

    # linger.ms=0 and one record at a time: one Produce request per record.
    p = Producer(user_conf(env, "alice", **{
        "client.id": "audit-alice-producer",
        "linger.ms": 0,
        "acks": "all",
        "enable.idempotence": False,
        "message.timeout.ms": 60_000,
    }))
    for i in range(PRODUCED):
        err = produce_sync(p, "orders", f"order-{i}".encode())
        check(err is None, f"alice: produce {i} to orders failed: {err}")
    p.flush(10)
    log(f"alice produced {PRODUCED} records to orders")

    values, err = consume(user_conf(env, "alice", **{"client.id": "audit-alice-consumer"}),
                          "orders", want=1)
    check(err is not None, f"alice read {values!r} from orders; expected an error")
    check(err.code() == TOPIC_AUTHORIZATION_FAILED,
          f"alice reading orders: expected TOPIC_AUTHORIZATION_FAILED, got {err}")
    log(f"alice reading orders refused: {err}")

    result(produced=PRODUCED, producer_client_id="audit-alice-producer",
           consumer_client_id="audit-alice-consumer")
    log("ALL OK")


if __name__ == "__main__":
    main()
