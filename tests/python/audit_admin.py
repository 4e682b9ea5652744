"""Admin actions by the super user `admin` over the Kafka admin API, whose
`admin_action` records tests/audit_log.rs checks: create a topic, alter
one of its configs, turn compaction on and off, create a compacted topic,
create an ACL and delete it again."""

from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType,
                                   AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,
                                   NewTopic, ResourcePatternType, ResourceType)

from audit_common import OP_TIMEOUT, check, env_from_argv, log, result, user_conf

TOPIC = "audited"


def main():
    env = env_from_argv()
    admin = AdminClient(user_conf(env, "admin", **{"client.id": "audit-admin"}))

    fut = admin.create_topics([NewTopic(TOPIC, num_partitions=2, replication_factor=1)],
                              operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)[TOPIC]
    fut.result(timeout=OP_TIMEOUT)
    log(f"created {TOPIC}")

    res = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT).values():
        f.result(timeout=OP_TIMEOUT)
    log(f"altered retention.ms of {TOPIC}")

    # Compaction on (APPEND compact to the delete policy), then off (SET
    # delete), then a topic created compacted: each says so in its record.
    for op, value in [(AlterConfigOpType.APPEND, "compact"), (AlterConfigOpType.SET, "delete")]:
        res = ConfigResource(ResourceType.TOPIC, TOPIC, incremental_configs=[
            ConfigEntry("cleanup.policy", value, incremental_operation=op)])
        for f in admin.incremental_alter_configs([res], request_timeout=OP_TIMEOUT).values():
            f.result(timeout=OP_TIMEOUT)
        log(f"cleanup.policy {op} {value} on {TOPIC}")
    fut = admin.create_topics([NewTopic(TOPIC + "-compacted", num_partitions=1, replication_factor=1,
                                        config={"cleanup.policy": "compact"})],
                              operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    fut[TOPIC + "-compacted"].result(timeout=OP_TIMEOUT)
    log(f"created {TOPIC}-compacted")

    binding = AclBinding(ResourceType.TOPIC, TOPIC, ResourcePatternType.LITERAL, "User:carol",
                         "*", AclOperation.READ, AclPermissionType.ALLOW)
    for f in admin.create_acls([binding], request_timeout=OP_TIMEOUT).values():
        check(f.result(timeout=OP_TIMEOUT) is None, "create_acls result")
    log("created an ACL for User:carol")

    flt = AclBindingFilter(ResourceType.TOPIC, TOPIC, ResourcePatternType.LITERAL, "User:carol",
                           "*", AclOperation.READ, AclPermissionType.ALLOW)
    deleted = []
    for f in admin.delete_acls([flt], request_timeout=OP_TIMEOUT).values():
        deleted.extend(f.result(timeout=OP_TIMEOUT))
    check(len(deleted) == 1, f"delete_acls deleted {deleted!r}; expected the one rule")
    log("deleted it again")

    result(topic=TOPIC, acl_principal="User:carol")
    log("ALL OK")


if __name__ == "__main__":
    main()
