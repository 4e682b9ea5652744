"""Deny beats allow, and a deny covers only what it names.

Rules: {allow: "User:carol", operations: [all], topic: "*"} and
{deny: "User:carol", operations: [write], topic: secret}. carol writes
`public`; writing `secret` is refused with 29 (both clients); she still
reads `secret` (a DENY WRITE does not deny READ or DESCRIBE).
"""

import kafka.errors as Errors

from acl_common import (TOPIC_AUTHORIZATION_FAILED, Prod, check, consume, create_topics,
                        expect_code, kp_consume, kp_end_offsets, kp_expect, kp_produce, load_env, log,
                        produce_error)


def main():
    env = load_env()
    create_topics(env, ["public", "secret"])
    admin = Prod(env, "admin")
    admin.send_ok("secret", value=b"classified")
    admin.close()

    p = Prod(env, "carol")
    p.send_ok("public", value=b"hello")
    expect_code(p.send("secret", value=b"leak"), TOPIC_AUTHORIZATION_FAILED,
                "confluent: carol producing to secret")
    expect_code(produce_error(env, "carol", "secret"), TOPIC_AUTHORIZATION_FAILED,
                "confluent (new connection): carol producing to secret")
    kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
              "kafka-python: carol producing to secret", lambda: kp_produce(env, "carol", "secret"))
    md = kp_produce(env, "carol", "public", value=b"hello-kp")
    check(md.offset == 1, f"kafka-python: carol's record in public at offset {md.offset}")
    log("carol writes public; writing secret is refused with 29")

    # Reading is not denied: the deny names WRITE only.
    values, err = consume(env, "carol", "secret", want=1)
    check(err is None and values == [b"classified"], f"confluent: carol reading secret: {values!r} {err}")
    values = kp_consume(env, "carol", "secret", want=1)
    check(values == [b"classified"], f"kafka-python: carol read {values!r} from secret")
    values, err = consume(env, "carol", "public", want=2)
    check(err is None and values == [b"hello", b"hello-kp"], f"carol reading public: {values!r} {err}")
    # Nor is describe: secret is in carol's topic list.
    topics = set(p.p.list_topics(timeout=60).topics)
    check({"public", "secret"} <= topics, f"carol sees {sorted(topics)}")
    p.close()
    log("carol still reads and describes secret; only the refused write is missing")

    ends = kp_end_offsets(env, "admin", ["secret", "public"])
    check(ends == {"secret": 1, "public": 2}, f"end offsets: {ends}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
