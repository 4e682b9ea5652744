"""The ACL file is hot-reloaded, for connections already open.

erin keeps a confluent producer (one connection) open on `live` for the
whole script and sends one record at a time:
  1. rewrite the file without erin's WRITE: her sends turn into 29, and a
     new connection is refused too;
  2. append the rule again in place (>>): sends are accepted again;
  3. a file with an unknown operation, then one with broken YAML: the broker
     logs a refusal naming the file and the line, and the rules in force
     stay (both broken files leave WRITE out, so applying them even in
     part would refuse erin's sends); `portcullis acl add` refuses to edit
     the broken file;
  4. `portcullis acl remove` / `acl add` while the broker runs: the open
     connection sees each change.
For every change two latencies are measured and printed: to the broker's
"ACL file reloaded" log line, and to the first send with the new outcome.
The deadline that fails the test is RELOAD_DEADLINE; a reload slower than
the promised second is reported.
erin keeps a DESCRIBE rule throughout, so the client's metadata never
fails and every refusal comes from the Produce path.
"""

import datetime
import re
import time

from acl_common import (RELOAD_DEADLINE, TOPIC_AUTHORIZATION_FAILED, Prod, broker_log, check,
                        cli, cli_ok, create_topics, expect_code, load_env, log,
                        produce_error, read_acls, rule_lines, wait_until, write_acls)

HEADER = "# hot reload test: erin's rules\n"
DESCRIBE = '{allow: "User:erin", operations: [describe], topic: live}'
WRITE = '{allow: "User:erin", operations: [write], topic: live}'
WRITE_RENDERED = '{allow: "User:erin", operations: [write], topic: "live"}'

latencies = {}
broker_latencies = {}


def now_utc():
    return datetime.datetime.now(datetime.timezone.utc)


def reload_lines(env):
    return [l for l in broker_log(env).splitlines() if "ACL file reloaded" in l]


def broker_reload_latency(env, what, before, t_change):
    """Seconds from the change (our clock) to the broker's next 'ACL file
    reloaded' log line (its timestamp, same host clock)."""
    line, _ = wait_until(f"{what}: the reload in the broker log", RELOAD_DEADLINE,
                         lambda: (reload_lines(env)[before:] or [None])[0])
    ts = datetime.datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
    broker_latencies[what] = (ts - t_change).total_seconds()
    return broker_latencies[what]


def until_refused(p, what):
    start = time.monotonic()
    while True:
        err = p.send("live")
        if err is not None:
            expect_code(err, TOPIC_AUTHORIZATION_FAILED, f"{what}: erin's send")
            break
        check(time.monotonic() - start < RELOAD_DEADLINE,
              f"{what}: erin's sends still accepted after {RELOAD_DEADLINE}s")
        time.sleep(0.02)
    latencies[what] = time.monotonic() - start
    log(f"{what}: erin's open connection refused after {latencies[what] * 1000:.0f} ms")


def until_accepted(p, what):
    start = time.monotonic()
    while True:
        err = p.send("live")
        if err is None:
            break
        expect_code(err, TOPIC_AUTHORIZATION_FAILED, f"{what}: erin's send")
        check(time.monotonic() - start < RELOAD_DEADLINE,
              f"{what}: erin's sends still refused after {RELOAD_DEADLINE}s")
        time.sleep(0.02)
    latencies[what] = time.monotonic() - start
    log(f"{what}: erin's open connection accepted after {latencies[what] * 1000:.0f} ms")


def count(env, needle):
    return sum(needle in line for line in broker_log(env).splitlines())


def new_refusal(env, before):
    """The first 'ACL file refused' log line after the first `before`."""
    lines = [l for l in broker_log(env).splitlines() if "ACL file refused" in l]
    return lines[before] if len(lines) > before else None


