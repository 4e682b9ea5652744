"""SCRAM credential administration through the Kafka APIs (KIP-554) with
confluent-kafka's AdminClient.

Usage: sec_admin_credentials.py PHASE BOOTSTRAP CA_FILE ADMIN_PASSWORD ALICE_PASSWORD ITERATIONS

  upsert: as the super user `admin`, create `bob` (ITERATIONS); describe
          shows SCRAM-SHA-512 with ITERATIONS; bob logs in and produces;
          alice (not a super user) gets CLUSTER_AUTHORIZATION_FAILED for
          describe, upsert and delete; describing a missing user gives
          RESOURCE_NOT_FOUND.
  cli:    `dave`, added with the CLI at ITERATIONS, shows up in describe
          (SCRAM-SHA-256 and SCRAM-SHA-512) once the broker has reloaded
          the store.
  delete: as admin, delete bob; describe gives RESOURCE_NOT_FOUND; bob's
          new logins fail with SASL_AUTHENTICATION_FAILED (58).
The test compares `portcullis user list` with this after each phase.
"""

import sys
import time

import kafka.errors as Errors
from kafka.admin import KafkaAdminClient
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from sec_common import (OP_TIMEOUT, check, ck_conf, ck_first_error, consume_and_verify, create_topic,
                        fail, kp_conf, kp_deliver_data_before_eof, kp_login_error, log, produce_records, sasl_error_text)

BOB_PASSWORD = "bob-secret-1"
TOPIC = "bob-topic"
CLUSTER_AUTHORIZATION_FAILED = 31
RESOURCE_NOT_FOUND = 91


def describe(admin, users):
    """{user: ("ok", [(mechanism, iterations)]) or ("error", code, message)}"""
    out = {}
    for user, fut in admin.describe_user_scram_credentials(users, request_timeout=OP_TIMEOUT).items():
        try:
            d = fut.result(timeout=OP_TIMEOUT)
            check(d.user == user, f"describe {user}: answer is about {d.user}")
            out[user] = ("ok", [(i.mechanism, i.iterations) for i in d.scram_credential_infos])
        except KafkaException as e:
            err = e.args[0]
            out[user] = ("error", err.code(), err.str())
    return out


def alter(admin, alterations):
    out = {}
    for user, fut in admin.alter_user_scram_credentials(alterations, request_timeout=OP_TIMEOUT).items():
        try:
            fut.result(timeout=OP_TIMEOUT)
            out[user] = ("ok",)
        except KafkaException as e:
            err = e.args[0]
            out[user] = ("error", err.code(), err.str())
    return out


def expect_error(what, result, code):
    check(result[0] == "error" and result[1] == code, f"{what}: expected error {code}, got {result}")
    log(f"{what}: error {result[1]} ({result[2]})")


