"""Group administration over the Kafka APIs.

confluent-kafka AdminClient: list_consumer_groups (with and without a state
filter) and describe_consumer_groups show states, members and their
assignments; delete_consumer_groups fails on a group with members with
NON_EMPTY_GROUP (68), fails on an unknown group with GROUP_ID_NOT_FOUND
(69), and on an empty group succeeds, after which its offsets are gone;
list_consumer_group_offsets (one group per call: the client allows no
more). kafka-python's list_group_offsets sends one OffsetFetch v8 for two
groups at once; its delete_group_offsets (OffsetDelete) is refused for a
group with members (GROUP_SUBSCRIBED_TO_TOPIC, 86) and works on an empty one.

Usage: group_admin.py BOOTSTRAP
Leaves the group admin-other with one committed offset (admin-topic[0] at
5) for the Rust side's raw multi-group OffsetFetch.
"""

import sys

from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import AdminClient
from kafka import TopicPartition as KpTopicPartition
from kafka.admin import KafkaAdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, create_topic, log, poll_until,
                          produce, split_evenly, wait_until)

BOOTSTRAP = sys.argv[1]
TOPIC, PARTITIONS = "admin-topic", 4
ACTIVE, IDLE, OTHER = "admin-active", "admin-idle", "admin-other"
NON_EMPTY_GROUP, GROUP_ID_NOT_FOUND = 68, 69
conf = base_conf(BOOTSTRAP)
admin = AdminClient(dict(conf))
create_topic(conf, TOPIC, PARTITIONS)


def commit_offsets(group, offsets):
    """A short-lived member of `group` that commits `offsets` and leaves."""
    m = Member(f"{group}-member", conf, [TOPIC], **{"group.id": group})
    poll_until(f"{group}: an assignment", [m], lambda: len(m.partitions()) == PARTITIONS)
    res = m.c.commit(offsets=[TopicPartition(TOPIC, p, o) for p, o in offsets.items()],
                     asynchronous=False)
    check(all(tp.error is None for tp in res), f"{group}: commit failed: {res}")
    m.close()


def offsets_of(group):
    res = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                            request_timeout=OP_TIMEOUT)[group].result(
        timeout=OP_TIMEOUT)
    return {tp.partition: tp.offset for tp in res.topic_partitions if tp.topic == TOPIC}


def listed(**kw):
    res = admin.list_consumer_groups(request_timeout=OP_TIMEOUT, **kw).result(timeout=OP_TIMEOUT)
    check(not res.errors, f"list_consumer_groups errors: {res.errors}")
    return {g.group_id: g for g in res.valid}


def describe(*groups):
    futs = admin.describe_consumer_groups(list(groups), request_timeout=OP_TIMEOUT)
    return {g: f.result(timeout=OP_TIMEOUT) for g, f in futs.items()}


def delete_error(group):
    try:
        admin.delete_consumer_groups([group], request_timeout=OP_TIMEOUT)[group].result(
            timeout=OP_TIMEOUT)
        return None
    except KafkaException as e:
        return e.args[0]


members = [Member(f"active-{i}", conf, [TOPIC], **{"group.id": ACTIVE}) for i in range(2)]
poll_until("a 2/2 split", members, lambda: split_evenly(members, PARTITIONS, 2))
produce(conf, TOPIC, range(400), PARTITIONS)
poll_until("every record consumed and committed", members,
           lambda: sum(len(m.messages) for m in members) >= 400, commit=True)

idle_offsets = {0: 10, 1: 20, 2: 30, 3: 40}
other_offsets = {0: 5, 2: 7}
commit_offsets(IDLE, idle_offsets)
commit_offsets(OTHER, other_offsets)

# ---- ListGroups
groups = listed()
for g, state in ((ACTIVE, ConsumerGroupState.STABLE), (IDLE, ConsumerGroupState.EMPTY),
                 (OTHER, ConsumerGroupState.EMPTY)):
    check(g in groups, f"list_consumer_groups: {g} missing from {sorted(groups)}")
    check(groups[g].state == state, f"{g}: listed as {groups[g].state}, expected {state}")
    check(not groups[g].is_simple_consumer_group, f"{g}: listed as a simple consumer group")
stable = listed(states={ConsumerGroupState.STABLE})
check(ACTIVE in stable and IDLE not in stable and OTHER not in stable,
      f"state filter STABLE listed {sorted(stable)}")
log(f"listed: {({g: str(v.state) for g, v in groups.items()})}")

