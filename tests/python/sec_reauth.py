"""KIP-368 re-authentication: a producer keeps producing across several
session lifetimes and every record is delivered.

Usage: sec_reauth.py CLIENT BOOTSTRAP CA_FILE USER PASSWORD TOPIC SECONDS

CLIENT confluent: librdkafka re-authenticates before the session lifetime
the broker announced in SaslAuthenticate runs out. CLIENT kafka-python:
kafka-python 3.x does the same (SaslReauthenticator). One record every
~100 ms with acks=all for SECONDS; each must be delivered, and the topic
must then hold exactly those records, in order. The test counts the
broker's "authenticated" log lines per connection.
"""

import sys
import time

from confluent_kafka import Producer

from sec_common import check, ck_conf, consume_and_verify, create_topic, expected_record, kp_conf, log

INTERVAL = 0.1


def main():
    client, bootstrap, ca, user, password, topic, seconds = sys.argv[1:8]
    seconds = float(seconds)
    conf = ck_conf(bootstrap, ca, user, password)
    create_topic(conf, topic, 1)

    results = {}
    errors = []
    sent = 0
    t0 = time.monotonic()
    if client == "confluent":
        p = Producer({**conf, "acks": "all", "enable.idempotence": False, "linger.ms": 0,
                      "message.timeout.ms": 60000, "error_cb": errors.append})

        def report(err, msg):
            results[int(msg.key().decode().split("-", 1)[1])] = err

        while time.monotonic() - t0 < seconds:
            _, key, value, headers = expected_record(sent, 1)
            p.produce(topic, key=key, value=value, headers=headers, partition=0, on_delivery=report)
            sent += 1
            # poll() returns as soon as it served a delivery report: keep
            # serving until the next record is due.
            due = t0 + sent * INTERVAL
            while (left := due - time.monotonic()) > 0:
                p.poll(left)
        check(p.flush(120) == 0, "records undelivered after flush")
    elif client == "kafka-python":
        from kafka import KafkaProducer

        p = KafkaProducer(**kp_conf(bootstrap, ca, user, password), acks="all", enable_idempotence=False,
                          linger_ms=0, request_timeout_ms=30000, delivery_timeout_ms=60000)
        futures = []
        while time.monotonic() - t0 < seconds:
            _, key, value, headers = expected_record(sent, 1)
            futures.append(p.send(topic, key=key, value=value, headers=headers or [], partition=0))
            sent += 1
            time.sleep(max(0.0, t0 + sent * INTERVAL - time.monotonic()))
        p.flush(timeout=120)
        for i, f in enumerate(futures):
            try:
                f.get(timeout=60)
                results[i] = None
            except Exception as e:  # reported below
                results[i] = e
        p.close(timeout=10)
    else:
        check(False, f"unknown client {client}")
    elapsed = time.monotonic() - t0
    failed = {i: str(e) for i, e in results.items() if e is not None}
    check(not failed, f"{len(failed)} records failed, first: {list(failed.items())[:3]}")
    check(len(results) == sent, f"{len(results)} delivery reports for {sent} records")
    log(f"{client}: {sent} records over {elapsed:.1f}s, all delivered; client errors: {[e.str() for e in errors]}")
    consume_and_verify(conf, topic, sent, 1)
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
