//! Kafka Streams (issue #14, item 3; issue #16, item 4): a stateless
//! application with `processing.guarantee=exactly_once_v2` and a
//! repartition topic gives the right output across a `kill -9` and a
//! restart; a stateful one restores its state store from its compacted
//! changelog after its local state is deleted.
//!
//! The applications are `tests/java/StreamsApp.java` (a single-file Java
//! program on the jars of tests/kafka/pom.xml). They run as a user that has
//! only the ACLs Kafka's documentation lists for a Streams application
//! (see the program's `setup`), granted by the admin through the Admin API.
//!
//! The stateless application: input -> filter (drop `i % 5 == 0`) ->
//! selectKey (`g<i % 7>`) -> `repartition("rekeyed")` (Streams'
//! `<app>-rekeyed-repartition` topic) -> mapValues (`out-<i>`) -> output,
//! no state store. Each test: the admin creates the topics and grants the
//! ACLs, 2000 keyed records are produced (idempotent producer), the
//! application starts and is killed with SIGKILL once it has committed some
//! transactions and is still mid-stream (it sleeps a little per record),
//! 1000 more records are produced, the application starts again and runs
//! until a read_committed consumer sees all the output, then stops cleanly.
//! A last read_committed read of the whole output topic must hold every
//! expected record exactly once (none missing, none duplicated, none
//! unexpected), each source key's records in order within their output
//! key, and the repartition topic must exist.
//!
//! - `streams_exactly_once_against_portcullis`: embedded Portcullis.
//! - `streams_exactly_once_against_kafka`: a real 1-node Apache Kafka
//!   (SASL_SSL, StandardAuthorizer): the reference, proving the test checks
//!   Kafka's behaviour.
//! - `streams_exactly_once_through_gateway`: Portcullis in gateway mode in
//!   front of the 1-node Kafka, the ACLs enforced by the gateway's edge.
//!
//! The stateful application counts records per input key (`count()` into
//! the RocksDB store `counts`, caching off, so one changelog and one output
//! record per input) and writes each new count to its output. Streams
//! creates the changelog `<app>-counts-changelog` itself, compacted, with
//! 100 ms segments and `min.cleanable.dirty.ratio=0.01` (`topic.` configs),
//! so a cleaner pass can compact it during the test. Each test
//! ([`state_restored_from_changelog`]): 2000 records are counted, the
//! application stops cleanly, the admin checks the changelog (DescribeConfigs
//! `cleanup.policy=compact`, each key's latest value is its count) and waits
//! a while for a cleaner pass; the application's state directory is
//! deleted; 1000 more records arrive; the restarted application must
//! restore every changelog partition (its `StateRestoreListener` reports
//! the records restored) and count on from there: each key's output, read
//! read_committed, must be exactly the counts 1..=n over all 3000 inputs.
//!
//! - `streams_state_restored_against_portcullis`,
//!   `streams_state_restored_against_kafka` (the reference). Through the
//!   gateway the changelog is Kafka's own compacted topic; the stateless
//!   test and the Java client's compacted-topic probe cover that path, so
//!   the suite's time goes elsewhere.
//!
//! The user has only Kafka's documented Streams ACLs on every back end
//! (DescribeCluster, which Streams sends before `describeTopics`, is
//! answered for any logged-in client, as Kafka does). One refusal is
//! asserted, failing the day Portcullis serves the feature:
//! `streams_group_protocol_refused`: KIP-1071's streams rebalance protocol
//! (`group.protocol=streams`) runs on Kafka; Portcullis does not list
//! StreamsGroupHeartbeat (UnsupportedVersionException).
//!
//! Each test prints its figures: when the application ran, how far the
//! first run got before the kill, how many records of aborted transactions
//! and markers the output topic holds, how much of the repartition topic
//! Streams purged (DeleteRecords); for the stateful one, the changelog's
//! records and bytes before and after the cleaner wait, whether a cleaner
//! pass was seen, and how many records the restore read.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kafka::{
    java_program, write_client_properties, ClientAuth, KafkaCluster, KafkaOpts, Listener, ADMIN,
    ADMIN_PASSWORD,
};
use common::{scratch, Broker};

/// The application's user: no super user, only the Streams ACLs.
const USER: (&str, &str) = ("streamer", "streamer-Secret-1");
/// The upstream service user of the gateway test.
const SERVICE: (&str, &str) = ("gateway-svc", "gateway-Svc-Secret-1");
const APP: &str = "orders-eos";
const INPUT: &str = "orders-in";
const OUTPUT: &str = "orders-out";

/// One of the two applications of `StreamsApp.java`: its
/// `application.id` and topics.
struct App {
    id: &'static str,
    input: &'static str,
    output: &'static str,
    /// The stateful one (`--counts`), else the stateless one.
    counts: bool,
}

/// The stateless application.
const EOS: App = App {
    id: APP,
    input: INPUT,
    output: OUTPUT,
    counts: false,
};

