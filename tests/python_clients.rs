//! The real Python Kafka clients (confluent-kafka/librdkafka and
//! kafka-python) against a real broker process. Each test has its own
//! scratch directory and broker; the scenarios live in `tests/python/`.

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::time::Instant;

use common::{log_tail, run_python, scratch, Broker};

/// Runs a script, and if it fails, shows the end of the broker's log too:
/// the client's view alone rarely explains a protocol-level failure.
fn run_script(broker: &Broker, script: &str, args: &[&str]) -> String {
    let started = Instant::now();
    match panic::catch_unwind(AssertUnwindSafe(|| run_python(script, args))) {
        Ok(out) => {
            eprintln!("{script} {args:?}: {:.1?}\n{out}", started.elapsed());
            out
        }
        Err(e) => {
            eprintln!("{}", log_tail(broker, 60));
            panic::resume_unwind(e)
        }
    }
}

fn assert_all_ok(script: &str, out: &str) {
    // The scripts exit non-zero on failure; this guards against one that
    // returned early without running every check.
    assert!(
        out.lines().any(|l| l == "ALL OK"),
        "{script} did not report ALL OK:\n{out}"
    );
}

/// 100k records per acks level (0, 1, all) with mixed value sizes, headers
/// and explicit timestamps; the four compression codecs; watermarks and
/// timestamp lookups — all byte-exact through librdkafka.
#[test]
fn confluent_kafka_produce_consume_and_list_offsets() {
    let dir = scratch("py-confluent");
    let broker = Broker::start(dir.path(), "");
    let out = run_script(&broker, "confluent_core.py", &[&broker.bootstrap]);
    assert_all_ok("confluent_core.py", &out);
}

/// kafka-python: gzip acks=all round trip with headers, offset lookups,
/// describe/incremental-alter configs, topic deletion.
#[test]
fn kafka_python_produce_consume_configs_and_delete() {
    let dir = scratch("py-kafka-python");
    let broker = Broker::start(dir.path(), "");
    let out = run_script(&broker, "kafka_python_core.py", &[&broker.bootstrap]);
    assert_all_ok("kafka_python_core.py", &out);
}

const RESTART_RECORDS: &str = "20000";

/// Records acknowledged with acks=all are all there, in order and nothing
/// more, after a clean stop and start on the same port and data directory.
#[test]
fn acked_records_survive_clean_restart() {
    let dir = scratch("py-restart");
    let mut broker = Broker::start(dir.path(), "");
    let bootstrap = broker.bootstrap.clone();
    run_script(
        &broker,
        "restart_consume.py",
        &[&bootstrap, "produce", "restart-topic", RESTART_RECORDS],
    );

    let started = Instant::now();
    broker.restart();
    eprintln!("clean restart took {:.1?}", started.elapsed());
    assert_eq!(broker.bootstrap, bootstrap, "restart must reuse the port");

    run_script(
        &broker,
        "restart_consume.py",
        &[&bootstrap, "verify", "restart-topic", RESTART_RECORDS],
    );
}

/// The same after SIGKILL: an acknowledged write has at least reached the
/// OS, so losing the process alone must not lose it.
#[test]
fn acked_records_survive_kill9_restart() {
    let dir = scratch("py-kill9");
    let mut broker = Broker::start(dir.path(), "");
    let bootstrap = broker.bootstrap.clone();
    run_script(
        &broker,
        "restart_consume.py",
        &[&bootstrap, "produce", "kill9-topic", RESTART_RECORDS],
    );

    broker.restart_after_kill9();
    assert_eq!(broker.bootstrap, bootstrap, "restart must reuse the port");

    run_script(
        &broker,
        "restart_consume.py",
        &[&bootstrap, "verify", "kill9-topic", RESTART_RECORDS],
    );
}
