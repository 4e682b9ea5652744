//! Test harness: starts the real `portcullis` binary on free ports in a
//! scratch directory, and provides the Python clients in a private venv.
#![allow(dead_code)]

pub mod audit_files;
pub mod kafka;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

pub struct Broker {
    child: Option<Child>,
    pub dir: PathBuf,
    /// host:port of the first listener.
    pub bootstrap: String,
    pub port: u16,
    extra_yaml: String,
    /// Security protocols of the listeners, in config order.
    protocols: Vec<String>,
    /// Bound host:port per listener, in config order.
    pub addrs: Vec<String>,
    /// Password of the bootstrap `admin` user, when the broker created it.
    pub admin_password: Option<String>,
    /// Extra environment of the next launch (see `set_env`).
    env: Vec<(String, String)>,
    /// host:port of the ops listener (metrics, health), when it runs.
    ops: Option<String>,
}

/// Strips the ANSI colour codes the broker's log carries.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Strips the ANSI colour codes and the quotes `tracing` puts around string
/// fields from a broker's log, so `principal=User:alice` matches however the
/// field was recorded.
pub fn clean_log(raw: &str) -> String {
    strip_ansi(raw).replace('"', "")
}

/// The last `n` lines of `text`, colour codes stripped.
pub fn tail(text: &str, n: usize) -> String {
    let text = strip_ansi(text);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of `broker`'s log, headed by where it lives.
pub fn log_tail(broker: &Broker, n: usize) -> String {
    format!(
        "--- last broker log lines ({}):\n{}",
        broker.dir.display(),
        tail(&broker.log(), n)
    )
}

/// Runs a script, prints its output and how long it took, and requires its
/// "ALL OK": the scripts exit non-zero on a failed check, and this catches
/// one that returned early without running them all. On failure `context`
/// is printed too: a broker's log usually explains what the client's view
/// alone does not.
pub fn run_script_ok(script: &str, args: &[&str], context: impl FnOnce() -> String) -> String {
    let started = Instant::now();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_python(script, args))) {
        Ok(out) => {
            // Short arguments tell runs of one script apart; an environment
            // of JSON would only bury the output.
            let shown: usize = args.iter().map(|a| a.len()).sum();
            let shown = if shown < 200 {
                format!(" {args:?}")
            } else {
                String::new()
            };
            eprintln!("{script}{shown}: {:.1?}\n{out}", started.elapsed());
            assert!(
                out.lines().any(|l| l == "ALL OK"),
                "{script} did not report ALL OK:\n{out}"
            );
            out
        }
        Err(e) => {
            eprintln!("{}", context());
            std::panic::resume_unwind(e)
        }
    }
}

/// Whether a config's `ops:` section switches the ops listener off.
fn ops_disabled(yaml: &str) -> bool {
    let mut in_ops = false;
    for line in yaml.lines() {
        if let Some(rest) = line.strip_prefix("ops:") {
            if rest.contains("enabled: false") {
                return true;
            }
            in_ops = true;
        } else if !line.starts_with(' ') {
            in_ops = false;
        } else if in_ops && line.trim() == "enabled: false" {
            return true;
        }
    }
    false
}

/// Polls `f` until it returns `Some`, panicking with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Broker {
    /// Starts a PLAINTEXT broker with `extra_yaml` appended to a minimal config.
    pub fn start(dir: &Path, extra_yaml: &str) -> Broker {
        Broker::start_listeners(dir, &["PLAINTEXT"], extra_yaml)
    }

    /// Starts a broker with one listener per protocol (each on a free port),
    /// TLS from dev certificates generated into `dir/certs`, and the
    /// credential store at `dir/credentials.yaml`.
    pub fn start_listeners(dir: &Path, protocols: &[&str], extra_yaml: &str) -> Broker {
        let secure = protocols.iter().any(|p| *p != "PLAINTEXT");
        // A top-level key of `extra_yaml` (a gateway's `gateway.sasl` or
        // `gateway.tls` is not the broker's own).
        let has = |key: &str| extra_yaml.lines().any(|l| l.strip_prefix(key) == Some(":"));
        let mut yaml = String::new();
        if secure && !has("tls") {
            let certs = dir.join("certs");
            yaml.push_str(&format!(
                "tls:\n  cert: {c}/server.crt\n  key: {c}/server.key\ncerts:\n  dir: {c}\n  auto_generate: true\n",
                c = certs.display()
            ));
        }
        if !has("acl") {
            // Tests that are not about ACLs get a permissive rule set: any
            // principal may do anything to topics, groups and transactional
            // ids; cluster operations still need a super user or a rule.
            let acl = dir.join("acls.yaml");
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(
                &acl,
                "rules:\n  - {allow: \"User:*\", operations: [all], topic: \"*\"}\n  - {allow: \"User:*\", operations: [all], group: \"*\"}\n  - {allow: \"User:*\", operations: [all], transactional_id: \"*\"}\n",
            )
            .unwrap();
            yaml.push_str(&format!("acl:\n  file: {}\n", acl.display()));
        }
        if !has("audit") {
            yaml.push_str(&format!(
                "audit:\n  file: {}\n",
                dir.join("audit/audit.log").display()
            ));
        }
        if !has("policy") {
            // The default path is relative to the working directory (the
            // repository): each test broker gets its own, empty policy file.
            let policies = dir.join("policies.yaml");
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&policies, "rules: []\n").unwrap();
            yaml.push_str(&format!("policy:\n  file: {}\n", policies.display()));
        }
        if !has("sasl") {
            yaml.push_str(&format!(
                "sasl:\n  credentials: {}\n",
                dir.join("credentials.yaml").display()
            ));
        }
        if !has("ops") {
            // The default port is fixed: parallel brokers would collide.
            yaml.push_str("ops:\n  address: 127.0.0.1:0\n");
        }
        yaml.push_str(extra_yaml);
        let mut b = Broker {
            child: None,
            dir: dir.to_path_buf(),
            bootstrap: String::new(),
            port: 0,
            extra_yaml: yaml,
            protocols: protocols.iter().map(|p| p.to_string()).collect(),
            addrs: Vec::new(),
            admin_password: None,
            env: Vec::new(),
            ops: None,
        };
        b.launch(&vec![0; protocols.len()]);
        b
    }

    /// SASL_SSL only: the secure default.
    pub fn start_secure(dir: &Path, extra_yaml: &str) -> Broker {
        Broker::start_listeners(dir, &["SASL_SSL"], extra_yaml)
    }

    /// Address of the first listener with this security protocol.
    pub fn addr(&self, protocol: &str) -> &str {
        let i = self
            .protocols
            .iter()
            .position(|p| p == protocol)
            .unwrap_or_else(|| panic!("no {protocol} listener"));
        &self.addrs[i]
    }

    /// host:port of the ops listener (panics if it is off).
    pub fn ops_addr(&self) -> &str {
        self.ops.as_deref().expect("the ops listener runs")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/ca.crt")
    }

    /// Runs `portcullis <args>` against this broker's config, with `stdin`.
    pub fn cli(&self, args: &[&str], stdin: &str) -> std::process::Output {
        let mut child = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run portcullis cli");
        // A command that refuses its arguments exits before reading stdin;
        // the write then meets a closed pipe, which is not the test's point.
        if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            assert_eq!(
                e.kind(),
                std::io::ErrorKind::BrokenPipe,
                "writing the CLI's stdin: {e}"
            );
        }
        child.wait_with_output().unwrap()
    }

    /// `portcullis user add NAME --password-stdin`, asserting success.
    pub fn add_user(&self, name: &str, password: &str) {
        let out = self.cli(
            &["user", "add", name, "--password-stdin"],
            &format!("{password}\n"),
        );
        assert!(
            out.status.success(),
            "user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Waits until the broker reloaded its credential store and holds
    /// `users` users (`admin` included): the CLI writes the file, the
    /// broker's watcher picks it up.
    pub fn wait_users_loaded(&self, users: usize, timeout: Duration) {
        let want = format!("users={users}");
        wait_for(
            &format!("the broker to load {users} users"),
            timeout,
            || {
                strip_ansi(&self.log())
                    .lines()
                    .any(|l| l.contains("credential file reloaded") && l.ends_with(&want))
                    .then_some(())
            },
        );
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("portcullis.yaml")
    }

    fn launch(&mut self, ports: &[u16]) {
        if let Err(log) = self.try_launch(ports) {
            panic!("broker did not start; log:\n{log}");
        }
    }

    /// Starts the broker; `Err` with the log it wrote when it did not come
    /// up (it exited, or named no listener within 60 s).
    fn try_launch(&mut self, ports: &[u16]) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut listeners = String::new();
        for (proto, port) in self.protocols.iter().zip(ports) {
            listeners.push_str(&format!(
                "  - security_protocol: {proto}\n    address: 127.0.0.1:{port}\n"
            ));
        }
        let cfg = format!(
            "data_dir: {}\nlisteners:\n{listeners}{}",
            self.dir.join("data").display(),
            self.extra_yaml
        );
        std::fs::write(self.config_path(), cfg).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("broker.log"))
            .unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(self.config_path())
            .env("PORTCULLIS_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start portcullis");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("portcullis: listening ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send((Line::Listener, addr));
                } else if let Some(rest) = line.strip_prefix("portcullis: ops listening ") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send((Line::Ops, addr));
                } else if let Some((_, pw)) = line.split_once("with password: ") {
                    let _ = tx.send((Line::Password, pw.trim().to_string()));
                }
            }
        });
        #[derive(PartialEq)]
        enum Line {
            Listener,
            Ops,
            Password,
        }
        self.addrs.clear();
        self.ops = None;
        // The ops line is printed with the listener lines, in the same write.
        let ops_expected = !ops_disabled(&self.extra_yaml);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.addrs.len() < self.protocols.len() || ops_expected && self.ops.is_none() {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok((Line::Listener, addr)) => {
                    self.addrs
                        .push(addr.split("://").nth(1).unwrap().to_string());
                }
                Ok((Line::Ops, url)) => {
                    self.ops = Some(url.split("://").nth(1).unwrap().to_string());
                }
                Ok((Line::Password, pw)) => self.admin_password = Some(pw),
                Err(_) if Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) => {}
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(self.log());
                }
            }
        }
        let hostport = self.addrs[0].clone();
        self.port = hostport.rsplit(':').next().unwrap().parse().unwrap();
        self.bootstrap = hostport;
        self.child = Some(child);
        Ok(())
    }

    /// The broker process's pid (panics if it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker is running").id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("broker.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe_sigterm(c.id());
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port and data directory.
    fn ports(&self) -> Vec<u16> {
        self.addrs
            .iter()
            .map(|a| a.rsplit(':').next().unwrap().parse().unwrap())
            .collect()
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch_again();
    }

    /// Starts the broker again on its ports. Listener ports come from the
    /// ephemeral range, so while the broker is down another test's client
    /// socket may take its port as a local one (and hold it through
    /// TIME_WAIT, 60 s): the bind then fails. Tried again until the port is
    /// free, as an operator would.
    fn launch_again(&mut self) {
        let ports = self.ports();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let logged = self.log().len();
            match self.try_launch(&ports) {
                Ok(()) => return,
                Err(log)
                    if Instant::now() < deadline
                        && log
                            .get(logged..)
                            .is_some_and(|l| l.contains("Address already in use")) =>
                {
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(log) => panic!("broker did not start again; log:\n{log}"),
            }
        }
    }

    /// Sets (`Some`) or removes (`None`) an environment variable of the
    /// broker's next launch.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(v) = value {
            self.env.push((key.to_string(), v.to_string()));
        }
    }

    /// Starts the broker again on the same ports after it stopped by
    /// itself (an injected crash); kills it first if it still runs.
    pub fn relaunch(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.launch_again();
    }

    pub fn restart_after_kill9(&mut self) {
        self.kill9();
        self.launch_again();
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.bootstrap).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The codec of every batch stored for `topic` (its partition directories'
/// segment files under the broker's `data` dir, read from disk).
pub fn stored_codecs(data: &Path, topic: &str) -> Vec<i16> {
    let mut codecs = Vec::new();
    // topics/<topic>/<partition>/<base offset>.log
    for d in std::fs::read_dir(data.join("topics").join(topic))
        .unwrap()
        .flatten()
    {
        if !d.path().is_dir() {
            continue;
        }
        for f in std::fs::read_dir(d.path()).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "log") {
                let b = std::fs::read(f.path()).unwrap();
                let mut at = 0;
                while at + 61 <= b.len() {
                    let len = i32::from_be_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
                    codecs.push(i16::from_be_bytes([b[at + 21], b[at + 22]]) & 0x07);
                    at += 12 + len;
                }
            }
        }
    }
    codecs
}

/// A scratch directory per test, kept on failure for inspection.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("portcullis-{name}-"))
        .tempdir()
        .unwrap()
}

/// The Python interpreter of a venv with confluent-kafka and kafka-python,
/// created on first use under `target/` (the harness installs what it needs).
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    PY.get_or_init(|| {
        let _g = LOCK.lock().unwrap();
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv");
        let py = venv.join("bin/python");
        let marker = venv.join(".portcullis-ready");
        // The marker lists what was installed: a package added here is
        // installed into an existing venv on the next run.
        let packages = [
            "confluent-kafka>=2.6",
            "kafka-python>=2.2",
            "prometheus_client>=0.20",
        ];
        let want = packages.join("\n");
        if !py.exists() {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "python3 -m venv failed");
        }
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(want.as_str()) {
            let ok = Command::new(&py)
                .args(["-m", "pip", "install", "-q"])
                .args(packages)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "pip install of the Python Kafka clients failed");
            std::fs::write(&marker, want).unwrap();
        }
        py
    })
    .clone()
}

/// Runs `tests/python/<script>` with args; returns stdout, panics with
/// stdout+stderr on a non-zero exit.
pub fn run_python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = Command::new(python())
        .arg(&path)
        .args(args)
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    stdout
}

/// Sends one raw frame (size prefix added) and returns the response
/// payload, or None if the broker closed the connection.
pub fn raw_request(s: &mut TcpStream, payload: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    if s.write_all(&frame).is_err() {
        return None;
    }
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Some(body)
}

/// A Produce request (v7, acks=1) of one record to partition 0 of `topic`,
/// as a raw payload (header + body, no size prefix).
pub fn raw_produce(topic: &str, corr: i32) -> Vec<u8> {
    raw_produce_value(topic, corr, b"unauthenticated")
}

/// [`raw_produce`] with this record value.
pub fn raw_produce_value(topic: &str, corr: i32, value: &[u8]) -> Vec<u8> {
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let rec = Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: Some(bytes::Bytes::from_static(b"raw")),
        value: Some(bytes::Bytes::copy_from_slice(value)),
        headers: IndexMap::new(),
    };
    let mut batch = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        [rec].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    let req = ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.freeze()))])]);
    let version = 7;
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("gw-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Produce.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

/// One GET over a fresh connection: (status, body). The server answers one
/// request per connection and closes it.
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::Read;
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP head in {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
    Ok((status, body.to_string()))
}
