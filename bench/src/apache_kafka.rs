//! Apache Kafka beside Portcullis (`--against-kafka`): one KRaft node,
//! broker and controller in one JVM, from the jars the test harness fetches
//! (`tests/kafka/fetch.sh` -> `target/kafka-jars/<version>`), with the same
//! two client listeners the bench gives Portcullis: PLAINTEXT and SASL_SSL
//! with SCRAM-SHA-512, the same dev certificates (Kafka reads them as a PEM
//! keystore) and the same bench user (written into the metadata log at
//! format time, so it exists before the first client connects).
//!
//! Settings are Kafka's own defaults (threads, G1, flush policy) except the
//! heap, sized for the 2-core, 24 GiB machine it shares with everything
//! (`--kafka-heap`, default 1 GiB, fixed so the RSS figures do not move
//! with heap growth), and what a single node needs (replication factor 1 of
//! its internal topics). For authorization parity Kafka runs its
//! StandardAuthorizer with the bench user and `User:ANONYMOUS` as super
//! users, as Portcullis runs its ACL engine with the same two super users.

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::metadata_probe::metadata_brokers;

/// Main classes of the release's tools (what `bin/*.sh` runs).
pub const STORAGE_TOOL: &str = "kafka.tools.StorageTool";
pub const KAFKA_MAIN: &str = "kafka.Kafka";

/// Formatting and one start on a busy 2-core machine take 5-30 s.
const START_DEADLINE: Duration = Duration::from_secs(180);

/// The repository the bench was built from: the jars, the fetch script and
/// the log4j settings of the test harness live there.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The directory of the Kafka jars: `--kafka-jars`, else what
/// `tests/kafka/fetch.sh` prints (it fetches once with Maven, then reuses).
pub fn jars(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = explicit {
        if !d.is_dir() {
            bail!("--kafka-jars {}: no such directory", d.display());
        }
        return Ok(d.to_path_buf());
    }
    let script = repo_root().join("tests/kafka/fetch.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.is_dir() {
        bail!("{} printed no directory", script.display());
    }
    Ok(dir)
}

pub fn java() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if Path::new(&home).join("bin/java").exists() => {
            Path::new(&home).join("bin/java")
        }
        _ => PathBuf::from("java"),
    }
}

/// `java <flags> -cp <jars>/* <main>`; the JVM gets a process group of its
/// own and SIGKILL when the bench dies, so no JVM outlives a run.
pub fn java_command(jars: &Path, flags: &[String], log4j: &Path, main: &str) -> Command {
    let mut cmd = Command::new(java());
    cmd.args(flags)
        .arg(format!("-Dlog4j2.configurationFile={}", log4j.display()))
        .arg("-cp")
        .arg(format!("{}/*", jars.display()))
        .arg(main)
        .env_remove("KAFKA_OPTS")
        .env_remove("JAVA_TOOL_OPTIONS")
        .stdin(Stdio::null())
        .process_group(0);
    // SAFETY: prctl is async-signal-safe and allocates nothing.
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

/// The log4j2 settings of a node: the harness's (INFO to stdout, config
/// dumps left out), else a minimal one written into `dir`.
fn log4j_file(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let repo = repo_root().join("tests/kafka").join(name);
    if repo.is_file() {
        return Ok(repo);
    }
    let path = dir.join(name);
    std::fs::write(
        &path,
        "status = warn\nappender.out.type = Console\nappender.out.name = OUT\n\
         appender.out.layout.type = PatternLayout\nappender.out.layout.pattern = [%d] %p %m (%c)%n\n\
         rootLogger.level = warn\nrootLogger.appenderRef.out.ref = OUT\n",
    )?;
    Ok(path)
}

pub fn tools_log4j(dir: &Path) -> anyhow::Result<PathBuf> {
    log4j_file(dir, "log4j2-tools.properties")
}

/// What to start.
pub struct KafkaSetup<'a> {
    pub jars: &'a Path,
    /// Scratch directory: `server.properties`, `data/`, `server.log`.
    pub dir: &'a Path,
    /// `ca.crt`, `server.crt`, `server.key` (the bench's dev certificates).
    pub certs: &'a Path,
    pub user: &'a str,
    pub password: &'a str,
    /// `-Xmx` and `-Xms`, e.g. `1g`.
    pub heap: &'a str,
}