# ---- DescribeGroups
d = describe(ACTIVE, IDLE)
a = d[ACTIVE]
check(a.state == ConsumerGroupState.STABLE, f"{ACTIVE}: {a.state}")
check(a.partition_assignor == "range", f"{ACTIVE}: assignor {a.partition_assignor!r}")
check(sorted(m.client_id for m in a.members) == ["active-0", "active-1"],
      f"{ACTIVE}: members {[m.client_id for m in a.members]}")
owned = {}
for m in a.members:
    check(m.host, f"{m.client_id}: no host")
    parts = sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == TOPIC)
    owned[m.client_id] = parts
want = {m.name: m.partitions() for m in members}
check(owned == want, f"described assignments {owned}, the consumers hold {want}")
check(d[IDLE].state == ConsumerGroupState.EMPTY and not d[IDLE].members,
      f"{IDLE}: {d[IDLE].state} with {len(d[IDLE].members)} members")
log(f"described {ACTIVE}: {owned}")

# ---- OffsetFetch, one group per call (confluent-kafka allows no more)
check(offsets_of(IDLE) == idle_offsets, f"{IDLE} offsets {offsets_of(IDLE)}")
check(offsets_of(OTHER) == other_offsets, f"{OTHER} offsets {offsets_of(OTHER)}")
check(offsets_of(ACTIVE) == {p: 100 for p in range(PARTITIONS)},
      f"{ACTIVE} offsets {offsets_of(ACTIVE)}")

# ---- OffsetFetch v8: several groups in one request (kafka-python)
kp = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
both = kp.list_group_offsets([IDLE, OTHER, ACTIVE])
flat = {g: {tp.partition: om.offset for tp, om in offs.items() if tp.topic == TOPIC}
        for g, offs in both.items()}
check(flat == {IDLE: idle_offsets, OTHER: other_offsets, ACTIVE: {p: 100 for p in range(4)}},
      f"multi-group OffsetFetch: {flat}")
picked = kp.list_group_offsets({IDLE: [KpTopicPartition(TOPIC, 1), KpTopicPartition(TOPIC, 3)],
                                OTHER: [KpTopicPartition(TOPIC, 1)]})
flat = {g: {tp.partition: om.offset for tp, om in offs.items()} for g, offs in picked.items()}
check(flat == {IDLE: {1: 20, 3: 40}, OTHER: {1: -1}},
      f"multi-group OffsetFetch of chosen partitions: {flat}")

# ---- OffsetDelete (kafka-python)
res = kp.delete_group_offsets(ACTIVE, [KpTopicPartition(TOPIC, 0)])
check([e.errno for e in res.values()] == [86],
      f"OffsetDelete on a group with members: {res}")
res = kp.delete_group_offsets(OTHER, [KpTopicPartition(TOPIC, 2)])
check([e.errno for e in res.values()] == [0], f"OffsetDelete on an empty group: {res}")
check(offsets_of(OTHER) == {0: 5}, f"{OTHER} after OffsetDelete: {offsets_of(OTHER)}")
other_offsets = {0: 5}
kp.close()

# ---- DeleteGroups
err = delete_error(ACTIVE)
check(err is not None and err.code() == NON_EMPTY_GROUP,
      f"deleting {ACTIVE} with members: {err} (want NON_EMPTY_GROUP)")
err = delete_error("admin-no-such-group")
check(err is not None and err.code() == GROUP_ID_NOT_FOUND,
      f"deleting an unknown group: {err} (want GROUP_ID_NOT_FOUND)")
err = delete_error(IDLE)
check(err is None, f"deleting the empty {IDLE}: {err}")
gone = offsets_of(IDLE)
check(all(o < 0 for o in gone.values()), f"{IDLE}'s offsets survived its deletion: {gone}")
groups = listed()
check(IDLE not in groups and ACTIVE in groups and OTHER in groups,
      f"after the deletion listed {sorted(groups)}")
check(describe(IDLE)[IDLE].state in (ConsumerGroupState.DEAD, ConsumerGroupState.UNKNOWN),
      f"deleted group described as {describe(IDLE)[IDLE].state}")
# The active group is still fine, and a member closing makes it deletable.
for m in members:
    m.close()
wait_until("the active group to become Empty",
           lambda: listed()[ACTIVE].state == ConsumerGroupState.EMPTY)
err = delete_error(ACTIVE)
check(err is None, f"deleting {ACTIVE} once empty: {err}")
check(ACTIVE not in listed(), f"{ACTIVE} still listed after its deletion")
log("ALL OK")
