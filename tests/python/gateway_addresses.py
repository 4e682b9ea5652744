"""Broker addresses as clients see them through the gateway.

As the gateway's super user `admin` (and alice for the group): creates
`gw-addr` (2 partitions) through the gateway, produces 20 records, lets a
consumer of the group `gw-addr-group` consume them, and collects every
broker address the clients were given:

  - Metadata (confluent-kafka list_topics().brokers);
  - confluent-kafka AdminClient describe_cluster(): nodes and controller;
  - the group's coordinator from describe_consumer_groups() (librdkafka
    finds it with FindCoordinator);
  - kafka-python KafkaAdminClient.describe_cluster() (the DescribeCluster
    API).

The Rust side checks every address against the gateway's own listening
ports (RESULT {"metadata": [[id, host, port]], ...}).
"""

import time

from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient

from gateway_common import (OP_TIMEOUT, check, ck_conf, create_topics, kp_conf, load_env, log,
                            produce, result)

env = load_env()
TOPIC, GROUP, N = "gw-addr", "gw-addr-group", 20


def node(n):
    return [n.id, n.host, n.port]


admin_conf = ck_conf(env, "admin")
create_topics(admin_conf, [TOPIC], partitions=2)
produce(ck_conf(env, "alice"), TOPIC, range(N), 2)

md = AdminClient(dict(admin_conf)).list_topics(timeout=OP_TIMEOUT)
metadata = sorted([b.id, b.host, b.port] for b in md.brokers.values())
check(metadata, "Metadata listed no brokers")
check(TOPIC in md.topics, f"{TOPIC} missing from metadata: {sorted(md.topics)}")
for p in md.topics[TOPIC].partitions.values():
    check(p.leader in md.brokers, f"{TOPIC}[{p.id}] leader {p.leader} is not a listed broker")
log(f"metadata brokers: {metadata}")

admin = AdminClient(dict(admin_conf))
cluster = admin.describe_cluster(request_timeout=OP_TIMEOUT).result(timeout=OP_TIMEOUT)
described = sorted(node(n) for n in cluster.nodes)
check(described, "describe_cluster listed no nodes")
controller = node(cluster.controller) if cluster.controller is not None else None
log(f"describe_cluster: nodes {described}, controller {controller}")

# A group member, so that the group has a coordinator and members.
c = Consumer(ck_conf(env, "alice", **{"group.id": GROUP, "auto.offset.reset": "earliest",
                                      "enable.auto.commit": False,
                                      "session.timeout.ms": 10000,
                                      "heartbeat.interval.ms": 500}))
c.subscribe([TOPIC])
got, errors = 0, []
deadline = time.monotonic() + OP_TIMEOUT
while got < N:
    check(time.monotonic() < deadline,
          f"the group consumer got {got} of {N} records; errors {errors[:5]}")
    for m in c.consume(num_messages=100, timeout=0.2):
        if m.error():
            if m.error().code() != KafkaError._PARTITION_EOF:
                errors.append(str(m.error()))
            continue
        got += 1
c.commit(asynchronous=False)

desc = admin.describe_consumer_groups([GROUP], request_timeout=OP_TIMEOUT)[GROUP].result(
    timeout=OP_TIMEOUT)
check(desc.coordinator is not None, f"describe_consumer_groups: no coordinator: {desc}")
coordinator = node(desc.coordinator)
check(len(desc.members) == 1, f"{GROUP} members: {desc.members}")
log(f"{GROUP}: state {desc.state}, coordinator {coordinator}, {len(desc.members)} member(s)")
c.close()

from kafka.admin import KafkaAdminClient  # noqa: E402

kp = KafkaAdminClient(**kp_conf(env, "admin"), request_timeout_ms=int(OP_TIMEOUT * 1000))
try:
    kc = kp.describe_cluster()
finally:
    kp.close()
kp_brokers = sorted([b.get("broker_id", b.get("node_id")), b["host"], b["port"]]
                    for b in kc["brokers"])
check(kp_brokers, f"kafka-python describe_cluster listed no brokers: {kc}")
log(f"kafka-python describe_cluster: {kp_brokers}, controller {kc.get('controller_id')}")

result(metadata=metadata, describe_cluster=described, controller=controller,
       coordinator=coordinator, kp_describe_cluster=kp_brokers)
log("ALL OK")
