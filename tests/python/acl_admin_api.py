"""Kafka's ACL APIs (CreateAcls, DescribeAcls, DeleteAcls) write through to
the ACL file and take effect at once.

kafka-python's KafkaAdminClient as admin: create two literal rules for
gina (one host-restricted), find them with describe_acls, see their lines
in the file and gina reading and writing; a request mixing valid and
invalid bindings creates the valid one and answers INVALID_REQUEST (42) for
the others; delete_acls removes them from the file and from force. gina,
not a super user, gets CLUSTER_AUTHORIZATION_FAILED (31) from all three
APIs and changes nothing.

confluent-kafka's AdminClient: PREFIXED bindings for hank, a MATCH filter
that finds the prefixed and wildcard rules applying to team-x (and not a
literal rule for another topic, nor a prefix longer than the name), and a
MATCH delete that removes exactly those. hank gets 31 from CreateAcls and
DeleteAcls; librdkafka drops DescribeAcls' error code, so there the check
is that hank sees no bindings, and kafka-python shows the 31.

A rule present before the test and the file's comment header survive
every rewrite.
"""

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   ResourcePatternType, ResourceType)
import kafka.errors as Errors
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType,
                         KafkaAdminClient, ResourcePattern, ResourcePatternFilter)
from kafka.admin import ResourceType as KRT

from acl_common import (CLUSTER_AUTHORIZATION_FAILED, OP_TIMEOUT, TOPIC_AUTHORIZATION_FAILED, Prod,
                        admin_client, check, consume, create_topics, expect_code, kp_conf,
                        kp_expect, kp_produce, load_env, log, produce_error, read_acls,
                        rule_lines)

HEADER = "# ACLs of an acl_clients test"
OPS_RULE = '{allow: "User:ops", operations: [describe], cluster: "kafka-cluster"}'


def acl_key(a):
    """A kafka-python ACL as a comparable tuple."""
    rp = a.resource_pattern
    return (int(rp.resource_type), rp.resource_name, int(rp.pattern_type), a.principal, a.host,
            int(a.operation), int(a.permission_type))


def binding_key(b):
    return (b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
            b.permission_type)


def check_file(env, want_rules, what):
    text = read_acls(env)
    check(text.startswith(HEADER), f"{what}: the header is gone:\n{text}")
    got = rule_lines(text)
    check(sorted(got) == sorted(want_rules), f"{what}: the file's rules are\n{text}\nwanted {want_rules}")
    return text