/// The stateful application: a count per input key in the store `counts`,
/// each new count written to the output topic.
const COUNTS: App = App {
    id: "clicks-count",
    input: "clicks-in",
    output: "clicks-counts",
    counts: true,
};
const STORE: &str = "counts";
/// Input keys (`u<i % 20>`), so the count of each after inputs `0..n`.
const KEYS: u32 = 20;
/// Per-record sleep of the stateful application's first run: its changelog
/// grows over 2 s at least, so that its 100 ms segments roll many times
/// however fast the machine.
const COUNTS_DELAY_MS: u32 = 1;
/// The internal topics' configs the stateful application asks Streams for:
/// small segments and an eager cleaner, so that the changelog is cleaned
/// before the restore reads it.
const CHANGELOG_CONFIGS: &str = "segment.ms=100,min.cleanable.dirty.ratio=0.01";
/// How long the test waits for a cleaner pass over the changelog before it
/// deletes the state and restarts the application anyway (whether the
/// cleaner ran is reported, not asserted: tests/compaction.rs tests it).
const CLEANER_WAIT: Duration = Duration::from_secs(20);
/// Records produced before the first run, and after the kill.
const FIRST: u32 = 2000;
const SECOND: u32 = 1000;
/// Per-record sleep of the first run: slow enough to be killed mid-stream.
const FIRST_RUN_DELAY_MS: u32 = 3;

/// Deadlines: generous, the machine may be small and busy.
const JVM_DEADLINE: Duration = Duration::from_secs(120);
const RUNNING_DEADLINE: Duration = Duration::from_secs(90);
const COMPLETE_DEADLINE: Duration = Duration::from_secs(100);

/// How the clients reach the broker under test.
struct Target<'a> {
    bootstrap: &'a str,
    ca: &'a Path,
    admin_password: &'a str,
    /// Scratch directory: properties files, state dir, JVM stderr files.
    dir: &'a Path,
}

impl Target<'_> {
    fn properties(&self, user: &str, password: &str) -> PathBuf {
        let path = self.dir.join(format!("{user}.properties"));
        write_client_properties(
            &path,
            &ClientAuth::Scram {
                user,
                password,
                ca: self.ca,
            },
            &[("bootstrap.servers", self.bootstrap)],
        );
        path
    }
}

/// One JVM running `StreamsApp.java <args>`: its stdout lines are collected
/// (and echoed), its stderr goes to `<dir>/<name>.stderr`. The JVM is in a
/// process group of its own, dies with the test binary (parent-death
/// signal) and is killed on drop.
struct JavaProc {
    name: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr: PathBuf,
}

impl JavaProc {
    fn spawn(dir: &Path, name: &str, args: &[String]) -> JavaProc {
        let stderr = dir.join(format!("{name}.stderr"));
        let mut cmd = java_program("StreamsApp.java", &stderr);
        cmd.args(args);
        let mut child = cmd.spawn().expect("start java");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let (l, n) = (lines.clone(), name.to_string());
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // PROGRESS every 100 ms and one REC per record would drown
                // the test's output.
                if !line.starts_with("PROGRESS") && !line.starts_with("REC\t") {
                    eprintln!("{n}: {line}");
                }
                l.lock().unwrap().push(line);
            }
        });
        JavaProc {
            name: name.to_string(),
            child: Some(child),
            lines,
            reader: Some(reader),
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits for a stdout line `f` accepts; panics (with the JVM's stderr
    /// tail) at the deadline or when the JVM exits first.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut seen = 0;
        loop {
            let lines = self.lines();
            for l in &lines[seen..] {
                if let Some(v) = f(l) {
                    return v;
                }
            }
            seen = lines.len();
            let exited = match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                None => Some("killed".into()),
                _ => None,
            };
            if let Some(status) = exited {
                // Lines written just before the exit.
                std::thread::sleep(Duration::from_millis(200));
                if self.lines().len() == seen {
                    panic!(
                        "{}: exited ({status}) before {what}\n{}",
                        self.name,
                        self.stderr_tail(60)
                    );
                }
                continue;
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}\n{}",
                    self.name,
                    self.stderr_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the JVM to exit; kills it at the deadline. Returns whether
    /// it exited 0 in time.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let ok = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.success(),
                Ok(None) if Instant::now() > deadline => break false,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break false,
            }
        };
        self.kill9();
        ok
    }

    /// SIGTERM: the application closes cleanly (its shutdown hook).
    fn sigterm(&self) {
        if let Some(c) = &self.child {
            // SAFETY: plain syscall on our own child.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
    }

    /// SIGKILL to the JVM's process group: no shutdown hook, no flush.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain syscall; the group id is the child's pid.
            unsafe {
                libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }

    fn stderr_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!(
            "--- {} stderr ({}):\n{}",
            self.name,
            self.stderr.display(),
            common::tail(&text, n)
        )
    }
}

impl Drop for JavaProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Runs one short `StreamsApp.java` mode to its end and returns its stdout
/// lines; panics with its stderr unless it exits 0 within the deadline.
fn run_java(dir: &Path, name: &str, args: &[String], context: &dyn Fn() -> String) -> Vec<String> {
    let started = Instant::now();
    let mut p = JavaProc::spawn(dir, name, args);
    if !p.wait_exit(JVM_DEADLINE) {
        panic!(
            "{name} failed (or passed {JVM_DEADLINE:?})\n{}\n{}",
            p.stderr_tail(60),
            context()
        );
    }
    eprintln!("{name}: {:.1?}", started.elapsed());
    p.lines()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The output the application must produce for inputs `0..total`:
/// `out-<i>` keyed `g<i % 7>`, for every `i` not divisible by 5.
fn expected(total: u32) -> BTreeMap<u32, String> {
    (0..total)
        .filter(|i| i % 5 != 0)
        .map(|i| (i, format!("g{}", i % 7)))
        .collect()
}

/// One output record as the consumer printed it.
#[derive(Debug, Clone)]
struct Rec {
    partition: i32,
    offset: i64,
    key: String,
    value: String,
}

fn parse_records(lines: &[String]) -> Vec<Rec> {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                ["REC", p, o, k, v] => Some(Rec {
                    partition: p.parse().ok()?,
                    offset: o.parse().ok()?,
                    key: k.to_string(),
                    value: v.to_string(),
                }),
                _ => None,
            }
        })
        .collect()
}

