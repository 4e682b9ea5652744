"""Open sessions of a user whose credentials are removed or changed.

Usage: sec_revocation.py MODE BOOTSTRAP CA_FILE PORTCULLIS_BIN CONFIG ADMIN_PASSWORD TOPIC

MODE remove: `portcullis user remove alice`; MODE passwd: `portcullis user
passwd alice` to a new password. alice has long-lived producers open (one
confluent-kafka, one kafka-python) that delivered records before the
change. After it:
* a new login with the old password fails with SASL_AUTHENTICATION_FAILED
  (58) within a deadline (the broker hot-reloads the store file);
* passwd: the new password works at once for a new connection;
* the old producers' next records are not delivered (the broker closes
  their connections at the next request and they cannot log in again),
  and the topic holds exactly the records from before the change.
The test then looks for "credentials of User:alice were removed or changed"
in the broker log.
"""

import sys
import time

import kafka.errors as Errors
from confluent_kafka import KafkaError, Producer
from kafka import KafkaProducer

from sec_common import (check, ck_conf, ck_first_error, create_topic, fail, high_watermarks, kp_conf,
                        kp_deliver_data_before_eof, kp_login_error, kp_try_login, log, portcullis_cli,
                        sasl_error_text, wait_until)

OLD_PW = "alice-old-pw"
NEW_PW = "alice-new-pw"
BEFORE = 20
RELOAD_DEADLINE = 30.0


def main():
    mode, bootstrap, ca, binary, config, admin_pw, topic = sys.argv[1:8]
    kp_deliver_data_before_eof()
    admin_conf = ck_conf(bootstrap, ca, "admin", admin_pw)
    old_conf = ck_conf(bootstrap, ca, "alice", OLD_PW)
    create_topic(old_conf, topic, 1)

    # Long-lived producers, both delivering before the change.
    ck_errors, ck_results = [], []
    ck_old = Producer({**old_conf, "acks": "all", "enable.idempotence": False,
                       "message.timeout.ms": 15000, "error_cb": ck_errors.append})
    for i in range(BEFORE // 2):
        ck_old.produce(topic, key=f"ck-{i}".encode(), value=b"before",
                       on_delivery=lambda err, msg: ck_results.append(err))
    check(ck_old.flush(60) == 0, "confluent producer: records undelivered before the change")
    check(ck_results == [None] * (BEFORE // 2), f"confluent producer before the change: {ck_results}")
    kp_old = KafkaProducer(**kp_conf(bootstrap, ca, "alice", OLD_PW), acks="all", enable_idempotence=False,
                           request_timeout_ms=5000, delivery_timeout_ms=15000, max_block_ms=15000,
                           retries=2, reconnect_backoff_ms=200)
    for i in range(BEFORE // 2):
        kp_old.send(topic, key=f"kp-{i}".encode(), value=b"before").get(timeout=60)
    log(f"{BEFORE} records delivered by alice's two producers before the change")

    t0 = time.monotonic()
    if mode == "remove":
        out = portcullis_cli(binary, config, ["user", "remove", "alice"])
    elif mode == "passwd":
        out = portcullis_cli(binary, config, ["user", "passwd", "alice", "--password-stdin"], NEW_PW + "\n")
    else:
        fail(f"unknown mode {mode}")
    log(f"cli: {out.strip()}")

    # New logins with the old password fail once the broker has reloaded.
    def refused():
        e = kp_try_login(kp_conf(bootstrap, ca, "alice", OLD_PW))
        if e is None:
            return None
        check(isinstance(e, Errors.SaslAuthenticationFailedError) and e.errno == 58,
              f"old password after {mode}: {type(e).__name__}: {e}")
        return e
    e = wait_until(f"old password refused after {mode}", RELOAD_DEADLINE, refused)
    log(f"old password refused {time.monotonic() - t0:.2f}s after the change (kafka-python): errno {e.errno}")
    e = ck_first_error(old_conf)
    check("invalid credentials with SASL mechanism SCRAM-SHA-512" in sasl_error_text(e), e.str())
    log(f"old password refused (confluent): {sasl_error_text(e)}")

    if mode == "passwd":
        check(kp_try_login(kp_conf(bootstrap, ca, "alice", NEW_PW)) is None, "new password refused")
        new_results = []
        p = Producer({**ck_conf(bootstrap, ca, "alice", NEW_PW), "acks": "all"})
        p.produce(topic, key=b"new", value=b"with the new password",
                  on_delivery=lambda err, msg: new_results.append(err))
        p.flush(60)
        check(new_results == [None], f"produce with the new password: {new_results}")
        log("new password: login and produce work")
    else:
        e = kp_login_error(kp_conf(bootstrap, ca, "alice", NEW_PW), Errors.SaslAuthenticationFailedError)
        check(e.errno == 58, f"errno {e.errno}")

    # The old producers' next records are not delivered (both wait out
    # their delivery timeouts at the same time).
    kp_future = kp_old.send(topic, key=b"kp-after", value=b"after")
    ck_results.clear()
    ck_old.produce(topic, key=b"ck-after", value=b"after",
                   on_delivery=lambda err, msg: ck_results.append(err))
    ck_old.flush(60)
    check(len(ck_results) == 1 and ck_results[0] is not None,
          f"old confluent producer delivered after {mode}: {ck_results}")
    auth = [e for e in ck_errors if e.code() == KafkaError._AUTHENTICATION]
    check(auth, f"old confluent producer saw no authentication error: {[e.str() for e in ck_errors]}")
    log(f"old confluent producer: record failed with {ck_results[0].name()}; reconnect: {sasl_error_text(auth[0])}")
    try:
        md = kp_future.get(timeout=60)
        fail(f"old kafka-python producer delivered after {mode}: {md}")
    except Errors.KafkaError as e:
        log(f"old kafka-python producer: record failed with {type(e).__name__}: {e}")
    kp_old.close(timeout=5)

    want = BEFORE + (1 if mode == "passwd" else 0)
    marks = high_watermarks(admin_conf, topic, 1)
    check(marks == [want], f"high watermark {marks}, expected {want}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
