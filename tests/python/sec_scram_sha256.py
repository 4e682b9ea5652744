"""SCRAM-SHA-256 beside SCRAM-SHA-512, as confluent-kafka (librdkafka) and
kafka-python see it (issue #15 item 4). Driven by tests/scram_sha256.rs,
against embedded Portcullis and against a Portcullis gateway.

Usage: sec_scram_sha256.py PHASE BOOTSTRAP CA_FILE ADMIN_PASSWORD

Users made with `portcullis user add` before the run, each with the
password `<name>-Sha-Secret-1`: `both` (no --mechanism: both mechanisms),
`only512` (--mechanism SCRAM-SHA-512), `only256` (--mechanism
SCRAM-SHA-256) and `alice` (no super user).

  both:       both log in with either mechanism and produce/consume with
              SCRAM-SHA-256; a user lacking the mechanism asked for, an
              unknown user and a wrong password are refused alike
              (SASL_AUTHENTICATION_FAILED, 58, one message naming the
              mechanism); describe lists each mechanism with its
              iterations; admin upserts a SCRAM-SHA-256 credential for
              carol, who then logs in with it (and not with SCRAM-SHA-512);
              alice's upsert and delete get CLUSTER_AUTHORIZATION_FAILED
              (31); admin deletes both's SCRAM-SHA-256 credential, after
              which only SCRAM-SHA-512 works for both.
  sha512only: the broker has `sasl.mechanisms: [SCRAM-SHA-512]`: a
              SCRAM-SHA-256 handshake gets UNSUPPORTED_SASL_MECHANISM (33)
              listing SCRAM-SHA-512; an upsert of a SCRAM-SHA-256 credential
              too; SCRAM-SHA-512 works.
"""

import sys

import kafka.errors as Errors
from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

from sec_common import (OP_TIMEOUT, check, ck_conf, ck_first_error, consume_and_verify, create_topic,
                        fail, kp_conf, kp_deliver_data_before_eof, kp_login_error, kp_try_login, log,
                        produce_records, sasl_error_text, wait_until)

SHA256, SHA512 = "SCRAM-SHA-256", "SCRAM-SHA-512"
KIND = {SHA256: ScramMechanism.SCRAM_SHA_256, SHA512: ScramMechanism.SCRAM_SHA_512}
CLUSTER_AUTHORIZATION_FAILED = 31
UNSUPPORTED_SASL_MECHANISM = 33
SASL_AUTHENTICATION_FAILED = 58
CLI_ITERATIONS = 8192  # `portcullis user add`'s default


def pw(user):
    return f"{user}-Sha-Secret-1"


def bad_credentials(mechanism):
    return ("Authentication failed during authentication due to invalid credentials "
            f"with SASL mechanism {mechanism}")


class Env:
    def __init__(self, bootstrap, ca, admin_pw):
        self.bootstrap, self.ca, self.admin_pw = bootstrap, ca, admin_pw

    def ck(self, user, mechanism, password=None):
        password = password if password is not None else (
            self.admin_pw if user == "admin" else pw(user))
        return ck_conf(self.bootstrap, self.ca, user, password, mechanism=mechanism)

    def kp(self, user, mechanism, password=None):
        return kp_conf(self.bootstrap, self.ca, user, password or pw(user), mechanism=mechanism)

    def admin(self, user="admin", mechanism=SHA512):
        return AdminClient(self.ck(user, mechanism))


def logs_in(env, user, mechanism):
    """Both clients log in (metadata with confluent-kafka, a connection with
    kafka-python)."""
    md = AdminClient(env.ck(user, mechanism)).list_topics(timeout=OP_TIMEOUT)
    check(md.brokers, f"{user}/{mechanism}: no brokers in metadata")
    e = kp_try_login(env.kp(user, mechanism))
    check(e is None, f"kafka-python {user}/{mechanism}: {e!r}")
    log(f"{user} logs in with {mechanism} (confluent-kafka, kafka-python)")


