//! Kafka Connect (issue #16, item 4): Apache Kafka's own distributed worker
//! (`connect-runtime`, `org.apache.kafka.connect.cli.ConnectDistributed`)
//! runs against the broker over SASL_SSL with SCRAM-SHA-512, as a user that
//! has only the ACLs a worker and its connectors need, creates its three
//! compacted internal topics (configs, offsets, status), runs the
//! FileStream source and sink connectors, and survives restarts: the source
//! resumes from the offsets it committed to the compacted offsets topic.
//!
//! The worker is `tests/java/ConnectApp.java worker` (Connect's own main,
//! logging at INFO to `<dir>/worker-<n>.log`); its properties are written
//! by the test, its connectors configured through its REST API (a plain
//! HTTP/1.0 client below, on a free loopback port). The FileStream
//! connectors are `connect-file` 4.3.1 in a plugin directory of their own
//! (`plugin.path`; why 4.3.1 and why a plugin directory: see
//! `tests/kafka/connect/pom.xml`). The admin creates the data topic and
//! grants the ACLs through the Admin API (`ConnectApp.java setup`): READ on
//! the workers' group and on the sink's consumer group, READ, WRITE,
//! DESCRIBE, CREATE and DESCRIBE_CONFIGS on each internal topic and on the
//! data topic; nothing on the cluster.
//!
//! Each run:
//!
//! 1. A worker logging in with a wrong password stops at its first request
//!    (`SaslAuthenticationException`). A user with a valid login but no ACL
//!    starts a worker: the broker refuses it the offsets topic
//!    (TOPIC_AUTHORIZATION_FAILED) and the herder stops
//!    (`TopicAuthorizationException`).
//! 2. Worker 1 starts, creates its internal topics, runs a FileStream
//!    source (input file -> topic `lines`) and sink (`lines` -> output
//!    file); the output gets the first 500 lines. Then two appends of 10
//!    lines, each waited for until the source's committed offset (REST `GET
//!    /connectors/<name>/offsets`, which reads the offsets topic to its end)
//!    covers it: a record per commit under the source's one key in the
//!    offsets topic, whose segments roll every second
//!    (`offset.storage.segment.ms`), so a cleaner compacts them while the
//!    test runs. Stopped cleanly (SIGTERM).
//! 3. 500 more lines are appended while no worker runs. Worker 2 starts,
//!    lists both connectors (read back from the config topic), the output
//!    gets the new lines, two more committed appends; then SIGKILL.
//! 4. The same for worker 3, after the SIGKILL; stopped cleanly.
//!
//! The verdict (`ConnectApp.java verify`, as the admin): DescribeConfigs
//! says `cleanup.policy=compact` for the three internal topics, and topic
//! `lines` holds every one of the 1560 input lines exactly once, in order.
//! A source that did not resume from its committed offsets would have sent
//! lines again. The sink is at-least-once (a SIGKILL may lose its last
//! offset commit), so the output file must hold every line, and its
//! duplicates are counted and printed, not refused. And the cleaner must
//! compact the offsets topic to at most two records (its one key: the
//! latest cleaned record and the active segment's) within 60 s; Kafka's
//! does it while the test runs.
//!
//! - `connect_distributed_against_portcullis`: embedded Portcullis.
//! - `connect_distributed_against_kafka`: a real 1-node Apache Kafka
//!   (SASL_SSL, StandardAuthorizer), the reference.
//!
//! Each test prints its figures: how long each worker took to serve, to
//! pass its lines through and to stop, the committed source offsets, the
//! offsets topic's records, and the output's duplicates.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::kafka::{
    java_program, write_client_properties, ClientAuth, KafkaCluster, KafkaOpts, Listener, ADMIN,
    ADMIN_PASSWORD,
};
use common::{scratch, Broker};

/// The worker's user: no super user, only the ACLs `setup` grants.
const USER: (&str, &str) = ("connect", "connect-Secret-1");
/// A valid login with no ACL at all.
const INTRUDER: (&str, &str) = ("intruder", "intruder-Secret-1");
/// The workers' group, and the sink connector's consumer group (Connect
/// names it `connect-<connector>`).
const GROUP: &str = "connect-portcullis";
const SOURCE: &str = "file-source";
const SINK: &str = "file-sink";
const SINK_GROUP: &str = "connect-file-sink";
const CONFIG_TOPIC: &str = "connect-configs";
const OFFSET_TOPIC: &str = "connect-offsets";
const STATUS_TOPIC: &str = "connect-status";
const INTERNAL: [&str; 3] = [CONFIG_TOPIC, OFFSET_TOPIC, STATUS_TOPIC];
const DATA_TOPIC: &str = "lines";
/// Lines appended to the input before each worker's run.
const BATCH: usize = 500;
/// Then, while it runs, appends of TICK lines, each committed before the
/// next.
const TICKS: usize = 2;
const TICK: usize = 10;

