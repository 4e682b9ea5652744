"""kafka-python through a Portcullis gateway in front of a real 3-broker
Apache Kafka cluster (tests/gateway_kafka.rs); the environment also names
`topic` and `group`:

- alice creates `topic` (3 partitions, replication factor 3,
  min.insync.replicas=2) with KafkaAdminClient through the gateway;
- an idempotent KafkaProducer (acks=all) sends 300 records, seq i to
  partition i % 3; per partition the acknowledged offsets follow the send
  order without gaps;
- a KafkaConsumer in `group` consumes every record exactly once, commits,
  and committed() equals the end offsets;
- RESULT {"brokers": [[id, host, port]], "coordinator": [id, host, port]}:
  every broker and the coordinator kafka-python learned, checked on the
  Rust side against the gateway's per-broker listeners.
"""

import logging
import os
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from gateway_common import DEADLINE, OP_TIMEOUT, check, kp_conf, load_env, log, result

env = load_env()
if os.environ.get("PORTCULLIS_KP_DEBUG_LOG"):
    # kafka-python's own account of its connections, for a failing run.
    logging.basicConfig(filename=os.environ["PORTCULLIS_KP_DEBUG_LOG"], level=logging.DEBUG,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
TOPIC, GROUP, PARTITIONS, N = env["topic"], env["group"], 3, 300
conf = kp_conf(env, "alice")

admin = KafkaAdminClient(**conf, request_timeout_ms=int(OP_TIMEOUT * 1000))
admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3,
                              topic_configs={"min.insync.replicas": "2"})])
admin.close()

p = KafkaProducer(**conf, acks="all", enable_idempotence=True,
                  request_timeout_ms=int(OP_TIMEOUT * 1000))
futs = [(i, p.send(TOPIC, key=f"seq-{i}".encode(), value=f"value-{i}".encode(),
                   partition=i % PARTITIONS)) for i in range(N)]
acked = {}
for i, f in futs:
    md = f.get(timeout=DEADLINE)
    acked[i] = (md.partition, md.offset)
p.close()
for q in range(PARTITIONS):
    offsets = [acked[i][1] for i in range(q, N, PARTITIONS)]
    check(offsets == list(range(len(offsets))),
          f"partition {q}: acknowledged offsets {offsets[:10]}... are not 0.. in send order")
log(f"kafka-python produced {N} records (idempotent, acks=all) through the gateway")

c = KafkaConsumer(**conf, group_id=GROUP, client_id="gw-kafka-kp", enable_auto_commit=False,
                  auto_offset_reset="earliest", heartbeat_interval_ms=500,
                  session_timeout_ms=10000, request_timeout_ms=int(OP_TIMEOUT * 1000) + 5000)
# The consumer learns the topic's partitions before it joins. Otherwise,
# when its first JoinGroup beats its first metadata answer, it assigns
# itself nothing, rejoins at once, receives the real assignment in the
# second SyncGroup and (kafka-python 2.x) never applies it: the debug log
# (PORTCULLIS_KP_DEBUG_LOG) shows every answer correct, no "Updated
# partition assignment" after the second SyncGroup, and the poll loop
# spinning on need_rejoin=False without a single OffsetFetch or Fetch.
deadline = time.monotonic() + DEADLINE
while c.partitions_for_topic(TOPIC) != set(range(PARTITIONS)):
    check(time.monotonic() < deadline, f"kafka-python never saw {TOPIC}'s partitions")
    time.sleep(0.1)
c.subscribe([TOPIC])
got = []
deadline = time.monotonic() + DEADLINE
while len(got) < N:
    check(time.monotonic() < deadline, f"kafka-python consumed {len(got)} of {N}")
    for recs in c.poll(timeout_ms=200).values():
        got.extend(int(r.key.decode().split("-", 1)[1]) for r in recs)
check(sorted(got) == list(range(N)),
      f"kafka-python consumed {len(got)} records, {len(set(got))} distinct")
c.commit()
tps = [TopicPartition(TOPIC, q) for q in range(PARTITIONS)]
ends = c.end_offsets(tps)
for tp in tps:
    check(c.committed(tp) == ends[tp], f"committed({tp}) = {c.committed(tp)}, end {ends[tp]}")
log(f"kafka-python consumed {N} records in {GROUP} and committed {sorted(ends.values())}")

cluster = c._coordinator._cluster
brokers = sorted([b.node_id, b.host, b.port] for b in cluster.brokers())
coord_id = c._coordinator.coordinator_id
coord = cluster.broker_metadata(coord_id) if coord_id is not None else None
check(coord is not None, f"no coordinator known for {GROUP} (id {coord_id})")
coordinator = [str(coord.node_id), coord.host, coord.port]
log(f"kafka-python brokers {brokers}, coordinator {coordinator}")
c.close()

result(brokers=brokers, coordinator=coordinator)
log("ALL OK")