def refused(env, user, mechanism, password=None):
    """A refused login, as both clients see it: (confluent text, kafka-python text)."""
    e = ck_first_error(env.ck(user, mechanism, password))
    text = sasl_error_text(e)
    check(text == bad_credentials(mechanism),
          f"confluent {user}/{mechanism}: unexpected error {e.str()!r}")
    k = kp_login_error(env.kp(user, mechanism, password), Errors.SaslAuthenticationFailedError)
    check(k.errno == SASL_AUTHENTICATION_FAILED, f"kafka-python {user}/{mechanism}: errno {k.errno}")
    check(bad_credentials(mechanism) in str(k), f"kafka-python {user}/{mechanism}: {k}")
    return text, str(k)


def refused_alike(env, cases, what):
    """Every (user, mechanism, password) in `cases` is refused with exactly
    what an unknown user gets with the same mechanism."""
    mechanisms = {m for _, m, _ in cases}
    check(len(mechanisms) == 1, "one mechanism per comparison")
    mechanism = mechanisms.pop()
    unknown = refused(env, "ghost-nobody", mechanism, "whatever")
    for user, m, password in cases:
        got = refused(env, user, m, password)
        check(got == unknown, f"{what}: {user}/{m} refused with {got}, an unknown user with {unknown}")
        log(f"{user}/{m} ({what}): refused exactly as an unknown user: {got[0]!r}")


def describe(admin, users):
    out = {}
    for user, fut in admin.describe_user_scram_credentials(users, request_timeout=OP_TIMEOUT).items():
        try:
            d = fut.result(timeout=OP_TIMEOUT)
            out[user] = ("ok", sorted((i.mechanism, i.iterations) for i in d.scram_credential_infos))
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


def upsert(user, mechanism, iterations=4096):
    return UserScramCredentialUpsertion(user, ScramCredentialInfo(KIND[mechanism], iterations),
                                        pw(user).encode())


def expect_error(what, got, code):
    check(got[0] == "error" and got[1] == code, f"{what}: expected error {code}, got {got}")
    log(f"{what}: error {got[1]} ({got[2]})")


def phase_both(env):
    # Logins with either mechanism, as far as the user has a credential.
    for m in (SHA256, SHA512):
        logs_in(env, "both", m)
    logs_in(env, "only512", SHA512)
    logs_in(env, "only256", SHA256)

    # Data with SCRAM-SHA-256.
    topic = "sha256-data"
    create_topic(env.ck("admin", SHA512), topic, 2)
    conf = env.ck("both", SHA256)
    reports = produce_records(conf, topic, 200, 2, acks="all")
    consume_and_verify(conf, topic, 200, 2, reports)
    log("both produced and consumed 200 records over SCRAM-SHA-256")

    # A user without the mechanism asked for, and a wrong password, are
    # refused with what an unknown user gets.
    refused_alike(env, [("only512", SHA256, pw("only512")),
                        ("both", SHA256, "wrong-password"),
                        ("only256", SHA256, "wrong-password")], "SCRAM-SHA-256")
    refused_alike(env, [("only256", SHA512, pw("only256")),
                        ("both", SHA512, "wrong-password")], "SCRAM-SHA-512")

    admin = env.admin()
    got = describe(admin, ["both", "only512", "only256"])
    want = {
        "both": ("ok", sorted([(KIND[SHA256], CLI_ITERATIONS), (KIND[SHA512], CLI_ITERATIONS)])),
        "only512": ("ok", [(KIND[SHA512], CLI_ITERATIONS)]),
        "only256": ("ok", [(KIND[SHA256], CLI_ITERATIONS)]),
    }
    check(got == want, f"describe: {got}")
    log(f"describe lists each mechanism: {got}")

    # admin (the super user, logged in with SCRAM-SHA-256 this time) stores
    # a SCRAM-SHA-256 credential for carol, who then logs in with it.
    admin256 = env.admin(mechanism=SHA256)
    res = alter(admin256, [upsert("carol", SHA256, 4096)])
    check(res == {"carol": ("ok",)}, f"upsert carol SCRAM-SHA-256 as admin: {res}")
    got = describe(admin256, ["carol"])["carol"]
    check(got == ("ok", [(KIND[SHA256], 4096)]), f"describe carol: {got}")
    # The store is written before the answer; allow the client's view a
    # moment all the same.
    wait_until("carol's SCRAM-SHA-256 login", OP_TIMEOUT,
               lambda: kp_try_login(env.kp("carol", SHA256)) is None, interval=0.5)
    logs_in(env, "carol", SHA256)
    conf = env.ck("carol", SHA256)
    reports = produce_records(conf, topic, 20, 2, acks="all")
    log("carol (upserted over AlterUserScramCredentials) produced 20 records over SCRAM-SHA-256")
    refused_alike(env, [("carol", SHA512, pw("carol"))], "SCRAM-SHA-512")

    # Both mechanisms for one user in one request: one result for the user.
    res = alter(admin, [upsert("erin", SHA256, 4096), upsert("erin", SHA512, 5000)])
    check(res == {"erin": ("ok",)}, f"upsert erin, both mechanisms: {res}")
    got = describe(admin, ["erin"])["erin"]
    check(got == ("ok", sorted([(KIND[SHA256], 4096), (KIND[SHA512], 5000)])), f"describe erin: {got}")
    for m in (SHA256, SHA512):
        logs_in(env, "erin", m)

    # alice is no super user: refused, and nothing changes.
    alice = env.admin("alice", SHA256)
    res = alter(alice, [upsert("dave", SHA256),
                        UserScramCredentialDeletion("both", ScramMechanism.SCRAM_SHA_256)])
    expect_error("upsert dave SCRAM-SHA-256 as alice", res["dave"], CLUSTER_AUTHORIZATION_FAILED)
    expect_error("delete both's SCRAM-SHA-256 as alice", res["both"], CLUSTER_AUTHORIZATION_FAILED)
    check(describe(admin, ["dave"])["dave"][0] == "error", "alice's upsert of dave landed")
    check(describe(admin, ["both"])["both"] == want["both"], "alice's delete landed")

    # admin deletes both's SCRAM-SHA-256 credential: SCRAM-SHA-512 stays.
    res = alter(admin, [UserScramCredentialDeletion("both", ScramMechanism.SCRAM_SHA_256)])
    check(res == {"both": ("ok",)}, f"delete both's SCRAM-SHA-256 as admin: {res}")
    got = describe(admin, ["both"])["both"]
    check(got == ("ok", [(KIND[SHA512], CLI_ITERATIONS)]), f"describe both after delete: {got}")
    refused_alike(env, [("both", SHA256, pw("both"))], "SCRAM-SHA-256")
    logs_in(env, "both", SHA512)


