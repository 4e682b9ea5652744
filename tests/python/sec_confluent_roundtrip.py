"""confluent-kafka (librdkafka) over SASL_SSL + SCRAM-SHA-512: create a
topic, produce N records with acks=all, read them back byte for byte.

Usage: sec_confluent_roundtrip.py BOOTSTRAP CA_FILE USER PASSWORD TOPIC N
"""

import sys
import time

from sec_common import check, ck_conf, consume_and_verify, create_topic, high_watermarks, log, produce_records

PARTITIONS = 2


def main():
    bootstrap, ca, user, password, topic, n = sys.argv[1:7]
    n = int(n)
    conf = ck_conf(bootstrap, ca, user, password)
    t0 = time.monotonic()
    create_topic(conf, topic, PARTITIONS)
    reports = produce_records(conf, topic, n, PARTITIONS, acks="all")
    t1 = time.monotonic()
    log(f"produced {n} records with acks=all in {t1 - t0:.1f}s")
    consume_and_verify(conf, topic, n, PARTITIONS, reports)
    log(f"consumed and verified {n} records in {time.monotonic() - t1:.1f}s")
    marks = high_watermarks(conf, topic, PARTITIONS)
    check(sum(marks) == n, f"high watermarks {marks} do not add up to {n}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