/// Deadlines: generous, the machine may be small and busy.
const JVM_DEADLINE: Duration = Duration::from_secs(120);
const READY_DEADLINE: Duration = Duration::from_secs(120);
const OUTPUT_DEADLINE: Duration = Duration::from_secs(120);
/// The offsets topic holds one key (the source's file): compacted, at most
/// two records are left of it, the latest of the cleaned segments and the
/// one in the active segment, which no cleaner touches. Kafka's cleaner
/// sleeps 15 s when it finds nothing to clean, as Portcullis's does.
const COMPACTED_AT_MOST: usize = 2;
const COMPACTION_DEADLINE: Duration = Duration::from_secs(60);

/// How the clients reach the broker under test.
struct Target<'a> {
    /// Heads the test's figures (both tests print at once).
    label: &'a str,
    bootstrap: &'a str,
    ca: &'a Path,
    admin_password: &'a str,
    /// Scratch directory: properties, input and output files, JVM logs.
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

    /// A distributed worker's properties, logged in as `user`: the worker's
    /// own clients (group membership, internal topics) and its connectors'
    /// producers, consumers and admin clients (`producer.`, `consumer.`,
    /// `admin.`) all on SASL_SSL with SCRAM-SHA-512.
    fn worker_properties(&self, name: &str, user: (&str, &str), rest_port: u16) -> PathBuf {
        let (u, pw) = user;
        let security = [
            ("security.protocol", "SASL_SSL".to_string()),
            ("sasl.mechanism", "SCRAM-SHA-512".to_string()),
            (
                "sasl.jaas.config",
                format!(
                    "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{u}\" password=\"{pw}\";"
                ),
            ),
            ("ssl.truststore.type", "PEM".to_string()),
            ("ssl.truststore.location", self.ca.display().to_string()),
        ];
        let mut p = String::new();
        for prefix in ["", "producer.", "consumer.", "admin."] {
            for (k, v) in &security {
                p.push_str(&format!("{prefix}{k}={v}\n"));
            }
        }
        let settings = [
            ("bootstrap.servers", self.bootstrap.to_string()),
            ("group.id", GROUP.into()),
            (
                "key.converter",
                "org.apache.kafka.connect.storage.StringConverter".into(),
            ),
            (
                "value.converter",
                "org.apache.kafka.connect.storage.StringConverter".into(),
            ),
            ("config.storage.topic", CONFIG_TOPIC.into()),
            ("offset.storage.topic", OFFSET_TOPIC.into()),
            ("status.storage.topic", STATUS_TOPIC.into()),
            ("config.storage.replication.factor", "1".into()),
            ("offset.storage.replication.factor", "1".into()),
            ("status.storage.replication.factor", "1".into()),
            // Fewer partitions than Connect's defaults (25 and 5): lean.
            ("offset.storage.partitions", "5".into()),
            // Topic configs of the offsets topic (Connect passes on
            // `offset.storage.<topic config>`): segments rolled every
            // second and cleaned at any dirty ratio, so a cleaner compacts
            // it while the test runs.
            ("offset.storage.segment.ms", "1000".into()),
            ("offset.storage.min.cleanable.dirty.ratio", "0.01".into()),
            ("status.storage.partitions", "1".into()),
            // Source offsets committed twice a second, so a test waits little
            // for the commit it checks before a SIGKILL.
            ("offset.flush.interval.ms", "500".into()),
            // A worker gone without leaving (SIGKILL) is noticed after 10 s,
            // and its connectors and tasks are reassigned at once instead of
            // after Connect's 5-minute grace for a worker coming back.
            ("session.timeout.ms", "10000".into()),
            ("heartbeat.interval.ms", "1000".into()),
            ("scheduled.rebalance.max.delay.ms", "0".into()),
            // The sink's consumer: its killed predecessor leaves the group
            // after 10 s (the consumer's default is 45 s).
            ("consumer.session.timeout.ms", "10000".into()),
            ("consumer.heartbeat.interval.ms", "1000".into()),
            ("listeners", format!("http://127.0.0.1:{rest_port}")),
            ("rest.advertised.host.name", "127.0.0.1".into()),
            ("rest.advertised.port", rest_port.to_string()),
            // The FileStream connectors: their own plugin directory (see
            // tests/kafka/connect/pom.xml), found through its service
            // manifests, with no scan of every jar.
            (
                "plugin.path",
                common::kafka::jars()
                    .join("connect-plugins")
                    .display()
                    .to_string(),
            ),
            ("plugin.discovery", "service_load".into()),
        ];
        for (k, v) in settings {
            p.push_str(&format!("{k}={v}\n"));
        }
        let path = self.dir.join(format!("{name}.properties"));
        std::fs::write(&path, p).unwrap();
        path
    }
}

/// A free loopback port (bound, then released for the worker's REST server).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// The worker's REST API: HTTP/1.0, so the answer is never chunked
// ---------------------------------------------------------------------------

/// One request; the status code and body, or why there was none.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let addr = format!("127.0.0.1:{port}");
    let mut s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send {method} {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read answer to {method} {path}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no HTTP answer: {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line: {head:?}"))?;
    Ok((code, body.to_string()))
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

// ---------------------------------------------------------------------------
// JVMs
// ---------------------------------------------------------------------------

/// One Connect worker JVM (`ConnectApp.java worker`), its log at
/// `<dir>/<name>.log`; in a process group of its own, dying with the test
/// binary, killed on drop.
struct Worker {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    port: u16,
    started: Instant,
}

impl Worker {
    fn start(t: &Target<'_>, name: &str, user: (&str, &str)) -> Worker {
        let port = free_port();
        let props = t.worker_properties(name, user, port);
        let log = t.dir.join(format!("{name}.log"));
        let log4j = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/kafka/connect/log4j2-worker.properties");
        let mut cmd = java_program("ConnectApp.java", &log);
        cmd.arg("worker")
            .arg("--worker-config")
            .arg(&props)
            .arg("--log4j")
            .arg(&log4j)
            .stdout(Stdio::null());
        let child = cmd.spawn().expect("start the Connect worker");
        Worker {
            name: name.to_string(),
            child: Some(child),
            log,
            port,
            started: Instant::now(),
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self, n: usize) -> String {
        format!(
            "--- {} log ({}):\n{}",
            self.name,
            self.log.display(),
            common::tail(&self.log_text(), n)
        )
    }

    /// `Some(status)` once the JVM has exited.
    fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            _ => Some("gone".into()),
        }
    }

    /// Polls `f` until it returns `Some`; panics with the worker's log tail
    /// and `context` at the deadline or when the worker exits first.
    fn wait_for<T>(
        &mut self,
        what: &str,
        timeout: Duration,
        context: &dyn Fn() -> String,
        mut f: impl FnMut(&Worker) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            // Checked before `f`, so that `f` sees all a JVM wrote before
            // it exited.
            let exited = self.exited();
            if let Some(v) = f(self) {
                return v;
            }
            if let Some(status) = exited {
                panic!(
                    "{}: exited ({status}) before {what}\n{}\n{}",
                    self.name,
                    self.log_tail(60),
                    context()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: timed out after {timeout:?} waiting for {what}\n{}\n{}",
                    self.name,
                    self.log_tail(60),
                    context()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until the REST API's `GET /connectors` lists `want` (in any
    /// order). The REST API answers before the herder has read the config
    /// topic (an empty list then), so a restarted worker is ready once it
    /// lists the connectors it read back.
    fn wait_listing(&mut self, want: &[&str], context: &dyn Fn() -> String) {
        let port = self.port;
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let what = format!("GET /connectors listing {want:?}");
        self.wait_for(&what, READY_DEADLINE, context, |_| {
            let (code, body) = http(port, "GET", "/connectors", None).ok()?;
            let mut got: Vec<String> = json(&body)
                .as_array()?
                .iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            got.sort();
            (code == 200 && got == want).then_some(())
        });
    }

    /// Creates (or updates) connector `name` with `config`, retrying while
    /// the worker answers that a rebalance is under way.
    fn put_connector(
        &mut self,
        name: &str,
        config: &serde_json::Value,
        context: &dyn Fn() -> String,
    ) {
        let port = self.port;
        let body = config.to_string();
        let path = format!("/connectors/{name}/config");
        let mut last = String::new();
        self.wait_for(
            &format!("PUT {path}"),
            READY_DEADLINE,
            context,
            |_| match http(port, "PUT", &path, Some(&body)) {
                Ok((200 | 201, _)) => Some(()),
                Ok((code, body)) => {
                    if last != body {
                        eprintln!("PUT {path}: {code} {body}");
                        last = body;
                    }
                    None
                }
                Err(_) => None,
            },
        );
    }

    /// Waits until connector `name` and its one task are RUNNING; panics
    /// with the status (a failed task's trace) if one FAILED.
    fn wait_running(&mut self, name: &str, context: &dyn Fn() -> String) {
        let port = self.port;
        let path = format!("/connectors/{name}/status");
        self.wait_for(
            &format!("{name} RUNNING"),
            READY_DEADLINE,
            context,
            |_| match http(port, "GET", &path, None) {
                Ok((200, body)) => {
                    let v = json(&body);
                    let connector = v["connector"]["state"].as_str().unwrap_or("");
                    let tasks: Vec<&str> = v["tasks"]
                        .as_array()
                        .map(|a| a.iter().filter_map(|t| t["state"].as_str()).collect())
                        .unwrap_or_default();
                    if connector == "FAILED" || tasks.contains(&"FAILED") {
                        panic!("{name} failed: {body}\n{}", context());
                    }
                    (connector == "RUNNING" && tasks == ["RUNNING"]).then_some(())
                }
                _ => None,
            },
        );
    }

    /// The source connector's committed offset (`position`, the bytes of
    /// the input it has sent), as the worker reads it back from the
    /// offsets topic.
    fn source_offset(&self) -> Option<u64> {
        let (code, body) = http(
            self.port,
            "GET",
            &format!("/connectors/{SOURCE}/offsets"),
            None,
        )
        .ok()?;
        if code != 200 {
            return None;
        }
        json(&body)["offsets"]
            .as_array()?
            .iter()
            .find_map(|o| o["offset"]["position"].as_u64())
    }

    /// SIGTERM: Connect's shutdown hook stops the connectors, commits their
    /// offsets and leaves the group. Returns how long that took.
    fn stop(&mut self, context: &dyn Fn() -> String) -> Duration {
        let t0 = Instant::now();
        if let Some(c) = &self.child {
            // SAFETY: plain syscall on our own child.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        self.wait_for("a clean exit", JVM_DEADLINE, context, |w| {
            let text = w.log_text();
            text.contains("Kafka Connect stopped").then_some(())
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        t0.elapsed()
    }

    /// Waits for the JVM to exit by itself; false at the deadline.
    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.exited().is_none() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        true
    }

    /// SIGKILL to the JVM's process group: no shutdown hook, no commit.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: plain syscall; the group id is the child's pid.
            unsafe {
                libc::kill(-(c.id() as libc::pid_t), libc::SIGKILL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The root cause of the stack trace logged right after the log line
/// holding `marker`: its last `Caused by:` line, else its first line. `None`
/// until the trace is complete (the next log line follows it, or the log
/// ends with the JVM), or when the
/// marker is not logged. `exited`: the JVM is gone, its log complete.
fn trace_cause(log: &str, marker: &str, exited: bool) -> Option<String> {
    let (_, rest) = log.split_once(marker)?;
    let mut lines = rest.lines().skip(1);
    let first = lines.next()?.trim().to_string();
    let mut cause = None;
    for l in lines {
        if l.starts_with('[') {
            return Some(cause.unwrap_or(first));
        }
        if let Some(c) = l.trim().strip_prefix("Caused by: ") {
            cause = Some(c.to_string());
        }
    }
    exited.then(|| cause.unwrap_or(first))
}

/// Runs one short `ConnectApp.java` mode to its end and returns its stdout
/// lines; panics with its stderr unless it exits 0 within the deadline.
fn run_java(dir: &Path, name: &str, args: &[&str], context: &dyn Fn() -> String) -> Vec<String> {
    let started = Instant::now();
    let stderr = dir.join(format!("{name}.stderr"));
    let mut cmd = java_program("ConnectApp.java", &stderr);
    cmd.args(args);
    let mut child = cmd.spawn().expect("start java");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let deadline = started + JVM_DEADLINE;
    let ok = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if Instant::now() > deadline => break false,
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break false,
        }
    };
    // SAFETY: plain syscall; the group id is the child's pid.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.wait();
    let stdout = reader.join().unwrap();
    if !ok {
        panic!(
            "{name} failed (or passed {JVM_DEADLINE:?})\n--- stdout\n{}\n--- stderr ({}):\n{}\n{}",
            common::tail(&stdout, 20),
            stderr.display(),
            common::tail(&std::fs::read_to_string(&stderr).unwrap_or_default(), 60),
            context()
        );
    }
    eprintln!("{name}: {:.1?} ({})", started.elapsed(), dir.display());
    stdout.lines().map(String::from).collect()
}

// ---------------------------------------------------------------------------
// The input and the output
// ---------------------------------------------------------------------------

fn line(i: usize) -> String {
    format!("line-{i:05}")
}

/// Appends lines `from..to` to the input file; returns its length in bytes.
fn append_input(path: &Path, from: usize, to: usize) -> u64 {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let text: String = (from..to).map(|i| format!("{}\n", line(i))).collect();
    f.write_all(text.as_bytes()).unwrap();
    f.sync_all().unwrap();
    std::fs::metadata(path).unwrap().len()
}

/// How many times each line occurs in the output file (its complete lines).
fn output_counts(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    for l in complete.lines() {
        *counts.entry(l.to_string()).or_insert(0) += 1;
    }
    counts
}

/// Whether the output holds every line `0..n`.
fn output_has(path: &Path, n: usize) -> bool {
    let counts = output_counts(path);
    (0..n).all(|i| counts.contains_key(&line(i)))
}

// ---------------------------------------------------------------------------
// The test proper
// ---------------------------------------------------------------------------

/// The whole run against any target; `context` prints the broker's side
/// when something fails.
fn connect_across_restarts(t: &Target<'_>, context: &dyn Fn() -> String) {
    let started = Instant::now();
    let l = t.label;
    let admin = t.properties(ADMIN, t.admin_password);
    let admin = admin.display().to_string();
    let topics = INTERNAL.join(",");

    let out = run_java(
        t.dir,
        "setup",
        &[
            "setup",
            "--config",
            &admin,
            "--user",
            USER.0,
            "--group",
            GROUP,
            "--sink-group",
            SINK_GROUP,
            "--topics",
            &topics,
            "--data-topic",
            DATA_TOPIC,
        ],
        context,
    );
    assert!(out.iter().any(|x| x == "SETUP\tok"), "setup: {out:?}");

    // 1. Refusals, both workers at once. The worker's user with a wrong
    // password is refused at login: the worker stops before it starts
    // (its first request asks for the cluster id). A valid login without
    // ACLs gets no internal topic: the herder stops at the first one it
    // reads (the offsets topic).
    let t0 = Instant::now();
    let mut impostor = Worker::start(t, "worker-wrong-password", (USER.0, "not-the-Secret-1"));
    let mut intruder = Worker::start(t, "worker-intruder", INTRUDER);
    let login = match impostor.wait_exit(READY_DEADLINE) {
        true => trace_cause(&impostor.log_text(), "Stopping due to error", true),
        false => None,
    };
    let login_in = t0.elapsed();
    let login = login.unwrap_or_else(|| {
        panic!(
            "the worker with a wrong password did not stop on an error\n{}",
            impostor.log_tail(40)
        )
    });
    let acl = intruder.wait_for(
        "the herder to stop on the broker's refusal",
        READY_DEADLINE,
        context,
        |w| {
            trace_cause(
                &w.log_text(),
                "Uncaught exception in herder work thread, exiting",
                false,
            )
        },
    );
    let acl_in = t0.elapsed();
    intruder.kill9();
    assert!(
        login.contains("SaslAuthenticationException") && login.contains("SCRAM-SHA-512"),
        "want SaslAuthenticationException for a wrong password, got {login}"
    );
    assert!(
        acl.starts_with("org.apache.kafka.common.errors.TopicAuthorizationException")
            && acl.contains(OFFSET_TOPIC),
        "want TopicAuthorizationException on {OFFSET_TOPIC}, got {acl}"
    );
    eprintln!(
        "[{l}] wrong password: refused after {login_in:.1?}: {login}\n[{l}] no ACL: refused after {acl_in:.1?}: {acl}"
    );

    let input = t.dir.join("input.txt");
    let output = t.dir.join("output.txt");
    let source = serde_json::json!({
        "connector.class": "org.apache.kafka.connect.file.FileStreamSourceConnector",
        "tasks.max": "1",
        "file": input.display().to_string(),
        "topic": DATA_TOPIC,
    });
    let sink = serde_json::json!({
        "connector.class": "org.apache.kafka.connect.file.FileStreamSinkConnector",
        "tasks.max": "1",
        "file": output.display().to_string(),
        "topics": DATA_TOPIC,
    });

    // 2.-4. Three workers, one after the other. Before each starts, BATCH
    // lines are appended (for workers 2 and 3: while no worker runs, so
    // only the committed offsets tell where to resume). Once they are in
    // the output, TICKS appends of TICK lines, each waited for until its
    // offset is committed: a record per commit under the source's one key
    // in the offsets topic, what compaction collapses. Worker 1 creates
    // the connectors and stops cleanly (SIGTERM); worker 2 must list them
    // (read back from the config topic) and is killed with SIGKILL once its
    // last offset is committed; worker 3 lists them too and stops cleanly.
    let mut lines = 0;
    let mut commits = 0;
    for n in 1..=3 {
        let name = format!("worker-{n}");
        append_input(&input, lines, lines + BATCH);
        lines += BATCH;
        let mut w = Worker::start(t, &name, USER);
        if n == 1 {
            w.wait_listing(&[], context);
            w.put_connector(SOURCE, &source, context);
            w.put_connector(SINK, &sink, context);
            w.wait_running(SOURCE, context);
            w.wait_running(SINK, context);
        } else {
            w.wait_listing(&[SOURCE, SINK], context);
        }
        let ready = w.started.elapsed();
        w.wait_for("the batch in the output", OUTPUT_DEADLINE, context, |_| {
            output_has(&output, lines).then_some(())
        });
        let through = w.started.elapsed();
        let mut offset = 0;
        for _ in 0..TICKS {
            let len = append_input(&input, lines, lines + TICK);
            lines += TICK;
            offset = w.wait_for(
                "the source's offset covering the input",
                OUTPUT_DEADLINE,
                context,
                |w| w.source_offset().filter(|o| *o == len),
            );
            commits += 1;
        }
        w.wait_for("the ticks in the output", OUTPUT_DEADLINE, context, |_| {
            output_has(&output, lines).then_some(())
        });
        let stop = if n == 2 {
            w.kill9();
            "killed with -9".to_string()
        } else {
            format!("clean stop in {:.1?}", w.stop(context))
        };
        eprintln!(
            "[{l}] {name}: {} after {ready:.1?}, the batch through after {through:.1?}, \
             {TICKS} offset commits to {offset} bytes ({lines} lines) by {:.1?}; {stop}",
            if n == 1 {
                "connectors created"
            } else {
                "both connectors listed"
            },
            w.started.elapsed()
        );
    }

    let total = lines;
    // The verdict, read as the admin: the internal topics' cleanup.policy,
    // topic `lines` (every line exactly once, in order), and the source's
    // offsets as the offsets topic holds them.
    let verify = run_java(
        t.dir,
        "verify",
        &[
            "verify",
            "--config",
            &admin,
            "--describe",
            &topics,
            "--consume",
            &format!("{DATA_TOPIC},{OFFSET_TOPIC}"),
            "--settle",
            OFFSET_TOPIC,
            "--at-most",
            &COMPACTED_AT_MOST.to_string(),
            "--wait-ms",
            &COMPACTION_DEADLINE.as_millis().to_string(),
        ],
        context,
    );
    let mut internal = Vec::new();
    for topic in INTERNAL {
        let row = verify
            .iter()
            .find_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 5 && f[0] == "TOPIC" && f[1] == topic).then(|| f[1..].join(" "))
            })
            .unwrap_or_else(|| panic!("{topic} not described: {verify:?}"));
        assert!(
            row.split(' ').nth(2) == Some("compact"),
            "{topic} is not compacted: {row}\n{}",
            context()
        );
        internal.push(row);
    }
    eprintln!("[{l}] internal topics (name partitions cleanup.policy source): {internal:?}");
    let records = |topic: &str| -> Vec<Vec<String>> {
        verify
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 6 && f[0] == "REC" && f[1] == topic)
                    .then(|| f[2..].iter().map(|s| s.to_string()).collect())
            })
            .collect()
    };
    let lines = records(DATA_TOPIC);
    let values: Vec<&str> = lines.iter().map(|r| r[3].as_str()).collect();
    let expected: Vec<String> = (0..total).map(line).collect();
    let mut topic_counts: BTreeMap<&str, usize> = BTreeMap::new();
    for v in &values {
        *topic_counts.entry(v).or_insert(0) += 1;
    }
    let missing: Vec<&String> = expected
        .iter()
        .filter(|l| !topic_counts.contains_key(l.as_str()))
        .collect();
    let twice: Vec<(&str, usize)> = topic_counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(l, n)| (*l, *n))
        .collect();
    let offset_records = records(OFFSET_TOPIC);
    let written = verify
        .iter()
        .find_map(|l| l.strip_prefix(&format!("CONSUMED\t{OFFSET_TOPIC}\t")))
        .and_then(|r| r.split('\t').nth(1)?.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no CONSUMED line for {OFFSET_TOPIC}: {verify:?}"));
    let settled: Vec<&str> = verify
        .iter()
        .find(|l| l.starts_with("SETTLED\t") || l.starts_with("UNSETTLED\t"))
        .map(|l| l.split('\t').collect())
        .unwrap_or_else(|| panic!("no SETTLED line: {verify:?}"));
    let out_counts = output_counts(&output);
    let out_dups: usize = out_counts.values().map(|n| n - 1).sum();
    let out_missing = expected
        .iter()
        .filter(|l| !out_counts.contains_key(l.as_str()))
        .count();
    eprintln!(
        "[{l}] connect: topic {DATA_TOPIC}: {} records for {total} lines ({} missing, {} more than \
         once); {OFFSET_TOPIC}: {} of {written} records left at the end ({commits} commits waited \
         for), the last {:?}, then {} left after {} ms more; output file: {} distinct lines, {} \
         missing, {out_dups} duplicates (the sink is at-least-once); whole test {:.1?}",
        values.len(),
        missing.len(),
        twice.len(),
        offset_records.len(),
        offset_records.last().map(|r| r.join(" ")),
        settled[2],
        settled[4],
        out_counts.len(),
        out_missing,
        started.elapsed()
    );
    assert!(
        missing.is_empty() && twice.is_empty(),
        "topic {DATA_TOPIC} is not every line exactly once: missing {:?}, more than once {:?}",
        &missing[..missing.len().min(10)],
        &twice[..twice.len().min(10)]
    );
    assert_eq!(
        values,
        expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "topic {DATA_TOPIC} is out of order"
    );
    assert_eq!(out_missing, 0, "the output file misses lines");
    assert!(
        settled[0] == "SETTLED",
        "{OFFSET_TOPIC} was not compacted to at most {COMPACTED_AT_MOST} records within \
         {COMPACTION_DEADLINE:?}: {settled:?} (records, sum of end offsets, ms)\n{}",
        context()
    );
    assert!(
        out_counts
            .keys()
            .all(|l| topic_counts.contains_key(l.as_str())),
        "the output file holds lines that were never input"
    );
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
fn connect_distributed_against_portcullis() {
    let dir = Kept::new("connect");
    // No rule but the admin's (a super user): the worker's user gets only
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
    broker.add_user(INTRUDER.0, INTRUDER.1);
    broker.wait_users_loaded(3, Duration::from_secs(30));
    let admin_password = broker.admin_password.clone().expect("admin password");
    let ca = broker.ca_file();
    let bootstrap = broker.addr("SASL_SSL").to_string();
    let target = Target {
        label: "portcullis",
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: &admin_password,
        dir: dir.path(),
    };
    let context = || common::log_tail(&broker, 60);
    connect_across_restarts(&target, &context);
}

#[test]
fn connect_distributed_against_kafka() {
    let kafka = KafkaCluster::start(
        "connect",
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::SaslSsl],
            users: &[USER, INTRUDER],
            authorizer: true,
            ..Default::default()
        },
    );
    let dir = Kept::new("connect-kafka");
    let ca = kafka.ca_file();
    let bootstrap = kafka.bootstrap(Listener::SaslSsl);
    let target = Target {
        label: "kafka",
        bootstrap: &bootstrap,
        ca: &ca,
        admin_password: ADMIN_PASSWORD,
        dir: dir.path(),
    };
    let context = || kafka.logs_tail(40);
    connect_across_restarts(&target, &context);
}
