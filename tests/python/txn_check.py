"""Small steps the Rust tests combine; env["op"] says which:

  "setup":     create `topics` ({name: partitions}) and, for each entry of
               `seed` ({topic: n}), produce n plain records
               (key k<i>, value in-<i:03>, partition i % partitions).
  "read":      RESULT {"records": [[partition, offset, value], ...]} of
               `topic` read with `isolation`.
  "committed": RESULT {"offsets": {partition: offset}} of `group` on `topic`.
"""

from txn_common import (check, committed_offsets, create_topics, load_env, log, produce_plain,
                        read_all, result)

env = load_env()
op = env["op"]
if op == "setup":
    create_topics(env, env["topics"])
    for topic, n in env.get("seed", {}).items():
        parts = env["topics"][topic]
        produce_plain(env, topic,
                      [(f"k{i}".encode(), f"in-{i:03}".encode(), i % parts) for i in range(n)])
elif op == "read":
    recs = read_all(env, env["topic"], env["isolation"])
    result({"records": [[p, o, v.decode()] for p, o, _k, v in recs]})
elif op == "committed":
    offs = committed_offsets(env, env["group"], env["topic"])
    result({"offsets": {str(p): o for p, o in offs.items()}})
else:
    check(False, f"unknown op {op}")
log("ALL OK")
