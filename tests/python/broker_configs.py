"""Broker configs through librdkafka (confluent-kafka's AdminClient), driven
by tests/broker_configs.rs around a restart of the broker.

Phase `before`: the broker describes its settings under Kafka's names
(connections.max.reauth.ms, the KIP-368 session lifetime, among them) with
their sources; sensitive values are null; log.retention.ms and
max.connections.per.ip are set dynamically on this broker (librdkafka cannot
name the cluster-wide default, resource ""), and an existing topic without
an override follows at once; a static setting and a bad value are refused
with INVALID_REQUEST; a user without cluster rights gets
CLUSTER_AUTHORIZATION_FAILED.
Phase `after` (the broker was restarted): the dynamic values are still in
force; deleting them brings the topic back to the file's value.

Usage: broker_configs.py PHASE BOOTSTRAP CA_FILE ADMIN_PASSWORD USER PASSWORD
"""

import sys
import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)

from sec_common import OP_TIMEOUT, check, ck_conf, log

INVALID_REQUEST = 42
CLUSTER_AUTHORIZATION_FAILED = 31
# Set by tests/broker_configs.rs in the broker's file.
STATIC_RETENTION = "3600000"
STATIC_REAUTH = "60000"
DYNAMIC_RETENTION = "7200000"

phase, bootstrap, ca, admin_pw, user, password = sys.argv[1:7]
admin = AdminClient(ck_conf(bootstrap, ca, "admin", admin_pw))
as_user = AdminClient(ck_conf(bootstrap, ca, user, password))
BROKER = ConfigResource(ResourceType.BROKER, "0")


def describe(client, res):
    fut = client.describe_configs([res], request_timeout=OP_TIMEOUT)[res]
    return fut.result(timeout=OP_TIMEOUT)


def alter(client, res_type, name, *ops):
    res = ConfigResource(res_type, name, incremental_configs=[
        ConfigEntry(k, v, incremental_operation=op) for (k, v, op) in ops])
    fut = client.incremental_alter_configs([res], request_timeout=OP_TIMEOUT)[res]
    return fut.result(timeout=OP_TIMEOUT)


def refused(what, code, f):
    try:
        got = f()
    except KafkaException as e:
        err = e.args[0]
        check(err.code() == code, f"{what}: code {err.code()} ({err}), want {code}")
        log(f"{what}: {err.name()} ({err.code()}): {err.str()}")
        return err
    check(False, f"{what}: answered {got}")