def main():
    phase, bootstrap, ca, admin_pw, alice_pw, iterations = sys.argv[1:7]
    iterations = int(iterations)
    admin = AdminClient(ck_conf(bootstrap, ca, "admin", admin_pw))
    alice = AdminClient(ck_conf(bootstrap, ca, "alice", alice_pw))
    kp_deliver_data_before_eof()
    bob_conf = ck_conf(bootstrap, ca, "bob", BOB_PASSWORD)

    if phase == "upsert":
        # bob does not exist yet.
        expect_error("describe bob before upsert", describe(admin, ["bob"])["bob"], RESOURCE_NOT_FOUND)
        res = alter(admin, [UserScramCredentialUpsertion(
            "bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, iterations), BOB_PASSWORD.encode())])
        check(res == {"bob": ("ok",)}, f"upsert bob as admin: {res}")
        got = describe(admin, ["bob", "nobody"])
        check(got["bob"] == ("ok", [(ScramMechanism.SCRAM_SHA_512, iterations)]), f"describe bob: {got['bob']}")
        log(f"describe bob: SCRAM-SHA-512, iterations={iterations}")
        expect_error("describe nobody", got["nobody"], RESOURCE_NOT_FOUND)

        # bob is a working login at once (the API writes through to the store).
        topic = f"{TOPIC}-{iterations}"
        create_topic(ck_conf(bootstrap, ca, "admin", admin_pw), topic, 1)
        reports = produce_records(bob_conf, topic, 50, 1, acks="all")
        consume_and_verify(bob_conf, topic, 50, 1, reports)
        log("bob produced and consumed 50 records")

        # alice is no super user. Describe goes through kafka-python (the
        # librdkafka bundled with confluent-kafka 2.16 frees memory it does
        # not own whenever a DescribeUserScramCredentials response carries a
        # top-level error code, so named users get the refusal per user and
        # only describe-all gets the top-level error, as Kafka sends it;
        # sec_describe_denied.py checks confluent-kafka's side).
        kp_alice = KafkaAdminClient(**kp_conf(bootstrap, ca, "alice", alice_pw))
        got = kp_alice.describe_user_scram_credentials(["bob"])
        check(set(got) == {"bob"}, f"describe ['bob'] as alice answered {got}")
        check(not got["bob"].get("credential_infos"), f"bob's credentials shown to alice: {got}")
        check("authorization" in str(got["bob"].get("error", "")).lower(),
              f"describe ['bob'] as alice: no refusal in {got}")
        log(f"describe ['bob'] as alice (kafka-python): {got['bob']['error']}")
        try:
            got = kp_alice.describe_user_scram_credentials(None)
            fail(f"describe all as alice answered {got}")
        except Errors.ClusterAuthorizationFailedError as e:
            check(e.errno == CLUSTER_AUTHORIZATION_FAILED, f"errno {e.errno}")
            log(f"describe all as alice (kafka-python): errno {e.errno} ({e})")
        kp_alice.close()
        res = alter(alice, [
            UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                         b"carol-pw"),
            UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512)])
        expect_error("upsert carol as alice", res["carol"], CLUSTER_AUTHORIZATION_FAILED)
        expect_error("delete bob as alice", res["bob"], CLUSTER_AUTHORIZATION_FAILED)
        check(describe(admin, ["bob"])["bob"][0] == "ok", "bob survived alice's delete")
        expect_error("describe carol", describe(admin, ["carol"])["carol"], RESOURCE_NOT_FOUND)

    elif phase == "cli":
        deadline = time.monotonic() + 60
        while True:
            got = describe(admin, ["dave"])["dave"]
            if got[0] == "ok":
                break
            check(got[1] == RESOURCE_NOT_FOUND, f"describe dave: {got}")
            check(time.monotonic() < deadline, "dave (added with the CLI) never showed up in describe")
            time.sleep(0.2)
        # `portcullis user add` makes both mechanisms' credentials by default.
        check(got == ("ok", [(ScramMechanism.SCRAM_SHA_256, iterations),
                             (ScramMechanism.SCRAM_SHA_512, iterations)]), f"describe dave: {got}")
        log(f"describe dave (CLI user): SCRAM-SHA-256 and SCRAM-SHA-512, iterations={iterations}")

    elif phase == "delete":
        res = alter(admin, [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512)])
        check(res == {"bob": ("ok",)}, f"delete bob as admin: {res}")
        expect_error("describe bob after delete", describe(admin, ["bob"])["bob"], RESOURCE_NOT_FOUND)
        res = alter(admin, [UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_512)])
        expect_error("delete bob again", res["bob"], RESOURCE_NOT_FOUND)
        e = ck_first_error(bob_conf, want_codes=(KafkaError._AUTHENTICATION,))
        check("Authentication failed during authentication due to invalid credentials" in sasl_error_text(e),
              f"bob after delete (confluent): {e.str()}")
        log(f"bob after delete (confluent): {sasl_error_text(e)}")
        e = kp_login_error(kp_conf(bootstrap, ca, "bob", BOB_PASSWORD), Errors.SaslAuthenticationFailedError)
        check(e.errno == 58, f"errno {e.errno}")
        log(f"bob after delete (kafka-python): errno {e.errno}")
    else:
        fail(f"unknown phase {phase}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