/// Everything wrong with `records` as the output of inputs `0..total`:
/// missing, duplicated, unexpected or wrongly keyed records, and a source
/// key whose records are out of order within their output key.
fn exactly_once_violations(records: &[Rec], total: u32) -> Vec<String> {
    let want = expected(total);
    let mut wrong = Vec::new();
    let mut seen: BTreeMap<u32, Vec<&Rec>> = BTreeMap::new();
    for r in records {
        let i = r
            .value
            .strip_prefix("out-")
            .and_then(|n| n.parse::<u32>().ok());
        match i.and_then(|i| want.get(&i).map(|k| (i, k))) {
            Some((i, key)) if *key == r.key => seen.entry(i).or_default().push(r),
            _ => wrong.push(format!("unexpected record {r:?}")),
        }
    }
    let missing: Vec<u32> = want
        .keys()
        .filter(|i| !seen.contains_key(i))
        .copied()
        .collect();
    if !missing.is_empty() {
        wrong.push(format!(
            "{} records missing, e.g. inputs {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    let dups: Vec<(u32, Vec<(i32, i64)>)> = seen
        .iter()
        .filter(|(_, rs)| rs.len() > 1)
        .map(|(i, rs)| (*i, rs.iter().map(|r| (r.partition, r.offset)).collect()))
        .collect();
    if !dups.is_empty() {
        wrong.push(format!(
            "{} records more than once, e.g. (input, [(partition, offset)]) {:?}",
            dups.len(),
            &dups[..dups.len().min(5)]
        ));
    }
    // Records of one source key (u<i % 20>, one input partition) reach one
    // output key through one repartition partition in input order: within
    // the output partition their inputs must increase.
    let mut sorted: Vec<&Rec> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut last: BTreeMap<(String, u32), (u32, i64)> = BTreeMap::new();
    let mut disorder = Vec::new();
    for r in sorted {
        let Some(i) = r
            .value
            .strip_prefix("out-")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let k = (r.key.clone(), i % 20);
        if let Some((prev, prev_off)) = last.get(&k) {
            if *prev >= i {
                disorder.push(format!(
                    "{} (source u{}): input {i} at offset {} after input {prev} at offset {prev_off}",
                    r.key,
                    i % 20,
                    r.offset
                ));
            }
        }
        last.insert(k, (i, r.offset));
    }
    if !disorder.is_empty() {
        wrong.push(format!(
            "{} records out of order per key, e.g. {:?}",
            disorder.len(),
            &disorder[..disorder.len().min(5)]
        ));
    }
    wrong
}

/// The admin creates `app`'s topics and grants the user the Streams ACLs,
/// then produces the inputs `then_produce` (`from..to`) when some.
fn setup(
    t: &Target<'_>,
    app: &App,
    name: &str,
    then_produce: Option<(u32, u32)>,
    context: &dyn Fn() -> String,
) {
    let admin = t.properties(ADMIN, t.admin_password);
    let admin = admin.display().to_string();
    let mut setup = args(&[
        "setup", "--config", &admin, "--user", USER.0, "--app", app.id, "--input", app.input,
        "--output", app.output,
    ]);
    setup.extend(produce_args(app, then_produce));
    let out = run_java(t.dir, name, &setup, context);
    assert!(out.iter().any(|l| l == "SETUP\tok"), "{name}: {out:?}");
    if let Some((from, to)) = then_produce {
        let want = format!("PRODUCED\t{}", to - from);
        assert!(out.contains(&want), "{name}: {out:?}");
    }
}

/// `--then-produce <app's input> --from <from> --to <to>`, or nothing.
fn produce_args(app: &App, range: Option<(u32, u32)>) -> Vec<String> {
    match range {
        Some((from, to)) => args(&[
            "--then-produce",
            app.input,
            "--from",
            &from.to_string(),
            "--to",
            &to.to_string(),
        ]),
        None => Vec::new(),
    }
}

/// Starts `app` as the user, sleeping `delay` ms per record, with consumer
/// group protocol `protocol` (`classic` or `streams`) and `topic_configs`
/// (`k=v,...`) for the internal topics Streams creates.
fn start_app(
    t: &Target<'_>,
    app: &App,
    name: &str,
    delay: u32,
    protocol: &str,
    topic_configs: &str,
) -> JavaProc {
    let user = t.properties(USER.0, USER.1);
    let state = t.dir.join("state");
    let mut args = vec![
        "run".to_string(),
        "--config".into(),
        user.display().to_string(),
        "--app".into(),
        app.id.into(),
        "--input".into(),
        app.input.into(),
        "--output".into(),
        app.output.into(),
        "--state-dir".into(),
        state.display().to_string(),
        "--delay-ms".into(),
        delay.to_string(),
        "--group-protocol".into(),
        protocol.into(),
        "--topic-config".into(),
        topic_configs.into(),
    ];
    if app.counts {
        args.push("--counts".into());
    }
    JavaProc::spawn(t.dir, name, &args)
}

/// The test proper, against any target; `context` prints the broker's side
/// when something fails.
fn exactly_once_across_restart(t: &Target<'_>, context: &dyn Fn() -> String) {
    let started = Instant::now();
    let admin = t.properties(ADMIN, t.admin_password);
    let admin = admin.display().to_string();

    setup(t, &EOS, "setup", None, context);

    let produce = |from: u32, to: u32, name: &str| {
        let out = run_java(
            t.dir,
            name,
            &args(&[
                "produce",
                "--config",
                &admin,
                "--topic",
                INPUT,
                "--from",
                &from.to_string(),
                "--to",
                &to.to_string(),
            ]),
            context,
        );
        let want = format!("PRODUCED\t{}", to - from);
        assert!(out.contains(&want), "{name}: {out:?}");
    };
    produce(0, FIRST, "produce-1");

    let run = |name: &str, delay: u32| start_app(t, &EOS, name, delay, "classic", "");
    let want_first = expected(FIRST).len() as u64;
    let progress = |l: &str| -> Option<(u64, u64)> {
        let f: Vec<&str> = l.split('\t').collect();
        match f.as_slice() {
            ["PROGRESS", mapped, commits] => Some((mapped.parse().ok()?, commits.parse().ok()?)),
            _ => None,
        }
    };
    let fail_with = |p: &JavaProc, what: String| -> ! {
        panic!("{what}\n{}\n{}", p.stderr_tail(80), context());
    };

    // First run: killed mid-stream, after a few committed transactions.
    let t0 = Instant::now();
    let mut app = run("app-1", FIRST_RUN_DELAY_MS);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.wait_for("STATE RUNNING", RUNNING_DEADLINE, |l| {
            (l == "STATE\tRUNNING").then_some(())
        });
        let running_in = t0.elapsed();
        let at_kill = app.wait_for("some committed output", RUNNING_DEADLINE, |l| {
            progress(l).filter(|(mapped, commits)| *mapped >= want_first / 4 && *commits >= 3)
        });
        (running_in, at_kill)
    }));
    let (running_in, (mapped, commits)) = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{}", context());
            std::panic::resume_unwind(e)
        }
    };
    app.kill9();
    eprintln!(
        "app-1: RUNNING after {running_in:.1?}; killed with -9 after {:.1?}, {mapped} of {want_first} records mapped, {commits} transactions committed",
        t0.elapsed()
    );
    assert!(
        mapped < want_first,
        "the first run was not killed mid-stream ({mapped} of {want_first} mapped): slow it down"
    );

    produce(FIRST, FIRST + SECOND, "produce-2");

    // Second run: to the end, then a clean close.
    let total = FIRST + SECOND;
    let want_all = expected(total).len();
    let t1 = Instant::now();
    let mut app = run("app-2", 0);
    let restart = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.wait_for("STATE RUNNING after the restart", RUNNING_DEADLINE, |l| {
            (l == "STATE\tRUNNING").then_some(())
        })
    }));
    if restart.is_err() {
        fail_with(&app, "app-2 did not reach RUNNING".into());
    }
    let running_again = t1.elapsed();
    let consume = |name: &str, wait: Duration| -> Vec<String> {
        run_java(
            t.dir,
            name,
            &args(&[
                "consume",
                "--config",
                &admin,
                "--topic",
                OUTPUT,
                "--expect",
                &want_all.to_string(),
                "--wait-ms",
                &wait.as_millis().to_string(),
            ]),
            context,
        )
    };
    let complete = consume("consume-wait", COMPLETE_DEADLINE);
    let complete_in = t1.elapsed();
    let seen = parse_records(&complete).len();
    if seen < want_all {
        let errors: Vec<String> = app
            .lines()
            .into_iter()
            .filter(|l| l.starts_with("ERROR") || l.starts_with("STATE"))
            .collect();
        fail_with(
            &app,
            format!("the output did not complete: {seen} of {want_all} records; app-2: {errors:?}"),
        );
    }
    app.sigterm();
    app.wait_for("CLOSED", Duration::from_secs(60), |l| {
        (l == "CLOSED").then_some(())
    });
    app.wait_exit(Duration::from_secs(30));

    // The verdict: the whole output, read_committed, after the clean close.
    let last = consume("consume-final", Duration::from_secs(30));
    let records = parse_records(&last);
    let topics: BTreeSet<&str> = last
        .iter()
        .filter_map(|l| l.strip_prefix("TOPIC\t"))
        .collect();
    let repartition = format!("{APP}-rekeyed-repartition");
    let mut wrong = exactly_once_violations(&records, total);
    if !topics.contains(repartition.as_str()) {
        wrong.push(format!("no topic {repartition} on the broker: {topics:?}"));
    }
    // (start, end) offsets per topic, summed over its partitions.
    let mut offsets: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for l in &last {
        if let ["OFFSETS", topic, _, start, end] = l.split('\t').collect::<Vec<_>>().as_slice() {
            let e = offsets.entry(topic).or_default();
            e.0 += start.parse::<i64>().unwrap_or(0);
            e.1 += end.parse::<i64>().unwrap_or(0);
        }
    }
    let uncommitted: i64 = last
        .iter()
        .find_map(|l| l.strip_prefix("UNCOMMITTED\t")?.parse().ok())
        .unwrap_or(-1);
    let (_, out_end) = offsets.get(OUTPUT).copied().unwrap_or_default();
    let (purged, rep_end) = offsets
        .get(repartition.as_str())
        .copied()
        .unwrap_or_default();
    eprintln!(
        "streams: app-2 RUNNING after {running_again:.1?}, output complete after {complete_in:.1?}; \
         {} output records read_committed for {total} inputs ({want_all} expected); output offsets \
         {out_end}: {} records of aborted transactions, {} transaction markers; repartition topic: \
         {rep_end} offsets, the first {purged} purged by Streams; whole test {:.1?}",
        records.len(),
        uncommitted - records.len() as i64,
        out_end - uncommitted,
        started.elapsed()
    );
    if !wrong.is_empty() {
        eprintln!("{}", context());
    }
    assert!(
        wrong.is_empty(),
        "the Streams output is not exactly once:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn streams_exactly_once_against_portcullis() {
    let dir = Kept::new("streams");
    // No rule but the admin's (a super user): the application gets only
    // what `setup` grants through the Admin API.
    let acl = dir.path().join("acls.yaml");
    std::fs::write(&acl, "rules: []\n").unwrap();
    let broker = Broker::start_secure(
        dir.path(),
        &format!(
            "acl:\n  file: {}\ngroups:\n  initial_rebalance_delay_ms: 0\n",
            acl.display()
        ),
    );
    broker.add_user(USER.0, USER.1);
    let admin_password = broker.admin_password.clone().expect("admin password");
    let ca = broker.ca_file();
    let bootstrap = broker.addr("SASL_SSL").to_string();
    let target = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: &admin_password,
        dir: dir.path(),
    };
    let context = || common::log_tail(&broker, 60);
    exactly_once_across_restart(&target, &context);
}

