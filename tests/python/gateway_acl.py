"""The gateway's own ACLs, with confluent-kafka through the gateway. The
gateway's ACL file (written by tests/gateway.rs) holds only

    - {allow: "User:alice", operations: [read, write], topic: gw-ok}
    - {allow: "User:alice", operations: [read], group: gw-alice-group}
    - {allow: "User:bob", operations: [read], topic: gw-ok}
    - {allow: "User:bob", operations: [read], topic: gw-readonly}

and `admin` is the gateway's super user. The upstream allows everything to
everyone, so every refusal here is the gateway's.

- admin creates gw-ok, gw-readonly and gw-hidden through the gateway;
- alice (permitted) produces 50 records to gw-ok with an idempotent
  producer and reads them back through her group gw-alice-group,
  committing;
- bob's produce to gw-readonly and to gw-ok: TOPIC_AUTHORIZATION_FAILED;
- bob reads gw-ok (he may): the 50 records;
- bob in the group gw-bob-group: GROUP_AUTHORIZATION_FAILED, no records;
- bob's transactional producer (gw-bob-txn):
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
- Metadata for all topics: alice sees gw-ok only, bob gw-ok and
  gw-readonly, admin all three; alice asking for gw-hidden by name gets 29;
- alice with a wrong password: a SASL authentication error and no
  metadata (confluent-kafka), SaslAuthenticationFailedError with errno 58
  (kafka-python); with the right password she gets in (again).

The Rust side checks the upstream directly (gw-readonly and gw-hidden stay
empty, gw-ok holds exactly alice's 50) and the audit logs.

RESULT {"produced": 50, "auth_error": "..."}
"""

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from gateway_common import (GROUP_AUTHORIZATION_FAILED, OP_TIMEOUT, SASL_AUTHENTICATION_FAILED,
                            TOPIC_AUTHORIZATION_FAILED, TRANSACTIONAL_ID_AUTHORIZATION_FAILED, check,
                            ck_conf, create_topics, fail, kafka_error, kp_conf, load_env, log,
                            login_error, produce, produce_one, read_all, result, seq_of)

env = load_env()
N = 50

admin = ck_conf(env, "admin")
alice = ck_conf(env, "alice")
bob = ck_conf(env, "bob")

create_topics(admin, ["gw-ok", "gw-readonly", "gw-hidden"])

# alice: permitted, both ways.
reports = produce(alice, "gw-ok", range(N), 1, idempotent=True)
check(sorted(o for _, o in reports.values()) == list(range(N)),
      f"alice's records are not at offsets 0..{N - 1}: {sorted(reports.values())[:5]}")
c = Consumer({**alice, "group.id": "gw-alice-group", "auto.offset.reset": "earliest",
              "enable.auto.commit": False})
c.subscribe(["gw-ok"])
got, errors = [], []
deadline = time.monotonic() + OP_TIMEOUT
while len(got) < N:
    check(time.monotonic() < deadline,
          f"alice consumed {len(got)} of {N} through gw-alice-group; errors {errors[:5]}")
    for m in c.consume(num_messages=100, timeout=0.2):
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                errors.append(str(m.error()))
            continue
        got.append(seq_of(m))
c.commit(asynchronous=False)
c.close()
check(sorted(got) == list(range(N)), f"alice consumed {sorted(got)[:10]}...")
check(not errors, f"alice's group consumer errors: {errors[:5]}")
log(f"alice produced and consumed {N} records of gw-ok through gw-alice-group")

# bob may not write.
for topic in ("gw-readonly", "gw-ok"):
    err = produce_one(bob, topic, value=b"bob-was-here")
    check(err is not None, f"bob's produce to {topic} succeeded")
    check(kafka_error(err).code() == TOPIC_AUTHORIZATION_FAILED,
          f"bob's produce to {topic}: expected {TOPIC_AUTHORIZATION_FAILED}, got {err}")
    log(f"bob's produce to {topic}: {err.str()}")

# bob may read gw-ok.
values, err = read_all(bob, "gw-ok", 1, N)
check(err is None, f"bob's read of gw-ok: {err}")
check(sorted(v for _, _, _, v in values) == sorted(f"value-{i}".encode() for i in range(N)),
      "bob read other records than alice's")
log(f"bob read the {N} records of gw-ok")

# bob's group: refused.
errors = []
c = Consumer({**bob, "group.id": "gw-bob-group", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "error_cb": errors.append})
c.subscribe(["gw-ok"])
records = 0
deadline = time.monotonic() + OP_TIMEOUT
while not any(e.code() == GROUP_AUTHORIZATION_FAILED for e in errors):
    check(time.monotonic() < deadline,
          f"no GROUP_AUTHORIZATION_FAILED for bob in gw-bob-group: {[str(e) for e in errors]}")
    m = c.poll(0.2)
    if m is None:
        continue
    if m.error():
        errors.append(m.error())
    else:
        records += 1
check(records == 0, f"bob got {records} records through gw-bob-group")
check(not c.assignment(), f"bob got partitions {c.assignment()} in gw-bob-group")
log(f"bob in gw-bob-group: {next(e for e in errors if e.code() == GROUP_AUTHORIZATION_FAILED)}")
c.close()

# bob's transactional id: refused.
p = Producer({**bob, "transactional.id": "gw-bob-txn", "transaction.timeout.ms": 30000})
try:
    p.init_transactions(OP_TIMEOUT)
    fail("bob's init_transactions for gw-bob-txn succeeded")
except KafkaException as e:
    err = kafka_error(e)
    check(err.code() == TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
          f"bob's init_transactions: expected {TRANSACTIONAL_ID_AUTHORIZATION_FAILED}, got {err}")
    log(f"bob's init_transactions: {err.str()}")

# Metadata listings.
def listing(conf):
    md = AdminClient(dict(conf)).list_topics(timeout=OP_TIMEOUT)
    return sorted(t for t in md.topics if t.startswith("gw-"))


for who, conf, want in [("alice", alice, ["gw-ok"]), ("bob", bob, ["gw-ok", "gw-readonly"]),
                        ("admin", admin, ["gw-hidden", "gw-ok", "gw-readonly"])]:
    got = listing(conf)
    check(got == want, f"{who}'s metadata listing: {got}, expected {want}")
    log(f"{who} sees {got}")
md = AdminClient(dict(alice)).list_topics(topic="gw-hidden", timeout=OP_TIMEOUT)
t = md.topics.get("gw-hidden")
check(t is not None and t.error is not None and t.error.code() == TOPIC_AUTHORIZATION_FAILED,
      f"alice asking for gw-hidden by name: {t and t.error}")

# A wrong password is refused at the gateway; the right one works.
err = login_error(ck_conf(env, "alice", pw="not-alices-password"))
log(f"alice with a wrong password: {err.str()}")
check("SASL authentication error" in err.str() or "Authentication failed" in err.str(),
      f"not a SASL authentication error: {err.str()}")
# kafka-python shows the code on the wire: SASL_AUTHENTICATION_FAILED (58).
import kafka.errors as Errors  # noqa: E402
from sec_common import kp_login_error  # noqa: E402

e = kp_login_error(kp_conf(env, "alice", pw="not-alices-password"),
                   Errors.SaslAuthenticationFailedError)
check(e.errno == SASL_AUTHENTICATION_FAILED, f"kafka-python: errno {e.errno}, expected 58")
log(f"alice with a wrong password (kafka-python): errno {e.errno}")
check(listing(alice) == ["gw-ok"], "alice's right password no longer works")

result(produced=N, auth_error=err.str())
log("ALL OK")
