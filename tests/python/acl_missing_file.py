"""No ACL file, with `acl.allow_missing: true` (the broker refuses to start
without the file otherwise): default deny for everyone but the super user,
until `portcullis acl add` creates the file while the broker runs.

jack's produce to `jobs` is refused (29), admin's is accepted; after
`acl add --allow --principal User:jack --operation write --topic jobs`
(which creates the file) jack's sends are accepted on the connection
that was refused before.
"""

import os
import time

from acl_common import (RELOAD_DEADLINE, TOPIC_AUTHORIZATION_FAILED, Prod, check, cli_ok,
                        create_topics, expect_code, load_env, log, produce_error)


def main():
    env = load_env()
    check(not os.path.exists(env["acl_file"]), "the ACL file exists already")
    create_topics(env, ["jobs"])
    admin = Prod(env, "admin")
    admin.send_ok("jobs")
    admin.close()
    expect_code(produce_error(env, "jack", "jobs"), TOPIC_AUTHORIZATION_FAILED,
                "jack producing to jobs without an ACL file")
    log("no ACL file: jack refused with 29, admin accepted")

    p = Prod(env, "jack")
    expect_code(p.send("jobs"), TOPIC_AUTHORIZATION_FAILED, "jack's long-lived producer")
    cli_ok(env, ["acl", "add", "--allow", "--principal", "User:jack", "--operation", "write",
                 "--topic", "jobs"])
    check(os.path.exists(env["acl_file"]), "acl add did not create the ACL file")
    start = time.monotonic()
    while True:
        err = p.send("jobs")
        if err is None:
            break
        expect_code(err, TOPIC_AUTHORIZATION_FAILED, "jack's send after acl add")
        check(time.monotonic() - start < RELOAD_DEADLINE,
              f"jack still refused {RELOAD_DEADLINE}s after acl add created the file")
        time.sleep(0.02)
    p.close()
    log(f"acl add created the file; jack's producer accepted after "
        f"{(time.monotonic() - start) * 1000:.0f} ms")
    check(produce_error(env, "jack", "jobs") is None, "a new connection of jack's is refused")
    print("ALL OK", flush=True)


if __name__ == "__main__":
    main()
