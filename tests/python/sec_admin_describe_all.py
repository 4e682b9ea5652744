"""DescribeUserScramCredentials for all users, as confluent-kafka asks for
it: describe_user_scram_credentials() with no list sends an *empty* user
array, which Kafka answers with every user (ScramImage.describe: "If there
are no users listed then get all the users"; ZkAdminManager likewise).

Usage: sec_admin_describe_all.py BOOTSTRAP CA_FILE ADMIN_PASSWORD USER...
Checks that every USER is in the answer, with SCRAM-SHA-256 and SCRAM-SHA-512
(the CLI's default).
"""

import sys

from confluent_kafka.admin import AdminClient, ScramMechanism

from sec_common import OP_TIMEOUT, check, ck_conf, log


def main():
    bootstrap, ca, admin_pw = sys.argv[1:4]
    users = sys.argv[4:]
    admin = AdminClient(ck_conf(bootstrap, ca, "admin", admin_pw))
    got = admin.describe_user_scram_credentials(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    described = {u: [(i.mechanism, i.iterations) for i in d.scram_credential_infos] for u, d in got.items()}
    log(f"describe all: {described}")
    for u in users:
        check(u in described, f"describe all users: {u} missing from {sorted(described)}")
        # Users of `portcullis user add`: both mechanisms by default.
        check(sorted(m for m, _ in described[u]) == [ScramMechanism.SCRAM_SHA_256,
                                                    ScramMechanism.SCRAM_SHA_512],
              f"{u}: {described[u]}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
