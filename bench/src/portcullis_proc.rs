//! The Portcullis broker under test as a child process (so its memory
//! and CPU are its own): its config, start-up until it listens, and, for
//! gateway mode, the same broker with Apache Kafka as its back end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::BenchArgs;

pub struct BrokerProcess {
    pub child: Child,
    pub plaintext: String,
    pub secure: String,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const BENCH_USER: &str = "bench";

/// The idle-connection figure opens thousands of connections from one
/// address: far above the default per-address limit, on purpose, so the
/// bench raises it for its own broker only.
const BENCH_MAX_CONNECTIONS: usize = 60_000;

/// Which broker: the one under test, or a gateway in front of Kafka.
#[derive(Clone, Copy)]
pub enum Role<'a> {
    /// The embedded log engine; data, audit and config under the scratch
    /// directory (`data/`, `audit/`, `bench.yaml`, `broker.log`).
    Broker,
    /// `backend: gateway` with this upstream PLAINTEXT bootstrap address;
    /// its own `gateway-*` data, audit, config and log, the broker's
    /// certificates, credentials and ACL file.
    Gateway(&'a str),
}

impl Role<'_> {
    fn name(&self) -> &'static str {
        match self {
            Role::Broker => "",
            Role::Gateway(_) => "gateway-",
        }
    }

    pub fn log(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}broker.log", self.name()))
    }
}

fn write_config(dir: &Path, ports: (u16, u16), role: Role<'_>) -> anyhow::Result<PathBuf> {
    let d = dir.display();
    let n = role.name();
    let data = match role {
        Role::Broker => format!("{d}/data"),
        Role::Gateway(_) => format!("{d}/gateway-data"),
    };
    let mut cfg = format!(
        "data_dir: {data}\nlisteners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:{}\n  - security_protocol: SASL_SSL\n    address: 127.0.0.1:{}\n\
tls:\n  cert: {d}/certs/server.crt\n  key: {d}/certs/server.key\ncerts:\n  dir: {d}/certs\n  auto_generate: true\n\
sasl:\n  credentials: {d}/credentials.yaml\n  bootstrap_admin: false\nacl:\n  file: {d}/acls.yaml\n\
audit:\n  file: {d}/{n}audit/audit.log\nsuper_users: [\"User:{BENCH_USER}\", \"User:ANONYMOUS\"]\n\
connections:\n  max_connections: {BENCH_MAX_CONNECTIONS}\n  max_connections_per_ip: {BENCH_MAX_CONNECTIONS}\n\
ops:\n  address: 127.0.0.1:0\n",
        ports.0, ports.1
    );
    if let Role::Gateway(upstream) = role {
        // A PLAINTEXT upstream: the gateway terminates TLS and SCRAM, as a
        // gateway beside its cluster would.
        cfg.push_str(&format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [\"{upstream}\"]\n  security_protocol: PLAINTEXT\n"
        ));
    }
    // No rules: the bench user is a super user. The broker refuses to start
    // without the file (acl.allow_missing is off).
    let acls = dir.join("acls.yaml");
    if !acls.exists() {
        std::fs::write(&acls, "rules: []\n")?;
    }
    let path = dir.join(format!("{n}bench.yaml"));
    std::fs::write(&path, cfg)?;
    Ok(path)
}

/// Starts `portcullis serve`; returns the process and the time until it
/// listened (start-up time).
pub fn start_broker(
    bin: &Path,
    dir: &Path,
    ports: (u16, u16),
    role: Role<'_>,
) -> anyhow::Result<(BrokerProcess, Duration)> {
    let cfg = write_config(dir, ports, role)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(role.log(dir))?;
    let t = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start the broker {}", bin.display()))?;
    let out = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(out).lines();
    let mut addrs = Vec::new();
    while addrs.len() < 2 {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(rest) = l.strip_prefix("portcullis: listening ") {
                    let a = rest.split_whitespace().next().unwrap_or("");
                    addrs.push(a.split("://").nth(1).unwrap_or("").to_string());
                }
            }
            _ => bail!(
                "the broker exited before listening; see {}",
                role.log(dir).display()
            ),
        }
    }
    let took = t.elapsed();
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Ok((
        BrokerProcess {
            child,
            plaintext: addrs[0].clone(),
            secure: addrs[1].clone(),
        },
        took,
    ))
}

/// The `portcullis` binary: given, or next to this one. `cargo run -p
/// portcullis-bench` builds only the bench, so a missing broker is said
/// plainly rather than found stale somewhere else.
pub fn broker_bin(args: &BenchArgs) -> anyhow::Result<PathBuf> {
    let bin = match &args.broker_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("the bench's own path has no directory")?
            .join("portcullis"),
    };
    if !bin.is_file() {
        bail!(
            "no broker binary at {}: build it first (`cargo build --release -p portcullis`) or give --broker-bin",
            bin.display()
        );
    }
    Ok(bin)
}

pub fn port(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}
