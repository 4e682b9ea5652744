"""Host-restricted rules, seen from a loopback client (127.0.0.1) on both
the SASL_SSL and the SASL_PLAINTEXT listener:

    h-exact   allow frank read/write from 127.0.0.1        -> applies
    h-ten     allow frank read/write from 10.0.0.0/8       -> not for us: 29
    h-loop    allow frank read/write from 127.0.0.0/8      -> applies
              deny frank write from 10.0.0.0/8             -> not for us
    h-denied  allow frank all (any host)
              deny frank write from 127.0.0.0/8            -> write 29, read ok
"""

import kafka.errors as Errors

from acl_common import (TOPIC_AUTHORIZATION_FAILED, Prod, check, consume, create_topics,
                        expect_code, kp_end_offsets, kp_expect, kp_produce, load_env, log)


def main():
    env = load_env()
    create_topics(env, ["h-exact", "h-ten", "h-loop", "h-denied"])
    admin = Prod(env, "admin")
    admin.send_ok("h-denied", value=b"seed")
    admin.close()

    for proto in ("SASL_SSL", "SASL_PLAINTEXT"):
        p = Prod(env, "frank", proto)
        for t in ("h-exact", "h-loop"):
            p.send_ok(t, value=f"{t}-{proto}".encode())
            values, err = consume(env, "frank", t, want=1, protocol=proto)
            check(err is None and values[0] == f"{t}-SASL_SSL".encode(),
                  f"{proto}: frank reading {t}: {values!r} {err}")
        expect_code(p.send("h-ten"), TOPIC_AUTHORIZATION_FAILED,
                    f"{proto}: frank producing to h-ten (rule for 10.0.0.0/8)")
        md = p.p.list_topics(topic="h-ten", timeout=60)
        expect_code(md.topics["h-ten"].error, TOPIC_AUTHORIZATION_FAILED,
                    f"{proto}: frank's metadata of h-ten")
        expect_code(p.send("h-denied"), TOPIC_AUTHORIZATION_FAILED,
                    f"{proto}: frank producing to h-denied (deny from 127.0.0.0/8)")
        values, err = consume(env, "frank", "h-denied", want=1, protocol=proto)
        check(err is None and values == [b"seed"], f"{proto}: frank reading h-denied: {values!r} {err}")
        p.close()
        log(f"{proto}: 127.0.0.1 and 127.0.0.0/8 apply, 10.0.0.0/8 does not, "
            "the loopback deny does")

    kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
              "kafka-python: frank producing to h-ten", lambda: kp_produce(env, "frank", "h-ten"))
    md = kp_produce(env, "frank", "h-exact", value=b"kp")
    check(md.offset == 2, f"kafka-python: frank's record in h-exact at offset {md.offset}")

    ends = kp_end_offsets(env, "admin", ["h-exact", "h-ten", "h-loop", "h-denied"])
    check(ends == {"h-exact": 3, "h-ten": 0, "h-loop": 2, "h-denied": 1}, f"end offsets: {ends}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
