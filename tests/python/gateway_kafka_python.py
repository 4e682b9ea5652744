"""kafka-python through the gateway (its own protocol code and request
versions: Metadata, FindCoordinator, the group protocol, DescribeCluster):

- alice creates `gw-kp` (3 partitions) with KafkaAdminClient;
- a KafkaProducer (acks=all) sends 300 records;
- a KafkaConsumer in the group `gw-kp-group` consumes all 300, commits,
  and committed() equals the end offsets;
- the coordinator and every broker kafka-python learned about have
  gateway addresses (RESULT {"brokers": [[id, host, port]], "coordinator":
  [id, host, port]}), checked on the Rust side;
- a fresh consumer of the group has nothing left to read.
"""

import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from gateway_common import DEADLINE, OP_TIMEOUT, check, kp_conf, load_env, log, result
from group_common import kp_check_nothing_left

env = load_env()
TOPIC, GROUP, PARTITIONS, N = "gw-kp", "gw-kp-group", 3, 300
conf = kp_conf(env, "alice")

admin = KafkaAdminClient(**conf, request_timeout_ms=int(OP_TIMEOUT * 1000))
admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
admin.close()

p = KafkaProducer(**conf, acks="all", enable_idempotence=False,
                  request_timeout_ms=int(OP_TIMEOUT * 1000))
futs = [p.send(TOPIC, key=f"seq-{i}".encode(), value=f"value-{i}".encode(),
               partition=i % PARTITIONS) for i in range(N)]
for f in futs:
    f.get(timeout=DEADLINE)
p.close()
log(f"kafka-python produced {N} records through the gateway")


def consumer(client_id):
    c = KafkaConsumer(**conf, group_id=GROUP, client_id=client_id, enable_auto_commit=False,
                      auto_offset_reset="earliest", heartbeat_interval_ms=500,
                      session_timeout_ms=10000, request_timeout_ms=int(OP_TIMEOUT * 1000) + 5000)
    c.subscribe([TOPIC])
    return c


c = consumer("gw-kp-1")
got = []
deadline = time.monotonic() + DEADLINE
while len(got) < N:
    check(time.monotonic() < deadline, f"kafka-python consumed {len(got)} of {N}")
    for recs in c.poll(timeout_ms=200).values():
        got.extend(int(r.key.decode().split("-", 1)[1]) for r in recs)
check(sorted(got) == list(range(N)), f"kafka-python consumed {len(got)} records, "
                                     f"{len(set(got))} distinct")
c.commit()
tps = [TopicPartition(TOPIC, q) for q in range(PARTITIONS)]
ends = c.end_offsets(tps)
for tp in tps:
    check(c.committed(tp) == ends[tp], f"committed({tp}) = {c.committed(tp)}, end {ends[tp]}")
log(f"kafka-python consumed {N} records through {GROUP} and committed {sorted(ends.values())}")

# kafka-python internals (3.x): the cluster view and the coordinator it
# found with FindCoordinator (a synthesized node id "coordinator-N").
cluster = c._coordinator._cluster
brokers = sorted([b.node_id, b.host, b.port] for b in cluster.brokers())
coord_id = c._coordinator.coordinator_id
coord = cluster.broker_metadata(coord_id) if coord_id is not None else None
check(coord is not None, f"no coordinator known for {GROUP} (id {coord_id})")
coordinator = [str(coord.node_id), coord.host, coord.port]
log(f"kafka-python brokers {brokers}, coordinator {coordinator}")
c.close()

c = consumer("gw-kp-2")
kp_check_nothing_left(c, PARTITIONS, DEADLINE)
c.close()

result(brokers=brokers, coordinator=coordinator)
log("ALL OK")
