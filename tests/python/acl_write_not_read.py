"""alice may write `orders` but not read it.

Rules: {allow: "User:alice", operations: [write], topic: orders}. The topic
is created by the super user. confluent-kafka: alice's produce is acked, a
consumer assigned to orders gets TOPIC_AUTHORIZATION_FAILED (29) from the
fetch (write implies describe, so metadata and the offset lookup work and
the refusal really comes from Fetch). kafka-python: the same, with the
fetcher raising TopicAuthorizationFailedError (errno 29).
"""

import kafka.errors as Errors

from acl_common import (TOPIC_AUTHORIZATION_FAILED, Prod, check, consume, consume_error,
                        create_topics, expect_code, kp_consume, kp_end_offsets, kp_expect,
                        kp_produce, load_env, log)


def main():
    env = load_env()
    create_topics(env, ["orders"])

    # confluent-kafka: write yes.
    p = Prod(env, "alice")
    for i in range(3):
        p.send_ok("orders", value=f"order-{i}".encode())
    p.close()
    log("confluent: alice produced 3 records to orders")

    # ... read no: the fetch is refused with 29.
    err = consume_error(env, "alice", "orders")
    expect_code(err, TOPIC_AUTHORIZATION_FAILED, "confluent: alice consuming orders")
    log(f"confluent: alice's consumer got {err.name()} ({err.code()})")

    # The records are there: the super user reads them.
    values, err = consume(env, "admin", "orders", want=3)
    check(err is None, f"admin consuming orders: {err}")
    check(values == [b"order-0", b"order-1", b"order-2"], f"admin read {values!r}")

    # kafka-python: the same two answers.
    md = kp_produce(env, "alice", "orders", value=b"order-kp")
    check(md.offset == 3, f"kafka-python: alice's record landed at offset {md.offset}, expected 3")
    e = kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
                  "kafka-python: alice fetching orders",
                  lambda: kp_consume(env, "alice", "orders", want=1))
    check("orders" in str(e), f"kafka-python error does not name the topic: {e}")
    log(f"kafka-python: alice produced at offset 3, fetch raised {type(e).__name__} ({e.errno})")

    # The offset lookup (ListOffsets: DESCRIBE, implied by WRITE) works:
    # the refusal above is the fetch's, not the metadata's.
    end = kp_end_offsets(env, "alice", ["orders"])
    check(end == {"orders": 4}, f"alice's end offsets of orders: {end}")
    log("kafka-python: alice may still look up offsets of orders (describe is implied by write)")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