def kafka_python_part(env):
    admin = KafkaAdminClient(**kp_conf(env, "admin"), request_timeout_ms=int(OP_TIMEOUT * 1000))
    gina_admin = KafkaAdminClient(**kp_conf(env, "gina"), request_timeout_ms=int(OP_TIMEOUT * 1000))
    try:
        audit = ResourcePattern(KRT.TOPIC, "audit", ACLResourcePatternType.LITERAL)
        created = [
            ACL("User:gina", "*", ACLOperation.READ, ACLPermissionType.ALLOW, audit),
            ACL("User:gina", "127.0.0.1", ACLOperation.WRITE, ACLPermissionType.ALLOW, audit),
        ]
        lines = ['{allow: "User:gina", operations: [read], topic: "audit"}',
                 '{allow: "User:gina", operations: [write], topic: "audit", hosts: ["127.0.0.1"]}']
        r = admin.create_acls(created)
        check(r["failed"] == [] and r["succeeded"] == created, f"create_acls: {r}")
        check_file(env, [OPS_RULE] + lines, "after create_acls")
        log("kafka-python: create_acls wrote one line per rule")

        gina_filter = ACLFilter("User:gina", None, ACLOperation.ANY, ACLPermissionType.ANY,
                                ResourcePatternFilter(KRT.TOPIC, "audit", ACLResourcePatternType.LITERAL))
        found, err = admin.describe_acls(gina_filter)
        check(err is Errors.NoError, f"describe_acls: {err}")
        check(sorted(map(acl_key, found)) == sorted(map(acl_key, created)),
              f"describe_acls found {found}")
        everything = ACLFilter(None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                               ResourcePatternFilter(KRT.ANY, None, ACLResourcePatternType.ANY))
        found, _ = admin.describe_acls(everything)
        check(len(found) == 3, f"describe_acls(any) found {found}")
        log("kafka-python: describe_acls returns them")

        # In force at once: the API answers after the new set is installed.
        md = kp_produce(env, "gina", "audit", value=b"entry")
        check(md.offset == 0, f"gina's record at offset {md.offset}")
        values, e = consume(env, "gina", "audit", want=1)
        check(e is None and values == [b"entry"], f"gina reading audit: {values!r} {e}")
        log("gina writes and reads audit right after create_acls")

        # Not a super user: 31 from all three APIs, and nothing changes.
        before = read_acls(env)
        kp_expect(Errors.ClusterAuthorizationFailedError, CLUSTER_AUTHORIZATION_FAILED,
                  "kafka-python: gina's describe_acls", lambda: gina_admin.describe_acls(everything))
        r = gina_admin.create_acls([ACL("User:gina", "*", ACLOperation.ALL, ACLPermissionType.ALLOW,
                                        ResourcePattern(KRT.TOPIC, "*"))])
        check(r["succeeded"] == [] and r["failed"] == [Errors.ClusterAuthorizationFailedError],
              f"gina's create_acls: {r}")
        res = gina_admin.delete_acls([gina_filter])
        check(len(res) == 1 and res[0][1] == [] and res[0][2] is Errors.ClusterAuthorizationFailedError,
              f"gina's delete_acls: {res}")
        check(read_acls(env) == before, "gina's refused requests changed the file")
        log("kafka-python: gina gets 31 from describe/create/delete_acls")

        # Valid and invalid bindings in one request: each answered alone.
        extra = ResourcePattern(KRT.TOPIC, "audit-extra", ACLResourcePatternType.LITERAL)
        mixed = [
            ACL("gina", "*", ACLOperation.READ, ACLPermissionType.ALLOW, extra),
            ACL("User:gina", "*", ACLOperation.DESCRIBE, ACLPermissionType.ALLOW, extra),
            ACL("User:gina", "not-a-host", ACLOperation.READ, ACLPermissionType.ALLOW, extra),
            ACL("User:gina", "*", ACLOperation.READ, ACLPermissionType.ALLOW,
                ResourcePattern(KRT.CLUSTER, "not-the-cluster")),
        ]
        r = admin.create_acls(mixed)
        check(r["succeeded"] == [mixed[1]], f"mixed create_acls succeeded: {r['succeeded']}")
        check(r["failed"] == [Errors.InvalidRequestError] * 3, f"mixed create_acls failed: {r['failed']}")
        extra_line = '{allow: "User:gina", operations: [describe], topic: "audit-extra"}'
        check_file(env, [OPS_RULE, extra_line] + lines, "after the mixed create_acls")
        log("kafka-python: a mixed request created the valid binding, 42 for the three invalid ones")

        res = admin.delete_acls([gina_filter])
        check(len(res) == 1 and res[0][2] is Errors.NoError, f"delete_acls: {res}")
        check(sorted(map(acl_key, res[0][1])) == sorted(map(acl_key, created)),
              f"delete_acls removed {res[0][1]}")
        check_file(env, [OPS_RULE, extra_line], "after delete_acls")
        found, _ = admin.describe_acls(gina_filter)
        check(found == [], f"describe_acls after delete: {found}")
        kp_expect(Errors.TopicAuthorizationFailedError, TOPIC_AUTHORIZATION_FAILED,
                  "kafka-python: gina producing to audit after delete_acls",
                  lambda: kp_produce(env, "gina", "audit"))
        log("kafka-python: delete_acls removed the lines and gina's access")
    finally:
        admin.close()
        gina_admin.close()


