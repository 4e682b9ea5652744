"""Cluster-level operations, and rules added with `portcullis acl add`
while the broker runs.

alice has read/write on every topic and nothing on the cluster:
  - CreateTopics, DeleteTopics, CreatePartitions (ALTER), DeleteRecords
    (DELETE): 29;
  - DescribeCluster (kafka-python) is answered, as Kafka answers it for any
    logged-in client (the Java Admin sends it before describeTopics);
  - DescribeConfigs / IncrementalAlterConfigs: broker 31, topic 29.
Then, one `acl add` at a time (each polled until in force):
  - create on the cluster: she creates topics;
  - describe and describe_configs on the cluster: the broker's configs
    work;
  - alter_configs on the cluster: altering a static broker config
    (num.partitions) is answered INVALID_REQUEST (42, Kafka's "Cannot
    update these configs dynamically"), i.e. authorization passed;
  - alter_configs on topic cfg: alters it and, implied, describes it;
  - delete on topic cfg: deletes its records, then the topic (creating
    partitions, which needs ALTER, stays refused).
ivan has CREATE on the topic prefix `ivan-`: he creates ivan-1, not other-1.
"""

import time

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic, ResourceType)
import kafka.errors as Errors
from kafka.admin import KafkaAdminClient

from acl_common import (CLUSTER_AUTHORIZATION_FAILED, INVALID_REQUEST, OP_TIMEOUT,
                        RELOAD_DEADLINE, TOPIC_AUTHORIZATION_FAILED, admin_client, check,
                        cli_ok, create_topics, expect_code, kafka_error, kp_conf,
                        load_env, log)


class KpError:
    """A kafka-python broker error in KafkaError's shape."""

    def __init__(self, e):
        self.e = e

    def code(self):
        return self.e.errno

    def str(self):
        return str(self.e)

    def __str__(self):
        return f"{type(self.e).__name__}: {self.e}"


def outcome(f):
    """f() -> None on success, else the broker error it raised (from
    either client)."""
    try:
        f()
        return None
    except KafkaException as e:
        return kafka_error(e)
    except Errors.BrokerResponseError as e:
        return KpError(e)


def expect_refused(f, code, what):
    expect_code(outcome(f), code, what)


def until_allowed(f, refused_code, what, want=None):
    """After an `acl add`: polls f() while it is refused with refused_code
    until it succeeds (or, with `want`, fails with that code instead);
    returns the seconds it took."""
    start = time.monotonic()
    while True:
        err = outcome(f)
        if err is None or err.code() != refused_code:
            if want is None:
                check(err is None, f"{what}: unexpected error {err}")
            else:
                expect_code(err, want, what)
            secs = time.monotonic() - start
            log(f"{what}: allowed after {secs * 1000:.0f} ms"
                + ("" if want is None else f" (then refused with {want}: {err.str()})"))
            return secs
        check(time.monotonic() - start < RELOAD_DEADLINE,
              f"{what}: still refused {RELOAD_DEADLINE}s after acl add")
        time.sleep(0.05)


