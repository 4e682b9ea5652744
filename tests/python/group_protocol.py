"""Protocol selection and JoinGroup validation.

A member offering [range, roundrobin] and one offering only [roundrobin]
get roundrobin (the one protocol all support); a cooperative-sticky-only
consumer cannot join that group (INCONSISTENT_GROUP_PROTOCOL, 23) and
does not disturb it; session timeouts outside the broker's
[min_session_timeout_ms, max_session_timeout_ms] (6000, 1800000 by
default) are refused with INVALID_SESSION_TIMEOUT (26).

Usage: group_protocol.py BOOTSTRAP
"""

import sys
import time

from confluent_kafka.admin import AdminClient

from group_common import (OP_TIMEOUT, Member, base_conf, check, create_topic, log, poll_for,
                          poll_until, split_evenly)

BOOTSTRAP = sys.argv[1]
TOPIC, PARTITIONS = "protocol-topic", 6
INCONSISTENT_GROUP_PROTOCOL, INVALID_SESSION_TIMEOUT = 23, 26
conf = base_conf(BOOTSTRAP)
create_topic(conf, TOPIC, PARTITIONS)


def first_error(m, code, what):
    deadline = time.monotonic() + OP_TIMEOUT
    while not any(e.code() == code for e in m.errors):
        check(time.monotonic() < deadline, f"{what}: no error {code}; got "
                                           f"{[str(e) for e in m.errors]}")
        m.poll(timeout=0.2)
    check(not m.partitions(), f"{what}: got partitions {m.partitions()}")
    return next(e for e in m.errors if e.code() == code)


a = Member("both", conf, [TOPIC], **{"group.id": "protocol-group",
                                     "partition.assignment.strategy": "range,roundrobin"})
b = Member("rr-only", conf, [TOPIC], **{"group.id": "protocol-group",
                                        "partition.assignment.strategy": "roundrobin"})
poll_until("a 3/3 split", [a, b], lambda: split_evenly([a, b], PARTITIONS, 3))
admin = AdminClient(dict(conf))
d = admin.describe_consumer_groups(["protocol-group"], request_timeout=OP_TIMEOUT)[
    "protocol-group"].result(timeout=OP_TIMEOUT)
check(d.partition_assignor == "roundrobin", f"selected protocol {d.partition_assignor!r}")
# roundrobin deals the partitions out alternately.
check(sorted([a.partitions(), b.partitions()]) == [[0, 2, 4], [1, 3, 5]],
      f"roundrobin assignment {a.partitions()} / {b.partitions()}")
marks = (len(a.events), len(b.events))

c = Member("coop-only", conf, [TOPIC], **{"group.id": "protocol-group",
                                          "partition.assignment.strategy": "cooperative-sticky"})
err = first_error(c, INCONSISTENT_GROUP_PROTOCOL, "a cooperative-only member")
log(f"cooperative-only member: {err.str()}")
c.close()
poll_for([a, b], 1.5)
check((len(a.events), len(b.events)) == marks,
      f"the refused member disturbed the group: {a.events[marks[0]:]} {b.events[marks[1]:]}")
a.close()
b.close()

for session_ms in (3000, 1_900_000):
    m = Member(f"session-{session_ms}", conf, [TOPIC],
               **{"group.id": f"session-group-{session_ms}", "session.timeout.ms": session_ms,
                  "max.poll.interval.ms": max(session_ms, 300000)})
    err = first_error(m, INVALID_SESSION_TIMEOUT, f"session.timeout.ms={session_ms}")
    log(f"session.timeout.ms={session_ms}: {err.str()}")
    m.close()
log("ALL OK")
