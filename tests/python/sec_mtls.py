"""mTLS on an SSL listener with client_auth: required, via confluent-kafka.

Usage: sec_mtls.py PLAINTEXT_ADDR SSL_ADDR CA_FILE CLIENT_CERT CLIENT_KEY TOPIC N

The topic is created over the PLAINTEXT listener; a client without a
certificate gets nothing (no metadata, no produce) from the SSL listener;
the client with the certificate produces N records with acks=all and reads
them back; the PLAINTEXT listener then sees exactly N records.
"""

import sys
import time

from confluent_kafka import KafkaException, Producer

from sec_common import (check, ck_conf, consume_and_verify, create_topic, high_watermarks, log,
                        produce_records)

PARTITIONS = 2
NO_CERT_DEADLINE = 6.0


def main():
    plain, ssl_addr, ca, cert, key, topic, n = sys.argv[1:8]
    n = int(n)
    plain_conf = ck_conf(plain, None, protocol="PLAINTEXT")
    create_topic(plain_conf, topic, PARTITIONS)

    # No client certificate: the TLS handshake is refused, so no metadata
    # arrives within the deadline and a produce is never delivered.
    errors, results = [], []
    no_cert = ck_conf(ssl_addr, ca, protocol="SSL", error_cb=errors.append)
    p = Producer({**no_cert, "message.timeout.ms": 3000})
    t0 = time.monotonic()
    try:
        md = p.list_topics(timeout=NO_CERT_DEADLINE)
        check(False, f"client without a certificate got metadata: {md.brokers}")
    except KafkaException as e:
        log(f"no certificate: no metadata after {time.monotonic() - t0:.1f}s ({e.args[0].name()})")
    p.produce(topic, value=b"must not land", partition=0,
              on_delivery=lambda err, msg: results.append(err))
    p.flush(30)
    check(len(results) == 1 and results[0] is not None, f"produce without certificate: {results}")
    log(f"no certificate: produce failed with {results[0].name()}; client errors: "
        f"{sorted({e.name() for e in errors})}, e.g. {errors[0].str() if errors else '-'}")

    # With alice's certificate: a full round trip.
    with_cert = ck_conf(ssl_addr, ca, protocol="SSL", **{
        "ssl.certificate.location": cert, "ssl.key.location": key})
    t0 = time.monotonic()
    reports = produce_records(with_cert, topic, n, PARTITIONS, acks="all")
    consume_and_verify(with_cert, topic, n, PARTITIONS, reports)
    log(f"with certificate: {n} records produced and verified in {time.monotonic() - t0:.1f}s")

    marks = high_watermarks(plain_conf, topic, PARTITIONS)
    check(sum(marks) == n, f"high watermarks {marks}: expected {n} records in all")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
