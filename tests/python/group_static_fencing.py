"""Static membership fencing (KIP-345), issue #15 item 1: two librdkafka
consumers with the same group.instance.id.

twin-a joins and holds every partition; twin-b joins with the same
instance id and takes its place. Kafka's coordinator fences the replaced
member: its next Heartbeat/SyncGroup/OffsetCommit is answered
FENCED_INSTANCE_ID (82), which librdkafka treats as fatal. Asserted:
  - twin-b gets every partition;
  - twin-a gets the fatal fenced error within one session timeout;
  - for three session timeouts afterwards nothing changes hands: twin-b is
    never revoked, twin-a is never assigned anything again (the defect was
    the two taking turns every few seconds);
  - at every look during the run the coordinator has exactly one member,
    with the instance id: no partition is ever assigned to both;
  - the survivor's commits stick.

Usage: group_static_fencing.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka import KafkaError
from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, create_topic, log, poll_until,
                          produce)

BOOTSTRAP = sys.argv[1]
TOPIC, GROUP, PARTITIONS = "fencing-topic", "fencing-group", 4
SESSION_MS = 6000
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)
produce(conf, TOPIC, range(40), PARTITIONS)
static = {"group.id": GROUP, "group.instance.id": "twin", "session.timeout.ms": SESSION_MS}
admin = AdminClient(dict(conf))
looks = []


def look():
    """The coordinator's members: (member id, instance id, partitions).
    (The client id stays the first twin's: Kafka's coordinator keeps the
    replaced member's and gives it a new member id.)"""
    d = admin.describe_consumer_groups([GROUP], request_timeout=OP_TIMEOUT)[GROUP].result(
        timeout=OP_TIMEOUT)
    members = [(m.member_id, m.group_instance_id,
                sorted(tp.partition for tp in m.assignment.topic_partitions))
               for m in d.members]
    looks.append(members)
    return members


def fenced(m):
    """The fenced error among a member's errors (librdkafka raises it as a
    fatal error naming the static member's fence)."""
    return [e for e in m.errors
            if e.code() == KafkaError.FENCED_INSTANCE_ID
            or (e.code() == KafkaError._FATAL and "fenced" in e.str().lower())]


a = Member("twin-a", conf, [TOPIC], **static)
poll_until("twin-a to hold everything", [a], lambda: len(a.partitions()) == PARTITIONS)
before = look()
check(len(before) == 1 and before[0][1:] == ("twin", list(range(PARTITIONS))),
      f"group before: {before}")
first_id = before[0][0]

b = Member("twin-b", conf, [TOPIC], **static)
t0 = time.monotonic()
poll_until("twin-b's assignment", [a, b], lambda: len(b.partitions()) == PARTITIONS)
poll_until("twin-a to be fenced", [a, b], lambda: fenced(a), timeout=SESSION_MS / 1000)
took = time.monotonic() - t0
err = fenced(a)[0]
check(err.fatal() or err.code() == KafkaError._FATAL, f"twin-a's fence is not fatal: {err}")
check(not fenced(b), f"twin-b was fenced too: {fenced(b)}")
log(f"twin-b holds {b.partitions()}; twin-a fenced {took:.2f}s after twin-b joined: {err}")

mark_a, mark_b = len(a.events), len(b.events)
end = time.monotonic() + 3 * SESSION_MS / 1000
next_look = 0.0
while time.monotonic() < end:
    a.poll()
    b.poll(commit=True)
    if time.monotonic() >= next_look:
        members = look()
        check(len(members) == 1 and members[0][1] == "twin"
              and members[0][2] == list(range(PARTITIONS)),
              f"the coordinator's members: {members}")
        check(members[0][0] != first_id, f"still twin-a's member id {first_id}")
        check(len({m[0][0] for m in looks[1:]}) == 1,
              f"the member id changed hands: {[m[0][0] for m in looks[1:]]}")
        next_look = time.monotonic() + 1.0
check(not b.events[mark_b:], f"twin-b saw a rebalance: {b.events[mark_b:]}")
check(not [e for e in a.events[mark_a:] if e[1] == "assign"],
      f"twin-a was assigned again: {a.events[mark_a:]}")
check(len(b.messages) + len(a.messages) >= 40, "the records were not consumed")
log(f"{len(looks)} looks at the group: one member each time; twin-b kept "
    f"{b.partitions()} for {3 * SESSION_MS / 1000:.0f}s")
a.close()
b.close()
log("ALL OK")
