"""Prefixed rules: {allow: "User:bob", operations: [read, write],
topic_prefix: "team-a."}.

bob produces to and consumes from team-a.x and team-a.x.y (confluent-kafka
and kafka-python). team-b.x and `team-a` (shorter than the prefix) are
refused with 29: produce, metadata and offset lookups. (A consumer of a
topic it may not even describe never gets as far as a fetch: both clients
wait for metadata that is refused, so the 29 there is the metadata's.)
"""

import kafka.errors as Errors

from acl_common import (TOPIC_AUTHORIZATION_FAILED, Prod, check, consume, create_topics,
                        expect_code, kp_consume, kp_end_offsets, kp_expect, kp_produce, load_env, log,
                        produce_error)


def main():
    env = load_env()
    allowed = ["team-a.x", "team-a.x.y"]
    refused = ["team-b.x", "team-a"]
    create_topics(env, allowed + refused)

    p = Prod(env, "bob")
    for t in allowed:
        for i in range(2):
            p.send_ok(t, value=f"{t}-{i}".encode())
        md = kp_produce(env, "bob", t, value=f"{t}-kp".encode())
        check(md.offset == 2, f"kafka-python: bob's record in {t} at offset {md.offset}")
        values, err = consume(env, "bob", t, want=3)
        check(err is None, f"confluent: bob consuming {t}: {err}")
        want = [f"{t}-0".encode(), f"{t}-1".encode(), f"{t}-kp".encode()]
        check(values == want, f"confluent: bob read {values!r} from {t}")
        values = kp_consume(env, "bob", t, want=3)
        check(values == want, f"kafka-python: bob read {values!r} from {t}")
        log(f"{t}: bob produced and consumed with both clients")

    for t in refused:
        err = p.send(t)
        expect_code(err, TOPIC_AUTHORIZATION_FAILED, f"confluent: bob producing to {t}")
        err = produce_error(env, "bob", t)
        expect_code(err, TOPIC_AUTHORIZATION_FAILED, f"confluent (new connection): bob producing to {t}")
        md = p.p.list_topics(topic=t, timeout=60)
        expect_code(md.topics[t].error, TOPIC_AUTHORIZATION_FAILED, f"confluent: metadata of {t}")
        kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
                  f"kafka-python: bob producing to {t}", lambda: kp_produce(env, "bob", t))
        kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
                  f"kafka-python: bob looking up offsets of {t}",
                  lambda: kp_end_offsets(env, "bob", [t]))
        log(f"{t}: refused with 29 (produce, metadata, offsets)")
    p.close()

    # Nothing reached the refused topics.
    ends = kp_end_offsets(env, "admin", refused)
    check(all(v == 0 for v in ends.values()), f"refused topics got records: {ends}")

    # All-topics metadata shows bob exactly the prefix's topics.
    md = Prod(env, "bob").p.list_topics(timeout=60)
    check(set(md.topics) == set(allowed), f"bob sees {sorted(md.topics)}")
    log(f"bob's topic list: {sorted(md.topics)}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
