"""Metadata hides what a principal may not describe, and does not leak
which topics exist.

dave has DESCRIBE on `visible` only; `visible` and `hidden` both exist,
`nowhere` does not.
  - all-topics metadata: visible, not hidden (admin sees both);
  - metadata for hidden and for nowhere: the same error, 29;
  - produce to hidden, nowhere (29, no auto-creation) and visible (29:
    describe does not grant write);
  - offset lookups (ListOffsets needs DESCRIBE): visible yes, hidden and
    nowhere 29.
"""

import kafka.errors as Errors
from kafka.admin import KafkaAdminClient

from acl_common import (TOPIC_AUTHORIZATION_FAILED, Prod, check, create_topics, expect_code,
                        kp_conf, kp_end_offsets, kp_expect, kp_produce, load_env, log)


def main():
    env = load_env()
    create_topics(env, ["visible", "hidden"], partitions=2)
    admin = Prod(env, "admin")
    admin.send_ok("visible", value=b"x")
    check({"visible", "hidden"} <= set(admin.p.list_topics(timeout=60).topics),
          "admin does not see both topics")

    p = Prod(env, "dave", message_timeout_ms=15_000)
    md = p.p.list_topics(timeout=60)
    check("visible" in md.topics, f"dave's topic list lacks visible: {sorted(md.topics)}")
    check("hidden" not in md.topics, f"dave's topic list shows hidden: {sorted(md.topics)}")
    check(len(md.topics["visible"].partitions) == 2, "visible should have 2 partitions")
    log(f"confluent: dave's topic list: {sorted(md.topics)}")

    md = p.p.list_topics(topic="visible", timeout=60)
    check(md.topics["visible"].error is None, f"metadata of visible: {md.topics['visible'].error}")
    answers = {}
    for t in ("hidden", "nowhere"):
        md = p.p.list_topics(topic=t, timeout=60)
        err = expect_code(md.topics[t].error, TOPIC_AUTHORIZATION_FAILED, f"confluent: metadata of {t}")
        check(not md.topics[t].partitions, f"{t}: partitions leaked: {md.topics[t].partitions}")
        answers[t] = (err.code(), err.str())
    check(answers["hidden"] == answers["nowhere"],
          f"an existing and a missing topic answer differently: {answers}")
    log(f"confluent: metadata of hidden and nowhere: {answers['hidden']}")

    for t in ("hidden", "nowhere", "visible"):
        expect_code(p.send(t), TOPIC_AUTHORIZATION_FAILED, f"confluent: dave producing to {t}")
        kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
                  f"kafka-python: dave producing to {t}", lambda: kp_produce(env, "dave", t))
    p.close()
    log("dave's produce to hidden, nowhere and visible: 29")

    # kafka-python's view of the same metadata.
    a = KafkaAdminClient(**kp_conf(env, "dave"))
    try:
        names = a.list_topics()
        check(names == ["visible"], f"kafka-python: dave's topic list {names}")
        described = {d["name"]: d for d in a.describe_topics(["hidden", "nowhere", "visible"])}
        for t in ("hidden", "nowhere"):
            check(described[t]["error_code"] == TOPIC_AUTHORIZATION_FAILED
                  and described[t]["partitions"] == [],
                  f"kafka-python: describe {t}: {described[t]}")
        check(described["visible"]["error_code"] == 0 and len(described["visible"]["partitions"]) == 2,
              f"kafka-python: describe visible: {described['visible']}")
    finally:
        a.close()

    # ListOffsets needs DESCRIBE.
    check(kp_end_offsets(env, "dave", ["visible"]) == {"visible": 1}, "dave's offsets of visible")
    for t in ("hidden", "nowhere"):
        kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
                  f"kafka-python: dave's offsets of {t}", lambda: kp_end_offsets(env, "dave", [t]))

    # Nothing was auto-created or written on dave's behalf.
    a = Prod(env, "admin")
    topics = set(a.p.list_topics(timeout=60).topics)
    check("nowhere" not in topics, "nowhere was created")
    a.close()
    ends = kp_end_offsets(env, "admin", ["hidden", "visible"])
    check(ends == {"hidden": 0, "visible": 1}, f"end offsets: {ends}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