def main():
    env = load_env()
    path = env["acl_file"]
    create_topics(env, ["live"])
    p = Prod(env, "erin", message_timeout_ms=10_000)
    p.send_ok("live")
    log("erin produces to live")

    # 1. Remove WRITE by rewriting the file.
    reloads, t = len(reload_lines(env)), now_utc()
    write_acls(env, [DESCRIBE], header=HEADER)
    until_refused(p, "file rewritten without WRITE")
    expect_code(produce_error(env, "erin", "live"), TOPIC_AUTHORIZATION_FAILED,
                "new connection after WRITE was removed")
    broker_reload_latency(env, "file rewritten without WRITE", reloads, t)

    # 2. Put it back by appending a line in place, as `echo >>` would.
    reloads, t = len(reload_lines(env)), now_utc()
    with open(path, "a") as f:
        f.write(f"  - {WRITE}\n")
    until_accepted(p, "WRITE appended in place")
    broker_reload_latency(env, "WRITE appended in place", reloads, t)
    check(produce_error(env, "erin", "live") is None, "new connection after WRITE was restored")
    good = read_acls(env)

    # 3a. Unknown operation on line 5; WRITE missing.
    refused = count(env, "ACL file refused")
    bad_op = HEADER + ("allow_everyone_if_no_acl_found: false\nrules:\n"
                       f"  - {DESCRIBE}\n"
                       '  - {allow: "User:erin", operations: [wrtie], topic: live}\n')
    check(bad_op.splitlines()[4].startswith('  - {allow: "User:erin", operations: [wrtie]'),
          "test bug: the bad entry is not on line 5")
    write_acls(env, None, raw=bad_op)
    line, secs = wait_until("the refusal of the unknown operation in the log", RELOAD_DEADLINE,
                            lambda: new_refusal(env, refused))
    log(f"unknown operation refused after {secs * 1000:.0f} ms: {line.split('  ', 1)[-1]}")
    check(path in line, f"the refusal does not name the file {path}: {line}")
    check("line 5" in line, f"the refusal does not name line 5: {line}")
    check("wrtie" in line, f"the refusal does not name the bad operation: {line}")
    p.send_ok("live")
    check(produce_error(env, "erin", "live") is None,
          "new connection refused while the bad file is on disk: the old rules must stay")

    # The CLI will not edit a file it cannot parse.
    rc, out, err = cli(env, ["acl", "add", "--allow", "--principal", "User:erin",
                             "--operation", "read", "--topic", "live"])
    check(rc != 0, f"acl add on a broken file succeeded: {out}")
    check("line 5" in err and "wrtie" in err, f"acl add's refusal does not explain: {err!r}")
    check(read_acls(env) == bad_op, "acl add changed the broken file")

    # 3b. Broken YAML: an unclosed flow mapping.
    refused = count(env, "ACL file refused")
    bad_yaml = HEADER + ("allow_everyone_if_no_acl_found: false\nrules:\n"
                         f"  - {DESCRIBE}\n"
                         '  - {allow: "User:erin", operations: [write], topic: live\n'
                         "  - {allow: \"User:erin\", operations: [read], topic: live}\n")
    write_acls(env, None, raw=bad_yaml)
    line, secs = wait_until("the refusal of the broken YAML in the log", RELOAD_DEADLINE,
                            lambda: new_refusal(env, refused))
    log(f"broken YAML refused after {secs * 1000:.0f} ms: {line.split('  ', 1)[-1]}")
    check(path in line, f"the refusal does not name the file {path}: {line}")
    m = re.search(r"line (\d+)", line)
    check(m is not None and 5 <= int(m.group(1)) <= 6,
          f"the refusal does not name line 5 or 6 of the broken YAML: {line}")
    p.send_ok("live")
    check(produce_error(env, "erin", "live") is None,
          "new connection refused while broken YAML is on disk: the old rules must stay")
    log("the rules in force stayed through both broken files")

    # 4. Fix the file, then edit it with the CLI while erin stays connected.
    # The fixed file is the version in force (same content): the broker
    # says it is back in sync rather than reloading it.
    in_sync = count(env, "ACL file: the version on disk is in force again")
    write_acls(env, None, raw=good)
    wait_until("the broker to be back in sync with the fixed file", RELOAD_DEADLINE,
               lambda: count(env, "ACL file: the version on disk is in force again") > in_sync)
    p.send_ok("live")

    reloads, t = len(reload_lines(env)), now_utc()
    out = cli_ok(env, ["acl", "remove", "--principal", "User:erin", "--operation", "write",
                       "--topic", "live"])
    check(out.strip() == f"removed {WRITE_RENDERED}", f"acl remove printed {out!r}")
    until_refused(p, "acl remove")
    broker_reload_latency(env, "acl remove", reloads, t)
    reloads, t = len(reload_lines(env)), now_utc()
    out = cli_ok(env, ["acl", "add", "--allow", "--principal", "User:erin", "--operation",
                       "write", "--topic", "live"])
    check(out.strip() == f"added   {WRITE_RENDERED}", f"acl add printed {out!r}")
    until_accepted(p, "acl add")
    broker_reload_latency(env, "acl add", reloads, t)
    p.close()

    text = read_acls(env)
    check(text.startswith(HEADER), f"the CLI dropped the file's header:\n{text}")
    check(sorted(rule_lines(text)) == sorted([
        '{allow: "User:erin", operations: [describe], topic: "live"}', WRITE_RENDERED]),
        f"final rules:\n{text}")
    listed = cli_ok(env, ["acl", "list", "--principal", "User:erin"]).splitlines()
    check(sorted(listed) == sorted(rule_lines(text)), f"acl list printed {listed}")

    slow = {k: v for k, v in broker_latencies.items() if v > 1.0}
    log("broker reload latencies, change to 'ACL file reloaded' (ms): "
        + ", ".join(f"{k}: {v * 1000:.0f}" for k, v in broker_latencies.items()))
    log("client-seen latencies, change to erin's first send with the new outcome (ms; includes "
        "librdkafka's own backoff after a refusal): "
        + ", ".join(f"{k}: {v * 1000:.0f}" for k, v in latencies.items()))
    if slow:
        # The deadline above is what fails the test; over a second on a
        # busy machine is reported, not failed.
        log(f"NOTE: slower than the promised second: {slow}")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