def phase_sha512only(env):
    for user in ("both", "ghost-nobody"):
        e = ck_first_error(env.ck(user, SHA256))
        log(f"confluent {user}/{SHA256}: {e.name()}: {e.str()}")
        # librdkafka's text for Kafka error 33 in the SaslHandshake response.
        check(f"SASL {SHA256} mechanism handshake failed: Broker: Unsupported SASL mechanism"
              in e.str(), f"confluent {user}: {e.str()!r}")
        tail = e.str().split("Unsupported SASL mechanism", 1)[-1]
        check(SHA512 in tail and SHA256 not in tail,
              f"the enabled list names SCRAM-SHA-512 only: {e.str()!r}")
        k = kp_login_error(env.kp(user, SHA256), Errors.UnsupportedSaslMechanismError)
        check(k.errno == UNSUPPORTED_SASL_MECHANISM, f"kafka-python {user}: errno {k.errno}")
        log(f"kafka-python {user}/{SHA256}: errno {k.errno}")
    logs_in(env, "both", SHA512)

    admin = env.admin()
    res = alter(admin, [upsert("carol", SHA256)])
    expect_error("upsert carol SCRAM-SHA-256 with SCRAM-SHA-256 disabled", res["carol"],
                 UNSUPPORTED_SASL_MECHANISM)
    res = alter(admin, [upsert("carol", SHA512)])
    check(res == {"carol": ("ok",)}, f"upsert carol SCRAM-SHA-512: {res}")
    got = describe(admin, ["carol", "both"])
    check(got["carol"] == ("ok", [(KIND[SHA512], 4096)]), f"describe carol: {got}")
    # `user add` without --mechanism follows sasl.mechanisms.
    check(got["both"] == ("ok", [(KIND[SHA512], CLI_ITERATIONS)]), f"describe both: {got}")


def main():
    phase, bootstrap, ca, admin_pw = sys.argv[1:5]
    kp_deliver_data_before_eof()
    env = Env(bootstrap, ca, admin_pw)
    if phase == "both":
        phase_both(env)
    elif phase == "sha512only":
        phase_sha512only(env)
    else:
        fail(f"unknown phase {phase}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