/// A running single-node Kafka; killed (its whole process group) on drop.
pub struct ApacheKafka {
    child: Option<Child>,
    jars: PathBuf,
    dir: PathBuf,
    heap: String,
    pub plaintext: String,
    pub secure: String,
    /// A second PLAINTEXT listener, advertised at `relay` (`relay.rs`):
    /// clients that bootstrap through a relay on that address stay on it.
    pub relayed: String,
    pub relay: String,
    pub version: String,
}

/// `n` distinct free loopback ports (all bound at once, then released).
fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let socks = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    socks.iter().map(|s| Ok(s.local_addr()?.port())).collect()
}

/// A random KRaft cluster id: 16 random bytes, base64url without padding
/// (as Kafka's `Uuid.randomUuid`), never starting with `-` (the storage
/// tool would take it for an option).
fn cluster_id() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    loop {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        let bits = u128::from_be_bytes(bytes);
        // 22 characters of 6 bits = 132 bits: the value shifted left by 4.
        let id: String = (0..22)
            .map(|i| {
                let shift: i32 = 126 - 6 * i;
                let v = if shift >= 4 {
                    (bits >> (shift - 4)) & 63
                } else {
                    (bits << (4 - shift)) & 63
                };
                ALPHABET[v as usize] as char
            })
            .collect();
        if !id.starts_with('-') {
            return Ok(id);
        }
    }
}

impl ApacheKafka {
    /// Writes the node's config and certificates, formats its storage (with
    /// the SCRAM user), starts it and waits until it answers Metadata.
    /// Returns the node and the time from `java` to ready (formatting not
    /// included).
    pub fn start(s: &KafkaSetup<'_>) -> anyhow::Result<(ApacheKafka, Duration)> {
        if s.password.contains([',', ']', '"', '\\', '=']) {
            bail!("the SCRAM password does not fit --add-scram");
        }
        std::fs::create_dir_all(s.dir)?;
        let version = s
            .jars
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Kafka's PEM keystore: the private key, then the chain.
        let keystore = s.dir.join("server-keystore.pem");
        let mut pem = std::fs::read_to_string(s.certs.join("server.key"))?;
        pem.push_str(&std::fs::read_to_string(s.certs.join("server.crt"))?);
        std::fs::write(&keystore, pem)?;
        let ports = free_ports(5)?;
        let (controller, plain, secure) = (ports[0], ports[1], ports[2]);
        let (relayed, relay) = (ports[3], ports[4]);
        let props = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.voters=1@127.0.0.1:{controller}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listeners=CONTROLLER://127.0.0.1:{controller},PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secure},RELAYED://127.0.0.1:{relayed}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{plain},SASL_SSL://127.0.0.1:{secure},RELAYED://127.0.0.1:{relay}\n\
             listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,RELAYED:PLAINTEXT\n\
             log.dirs={data}\n\
             num.partitions=1\n\
             offsets.topic.replication.factor=1\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             sasl.enabled.mechanisms=SCRAM-SHA-512\n\
             listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;\n\
             ssl.keystore.type=PEM\n\
             ssl.keystore.location={keystore}\n\
             authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer\n\
             super.users=User:{user};User:ANONYMOUS\n",
            data = s.dir.join("data").display(),
            keystore = keystore.display(),
            user = s.user,
        );
        let config = s.dir.join("server.properties");
        std::fs::write(&config, props)?;
        let log4j = tools_log4j(s.dir)?;
        let scram = format!(
            "SCRAM-SHA-512=[name={},password={},iterations={}]",
            s.user,
            s.password,
            portcullis::security::scram::MIN_ITERATIONS
        );
        let cid = cluster_id()?;
        let out = java_command(s.jars, &tool_jvm(), &log4j, STORAGE_TOOL)
            .args([
                "format",
                "--cluster-id",
                &cid,
                "--add-scram",
                &scram,
                "--config",
            ])
            .arg(&config)
            .output()
            .context("cannot run java (is a JDK 17+ installed?)")?;
        if !out.status.success() {
            bail!(
                "kafka-storage format failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut k = ApacheKafka {
            child: None,
            jars: s.jars.to_path_buf(),
            dir: s.dir.to_path_buf(),
            heap: s.heap.to_string(),
            plaintext: format!("127.0.0.1:{plain}"),
            secure: format!("127.0.0.1:{secure}"),
            relayed: format!("127.0.0.1:{relayed}"),
            relay: format!("127.0.0.1:{relay}"),
            version,
        };
        let took = k.launch()?;
        Ok((k, took))
    }