/// A test's scratch directory: deleted at the end, kept for inspection
/// when the test panics (or always with `PORTCULLIS_KEEP`).
struct Kept(Option<tempfile::TempDir>);

impl Kept {
    fn new(name: &str) -> Kept {
        Kept(Some(scratch(name)))
    }

    fn path(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        let keep = std::env::var_os("PORTCULLIS_KEEP").is_some();
        if let Some(dir) = self.0.take().filter(|_| keep || std::thread::panicking()) {
            eprintln!("keeping {} for inspection", dir.keep().display());
        }
    }
}

#[test]
fn streams_exactly_once_against_kafka() {
    let kafka = KafkaCluster::start(
        "streams",
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::SaslSsl],
            users: &[USER],
            authorizer: true,
            ..Default::default()
        },
    );
    let dir = Kept::new("streams-kafka");
    let ca = kafka.ca_file();
    let bootstrap = kafka.bootstrap(Listener::SaslSsl);
    let target = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: ADMIN_PASSWORD,
        dir: dir.path(),
    };
    let context = || kafka.logs_tail(40);
    exactly_once_across_restart(&target, &context);
}

/// A gateway in front of `kafka` as its service user. The gateway's own ACL
/// file (`acl`) holds no rule: the application gets only what `setup`
/// grants through the gateway's Admin API (answered by the edge). Kafka
/// behind it has no authorizer; the service user does what the edge
/// allowed. `sasl:` (the gateway's own credential store) is spelled out:
/// the harness adds its own only when the text has no `sasl:` at all, and
/// the upstream section has one.
fn gateway_yaml(kafka: &KafkaCluster, dir: &Path, acl: &Path) -> String {
    format!(
        "backend: gateway\ngateway:\n  bootstrap_servers: [\"{}\"]\n  security_protocol: SASL_SSL\n  tls:\n    ca_file: {}\n  sasl:\n    username: {}\n    password: {}\nsasl:\n  credentials: {}\nacl:\n  file: {}\n",
        kafka.addr(0, Listener::SaslSsl),
        kafka.ca_file().display(),
        SERVICE.0,
        SERVICE.1,
        dir.join("credentials.yaml").display(),
        acl.display(),
    )
}

#[test]
fn streams_exactly_once_through_gateway() {
    let kafka = KafkaCluster::start(
        "streams-gw",
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::SaslSsl],
            users: &[SERVICE],
            ..Default::default()
        },
    );
    let dir = Kept::new("streams-gateway");
    let acl = dir.path().join("acls.yaml");
    std::fs::write(&acl, "rules: []\n").unwrap();
    let gw = Broker::start_secure(dir.path(), &gateway_yaml(&kafka, dir.path(), &acl));
    gw.add_user(USER.0, USER.1);
    let admin_password = gw.admin_password.clone().expect("admin password");
    let ca = gw.ca_file();
    let bootstrap = gw.addr("SASL_SSL").to_string();
    let target = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: &admin_password,
        dir: dir.path(),
    };
    let context = || format!("{}\n{}", common::log_tail(&gw, 60), kafka.logs_tail(30));
    exactly_once_across_restart(&target, &context);
}

/// KIP-1071's streams rebalance protocol (`group.protocol=streams`, opt-in
/// in Kafka 4.4) is not implemented: Portcullis does not list
/// StreamsGroupHeartbeat in ApiVersions (edge and gateway alike), so the
/// application stops with Kafka's own UnsupportedVersionException at its
/// first heartbeat. Apache Kafka runs the same application (the
/// reference). This starts failing the day Portcullis serves the protocol:
/// then test it like the classic one, and update the README.
#[test]
fn streams_group_protocol_refused() {
    let started = Instant::now();
    let kafka = KafkaCluster::start(
        "streams-kip1071",
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::SaslSsl],
            users: &[USER],
            authorizer: true,
            ..Default::default()
        },
    );
    let kdir = scratch("streams-kip1071-kafka");
    let (kca, kbootstrap) = (kafka.ca_file(), kafka.bootstrap(Listener::SaslSsl));
    let on_kafka = Target {
        bootstrap: &kbootstrap,
        ca: &kca,
        admin_password: ADMIN_PASSWORD,
        dir: kdir.path(),
    };
    let kcontext = || kafka.logs_tail(40);
    setup(&on_kafka, &EOS, "setup-kafka", None, &kcontext);
    let mut app = start_app(&on_kafka, &EOS, "app-kafka", 0, "streams", "");
    app.wait_for("STATE RUNNING on Kafka", RUNNING_DEADLINE, |l| {
        (l == "STATE\tRUNNING").then_some(())
    });
    app.kill9();
    drop(kafka);

    let dir = scratch("streams-kip1071");
    let broker = Broker::start_secure(dir.path(), "");
    broker.add_user(USER.0, USER.1);
    let admin_password = broker.admin_password.clone().expect("admin password");
    let (ca, bootstrap) = (broker.ca_file(), broker.addr("SASL_SSL").to_string());
    let on_portcullis = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: &admin_password,
        dir: dir.path(),
    };
    let context = || common::log_tail(&broker, 40);
    setup(&on_portcullis, &EOS, "setup", None, &context);
    let mut app = start_app(&on_portcullis, &EOS, "app", 0, "streams", "");
    let error = app.wait_for("the application's error", RUNNING_DEADLINE, |l| {
        if l == "STATE\tRUNNING" {
            panic!(
                "the streams group protocol works on Portcullis now: test it like the classic \
                 one and update the README"
            );
        }
        l.starts_with("ERROR\t").then(|| l.to_string())
    });
    app.wait_exit(Duration::from_secs(60));
    assert!(
        error.contains("org.apache.kafka.common.errors.UnsupportedVersionException"),
        "want UnsupportedVersionException, got {error}\n{}",
        app.stderr_tail(40)
    );
    eprintln!(
        "streams_group_protocol_refused: Kafka runs it, Portcullis: {error}; {:.1?}",
        started.elapsed()
    );
}

