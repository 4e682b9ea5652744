"""Partitions move when a member goes away.

Usage:
  group_takeover.py BOOTSTRAP leave   three consumers split six partitions;
      one close()s (LeaveGroup) and the other two hold all six well within
      the session timeout (30 s here, so an expiry would be obvious), then
      consume what is produced next, and nothing that was already committed.
  group_takeover.py BOOTSTRAP kill    a consumer in a child process
      (session.timeout.ms=6000) holds half of the partitions and is killed
      with SIGKILL: nothing moves before its session can have expired, then
      the survivor takes over all partitions and resumes at the dead
      member's commits.
  group_takeover.py BOOTSTRAP child GROUP   (the child of `kill`)
"""

import json
import subprocess
import sys
import threading
import time

from group_common import (Member, base_conf, check, create_topic, fail, log, poll_for,
                          poll_until, produce, seq_of, split_evenly)

BOOTSTRAP, MODE = sys.argv[1], sys.argv[2]
TOPIC, PARTITIONS = "takeover-topic", 6
conf = base_conf(BOOTSTRAP)


def consume_exactly(members, seqs, what):
    """The members together consume exactly `seqs` (committing), nothing else."""
    for m in members:
        m.messages.clear()
    want = set(seqs)
    poll_until(what, members, lambda: sum(len(m.messages) for m in members) >= len(want),
               commit=True)
    poll_for(members, 1.0, commit=True)
    got = [seq_of(msg) for m in members for msg in m.messages]
    check(len(got) == len(set(got)), f"{what}: {len(got) - len(set(got))} duplicates")
    check(set(got) == want, f"{what}: missing {sorted(want - set(got))[:10]}, "
                            f"unexpected {sorted(set(got) - want)[:10]}")


def leave():
    group = "takeover-leave"
    create_topic(conf, TOPIC, PARTITIONS)
    session_ms = 30000
    members = [Member(f"leave-{i}", conf, [TOPIC], **{"group.id": group,
                                                      "session.timeout.ms": session_ms})
               for i in range(3)]
    poll_until("a 2/2/2 split", members, lambda: split_evenly(members, PARTITIONS, 2))
    produce(conf, TOPIC, range(600), PARTITIONS)
    consume_exactly(members, range(600), "first batch")

    gone, stay = members[0], members[1:]
    log(f"closing {gone.name} holding {gone.partitions()}")
    t0 = time.monotonic()
    gone.close()
    took = poll_until("the two others to hold all six partitions", stay,
                      lambda: split_evenly(stay, PARTITIONS, 3))
    log(f"takeover after leave: {took:.2f}s (session timeout {session_ms / 1000:.0f}s): "
        f"{[m.partitions() for m in stay]}")
    check(took < session_ms / 2000,
          f"takeover took {took:.1f}s: looks like a session expiry, not a LeaveGroup")
    produce(conf, TOPIC, range(600, 1200), PARTITIONS)
    consume_exactly(stay, range(600, 1200), "second batch")
    for m in stay:
        m.close()


def child(group):
    """Joins, consumes and commits, reports its assignment and how many
    records it has committed; runs until killed."""
    m = Member("doomed", conf, [TOPIC], **{"group.id": group, "session.timeout.ms": 6000})
    last = None
    while True:
        m.poll(timeout=0.1, commit=True)
        state = (m.partitions(), len(m.messages))
        if state != last:
            print(json.dumps({"partitions": state[0], "committed": state[1]}), flush=True)
            last = state


def kill():
    group = "takeover-kill"
    create_topic(conf, TOPIC, PARTITIONS)
    survivor = Member("survivor", conf, [TOPIC], **{"group.id": group, "session.timeout.ms": 6000})
    proc = subprocess.Popen([sys.executable, __file__, BOOTSTRAP, "child", group],
                            stdout=subprocess.PIPE, text=True)
    child_state = {"partitions": [], "committed": 0}

    def reader():
        for line in proc.stdout:
            child_state.update(json.loads(line))

    threading.Thread(target=reader, daemon=True).start()
    try:
        poll_until("a 3/3 split with the child", [survivor],
                   lambda: len(survivor.partitions()) == 3 and
                   sorted(set(survivor.partitions()) | set(child_state["partitions"]))
                   == list(range(PARTITIONS)))
        log(f"survivor {survivor.partitions()}, child {child_state['partitions']}")
        produce(conf, TOPIC, range(600), PARTITIONS)
        poll_until("both halves of the first batch consumed", [survivor],
                   lambda: len(survivor.messages) == 300 and child_state["committed"] == 300,
                   commit=True)
        t0 = time.monotonic()
        proc.kill()
        proc.wait()
        n_events = len(survivor.events)
        took = poll_until("the survivor to hold all six partitions", [survivor],
                          lambda: survivor.partitions() == list(range(PARTITIONS)))
        moved = [(round(t - t0, 2), kind, parts) for t, kind, parts in survivor.events[n_events:]]
        log(f"takeover after SIGKILL: {took:.2f}s; survivor's callbacks since: {moved}")
        # The child heartbeats every 500 ms, so its session (6 s) expires
        # about 5.5 s after the kill at the earliest. The bound leaves 1.5 s
        # for heartbeats a busy machine delayed; an eager removal (say, on
        # the closed connection) would show well below it.
        check(moved and moved[0][0] >= 4.0,
              f"the survivor's assignment changed {moved[0][0] if moved else '?'}s after the "
              "kill, before the dead member's session could have expired")
    finally:
        if proc.poll() is None:
            proc.kill()
    survivor.messages.clear()
    produce(conf, TOPIC, range(600, 1200), PARTITIONS)
    poll_until("the second batch", [survivor], lambda: len(survivor.messages) >= 600, commit=True)
    poll_for([survivor], 1.0, commit=True)
    got = sorted(seq_of(m) for m in survivor.messages)
    check(got == list(range(600, 1200)),
          f"after takeover the survivor got {len(got)} records, first {got[:5]}: "
          "it should resume exactly at the dead member's commits")
    survivor.close()


if MODE == "leave":
    leave()
elif MODE == "kill":
    kill()
elif MODE == "child":
    child(sys.argv[3])
    sys.exit(0)
else:
    fail(f"unknown mode {MODE}")
log("ALL OK")
