"""Rewriting the ACL file in place (truncate, then write: `cat new >
acls.yaml`, most scripts, many editors) with the *same* rules must never
take them away, not even for a moment.

A writer thread rewrites the file in place 200 times, identical content
each time, while erin produces to `live` one record at a time on one
connection. Every send must be accepted, and the broker must never have
put a rule set without erin's rule in force (its log says how many rules
each reload installed).

Currently fails: the watcher reads the file between the truncation and the
write, an empty file parses as "no rules", and that empty set is put in
force until the next event (the broker logs `ACL file reloaded ...
rules=0`), so requests in that window are refused with 29.
"""

import re
import threading
import time

from acl_common import (Prod, broker_log, check, create_topics, load_env, log, read_acls)

REWRITES = 200


def main():
    env = load_env()
    create_topics(env, ["live"])
    text = read_acls(env)
    p = Prod(env, "erin", message_timeout_ms=10_000)
    p.send_ok("live")
    before = len(re.findall(r"ACL file reloaded.*rules=(\d+)", broker_log(env)))

    done = threading.Event()

    def writer():
        try:
            for _ in range(REWRITES):
                with open(env["acl_file"], "w") as f:
                    f.write(text)
                time.sleep(0.005)
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    sent, refused = 0, []
    while not done.is_set():
        err = p.send("live")
        sent += 1
        if err is not None:
            refused.append(err)
        time.sleep(0.001)
    t.join()
    p.close()

    counts = [int(n) for n in re.findall(r"ACL file reloaded.*rules=(\d+)", broker_log(env))[before:]]
    empty = sum(1 for n in counts if n == 0)
    log(f"{REWRITES} in-place rewrites: {len(counts)} reloads, {empty} of them with no rules; "
        f"{sent} sends, {len(refused)} refused")
    check(empty == 0, f"the broker put an empty rule set in force {empty} times "
          f"during {REWRITES} in-place rewrites of an unchanged file")
    check(not refused, f"{len(refused)} of erin's {sent} sends were refused (after a refusal "
          f"librdkafka keeps the topic's error until its next metadata refresh), first: "
          f"{refused[0] if refused else None}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