/// How many of the inputs `0..n` have key `u<k>`.
fn inputs_of_key(n: u32, k: u32) -> u32 {
    (0..n).filter(|i| i % KEYS == k).count() as u32
}

/// Everything wrong with `records` as the counting application's output for
/// inputs `0..total`: per key, in offset order, exactly the counts 1, 2, ...
/// up to the key's number of inputs. A store that restarted empty (or from
/// a changelog that lost a key's latest value) starts a key at 1 again; a
/// restore that double-counts skips counts.
fn count_violations(records: &[Rec], total: u32) -> Vec<String> {
    let mut sorted: Vec<&Rec> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut per_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in sorted {
        per_key.entry(&r.key).or_default().push(&r.value);
    }
    let mut wrong = Vec::new();
    for k in 0..KEYS {
        let key = format!("u{k}");
        let want: Vec<String> = (1..=inputs_of_key(total, k))
            .map(|c| c.to_string())
            .collect();
        let got: Vec<&str> = per_key.remove(key.as_str()).unwrap_or_default();
        if got != want {
            let first_bad = got
                .iter()
                .zip(&want)
                .position(|(g, w)| g != w)
                .unwrap_or(got.len().min(want.len()));
            wrong.push(format!(
                "{key}: {} counts, want 1..={}; from position {first_bad}: got {:?}, want {:?}",
                got.len(),
                want.len(),
                &got[first_bad..got.len().min(first_bad + 5)],
                &want[first_bad..want.len().min(first_bad + 5)],
            ));
        }
    }
    for (key, got) in per_key {
        wrong.push(format!("unexpected key {key}: {} records", got.len()));
    }
    wrong
}

/// What `inspect` printed about a changelog.
#[derive(Debug, Default)]
struct Changelog {
    configs: BTreeMap<String, String>,
    /// Per partition, at the first and at the last read: (log start, end
    /// offset, records read_committed, bytes on disk).
    first: BTreeMap<i32, (i64, i64, i64, i64)>,
    last: BTreeMap<i32, (i64, i64, i64, i64)>,
    /// Each key's latest value (a count).
    latest: BTreeMap<String, i64>,
    waited_ms: u64,
}

impl Changelog {
    fn parse(lines: &[String]) -> Changelog {
        let mut c = Changelog::default();
        for l in lines {
            let f: Vec<&str> = l.split('\t').collect();
            match f.as_slice() {
                ["CONFIG", k, v] => {
                    c.configs.insert(k.to_string(), v.to_string());
                }
                ["LOG", which, p, start, end, records, bytes] => {
                    let n = |s: &str| s.parse::<i64>().unwrap_or(-1);
                    let v = (n(start), n(end), n(records), n(bytes));
                    let map = if *which == "first" {
                        &mut c.first
                    } else {
                        &mut c.last
                    };
                    map.insert(p.parse().unwrap_or(-1), v);
                }
                ["LATEST", k, v] => {
                    c.latest.insert(k.to_string(), v.parse().unwrap_or(-1));
                }
                ["WAITED", ms] => c.waited_ms = ms.parse().unwrap_or(0),
                _ => {}
            }
        }
        c
    }