    /// Starts the JVM and waits until the PLAINTEXT listener answers
    /// Metadata naming the broker: process start to listener ready.
    pub fn launch(&mut self) -> anyhow::Result<Duration> {
        if self.child.is_some() {
            bail!("Kafka runs already");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let log4j = log4j_file(&self.dir, "log4j2-server.properties")?;
        // What kafka-server-start.sh / kafka-run-class.sh pass, with the
        // heap fixed.
        let flags: Vec<String> = [
            format!("-Xmx{}", self.heap),
            format!("-Xms{}", self.heap),
            "-server".into(),
            "-XX:+UseG1GC".into(),
            "-XX:MaxGCPauseMillis=20".into(),
            "-XX:InitiatingHeapOccupancyPercent=35".into(),
            "-XX:+ExplicitGCInvokesConcurrent".into(),
            "-XX:+ExitOnOutOfMemoryError".into(),
            "-Djava.awt.headless=true".into(),
        ]
        .into();
        let t = Instant::now();
        let child = java_command(&self.jars, &flags, &log4j, KAFKA_MAIN)
            .arg(self.dir.join("server.properties"))
            .current_dir(&self.dir)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start java kafka.Kafka")?;
        self.child = Some(child);
        let deadline = t + START_DEADLINE;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                bail!(
                    "Kafka exited ({status}) while starting; see {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(30)
                );
            }
            if metadata_brokers(&self.plaintext).is_some_and(|n| n >= 1) {
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                bail!(
                    "Kafka was not ready after {START_DEADLINE:?}; see {}:\n{}",
                    self.log_path().display(),
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// SIGTERM and wait (up to two minutes) for a clean shutdown.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        // SAFETY: plain syscall on our own child.
        unsafe {
            libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        kill_group(&mut c);
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Bytes of live objects on the JVM's heap, in KiB: `jcmd
    /// GC.class_histogram` runs a full collection first and ends with a
    /// `Total <instances> <bytes>` line. `None` without jcmd.
    pub fn live_heap_kib(&self) -> Option<u64> {
        let pid = self.pid()?.to_string();
        let jcmd = java().with_file_name("jcmd");
        let jcmd = if jcmd.is_absolute() && jcmd.exists() {
            jcmd
        } else {
            PathBuf::from("jcmd")
        };
        let out = Command::new(&jcmd)
            .args([&pid, "GC.class_histogram"])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let total = text
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with("Total"))?;
        let bytes: u64 = total.split_whitespace().nth(2)?.parse().ok()?;
        Some(bytes / 1024)
    }
}

impl Drop for ApacheKafka {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(&mut c);
        }
    }
}

/// SIGKILL to the child's process group (its own), then reap it.
fn kill_group(child: &mut Child) {
    // SAFETY: plain syscall; the group id is the child's pid.
    unsafe {
        libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// JVM flags of a short-lived tool (format, perf tests).
pub fn tool_jvm() -> Vec<String> {
    ["-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]
        .map(String::from)
        .into()
}