def eventually(what, f, timeout=30.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = f()
        if last is True:
            return
        time.sleep(0.2)
    check(False, f"timed out waiting for {what} (last: {last})")


def entry(configs, name):
    check(name in configs, f"{name} missing among {sorted(configs)}")
    return configs[name]


def topic_retention(topic):
    return entry(describe(admin, ConfigResource(ResourceType.TOPIC, topic)), "retention.ms")


if phase == "before":
    cfg = describe(admin, BROKER)
    log(f"broker 0: {len(cfg)} configs")
    for name in ["sasl.enabled.mechanisms", "listeners", "advertised.listeners", "max.connections",
                 "max.connections.per.ip", "default.replication.factor", "min.insync.replicas",
                 "offsets.retention.minutes", "transaction.max.timeout.ms", "group.min.session.timeout.ms",
                 "group.max.session.timeout.ms", "group.consumer.session.timeout.ms"]:
        entry(cfg, name)
    reauth = entry(cfg, "connections.max.reauth.ms")
    check(reauth.value == STATIC_REAUTH and reauth.source == ConfigSource.STATIC_BROKER_CONFIG.value
          and reauth.is_read_only, f"connections.max.reauth.ms: {reauth!r} source {reauth.source}")
    ret = entry(cfg, "log.retention.ms")
    check(ret.value == STATIC_RETENTION and ret.source == ConfigSource.STATIC_BROKER_CONFIG.value
          and not ret.is_read_only, f"log.retention.ms: {ret!r} source {ret.source}")
    idle = entry(cfg, "connections.max.idle.ms")
    check(idle.source == ConfigSource.DEFAULT_CONFIG.value, f"connections.max.idle.ms source {idle.source}")
    sensitive = [e for e in cfg.values() if e.is_sensitive]
    check(sensitive, "no sensitive config (ssl.keystore.key, super.users)")
    for e in sensitive:
        check(e.value is None, f"sensitive {e.name} has a value")
    log(f"sensitive, values null: {sorted(e.name for e in sensitive)}")

    futs = admin.create_topics([NewTopic("cfg-follow", 1, 1),
                                NewTopic("cfg-own", 1, 1, config={"retention.ms": "1000000"})],
                               operation_timeout=OP_TIMEOUT, request_timeout=OP_TIMEOUT)
    for f in futs.values():
        f.result(timeout=OP_TIMEOUT)
    check(topic_retention("cfg-follow").value == STATIC_RETENTION, "cfg-follow before")

    # librdkafka cannot name the cluster-wide default (resource name ""):
    # this broker's own layer here; the Java check and kafka-configs
    # --entity-default cover the default.
    alter(admin, ResourceType.BROKER, "0",
          ("log.retention.ms", DYNAMIC_RETENTION, AlterConfigOpType.SET),
          ("max.connections.per.ip", "77", AlterConfigOpType.SET))
    eventually("cfg-follow follows the dynamic default",
               lambda: topic_retention("cfg-follow").value == DYNAMIC_RETENTION or topic_retention("cfg-follow"))
    follow = topic_retention("cfg-follow")
    check(follow.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value, f"cfg-follow source {follow.source}")
    check(topic_retention("cfg-own").value == "1000000", "cfg-own keeps its override")
    cfg = describe(admin, BROKER)
    ret = entry(cfg, "log.retention.ms")
    check(ret.value == DYNAMIC_RETENTION and ret.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
          f"log.retention.ms after: {ret!r} source {ret.source}")
    per_ip = entry(cfg, "max.connections.per.ip")
    check(per_ip.value == "77" and per_ip.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
          f"max.connections.per.ip: {per_ip!r} source {per_ip.source}")

    err = refused("a static config (num.partitions)", INVALID_REQUEST,
                  lambda: alter(admin, ResourceType.BROKER, "0", ("num.partitions", "4", AlterConfigOpType.SET)))
    check("Cannot update these configs dynamically" in err.str(), err.str())
    refused("a bad value", INVALID_REQUEST,
            lambda: alter(admin, ResourceType.BROKER, "0", ("log.retention.ms", "soon", AlterConfigOpType.SET)))
    refused("as the user: describe", CLUSTER_AUTHORIZATION_FAILED, lambda: describe(as_user, BROKER))
    refused("as the user: alter", CLUSTER_AUTHORIZATION_FAILED,
            lambda: alter(as_user, ResourceType.BROKER, "0", ("log.retention.ms", "1", AlterConfigOpType.SET)))
elif phase == "after":
    cfg = describe(admin, BROKER)
    ret = entry(cfg, "log.retention.ms")
    check(ret.value == DYNAMIC_RETENTION and ret.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
          f"log.retention.ms after restart: {ret!r} source {ret.source}")
    per_ip = entry(cfg, "max.connections.per.ip")
    check(per_ip.value == "77" and per_ip.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value,
          f"max.connections.per.ip after restart: {per_ip!r} source {per_ip.source}")
    check(topic_retention("cfg-follow").value == DYNAMIC_RETENTION, "cfg-follow after restart")
    alter(admin, ResourceType.BROKER, "0", ("log.retention.ms", "", AlterConfigOpType.DELETE),
          ("max.connections.per.ip", "", AlterConfigOpType.DELETE))
    follow = topic_retention("cfg-follow")
    check(follow.value == STATIC_RETENTION and follow.source == ConfigSource.STATIC_BROKER_CONFIG.value,
          f"cfg-follow back to the file's value: {follow!r} source {follow.source}")
else:
    check(False, f"unknown phase {phase}")
print("ALL OK")