    /// (records, bytes on disk) summed over the partitions of a read.
    fn totals(read: &BTreeMap<i32, (i64, i64, i64, i64)>) -> (i64, i64) {
        read.values()
            .fold((0, 0), |(r, b), (_, _, records, bytes)| {
                (r + records, b + bytes)
            })
    }
}

/// Lines `RESTORED <store> <topic> <partition> <records>` of a run:
/// (partition, records restored).
fn restored(lines: &[String]) -> BTreeMap<i32, i64> {
    lines
        .iter()
        .filter_map(|l| match l.split('\t').collect::<Vec<_>>().as_slice() {
            ["RESTORED", STORE, _, p, n] => Some((p.parse().ok()?, n.parse().ok()?)),
            _ => None,
        })
        .collect()
}

/// The stateful test, against any target: the counting application (a
/// RocksDB store whose changelog Streams creates compacted) counts
/// `FIRST` inputs and stops cleanly; the admin checks the changelog is
/// compacted and holds each key's count, and waits a while for a cleaner
/// pass over it; `SECOND` more inputs arrive; the application's whole
/// local state directory is deleted; the restarted application must
/// restore its store from the changelog (its restore listener reports
/// records restored) and go on counting from there: each key's output
/// must be exactly the counts 1..=n over all the inputs.
fn state_restored_from_changelog(t: &Target<'_>, context: &dyn Fn() -> String) {
    let started = Instant::now();
    let admin = t.properties(ADMIN, t.admin_password).display().to_string();
    let changelog = format!("{}-{STORE}-changelog", COUNTS.id);
    let state = t.dir.join("state");
    let fail_with = |p: &JavaProc, what: String| -> ! {
        panic!("{what}\n{}\n{}", p.stderr_tail(80), context());
    };
    let mapped = |l: &str| -> Option<u64> {
        match l.split('\t').collect::<Vec<_>>().as_slice() {
            ["PROGRESS", mapped, _] => mapped.parse().ok(),
            _ => None,
        }
    };

    setup(t, &COUNTS, "setup", Some((0, FIRST)), context);

    // First run: count the first inputs, then a clean close.
    let t0 = Instant::now();
    let mut app = start_app(
        t,
        &COUNTS,
        "app-1",
        COUNTS_DELAY_MS,
        "classic",
        CHANGELOG_CONFIGS,
    );
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.wait_for("STATE RUNNING", RUNNING_DEADLINE, |l| {
            (l == "STATE\tRUNNING").then_some(())
        });
        let running_in = t0.elapsed();
        app.wait_for("every first input counted", COMPLETE_DEADLINE, |l| {
            mapped(l).filter(|n| *n >= u64::from(FIRST))
        });
        running_in
    }));
    let running_in = match first {
        Ok(v) => v,
        Err(_) => fail_with(&app, "app-1 did not count the first inputs".into()),
    };
    let counted_in = t0.elapsed();
    // The store is on disk: RocksDB files under <state>/<app>/<task>/rocksdb/counts.
    let stores = find_dirs(&state, &format!("rocksdb/{STORE}"));
    app.sigterm();
    app.wait_for("CLOSED", Duration::from_secs(60), |l| {
        (l == "CLOSED").then_some(())
    });
    app.wait_exit(Duration::from_secs(30));
    assert!(
        !stores.is_empty(),
        "app-1 left no RocksDB store `{STORE}` under {}",
        state.display()
    );
    eprintln!(
        "app-1: RUNNING after {running_in:.1?}, {FIRST} inputs counted after {counted_in:.1?}, \
         closed after {:.1?}; stores on disk: {}",
        t0.elapsed(),
        stores.len()
    );

    // The changelog, as the admin sees it, now and after a cleaner pass
    // (or the wait): compacted, holding each key's count after FIRST
    // inputs (the cleaner must keep every key's latest value). Caching is
    // off, so the first run wrote one changelog record per input: fewer
    // records than that means a cleaner pass removed old versions. Then
    // the same JVM produces the next inputs, while the application is
    // down.
    let mut inspect = args(&[
        "inspect",
        "--config",
        &admin,
        "--topic",
        &changelog,
        "--written",
        &FIRST.to_string(),
        "--wait-ms",
        &CLEANER_WAIT.as_millis().to_string(),
    ]);
    inspect.extend(produce_args(&COUNTS, Some((FIRST, FIRST + SECOND))));
    let out = run_java(t.dir, "inspect", &inspect, context);
    let want = format!("PRODUCED\t{SECOND}");
    assert!(out.contains(&want), "inspect: {out:?}");
    let log = Changelog::parse(&out);
    let policy = log.configs.get("cleanup.policy").map(String::as_str);
    assert_eq!(
        policy,
        Some("compact"),
        "the changelog {changelog}: {:?}",
        log.configs
    );
    let want_latest: BTreeMap<String, i64> = (0..KEYS)
        .map(|k| (format!("u{k}"), i64::from(inputs_of_key(FIRST, k))))
        .collect();
    assert_eq!(
        log.latest, want_latest,
        "the changelog's latest value per key is not the count after {FIRST} inputs"
    );
    let (records_before, bytes_before) = Changelog::totals(&log.first);
    let (records_after, bytes_after) = Changelog::totals(&log.last);
    let cleaned = records_after < i64::from(FIRST);
    eprintln!(
        "changelog {changelog}: {:?}; {FIRST} records written; read_committed: {records_before} \
         records, {bytes_before} bytes on disk, then after {} ms {records_after} records, \
         {bytes_after} bytes; per partition (log start, end, records, bytes) {:?} -> {:?}; \
         cleaner pass seen: {cleaned}",
        log.configs, log.waited_ms, log.first, log.last
    );

    // The local state goes: the restart has nothing but the changelog.
    std::fs::remove_dir_all(&state).expect("delete the state directory");
    assert!(!state.exists());

    // Second run: restores the store from the changelog, counts on.
    let total = FIRST + SECOND;
    let t1 = Instant::now();
    let mut app = start_app(t, &COUNTS, "app-2", 0, "classic", CHANGELOG_CONFIGS);
    let restart = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.wait_for("STATE RUNNING after the restart", RUNNING_DEADLINE, |l| {
            (l == "STATE\tRUNNING").then_some(())
        })
    }));
    if restart.is_err() {
        fail_with(&app, "app-2 did not reach RUNNING".into());
    }
    let running_again = t1.elapsed();
    let consume = |name: &str, wait: Duration| -> Vec<String> {
        run_java(
            t.dir,
            name,
            &args(&[
                "consume",
                "--config",
                &admin,
                "--topic",
                COUNTS.output,
                "--expect",
                &total.to_string(),
                "--wait-ms",
                &wait.as_millis().to_string(),
            ]),
            context,
        )
    };
    // Counted here means committed by the clean close below; the final read
    // shows what was.
    let counted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        app.wait_for("every new input counted", COMPLETE_DEADLINE, |l| {
            mapped(l).filter(|n| *n >= u64::from(SECOND))
        })
    }));
    if counted.is_err() {
        fail_with(&app, "app-2 did not count the new inputs".into());
    }
    let complete_in = t1.elapsed();
    app.sigterm();
    app.wait_for("CLOSED", Duration::from_secs(60), |l| {
        (l == "CLOSED").then_some(())
    });
    app.wait_exit(Duration::from_secs(30));
    let lines = app.lines();
    let restores = restored(&lines);
    let restore_starts: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("RESTORE_START\t"))
        .collect();

    // The verdict: the whole output, read_committed, after the clean close.
    let last = consume("consume", Duration::from_secs(30));
    let records = parse_records(&last);
    let mut wrong = count_violations(&records, total);
    let restored_total: i64 = restores.values().sum();
    // Every changelog partition that holds records was restored, and the
    // restore read at least each key's latest value and at most what the
    // first run wrote.
    for (p, (_, end, records, _)) in &log.last {
        if *records > 0 && restores.get(p).copied().unwrap_or(0) == 0 {
            wrong.push(format!(
                "changelog partition {p} ({records} records, end {end}) was not restored: {restores:?}"
            ));
        }
    }
    if restored_total < i64::from(KEYS) || restored_total > i64::from(FIRST) {
        wrong.push(format!(
            "{restored_total} records restored, want {KEYS}..={FIRST}: {restores:?}"
        ));
    }
    eprintln!(
        "streams state: app-2 RUNNING after {running_again:.1?} (restore included), new inputs \
         counted after {complete_in:.1?}; restored {restored_total} records (per partition {restores:?}) \
         of {records_after} in the changelog, {FIRST} written ({}); restore ranges {:?}; {} output \
         records for {total} inputs; whole test {:.1?}",
        if cleaned {
            "the cleaner had compacted it"
        } else {
            "no cleaner pass seen"
        },
        restore_starts,
        records.len(),
        started.elapsed()
    );
    if !wrong.is_empty() {
        eprintln!("{}", context());
    }
    assert!(
        wrong.is_empty(),
        "the store was not restored from its changelog:\n  {}",
        wrong.join("\n  ")
    );
}

