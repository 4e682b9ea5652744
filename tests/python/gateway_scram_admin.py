"""SCRAM credential and ACL administration served at the gateway's edge
(confluent-kafka AdminClient through the gateway).

- as the gateway's super user `admin`: alter_user_scram_credentials
  creates `dora` (SCRAM-SHA-512, 4096 iterations); describe shows her;
- dora logs in through the gateway and produces/consumes 20 records of
  gw-dora (created by admin through the gateway);
- alice (no super user) may not create users: CLUSTER_AUTHORIZATION_FAILED;
- as admin: create_acls for User:dora on topic gw-dora-acl; describe_acls
  shows it.

The Rust side then checks where these landed: `portcullis user list` of
the gateway shows dora, the upstream's credential store does not; the
gateway's ACL file holds the new rule, the upstream's does not.

RESULT {"user": "dora", "acl_topic": "gw-dora-acl"}
"""

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, ResourcePatternType, ResourceType,
                                   ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialUpsertion)

from gateway_common import (CLUSTER_AUTHORIZATION_FAILED, OP_TIMEOUT, check, ck_conf,
                            create_topics, fail, kafka_error, load_env, log, produce, read_all,
                            result)

env = load_env()
DORA_PW = "dora-Gw-Secret-7"
ITERATIONS = 4096
admin = AdminClient(ck_conf(env, "admin"))


def alter(client, alterations):
    out = {}
    for user, fut in client.alter_user_scram_credentials(alterations,
                                                         request_timeout=OP_TIMEOUT).items():
        try:
            fut.result(timeout=OP_TIMEOUT)
            out[user] = ("ok",)
        except KafkaException as e:
            err = kafka_error(e)
            out[user] = ("error", err.code(), err.str())
    return out


def upsert(user, pw):
    return UserScramCredentialUpsertion(
        user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS), pw.encode())


res = alter(admin, [upsert("dora", DORA_PW)])
check(res == {"dora": ("ok",)}, f"upsert dora as admin through the gateway: {res}")
d = admin.describe_user_scram_credentials(["dora"], request_timeout=OP_TIMEOUT)["dora"].result(
    timeout=OP_TIMEOUT)
infos = [(i.mechanism, i.iterations) for i in d.scram_credential_infos]
check(infos == [(ScramMechanism.SCRAM_SHA_512, ITERATIONS)], f"describe dora: {infos}")
log(f"dora created through the gateway: {infos}")

# dora is a working gateway login (the API writes through to the store;
# allow the store a moment to be in force).
dora = ck_conf(env, "dora", pw=DORA_PW)
deadline = time.monotonic() + OP_TIMEOUT
while True:
    try:
        AdminClient(dict(dora)).list_topics(timeout=10)
        break
    except KafkaException as e:
        check(time.monotonic() < deadline, f"dora cannot log in through the gateway: {e}")
        time.sleep(0.5)
create_topics(ck_conf(env, "admin"), ["gw-dora"])
produce(dora, "gw-dora", range(20), 1)
values, err = read_all(dora, "gw-dora", 1, 20)
check(err is None and len(values) == 20, f"dora read back {len(values)} records: {err}")
log("dora produced and consumed 20 records through the gateway")

# alice is no super user.
res = alter(AdminClient(ck_conf(env, "alice")), [upsert("eve", "eve-pw-123")])
check(res["eve"][0] == "error" and res["eve"][1] == CLUSTER_AUTHORIZATION_FAILED,
      f"upsert eve as alice: expected {CLUSTER_AUTHORIZATION_FAILED}, got {res['eve']}")
log(f"upsert eve as alice: {res['eve']}")

# ACL admin at the edge.
binding = AclBinding(ResourceType.TOPIC, "gw-dora-acl", ResourcePatternType.LITERAL, "User:dora",
                     "*", AclOperation.READ, AclPermissionType.ALLOW)
for b, fut in admin.create_acls([binding], request_timeout=OP_TIMEOUT).items():
    try:
        fut.result(timeout=OP_TIMEOUT)
    except KafkaException as e:
        fail(f"create_acls {b} through the gateway: {e}")
flt = AclBindingFilter(ResourceType.TOPIC, "gw-dora-acl", ResourcePatternType.ANY, None, None,
                       AclOperation.ANY, AclPermissionType.ANY)
got = admin.describe_acls(flt, request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
check(any(b.principal == "User:dora" and b.operation == AclOperation.READ for b in got),
      f"describe_acls gw-dora-acl through the gateway: {got}")
log(f"create_acls/describe_acls through the gateway: {got}")

result(user="dora", acl_topic="gw-dora-acl")
log("ALL OK")