def confluent_part(env):
    admin = admin_client(env)
    hank = admin_client(env, "hank")

    def b(name, pattern, op):
        return AclBinding(ResourceType.TOPIC, name, pattern, "User:hank", "*", op,
                          AclPermissionType.ALLOW)

    applying = [
        b("team-", ResourcePatternType.PREFIXED, AclOperation.WRITE),
        b("team-", ResourcePatternType.PREFIXED, AclOperation.READ),
        b("*", ResourcePatternType.LITERAL, AclOperation.DESCRIBE),
    ]
    others = [
        b("team-y", ResourcePatternType.LITERAL, AclOperation.READ),
        b("team-x-long", ResourcePatternType.PREFIXED, AclOperation.WRITE),
    ]
    for binding, fut in admin.create_acls(applying + others, request_timeout=OP_TIMEOUT).items():
        check(fut.result(timeout=OP_TIMEOUT) is None, f"create_acls {binding}")
    text = read_acls(env)
    for line in ['{allow: "User:hank", operations: [write], topic_prefix: "team-"}',
                 '{allow: "User:hank", operations: [read], topic_prefix: "team-"}',
                 '{allow: "User:hank", operations: [describe], topic: "*"}',
                 '{allow: "User:hank", operations: [write], topic_prefix: "team-x-long"}']:
        check(line in rule_lines(text), f"the file lacks {line}:\n{text}")
    log("confluent: create_acls wrote the PREFIXED bindings")

    p = Prod(env, "hank")
    p.send_ok("team-x", value=b"hank")
    p.close()
    values, e = consume(env, "hank", "team-x", want=1)
    check(e is None and values == [b"hank"], f"hank reading team-x: {values!r} {e}")

    match = AclBindingFilter(ResourceType.TOPIC, "team-x", ResourcePatternType.MATCH, None, None,
                             AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(match, request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    check(sorted(map(binding_key, found)) == sorted(map(binding_key, applying)),
          f"describe_acls(MATCH team-x) found {found}")
    prefixed = AclBindingFilter(ResourceType.TOPIC, None, ResourcePatternType.PREFIXED, None, None,
                                AclOperation.ANY, AclPermissionType.ANY)
    found = admin.describe_acls(prefixed, request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    check(sorted(map(binding_key, found)) == sorted(map(binding_key, applying[:2] + others[1:])),
          f"describe_acls(PREFIXED) found {found}")
    log("confluent: the MATCH filter finds the prefixed and wildcard rules for team-x, nothing else")

    # hank is no super user.
    before = read_acls(env)
    # librdkafka drops DescribeAcls' top-level error code (its
    # rd_kafka_DescribeAclsResponse_parse returns NO_ERROR with no
    # bindings), so through confluent-kafka a refusal looks like an empty
    # answer: check that nothing leaks, and the 31 itself with kafka-python.
    got = hank.describe_acls(match, request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
    check(got == [], f"confluent: hank's describe_acls returned bindings: {got}")
    hank_kp = KafkaAdminClient(**kp_conf(env, "hank"), request_timeout_ms=int(OP_TIMEOUT * 1000))
    try:
        kp_expect(Errors.ClusterAuthorizationFailedError, CLUSTER_AUTHORIZATION_FAILED,
                  "kafka-python: hank's describe_acls",
                  lambda: hank_kp.describe_acls(ACLFilter(
                      None, None, ACLOperation.ANY, ACLPermissionType.ANY,
                      ResourcePatternFilter(KRT.TOPIC, "team-x", ACLResourcePatternType.MATCH))))
    finally:
        hank_kp.close()
    for binding, fut in hank.create_acls([b("x", ResourcePatternType.LITERAL, AclOperation.ALL)],
                                         request_timeout=OP_TIMEOUT).items():
        try:
            fut.result(timeout=OP_TIMEOUT)
            check(False, "hank's create_acls succeeded")
        except KafkaException as e:
            expect_code(e, CLUSTER_AUTHORIZATION_FAILED, "confluent: hank's create_acls")
    for f, fut in hank.delete_acls([match], request_timeout=OP_TIMEOUT).items():
        try:
            fut.result(timeout=OP_TIMEOUT)
            check(False, "hank's delete_acls succeeded")
        except KafkaException as e:
            expect_code(e, CLUSTER_AUTHORIZATION_FAILED, "confluent: hank's delete_acls")
    check(read_acls(env) == before, "hank's refused requests changed the file")
    log("confluent: hank gets 31 from create/delete_acls and no bindings from describe_acls "
        "(kafka-python shows its 31)")

    hank_match = AclBindingFilter(ResourceType.TOPIC, "team-x", ResourcePatternType.MATCH,
                                  "User:hank", None, AclOperation.ANY, AclPermissionType.ANY)
    (fut,) = admin.delete_acls([hank_match], request_timeout=OP_TIMEOUT).values()
    deleted = fut.result(timeout=OP_TIMEOUT)
    check(sorted(map(binding_key, deleted)) == sorted(map(binding_key, applying)),
          f"delete_acls(MATCH team-x) deleted {deleted}")
    check_file(env, [OPS_RULE, '{allow: "User:gina", operations: [describe], topic: "audit-extra"}',
                     '{allow: "User:hank", operations: [read], topic: "team-y"}',
                     '{allow: "User:hank", operations: [write], topic_prefix: "team-x-long"}'],
               "after the MATCH delete")
    expect_code(produce_error(env, "hank", "team-x"), TOPIC_AUTHORIZATION_FAILED,
                "hank producing to team-x after the delete")
    log("confluent: the MATCH delete removed exactly the three rules applying to team-x")


def main():
    env = load_env()
    create_topics(env, ["audit", "team-x"])
    check_file(env, [OPS_RULE.replace('"kafka-cluster"', "kafka-cluster")], "at start")
    kafka_python_part(env)
    confluent_part(env)
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