def main():
    env = load_env()
    create_topics(env, ["cfg"])
    alice = admin_client(env, "alice")
    admin = admin_client(env)
    broker_res = ConfigResource(ResourceType.BROKER, "0")
    topic_res = ConfigResource(ResourceType.TOPIC, "cfg")

    def create(client, name):
        def go():
            fut = client.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                       operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)[name]
            fut.result(timeout=OP_TIMEOUT)
        return go

    def describe_configs(res):
        def go():
            return alice.describe_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)
        return go

    def alter(restype, name, key, value):
        def go():
            res = ConfigResource(restype, name, incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)])
            alice.incremental_alter_configs([res], request_timeout=OP_TIMEOUT)[res].result(timeout=OP_TIMEOUT)
        return go

    def delete(name):
        def go():
            alice.delete_topics([name], operation_timeout=OP_TIMEOUT,
                                request_timeout=OP_TIMEOUT)[name].result(timeout=OP_TIMEOUT)
        return go

    def add_partitions(name, total):
        def go():
            alice.create_partitions([NewPartitions(name, total)], operation_timeout=OP_TIMEOUT,
                                    request_timeout=OP_TIMEOUT)[name].result(timeout=OP_TIMEOUT)
        return go

    def delete_records(name, before):
        def go():
            tp = TopicPartition(name, 0, before)
            (fut,) = alice.delete_records([tp], request_timeout=OP_TIMEOUT,
                                          operation_timeout=OP_TIMEOUT).values()
            return fut.result(timeout=OP_TIMEOUT)
        return go

    kp_alice = KafkaAdminClient(**kp_conf(env, "alice"), request_timeout_ms=int(OP_TIMEOUT * 1000))

    # Without cluster rules.
    expect_refused(create(alice, "by-alice"), TOPIC_AUTHORIZATION_FAILED, "alice's create_topics")
    expect_refused(delete("cfg"), TOPIC_AUTHORIZATION_FAILED, "alice's delete_topics")
    cluster = kp_alice.describe_cluster()
    check(cluster["controller_id"] == 0 and len(cluster["brokers"]) == 1,
          f"alice's describe_cluster without cluster rules: {cluster}")
    expect_refused(describe_configs(broker_res), CLUSTER_AUTHORIZATION_FAILED,
                   "alice's describe_configs of broker 0")
    expect_refused(describe_configs(topic_res), TOPIC_AUTHORIZATION_FAILED,
                   "alice's describe_configs of topic cfg")
    expect_refused(alter(ResourceType.BROKER, "0", "log.retention.ms", "1000"),
                   CLUSTER_AUTHORIZATION_FAILED, "alice's incremental_alter_configs of broker 0")
    expect_refused(alter(ResourceType.TOPIC, "cfg", "retention.ms", "1000"),
                   TOPIC_AUTHORIZATION_FAILED, "alice's incremental_alter_configs of topic cfg")
    expect_refused(add_partitions("cfg", 2), TOPIC_AUTHORIZATION_FAILED,
                   "alice's create_partitions of cfg (needs ALTER)")
    expect_refused(delete_records("cfg", 0), TOPIC_AUTHORIZATION_FAILED,
                   "alice's delete_records of cfg (needs DELETE)")
    topics = set(admin.list_topics(timeout=OP_TIMEOUT).topics)
    check("by-alice" not in topics and "cfg" in topics, f"topics after the refusals: {sorted(topics)}")
    log("without cluster rules: create/delete topics, create partitions, delete records 29; "
        "DescribeCluster answered; configs 31 (broker) / 29 (topic)")

    # Topic-prefix CREATE.
    ivan = admin_client(env, "ivan")
    check(outcome(create(ivan, "ivan-1")) is None, "ivan could not create ivan-1")
    expect_refused(create(ivan, "other-1"), TOPIC_AUTHORIZATION_FAILED, "ivan creating other-1")
    log("ivan creates ivan-1 (CREATE on prefix ivan-), not other-1")

    out = cli_ok(env, ["acl", "add", "--allow", "--principal", "User:alice", "--operation",
                       "create", "--cluster"])
    check(out.strip() == 'added   {allow: "User:alice", operations: [create], cluster: "kafka-cluster"}',
          f"acl add printed {out!r}")
    until_allowed(create(alice, "by-alice"), TOPIC_AUTHORIZATION_FAILED, "alice's create_topics")
    topics = set(admin.list_topics(timeout=OP_TIMEOUT).topics)
    check("by-alice" in topics, f"by-alice missing: {sorted(topics)}")

    cli_ok(env, ["acl", "add", "--allow", "--principal", "User:alice", "--operation", "describe",
                 "--operation", "describe-configs", "--cluster"])
    until_allowed(describe_configs(broker_res), CLUSTER_AUTHORIZATION_FAILED,
                  "alice's describe_configs of broker 0")
    configs = describe_configs(broker_res)()
    check("num.partitions" in configs, f"broker configs: {sorted(configs)}")
    cluster = kp_alice.describe_cluster()
    check(cluster["controller_id"] == 0 and len(cluster["brokers"]) == 1, f"describe_cluster: {cluster}")
    # Describing the cluster grants nothing on topics' configs.
    expect_refused(describe_configs(topic_res), TOPIC_AUTHORIZATION_FAILED,
                   "alice's describe_configs of topic cfg with cluster describe_configs")

    cli_ok(env, ["acl", "add", "--allow", "--principal", "User:alice", "--operation",
                 "alter_configs", "--cluster"])
    until_allowed(alter(ResourceType.BROKER, "0", "num.partitions", "3"),
                  CLUSTER_AUTHORIZATION_FAILED, "alice's incremental_alter_configs of broker 0",
                  want=INVALID_REQUEST)

    cli_ok(env, ["acl", "add", "--allow", "--principal", "User:alice", "--operation",
                 "alter_configs", "--topic", "cfg"])
    until_allowed(alter(ResourceType.TOPIC, "cfg", "retention.ms", "123456"),
                  TOPIC_AUTHORIZATION_FAILED, "alice's incremental_alter_configs of topic cfg")
    configs = describe_configs(topic_res)()
    check(configs["retention.ms"].value == "123456",
          f"retention.ms of cfg: {configs['retention.ms'].value}")
    log("alter_configs on cfg implies describe_configs: alice reads back retention.ms=123456")

    cli_ok(env, ["acl", "add", "--allow", "--principal", "User:alice", "--operation", "delete",
                 "--topic", "cfg"])
    until_allowed(delete_records("cfg", 0), TOPIC_AUTHORIZATION_FAILED,
                  "alice's delete_records of cfg")
    expect_refused(add_partitions("cfg", 2), TOPIC_AUTHORIZATION_FAILED,
                   "alice's create_partitions of cfg with DELETE only")
    until_allowed(delete("cfg"), TOPIC_AUTHORIZATION_FAILED, "alice's delete_topics of cfg")
    topics = set(admin.list_topics(timeout=OP_TIMEOUT).topics)
    check("cfg" not in topics, f"cfg still listed: {sorted(topics)}")
    kp_alice.close()
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
