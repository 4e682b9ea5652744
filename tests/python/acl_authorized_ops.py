"""Authorized operations (KIP-430) seen by librdkafka's admin API, issue
#15 item 2: computed by the edge from the ACLs in force for the caller.

  - admin (super user): the cluster's 7 operations, a topic's 8 and a
    group's 5 (Kafka 4.x includes DESCRIBE_CONFIGS/ALTER_CONFIGS on groups;
    tests/java_clients.rs checks the same sets against Apache Kafka);
  - alice (read/write on topics, read on group ops-g): READ, WRITE and the
    implied DESCRIBE on the topic, READ and DESCRIBE on the group, nothing
    on the cluster;
  - bob (no rules): describe_topics TOPIC_AUTHORIZATION_FAILED (29),
    describe_consumer_groups GROUP_AUTHORIZATION_FAILED (30).

Without include_authorized_operations nothing is computed (None).

Usage: acl_authorized_ops.py ENV_JSON (see acl_common.py)
"""

from confluent_kafka import Consumer, TopicCollection, TopicPartition
from confluent_kafka.admin import AclOperation

from acl_common import (GROUP_AUTHORIZATION_FAILED, OP_TIMEOUT, TOPIC_AUTHORIZATION_FAILED,
                        admin_client, check, ck_conf, create_topics, expect_code, load_env, log)

TOPIC, GROUP = "ops-t", "ops-g"
O = AclOperation
env = load_env()
create_topics(env, [TOPIC])

# The group exists once someone commits in it.
c = Consumer(ck_conf(env, "admin", **{"group.id": GROUP, "enable.auto.commit": False}))
c.commit(offsets=[TopicPartition(TOPIC, 0, 0)], asynchronous=False)
c.close()


def ops(user):
    """(cluster, topic, group) operations as `user` sees them, each a set,
    or the KafkaException raised."""
    a = admin_client(env, user)

    def get(f):
        try:
            return f()
        except Exception as e:  # noqa: BLE001  (the refusal is the answer)
            return e

    cluster = get(lambda: a.describe_cluster(include_authorized_operations=True,
                                             request_timeout=OP_TIMEOUT)
                  .result(timeout=OP_TIMEOUT).authorized_operations)
    topic = get(lambda: a.describe_topics(TopicCollection([TOPIC]),
                                          include_authorized_operations=True,
                                          request_timeout=OP_TIMEOUT)[TOPIC]
                .result(timeout=OP_TIMEOUT).authorized_operations)
    group = get(lambda: a.describe_consumer_groups([GROUP], include_authorized_operations=True,
                                                   request_timeout=OP_TIMEOUT)[GROUP]
                .result(timeout=OP_TIMEOUT).authorized_operations)
    as_set = lambda v: set(v) if isinstance(v, list) else v  # noqa: E731
    return as_set(cluster), as_set(topic), as_set(group)


cluster, topic, group = ops("admin")
check(cluster == {O.ALTER, O.ALTER_CONFIGS, O.CLUSTER_ACTION, O.CREATE, O.DESCRIBE,
                  O.DESCRIBE_CONFIGS, O.IDEMPOTENT_WRITE}, f"admin's cluster operations {cluster}")
check(topic == {O.ALTER, O.ALTER_CONFIGS, O.CREATE, O.DELETE, O.DESCRIBE, O.DESCRIBE_CONFIGS,
                O.READ, O.WRITE}, f"admin's topic operations {topic}")
check(group == {O.READ, O.DESCRIBE, O.DELETE, O.DESCRIBE_CONFIGS, O.ALTER_CONFIGS},
      f"admin's group operations {group}")
log(f"admin: cluster {len(cluster)}, topic {len(topic)}, group {len(group)} operations")

cluster, topic, group = ops("alice")
check(not cluster, f"alice's cluster operations {cluster}")
check(topic == {O.READ, O.WRITE, O.DESCRIBE}, f"alice's topic operations {topic}")
check(group == {O.READ, O.DESCRIBE}, f"alice's group operations {group}")
log(f"alice: cluster {cluster}, topic {sorted(o.name for o in topic)}, "
    f"group {sorted(o.name for o in group)}")

_, topic, group = ops("bob")
expect_code(topic, TOPIC_AUTHORIZATION_FAILED, "bob's describe_topics")
expect_code(group, GROUP_AUTHORIZATION_FAILED, "bob's describe_consumer_groups")
log("bob: describe_topics 29, describe_consumer_groups 30")

# Not asked for: not computed.
a = admin_client(env, "admin")
d = a.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
check(d.authorized_operations is None, f"cluster operations not asked for: {d.authorized_operations}")
log("ALL OK")