/// Directories under `root` whose path ends with `suffix`.
fn find_dirs(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                if path.ends_with(suffix) {
                    found.push(path.clone());
                }
                todo.push(path);
            }
        }
    }
    found
}

#[test]
fn streams_state_restored_against_kafka() {
    let kafka = KafkaCluster::start(
        "streams-state",
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::SaslSsl],
            users: &[USER],
            authorizer: true,
            // The cleaner looks for dirty logs every half second, not
            // every 15 s.
            props: &[("log.cleaner.backoff.ms", "500")],
            ..Default::default()
        },
    );
    let dir = Kept::new("streams-state-kafka");
    let ca = kafka.ca_file();
    let bootstrap = kafka.bootstrap(Listener::SaslSsl);
    let target = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: ADMIN_PASSWORD,
        dir: dir.path(),
    };
    let context = || kafka.logs_tail(40);
    state_restored_from_changelog(&target, &context);
}

#[test]
fn streams_state_restored_against_portcullis() {
    let dir = Kept::new("streams-state");
    let acl = dir.path().join("acls.yaml");
    std::fs::write(&acl, "rules: []\n").unwrap();
    // The cleaner looks for dirty logs every half second, as on the Kafka
    // column, not every 15 s.
    let broker = Broker::start_secure(
        dir.path(),
        &format!(
            "acl:\n  file: {}\ngroups:\n  initial_rebalance_delay_ms: 0\nlog:\n  cleaner_backoff_ms: 500\n",
            acl.display()
        ),
    );
    broker.add_user(USER.0, USER.1);
    let admin_password = broker.admin_password.clone().expect("admin password");
    let ca = broker.ca_file();
    let bootstrap = broker.addr("SASL_SSL").to_string();
    let target = Target {
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: &admin_password,
        dir: dir.path(),
    };
    let context = || common::log_tail(&broker, 60);
    state_restored_from_changelog(&target, &context);
}
