"""Refused logins, as the two Python clients see them.

Usage: sec_negative_logins.py BOOTSTRAP CA_FILE OTHER_CA_FILE USER PASSWORD TOPIC

* wrong password and unknown user: SASL_AUTHENTICATION_FAILED (58), with
  the same message for both (no user enumeration);
* PLAIN: UNSUPPORTED_SASL_MECHANISM (33) (SCRAM-SHA-256 is enabled by
  default; sec_scram_sha256.py covers it disabled);
* a client trusting another CA: TLS handshake fails (certificate verify);
* none of these clients gets a record in: the topic stays empty.
"""

import sys

import kafka
import kafka.errors as Errors
from confluent_kafka import KafkaError, Producer

from sec_common import (check, ck_conf, ck_first_error, create_topic, high_watermarks, kp_conf,
                        kp_login_error, kp_try_login, log, sasl_error_text)

BAD_CREDENTIALS = ("Authentication failed during authentication due to invalid credentials "
                   "with SASL mechanism SCRAM-SHA-512")
PARTITIONS = 1


PENDING = []


def try_produce(conf, topic, name):
    """Starts a produce by a refused client; `check_refused_produces` later
    checks that none was delivered (they time out in parallel)."""
    results = []
    p = Producer({**conf, "acks": "all", "message.timeout.ms": 3000, "enable.idempotence": False})
    p.produce(topic, key=b"intruder", value=b"must not land",
              on_delivery=lambda err, msg: results.append(err))
    p.poll(0)
    PENDING.append((name, p, results))


def check_refused_produces():
    for name, p, results in PENDING:
        p.flush(60)
        check(len(results) == 1 and results[0] is not None,
              f"{name}: produce by a refused client was not refused: {results}")
        log(f"{name}: produce refused locally with {results[0].name()}")


def main():
    bootstrap, ca, other_ca, user, password, topic = sys.argv[1:7]
    good = ck_conf(bootstrap, ca, user, password)
    create_topic(good, topic, PARTITIONS)

    # ---- confluent-kafka: error_cb carries the broker's error text.
    texts = {}
    for name, u, pw in [("wrong password", user, password + "x"),
                        ("unknown user", "mallory", password)]:
        conf = ck_conf(bootstrap, ca, u, pw)
        e = ck_first_error(conf)
        text = sasl_error_text(e)
        log(f"confluent {name}: {e.name()}: {e.str()}")
        check(text == BAD_CREDENTIALS, f"confluent {name}: unexpected error text {e.str()!r}")
        texts[name] = text
        try_produce(conf, topic, f"confluent {name}")
    check(texts["wrong password"] == texts["unknown user"], f"messages differ: {texts}")

    for mech in ["PLAIN"]:
        conf = ck_conf(bootstrap, ca, user, password, mechanism=mech)
        e = ck_first_error(conf)
        log(f"confluent {mech}: {e.name()}: {e.str()}")
        # "Broker: Unsupported SASL mechanism" is librdkafka's text for
        # Kafka error code 33 in the SaslHandshake response.
        check(f"SASL {mech} mechanism handshake failed: Broker: Unsupported SASL mechanism" in e.str(),
              f"confluent {mech}: {e.str()!r}")
        check("SCRAM-SHA-512" in e.str(), f"the enabled mechanisms are listed: {e.str()!r}")
        try_produce(conf, topic, f"confluent {mech}")

    conf = ck_conf(bootstrap, other_ca, user, password)
    e = ck_first_error(conf, want_codes=(KafkaError._SSL,))
    log(f"confluent other CA: {e.name()}: {e.str()}")
    check("certificate verify failed" in e.str(),
          f"confluent other CA: {e.str()!r}")
    try_produce(conf, topic, "confluent other CA")

    # ---- kafka-python: the Kafka error class with its errno.
    log(f"kafka-python {kafka.__version__}")
    messages = {}
    for name, u, pw in [("wrong password", user, password + "x"),
                        ("unknown user", "mallory", password)]:
        e = kp_login_error(kp_conf(bootstrap, ca, u, pw), Errors.SaslAuthenticationFailedError)
        log(f"kafka-python {name}: {type(e).__name__} errno={e.errno}: {e}")
        check(e.errno == 58, f"errno {e.errno}")
        check(BAD_CREDENTIALS in str(e), f"kafka-python {name}: {e}")
        messages[name] = str(e)
    check(messages["wrong password"] == messages["unknown user"], f"messages differ: {messages}")

    for mech in ["PLAIN"]:
        e = kp_login_error(kp_conf(bootstrap, ca, user, password, mechanism=mech),
                           Errors.UnsupportedSaslMechanismError)
        log(f"kafka-python {mech}: {type(e).__name__} errno={e.errno}: {e}")
        check(e.errno == 33, f"errno {e.errno}")

    e = kp_try_login(kp_conf(bootstrap, other_ca, user, password))
    log(f"kafka-python other CA: {type(e).__name__}: {e}")
    check(isinstance(e, Errors.KafkaConnectionError) and "CERTIFICATE_VERIFY_FAILED" in str(e),
          f"kafka-python other CA: {e!r}")

    # The right credentials still work, and nothing got in.
    check_refused_produces()
    check(kp_try_login(kp_conf(bootstrap, ca, user, password)) is None, "good login refused")
    marks = high_watermarks(good, topic, PARTITIONS)
    check(marks == [0], f"refused clients produced something: high watermarks {marks}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
