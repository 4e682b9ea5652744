"""What every test script shares: failing with a message the Rust harness
reports, progress lines, the RESULT line it parses, the environment it
passes as JSON, and a logger that keeps librdkafka's expected errors out of
the output. The per-area *_common.py modules re-export these."""

import json
import logging
import sys


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def log(msg):
    print(msg, flush=True)


def result(**kw):
    print("RESULT " + json.dumps(kw), flush=True)


def load_env():
    check(len(sys.argv) == 2, f"usage: {sys.argv[0]} ENV_JSON")
    return json.loads(sys.argv[1])


def quiet_logger(name="rdkafka"):
    """A logger for librdkafka that keeps its (expected) error lines out of
    the test output."""
    lg = logging.getLogger(name)
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg
