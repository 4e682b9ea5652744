//! A real Apache Kafka cluster for tests: the release pinned in
//! `tests/kafka/pom.xml`, fetched once with Maven by `tests/kafka/fetch.sh`
//! into `target/kafka-jars/<version>`, and started as a KRaft cluster of
//! one or more nodes, each both broker and controller, on free loopback
//! ports, each in its own scratch directory (`node-<id>/` with its
//! `server.properties`, `data/` and `server.log`). Broker-only nodes can
//! join later ([`KafkaCluster::add_broker`]).
//!
//! Every node has two PLAINTEXT listeners of its own, `CONTROLLER` (the
//! quorum) and `INTERNAL` (replication, and the harness's readiness probe),
//! plus the client listeners a test asks for ([`Listener`]): PLAINTEXT,
//! SASL_SSL with SCRAM-SHA-512, or SSL with client certificates required.
//! Certificates come from `portcullis certs init` (a dev CA, a server
//! certificate for 127.0.0.1/localhost and client certificates), used by
//! Kafka as PEM key and trust stores. SCRAM users are written into the
//! metadata log when the nodes are formatted (`kafka-storage format
//! --add-scram`), so they exist before the first client connects;
//! [`KafkaCluster::add_scram_user`] adds more later with `kafka-configs`.
//!
//! Kafka's command-line tools run from the same jars ([`run_tool`],
//! [`KafkaCluster::tool`]), against this cluster or against anything else
//! that speaks Kafka (Portcullis), with a client properties file written by
//! [`write_client_properties`].
//!
//! JVMs are kept small and quick to start: a 256 MiB heap per node, the
//! serial collector, the client compiler only, and a class-data-sharing
//! archive of the Kafka classpath made once per machine ([`cds_flags`]).
//! A 1-node cluster is ready in ~5 s, a 3-node one in ~12-17 s on 2 cores.
//!
//! Every JVM (node or tool) is started in a process group of its own with
//! SIGKILL as its parent-death signal, from one long-lived spawner thread:
//! `Drop` kills the nodes, and a test binary that dies without unwinding
//! takes its JVMs with it, so no stray `kafka.Kafka` outlives a test. A
//! cluster dropped while its test panics prints its nodes' log tails and
//! keeps its directory for inspection.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[path = "../../bench/src/metadata_probe.rs"]
mod metadata_probe;
pub use metadata_probe::metadata_brokers;

const PORTCULLIS: &str = env!("CARGO_BIN_EXE_portcullis");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// The SCRAM-SHA-512 super user every cluster with a SASL listener has.
pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "kafka-admin-Secret-7";

/// Generous: the machine may be small and busy (2 cores shared by JVMs).
const START_DEADLINE: Duration = Duration::from_secs(120);
/// Default deadline of one tool run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(90);

/// JVM flags of a node: a small heap, the serial collector and the client
/// compiler only (quick to start; the throughput a test needs is small).
const NODE_JVM: &[&str] = &[
    "-Xms64m",
    "-Xmx256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
];
/// JVM flags of a command-line tool.
const TOOL_JVM: &[&str] = &[
    "-Xmx192m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
];

/// Main classes of Kafka's tools in the pinned release (the `bin/*.sh`
/// scripts of a Kafka distribution run these).
pub mod tools {
    pub const STORAGE: &str = "kafka.tools.StorageTool";
    pub const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
    pub const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
    pub const ACLS: &str = "org.apache.kafka.tools.AclCommand";
    pub const CONSOLE_PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
    pub const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
    pub const CONSUMER_GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    pub const PRODUCER_PERF: &str = "org.apache.kafka.tools.ProducerPerformance";
    pub const CONSUMER_PERF: &str = "org.apache.kafka.tools.ConsumerPerformance";
    pub const TRANSACTIONS: &str = "org.apache.kafka.tools.TransactionsCommand";
    pub const CLUSTER: &str = "org.apache.kafka.tools.ClusterTool";
    pub const BROKER_API_VERSIONS: &str = "org.apache.kafka.tools.BrokerApiVersionsCommand";
    pub const GET_OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
    pub const DELETE_RECORDS: &str = "org.apache.kafka.tools.DeleteRecordsCommand";
    pub const FEATURES: &str = "org.apache.kafka.tools.FeatureCommand";
    pub const METADATA_QUORUM: &str = "org.apache.kafka.tools.MetadataQuorumCommand";
    pub const LOG_DIRS: &str = "org.apache.kafka.tools.LogDirsCommand";
}

// ---------------------------------------------------------------------------
// The jars
// ---------------------------------------------------------------------------

/// The directory holding every jar of the pinned Kafka release, fetched on
/// first use (`tests/kafka/fetch.sh`: cached, and locked against test
/// binaries fetching at the same time).
pub fn jars() -> PathBuf {
    static JARS: OnceLock<PathBuf> = OnceLock::new();
    JARS.get_or_init(|| {
        let started = Instant::now();
        let script = Path::new(MANIFEST_DIR).join("tests/kafka/fetch.sh");
        let out = Command::new("bash")
            .arg(&script)
            .stdin(Stdio::null())
            .output()
            .expect("run tests/kafka/fetch.sh");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "fetching Apache Kafka failed ({}):\n{stderr}",
            out.status
        );
        if !stderr.trim().is_empty() {
            eprintln!("{}", stderr.trim());
        }
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        assert!(dir.is_dir(), "fetch.sh printed no directory: {dir:?}");
        let elapsed = started.elapsed();
        if elapsed > Duration::from_secs(1) {
            eprintln!("kafka: jars ready in {elapsed:.1?} ({})", dir.display());
        }
        dir
    })
    .clone()
}

/// The pinned Kafka version (the name of the jars directory).
pub fn version() -> String {
    jars().file_name().unwrap().to_string_lossy().into_owned()
}

pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin/java").exists() => {
            Path::new(&home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    }
}

/// How a JVM uses the class-data-sharing archive ([`cds_flags`]).
#[derive(Debug, Clone)]
enum Jvm {
    /// With the archive, when there is one.
    Cds,
    /// Writing the classes it loads to a new file in this directory (the
    /// archive's training run).
    Train(PathBuf),
}

/// `java <flags> -cp <jars>/* <main>`: the caller adds the arguments. JVM
/// logging (CDS notes among it) goes to stderr, warnings only, so a tool's
/// stdout is only the tool's output.
fn java_command(flags: &[&str], log4j: &str, main: &str, jvm: &Jvm) -> Command {
    let mut cmd = Command::new(java());
    cmd.args(flags)
        .args(["-Xlog:disable", "-Xlog:all=warning:stderr"])
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            Path::new(MANIFEST_DIR)
                .join("tests/kafka")
                .join(log4j)
                .display()
        ));
    match jvm {
        Jvm::Cds => {
            cmd.args(cds_flags());
        }
        Jvm::Train(dir) => {
            static LISTS: AtomicUsize = AtomicUsize::new(0);
            let n = LISTS.fetch_add(1, Ordering::Relaxed);
            cmd.arg(format!(
                "-XX:DumpLoadedClassList={}",
                dir.join(format!("{n}.classlist")).display()
            ));
        }
    }
    cmd.arg("-cp")
        .arg(format!("{}/*", jars().display()))
        .arg(main)
        .env_remove("KAFKA_OPTS")
        .env_remove("JAVA_TOOL_OPTIONS");
    cmd
}

// ---------------------------------------------------------------------------
// Class-data sharing: a JVM starts in about half the time
// ---------------------------------------------------------------------------

/// A JVM running the single-file Java program `tests/java/<source>` on
/// the Kafka jars: a small heap, the CDS archive, Kafka's quiet log4j
/// settings, stdout piped, stderr to `stderr`. The JVM gets its own process
/// group (a watchdog can kill it whole) and dies with the thread that
/// forks it (PR_SET_PDEATHSIG), so no test leaves a JVM behind. The
/// caller adds the program's arguments.
pub fn java_program(source: &str, stderr: &Path) -> Command {
    let mut cmd = Command::new(java());
    cmd.args([
        "-Xms32m",
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-XX:-UsePerfData",
        "-Xlog:disable",
        "-Xlog:all=warning:stderr",
        "-Djava.awt.headless=true",
    ])
    .arg(format!(
        "-Dlog4j2.configurationFile={}/tests/kafka/log4j2-tools.properties",
        env!("CARGO_MANIFEST_DIR")
    ))
    .args(cds_flags())
    .arg("-cp")
    .arg(format!("{}/*", jars().display()))
    .arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/java")
            .join(source),
    )
    .env_remove("JAVA_TOOL_OPTIONS")
    .env_remove("KAFKA_OPTS")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(std::fs::File::create(stderr).unwrap())
    .process_group(0);
    // SAFETY: prctl is async-signal-safe. The parent-death signal follows
    // the thread that forked, which waits for (or kills) the JVM.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The JVM flags that map the class-data-sharing archive of the Kafka
/// classpath (`target/kafka-jars/<version>.jsa`): the JDK's and Kafka's
/// classes parsed and verified once, so a tool starts in ~1.5 s instead of
/// ~2.7 s and a node saves ~3 s. Made once per machine (under a lock, ~30 s)
/// from the classes a 1-node SASL_SSL cluster and a round of tools load,
/// checked on first use in each test binary and made again when the JDK or
/// the jars changed. Empty (no archive) when `PORTCULLIS_KAFKA_CDS=0`, or
/// when making it failed: then `<version>.jsa.failed` says why, and is
/// deleted to try again.
pub fn cds_flags() -> Vec<String> {
    static FLAGS: OnceLock<Vec<String>> = OnceLock::new();
    FLAGS
        .get_or_init(|| {
            if std::env::var("PORTCULLIS_KAFKA_CDS").is_ok_and(|v| v == "0") {
                return Vec::new();
            }
            let jars = jars();
            let version = version();
            let archive = jars.with_file_name(format!("{version}.jsa"));
            let failed = jars.with_file_name(format!("{version}.jsa.failed"));
            let lock = std::fs::File::create(jars.with_file_name(".cds.lock")).unwrap();
            lock.lock().unwrap();
            if failed.exists() {
                return Vec::new();
            }
            if archive.exists() && cds_usable(&archive) {
                return cds_use(&archive);
            }
            let started = Instant::now();
            match train_cds(&archive) {
                Ok(()) => {
                    eprintln!(
                        "kafka: class-data-sharing archive {} made in {:.1?}",
                        archive.display(),
                        started.elapsed()
                    );
                    cds_use(&archive)
                }
                Err(why) => {
                    eprintln!("kafka: no class-data-sharing archive (JVMs start slower): {why}");
                    let _ = std::fs::write(&failed, format!("{why}\n"));
                    Vec::new()
                }
            }
        })
        .clone()
}

fn cds_use(archive: &Path) -> Vec<String> {
    vec![
        format!("-XX:SharedArchiveFile={}", archive.display()),
        "-Xshare:auto".to_string(),
    ]
}

/// Whether this JDK maps `archive` with this classpath.
fn cds_usable(archive: &Path) -> bool {
    Command::new(java())
        .args(["-Xshare:on", "-Xlog:disable"])
        .arg(format!("-XX:SharedArchiveFile={}", archive.display()))
        .arg("-cp")
        .arg(format!("{}/*", jars().display()))
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The training run: a 1-node SASL_SSL cluster and the common tools, every
/// JVM listing the classes it loads; then `java -Xshare:dump` of them all.
fn train_cds(archive: &Path) -> Result<(), String> {
    let work = tempfile::Builder::new()
        .prefix("portcullis-kafka-cds-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let lists = work.path().join("lists");
    std::fs::create_dir_all(&lists).map_err(|e| e.to_string())?;
    let jvm = Jvm::Train(lists.clone());
    let trained = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut kafka = KafkaCluster::start_jvm(
            "cds",
            KafkaOpts {
                nodes: 1,
                listeners: &[Listener::SaslSsl],
                ..Default::default()
            },
            jvm.clone(),
        );
        let b = kafka.bootstrap(Listener::SaslSsl);
        let admin = kafka.admin_properties(Listener::SaslSsl);
        let cc = [
            "--bootstrap-server",
            &b,
            "--command-config",
            admin.to_str().unwrap(),
        ];
        let with = |extra: &[&str]| -> Vec<String> {
            cc.iter().chain(extra).map(|s| s.to_string()).collect()
        };
        let runs: Vec<(&str, Vec<String>, &str)> = vec![
            (
                tools::TOPICS,
                with(&["--create", "--topic", "cds", "--partitions", "2"]),
                "",
            ),
            (
                tools::CONSOLE_PRODUCER,
                with(&["--topic", "cds"]),
                "a\nb\nc\n",
            ),
            (
                tools::CONSOLE_CONSUMER,
                with(&[
                    "--topic",
                    "cds",
                    "--group",
                    "cds",
                    "--from-beginning",
                    "--max-messages",
                    "3",
                ]),
                "",
            ),
            (
                tools::CONSUMER_GROUPS,
                with(&["--describe", "--group", "cds"]),
                "",
            ),
            (
                tools::CONFIGS,
                with(&[
                    "--describe",
                    "--entity-type",
                    "topics",
                    "--entity-name",
                    "cds",
                ]),
                "",
            ),
        ];
        for (main, args, stdin) in runs {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let run = run_tool_jvm(main, &args, stdin, TOOL_TIMEOUT, &jvm);
            assert!(run.ok(), "{run}");
        }
        // A clean stop, so the node's list is complete.
        kafka.stop(0);
    }));
    if trained.is_err() {
        return Err("the training run failed (see above)".into());
    }
    // One list of every class any of them loaded, in first-seen order.
    let mut seen = std::collections::HashSet::new();
    let mut merged = String::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&lists)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).map_err(|e| e.to_string())?;
        for line in text.lines() {
            if !line.starts_with('#') && !line.is_empty() && seen.insert(line.to_string()) {
                merged.push_str(line);
                merged.push('\n');
            }
        }
    }
    let classlist = work.path().join("kafka.classlist");
    std::fs::write(&classlist, merged).map_err(|e| e.to_string())?;
    let tmp = archive.with_file_name(format!(".{}.tmp", std::process::id()));
    let out = Command::new(java())
        .args(["-Xshare:dump", "-Xlog:disable", "-Xlog:all=error:stderr"])
        .arg(format!("-XX:SharedClassListFile={}", classlist.display()))
        .arg(format!("-XX:SharedArchiveFile={}", tmp.display()))
        .arg("-cp")
        .arg(format!("{}/*", jars().display()))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() || !cds_usable(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "java -Xshare:dump failed ({}): {}",
            out.status,
            tail_lines(&String::from_utf8_lossy(&out.stderr), 10)
        ));
    }
    std::fs::rename(&tmp, archive).map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------
// Processes: own group, die with the test binary
// ---------------------------------------------------------------------------

type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` in a process group of its own, with SIGKILL as its
/// parent-death signal. Linux sends that signal when the *thread* that
/// forked the child ends, so every child is forked by one spawner thread
/// that lives as long as the test binary: a cluster may outlive the test
/// thread that started it (a shared cluster), never the process.
fn spawn(mut cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let parent = std::process::id() as libc::pid_t;
    cmd.process_group(0);
    // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The test binary died between fork and prctl.
                return Err(std::io::Error::other("parent gone"));
            }
            Ok(())
        });
    }
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("kafka-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock().unwrap().send((cmd, reply_tx)).unwrap();
    reply_rx.recv().unwrap()
}

/// SIGKILL to the child's whole process group, then reap it.
fn kill_group(child: &mut Child) {
    // SAFETY: plain syscall; the group id is the child's pid (own group).
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// What one run of a Kafka tool did.
#[derive(Debug, Clone)]
pub struct ToolRun {
    /// `bin/kafka-topics.sh`-like name of what ran, with its arguments.
    pub what: String,
    /// Exit code; `None` when killed (the deadline passed).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ToolRun {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Panics with the tool's output unless it exited 0; returns stdout.
    pub fn expect_ok(&self) -> &str {
        assert!(self.ok(), "{self}");
        &self.stdout
    }

    /// The most telling line of a failure: the last `Caused by:`, else the
    /// first line naming an exception, else one naming an error, else the
    /// first line of output.
    pub fn error_line(&self) -> String {
        let all = format!("{}\n{}", self.stderr, self.stdout);
        let lines: Vec<&str> = all
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let line = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("Caused by:"))
            .or_else(|| lines.iter().find(|l| l.contains("Exception: ")))
            .or_else(|| lines.iter().find(|l| l.contains("rror")))
            .or(lines.first())
            .copied()
            .unwrap_or("(no output)");
        line.chars().take(300).collect()
    }
}

impl std::fmt::Display for ToolRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = match self.code {
            Some(c) => format!("exit {c}"),
            None => "killed at its deadline".to_string(),
        };
        write!(
            f,
            "{} ({code}, {:.1?})\n--- stdout\n{}\n--- stderr\n{}",
            self.what,
            self.elapsed,
            tail_lines(&self.stdout, 40),
            tail_lines(&self.stderr, 40)
        )
    }
}

/// Runs Kafka tool `main` (a class of [`tools`]) with `args` and `stdin`,
/// killed after `timeout`.
pub fn run_tool_timeout(main: &str, args: &[&str], stdin: &str, timeout: Duration) -> ToolRun {
    run_tool_jvm(main, args, stdin, timeout, &Jvm::Cds)
}

fn run_tool_jvm(main: &str, args: &[&str], stdin: &str, timeout: Duration, jvm: &Jvm) -> ToolRun {
    let short = main.rsplit('.').next().unwrap_or(main);
    let what = format!("{short} {}", args.join(" "));
    let mut cmd = java_command(TOOL_JVM, "log4j2-tools.properties", main, jvm);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = spawn(cmd).unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_string();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
        // Dropping `input` closes the tool's stdin: the console producer
        // sends what it read and exits.
    });
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out_pipe.read_to_end(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err_pipe.read_to_end(&mut s);
        s
    });
    let deadline = started + timeout;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if Instant::now() > deadline => {
                kill_group(&mut child);
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    // Whatever the JVM forked (nothing, usually) goes with it.
    // SAFETY: plain syscall on the tool's own process group.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&err_reader.join().unwrap()).into_owned();
    ToolRun {
        what,
        code,
        stdout,
        stderr,
        elapsed: started.elapsed(),
    }
}

/// [`run_tool_timeout`] with [`TOOL_TIMEOUT`].
pub fn run_tool(main: &str, args: &[&str], stdin: &str) -> ToolRun {
    run_tool_timeout(main, args, stdin, TOOL_TIMEOUT)
}

/// How a client reaches a listener.
#[derive(Debug, Clone)]
pub enum ClientAuth<'a> {
    Plaintext,
    /// SASL_SSL, SCRAM-SHA-512, trusting the PEM CA file.
    Scram {
        user: &'a str,
        password: &'a str,
        ca: &'a Path,
    },
    /// SSL with a client certificate: `keystore` is a PEM file holding the
    /// private key and the certificate chain.
    Mtls {
        keystore: &'a Path,
        ca: &'a Path,
    },
}

/// Writes a Java client properties file (`--command-config`,
/// `--producer.config`, ...) for `auth` to `path`, with `extra` lines.
pub fn write_client_properties(path: &Path, auth: &ClientAuth<'_>, extra: &[(&str, &str)]) {
    let mut p = String::new();
    match auth {
        ClientAuth::Plaintext => p.push_str("security.protocol=PLAINTEXT\n"),
        ClientAuth::Scram { user, password, ca } => {
            assert!(
                !password.contains('"') && !password.contains('\\'),
                "keep test passwords JAAS-safe"
            );
            p.push_str(&format!(
                "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                ca.display()
            ));
        }
        ClientAuth::Mtls { keystore, ca } => {
            p.push_str(&format!(
                "security.protocol=SSL\nssl.keystore.type=PEM\nssl.keystore.location={}\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                keystore.display(),
                ca.display()
            ));
        }
    }
    for (k, v) in extra {
        p.push_str(&format!("{k}={v}\n"));
    }
    std::fs::write(path, p).unwrap();
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------
// The cluster
// ---------------------------------------------------------------------------

/// A client listener of every node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Listener {
    /// No TLS, no SASL: clients are `User:ANONYMOUS`.
    Plaintext,
    /// TLS and SCRAM-SHA-512: clients are `User:<name>`.
    SaslSsl,
    /// TLS with a client certificate required: clients are `User:<CN>`.
    Mtls,
}

impl Listener {
    /// The listener's name in `server.properties`.
    fn name(self) -> &'static str {
        match self {
            Listener::Plaintext => "PLAIN",
            Listener::SaslSsl => "SASL",
            Listener::Mtls => "MTLS",
        }
    }

    pub fn protocol(self) -> &'static str {
        match self {
            Listener::Plaintext => "PLAINTEXT",
            Listener::SaslSsl => "SASL_SSL",
            Listener::Mtls => "SSL",
        }
    }
}

/// What cluster to start.
#[derive(Debug, Clone)]
pub struct KafkaOpts<'a> {
    /// How many nodes (each broker and controller).
    pub nodes: usize,
    /// Client listeners of every node.
    pub listeners: &'a [Listener],
    /// SCRAM-SHA-512 users besides [`ADMIN`], created at format time.
    pub users: &'a [(&'a str, &'a str)],
    /// Client certificates to issue besides `admin` (`certs/client-<name>`,
    /// with a PEM keystore `certs/client-<name>-keystore.pem`).
    pub client_certs: &'a [&'a str],
    /// Kafka's StandardAuthorizer, with `User:admin` and `User:ANONYMOUS`
    /// (the internal PLAINTEXT listeners, and a PLAINTEXT client listener)
    /// as super users. Without it every client may do everything.
    pub authorizer: bool,
    /// More `server.properties` lines, the same on every node.
    pub props: &'a [(&'a str, &'a str)],
}

impl Default for KafkaOpts<'_> {
    fn default() -> Self {
        KafkaOpts {
            nodes: 1,
            listeners: &[Listener::Plaintext],
            users: &[],
            client_certs: &[],
            authorizer: false,
            props: &[],
        }
    }
}

struct Node {
    id: i32,
    dir: PathBuf,
    /// `None`: a broker-only node ([`KafkaCluster::add_broker`]).
    controller_port: Option<u16>,
    internal_port: u16,
    client_ports: BTreeMap<Listener, u16>,
    child: Option<Child>,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

/// What every node's `server.properties` shares, kept for nodes added
/// later ([`KafkaCluster::add_broker`]).
#[derive(Debug, Clone)]
struct NodeSettings {
    /// `controller.quorum.voters`: the combined nodes of the first start.
    voters: String,
    /// Replication factor of the internal topics (the first start's node
    /// count; min.insync.replicas is at most 2).
    replication: usize,
    listeners: Vec<Listener>,
    certs: PathBuf,
    authorizer: bool,
    props: Vec<(String, String)>,
}

impl NodeSettings {
    /// Writes `node`'s directory and `server.properties`.
    fn write(&self, node: &Node) {
        std::fs::create_dir_all(&node.dir).unwrap();
        let mut l = Vec::new();
        // A broker-only node has no CONTROLLER listener of its own, but
        // still needs the name's protocol to reach the quorum.
        let roles = match node.controller_port {
            Some(port) => {
                l.push(format!("CONTROLLER://127.0.0.1:{port}"));
                "broker,controller"
            }
            None => "broker",
        };
        l.push(format!("INTERNAL://127.0.0.1:{}", node.internal_port));
        let mut adv = vec![format!("INTERNAL://127.0.0.1:{}", node.internal_port)];
        let mut map = vec![
            "CONTROLLER:PLAINTEXT".to_string(),
            "INTERNAL:PLAINTEXT".to_string(),
        ];
        for (lis, port) in &node.client_ports {
            l.push(format!("{}://127.0.0.1:{port}", lis.name()));
            adv.push(format!("{}://127.0.0.1:{port}", lis.name()));
            map.push(format!("{}:{}", lis.name(), lis.protocol()));
        }
        let mut p = format!(
            "process.roles={roles}\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=INTERNAL\n\
             listeners={l}\n\
             advertised.listeners={adv}\n\
             listener.security.protocol.map={map}\n\
             log.dirs={data}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor={n}\n\
             offsets.topic.num.partitions=5\n\
             transaction.state.log.replication.factor={n}\n\
             transaction.state.log.min.isr={min_isr}\n\
             transaction.state.log.num.partitions=5\n\
             share.coordinator.state.topic.replication.factor={n}\n\
             share.coordinator.state.topic.min.isr={min_isr}\n\
             share.coordinator.state.topic.num.partitions=3\n\
             group.initial.rebalance.delay.ms=0\n\
             num.network.threads=2\n\
             num.io.threads=2\n\
             background.threads=2\n\
             num.recovery.threads.per.data.dir=1\n\
             num.replica.fetchers=1\n\
             log.cleaner.threads=1\n\
             log.cleaner.dedupe.buffer.size=8388608\n",
            id = node.id,
            voters = self.voters,
            n = self.replication,
            min_isr = self.replication.min(2),
            l = l.join(","),
            adv = adv.join(","),
            map = map.join(","),
            data = node.dir.join("data").display(),
        );
        if self.listeners.contains(&Listener::SaslSsl) {
            p.push_str(
                "sasl.enabled.mechanisms=SCRAM-SHA-512\n\
                 listener.name.sasl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n",
            );
        }
        if self.listeners.iter().any(|l| *l != Listener::Plaintext) {
            p.push_str(&format!(
                "ssl.keystore.type=PEM\nssl.keystore.location={}\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                self.certs.join("server-keystore.pem").display(),
                self.certs.join("ca.crt").display()
            ));
        }
        if self.listeners.contains(&Listener::Mtls) {
            // `CN=alice` is `User:alice`.
            p.push_str(
                "listener.name.mtls.ssl.client.auth=required\n\
                 ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT\n",
            );
        }
        if self.authorizer {
            p.push_str(&format!(
                "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
                 super.users=User:{ADMIN};User:ANONYMOUS\n"
            ));
        }
        for (k, v) in &self.props {
            p.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(node.dir.join("server.properties"), p).unwrap();
    }
}

/// A running KRaft cluster; every node is killed on drop.
pub struct KafkaCluster {
    pub dir: PathBuf,
    /// `ca.crt`, `server.crt/.key`, `client-<name>.crt/.key` and the PEM
    /// keystores made of them.
    pub certs: PathBuf,
    pub cluster_id: String,
    /// Time from the first `java` to a cluster whose every node lists every
    /// broker in its metadata (formatting included).
    pub started_in: Duration,
    listeners: Vec<Listener>,
    nodes: Vec<Node>,
    settings: NodeSettings,
    jvm: Jvm,
    tmp: Option<tempfile::TempDir>,
}

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let socks: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    socks
        .iter()
        .map(|s| s.local_addr().unwrap().port())
        .collect()
}

/// A random KRaft cluster id: 16 bytes, base64url without padding, never
/// starting with `-` (as Kafka's `Uuid.randomUuid`): `kafka-storage format
/// --cluster-id -x...` takes such an id for an option and fails, one
/// cluster in 64.
fn new_cluster_id() -> String {
    use base64::Engine;
    loop {
        let bytes: [u8; 16] = rand::random();
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        if !id.starts_with('-') {
            return id;
        }
    }
}

fn check_secret(s: &str) {
    assert!(
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
        "keep SCRAM names and passwords to [A-Za-z0-9-_.] (they go into --add-scram): {s:?}"
    );
}

impl KafkaCluster {
    /// Formats and starts the cluster and waits until every node lists
    /// every broker; panics with the nodes' log tails if that takes longer
    /// than two minutes.
    pub fn start(name: &str, opts: KafkaOpts<'_>) -> KafkaCluster {
        KafkaCluster::start_jvm(name, opts, Jvm::Cds)
    }

    fn start_jvm(name: &str, opts: KafkaOpts<'_>, jvm: Jvm) -> KafkaCluster {
        assert!(opts.nodes >= 1);
        assert!(
            !opts.listeners.is_empty(),
            "a cluster needs a client listener"
        );
        if let Jvm::Cds = jvm {
            // Made (once) before the clock starts.
            cds_flags();
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!("portcullis-kafka-{name}-"))
            .tempdir()
            .unwrap();
        let dir = tmp.path().to_path_buf();
        let certs = dir.join("certs");
        let mut clients = vec![ADMIN];
        clients.extend_from_slice(opts.client_certs);
        let mut certs_cmd = Command::new(PORTCULLIS);
        certs_cmd.args(["certs", "init", "--dir"]).arg(&certs);
        for c in &clients {
            certs_cmd.args(["--client", c]);
        }
        let out = certs_cmd.output().expect("portcullis certs init");
        assert!(
            out.status.success(),
            "portcullis certs init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Kafka's PEM keystore file: the private key, then the chain.
        let keystore = |crt: &str, key: &str, out: &str| {
            let mut pem = std::fs::read_to_string(certs.join(key)).unwrap();
            pem.push_str(&std::fs::read_to_string(certs.join(crt)).unwrap());
            std::fs::write(certs.join(out), pem).unwrap();
        };
        keystore("server.crt", "server.key", "server-keystore.pem");
        for c in &clients {
            keystore(
                &format!("client-{c}.crt"),
                &format!("client-{c}.key"),
                &format!("client-{c}-keystore.pem"),
            );
        }

        let listeners: Vec<Listener> = {
            let mut l = opts.listeners.to_vec();
            l.sort();
            l.dedup();
            l
        };
        let per_node = 2 + listeners.len();
        let ports = free_ports(opts.nodes * per_node);
        let mut nodes: Vec<Node> = (0..opts.nodes)
            .map(|i| {
                let p = &ports[i * per_node..(i + 1) * per_node];
                Node {
                    id: i as i32 + 1,
                    dir: dir.join(format!("node-{}", i + 1)),
                    controller_port: Some(p[0]),
                    internal_port: p[1],
                    client_ports: listeners
                        .iter()
                        .copied()
                        .zip(p[2..].iter().copied())
                        .collect(),
                    child: None,
                }
            })
            .collect();
        let voters = nodes
            .iter()
            .filter_map(|n| Some(format!("{}@127.0.0.1:{}", n.id, n.controller_port?)))
            .collect::<Vec<_>>()
            .join(",");
        let settings = NodeSettings {
            voters,
            replication: opts.nodes,
            listeners: listeners.clone(),
            certs: certs.clone(),
            authorizer: opts.authorizer,
            props: opts
                .props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        for node in &nodes {
            settings.write(node);
        }

        let cluster_id = new_cluster_id();
        let started = Instant::now();
        // Format every node at once (one JVM each, a few seconds).
        let mut scram = vec![(ADMIN, ADMIN_PASSWORD)];
        scram.extend_from_slice(opts.users);
        let mut format_args = vec![
            "format".to_string(),
            "--cluster-id".into(),
            cluster_id.clone(),
        ];
        if listeners.contains(&Listener::SaslSsl) {
            for (user, pw) in &scram {
                check_secret(user);
                check_secret(pw);
                format_args.push("--add-scram".into());
                format_args.push(format!("SCRAM-SHA-512=[name={user},password={pw}]"));
            }
        }
        let formats: Vec<_> = nodes
            .iter()
            .map(|node| {
                let config = node.dir.join("server.properties");
                let mut args = format_args.clone();
                args.push("--config".into());
                args.push(config.display().to_string());
                let jvm = jvm.clone();
                std::thread::spawn(move || {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    run_tool_jvm(tools::STORAGE, &args, "", TOOL_TIMEOUT, &jvm)
                })
            })
            .collect();
        for f in formats {
            let run = f.join().unwrap();
            assert!(run.ok(), "formatting a Kafka node failed: {run}");
        }
        let formatted_in = started.elapsed();

        let mut cluster = KafkaCluster {
            dir,
            certs,
            cluster_id,
            started_in: Duration::ZERO,
            listeners,
            nodes: Vec::new(),
            settings,
            jvm,
            tmp: Some(tmp),
        };
        for node in &mut nodes {
            launch(node, &cluster.jvm);
        }
        cluster.nodes = nodes;
        cluster.wait_ready(START_DEADLINE);
        cluster.started_in = started.elapsed();
        eprintln!(
            "kafka {}: {}-node cluster {:?} ready in {:.1?} (formatting {:.1?}) in {}",
            version(),
            cluster.nodes.len(),
            cluster.listeners,
            cluster.started_in,
            formatted_in,
            cluster.dir.display()
        );
        cluster
    }

    /// Waits until every running node answers Metadata on its internal
    /// listener with every broker of the cluster in it.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let want = self.nodes.len();
        loop {
            let mut ready = true;
            for i in 0..self.nodes.len() {
                let node = &mut self.nodes[i];
                let Some(child) = node.child.as_mut() else {
                    continue;
                };
                if let Ok(Some(status)) = child.try_wait() {
                    node.child = None;
                    panic!(
                        "kafka node {} exited ({status}) while starting:\n{}",
                        node.id,
                        tail_lines(&node.log(), 60)
                    );
                }
                let addr = format!("127.0.0.1:{}", node.internal_port);
                if metadata_brokers(&addr).is_none_or(|n| n < want) {
                    ready = false;
                }
            }
            if ready {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the Kafka cluster was not ready after {timeout:?}\n{}",
                    self.logs_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Node ids are 1..=n; `node` here is the index 0..n.
    pub fn node_id(&self, node: usize) -> i32 {
        self.nodes[node].id
    }

    /// `127.0.0.1:port` of `node`'s `listener`.
    pub fn addr(&self, node: usize, listener: Listener) -> String {
        let port = self.nodes[node]
            .client_ports
            .get(&listener)
            .unwrap_or_else(|| panic!("the cluster has no {listener:?} listener"));
        format!("127.0.0.1:{port}")
    }

    /// Every node's `listener`, comma-separated (`bootstrap.servers`).
    pub fn bootstrap(&self, listener: Listener) -> String {
        (0..self.nodes.len())
            .map(|i| self.addr(i, listener))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every node's internal PLAINTEXT listener (the harness's own way in;
    /// `User:ANONYMOUS`, a super user when the authorizer is on).
    pub fn internal_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.internal_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }

    /// PEM keystore (key + certificate) of client certificate `name`.
    pub fn client_keystore(&self, name: &str) -> PathBuf {
        self.certs.join(format!("client-{name}-keystore.pem"))
    }

    /// Writes a new client properties file for `listener` as `user` (SCRAM
    /// password from `password`, or the client certificate of `user` for
    /// mTLS) and returns its path.
    pub fn client_properties(&self, listener: Listener, user: &str, password: &str) -> PathBuf {
        // Numbered: two files for one user (a wrong password, say) must
        // not overwrite each other.
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let path = self
            .dir
            .join(format!("client-{}-{user}-{n}.properties", listener.name()));
        let ca = self.ca_file();
        let keystore = self.client_keystore(user);
        let auth = match listener {
            Listener::Plaintext => ClientAuth::Plaintext,
            Listener::SaslSsl => ClientAuth::Scram {
                user,
                password,
                ca: &ca,
            },
            Listener::Mtls => ClientAuth::Mtls {
                keystore: &keystore,
                ca: &ca,
            },
        };
        write_client_properties(&path, &auth, &[]);
        path
    }

    /// The admin's properties file for `listener`.
    pub fn admin_properties(&self, listener: Listener) -> PathBuf {
        self.client_properties(listener, ADMIN, ADMIN_PASSWORD)
    }

    /// Runs a tool; on failure the caller's assertion shows its output and
    /// `logs_tail` the cluster's side.
    pub fn tool(&self, main: &str, args: &[&str], stdin: &str) -> ToolRun {
        run_tool(main, args, stdin)
    }

    /// Runs a tool and panics with its output and the nodes' log tails
    /// unless it exits 0; returns its stdout.
    pub fn tool_ok(&self, main: &str, args: &[&str], stdin: &str) -> String {
        let run = run_tool(main, args, stdin);
        if !run.ok() {
            panic!("{run}\n{}", self.logs_tail(30));
        }
        run.stdout
    }

    /// Adds (or changes) a SCRAM-SHA-512 user with `kafka-configs`, over
    /// the internal listener.
    pub fn add_scram_user(&self, user: &str, password: &str) {
        check_secret(password);
        let bootstrap = self.internal_bootstrap();
        let config = format!("SCRAM-SHA-512=[password={password}]");
        self.tool_ok(
            tools::CONFIGS,
            &[
                "--bootstrap-server",
                &bootstrap,
                "--alter",
                "--add-config",
                &config,
                "--entity-type",
                "users",
                "--entity-name",
                user,
            ],
            "",
        );
    }

    /// The pid of `node`'s JVM, when it runs.
    pub fn pid(&self, node: usize) -> Option<u32> {
        self.nodes[node].child.as_ref().map(Child::id)
    }

    /// SIGKILL to `node`: no clean shutdown.
    pub fn kill9(&mut self, node: usize) {
        if let Some(mut c) = self.nodes[node].child.take() {
            kill_group(&mut c);
        }
    }

    /// SIGTERM to `node` and wait (up to a minute) for its clean shutdown.
    pub fn stop(&mut self, node: usize) {
        if let Some(mut c) = self.nodes[node].child.take() {
            // SAFETY: plain syscall on the node's own process.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            kill_group(&mut c);
        }
    }

    /// Starts a stopped or killed `node` again (same ports, same data) and
    /// waits until the cluster is whole.
    pub fn restart(&mut self, node: usize) {
        assert!(self.nodes[node].child.is_none(), "stop or kill it first");
        launch(&mut self.nodes[node], &self.jvm);
        self.wait_ready(START_DEADLINE);
    }

    /// Adds a broker-only node (`process.roles=broker`, the next node id)
    /// to the running cluster: the same listeners, users, certificates,
    /// authorizer and settings as the others, its own ports and scratch
    /// directory (`node-<id>/`), formatted with the cluster's id. It joins
    /// through the controllers of `controller.quorum.voters` (the quorum
    /// stays the first nodes) and gets the users and ACLs from the metadata
    /// log. Waits until every running node lists it; returns its index.
    pub fn add_broker(&mut self) -> usize {
        let started = Instant::now();
        let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
        let ports = free_ports(1 + self.listeners.len());
        let node = Node {
            id,
            dir: self.dir.join(format!("node-{id}")),
            controller_port: None,
            internal_port: ports[0],
            client_ports: self
                .listeners
                .iter()
                .copied()
                .zip(ports[1..].iter().copied())
                .collect(),
            child: None,
        };
        self.settings.write(&node);
        // No `--add-scram`: the users are records of the metadata log the
        // broker replays from the controllers, not of its own bootstrap.
        let config = node.dir.join("server.properties");
        let run = run_tool_jvm(
            tools::STORAGE,
            &[
                "format",
                "--cluster-id",
                &self.cluster_id,
                "--config",
                config.to_str().unwrap(),
            ],
            "",
            TOOL_TIMEOUT,
            &self.jvm,
        );
        assert!(run.ok(), "formatting broker {id} failed: {run}");
        let mut node = node;
        launch(&mut node, &self.jvm);
        self.nodes.push(node);
        self.wait_ready(START_DEADLINE);
        eprintln!(
            "kafka: broker {id} joined in {:.1?} ({})",
            started.elapsed(),
            self.nodes.last().unwrap().dir.display()
        );
        self.nodes.len() - 1
    }

    pub fn log(&self, node: usize) -> String {
        self.nodes[node].log()
    }

    /// The last `n` lines of every node's log, each headed by its path.
    pub fn logs_tail(&self, n: usize) -> String {
        self.nodes
            .iter()
            .map(|node| {
                format!(
                    "--- kafka node {} ({}):\n{}",
                    node.id,
                    node.log_path().display(),
                    tail_lines(&node.log(), n)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn launch(node: &mut Node, jvm: &Jvm) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(node.log_path())
        .unwrap();
    let mut cmd = java_command(NODE_JVM, "log4j2-server.properties", "kafka.Kafka", jvm);
    cmd.arg(node.dir.join("server.properties"))
        .current_dir(&node.dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    node.child = Some(spawn(cmd).expect("start java kafka.Kafka"));
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("{}", self.logs_tail(30));
        }
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                kill_group(&mut c);
            }
        }
        if panicking {
            if let Some(tmp) = self.tmp.take() {
                eprintln!("kafka: kept {} for inspection", tmp.keep().display());
            }
        }
    }
}
