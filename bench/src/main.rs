//! `portcullis-bench`: one command that starts a broker (the `portcullis`
//! binary as a child process, so its memory can be measured alone),
//! measures the machine's ceilings, then the broker over PLAINTEXT and
//! over SASL_SSL + SCRAM-SHA-512 with librdkafka, and prints every figure
//! with its ratio to its ceiling and its target. Figures are printed, never
//! asserted.
//!
//! A crate of its own: librdkafka (and the OpenSSL it links) stays out of
//! the broker binary.

mod acl;
mod ceilings;
mod connections;
mod delivery;
mod kafka;
mod probe;
mod scale;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use rdkafka::config::ClientConfig;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "portcullis-bench",
    version,
    about = "Measure the portcullis broker: throughput, latency, connections, ACLs, restarts"
)]
pub struct BenchArgs {
    /// The broker binary to start (default: `portcullis` next to this
    /// program, i.e. the same target directory and profile).
    #[arg(long, env = "PORTCULLIS_BIN")]
    pub broker_bin: Option<PathBuf>,
    /// Scratch directory for the broker under test (default: a temp dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Record value size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Records per throughput run.
    #[arg(long, default_value_t = 300_000)]
    pub records: usize,
    /// Producer compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// Partitions of the benchmark topics.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Producer batch size in bytes (librdkafka batch.size).
    #[arg(long, default_value_t = 1_000_000)]
    pub batch_bytes: usize,
    /// linger.ms for the throughput runs.
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// Target rate of the latency run, MB/s.
    #[arg(long, default_value_t = 50.0)]
    pub latency_rate_mb: f64,
    /// linger.ms of the latency run (librdkafka takes fractions). At this
    /// rate a short linger means fewer, larger requests and a lower p99.
    #[arg(long, default_value_t = 0.0)]
    pub latency_linger_ms: f64,
    /// Duration of the latency run, seconds.
    #[arg(long, default_value_t = 5)]
    pub latency_secs: u64,
    /// Idle authenticated connections for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    pub idle_connections: usize,
    /// Seconds of the connect-rate run.
    #[arg(long, default_value_t = 5.0)]
    pub connect_secs: f64,
    /// ACL rules for the authorize() figure.
    #[arg(long, default_value_t = 100_000)]
    pub acl_rules: usize,
    /// Before the restart figures, grow the log to this many GB (PLAINTEXT,
    /// acks=1). Point --data-dir at a filesystem that holds it (see
    /// BENCHMARKS.md for 100 GB on a compressed btrfs loop device).
    #[arg(long, default_value_t = 0.0)]
    pub restart_log_gb: f64,
    /// Measure a running broker instead of starting one: its PLAINTEXT
    /// listener. Without it the PLAINTEXT figures are skipped.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// The running broker's SASL_SSL listener (SCRAM-SHA-512); the SCRAM
    /// password is read from PORTCULLIS_BENCH_PASSWORD.
    #[arg(long, requires = "ca")]
    pub secure_bootstrap: Option<String>,
    /// SCRAM user for --secure-bootstrap.
    #[arg(long, default_value = BENCH_USER)]
    pub user: String,
    /// CA certificate that signed the running broker's certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The running broker's process id, for its CPU and memory figures.
    #[arg(long)]
    pub broker_pid: Option<u32>,
    /// Only these sections (comma-separated: ceilings, plaintext, secure,
    /// connections, acl, scale, restart); default all.
    #[arg(long)]
    pub only: Option<String>,
}

impl BenchArgs {
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.split(',').any(|s| s.trim() == section))
    }
}

struct BrokerProcess {
    child: Child,
    plaintext: String,
    secure: String,
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const BENCH_USER: &str = "bench";

/// The idle-connection figure opens thousands of connections from one
/// address: far above the default per-address limit, on purpose, so the
/// bench raises it for its own broker only.
const BENCH_MAX_CONNECTIONS: usize = 60_000;

fn write_config(dir: &Path, ports: (u16, u16)) -> anyhow::Result<PathBuf> {
    let d = dir.display();
    let cfg = format!(
        "data_dir: {d}/data\nlisteners:\n  - security_protocol: PLAINTEXT\n    address: 127.0.0.1:{}\n  - security_protocol: SASL_SSL\n    address: 127.0.0.1:{}\n\
tls:\n  cert: {d}/certs/server.crt\n  key: {d}/certs/server.key\ncerts:\n  dir: {d}/certs\n  auto_generate: true\n\
sasl:\n  credentials: {d}/credentials.yaml\n  bootstrap_admin: false\nacl:\n  file: {d}/acls.yaml\n\
audit:\n  file: {d}/audit/audit.log\nsuper_users: [\"User:{BENCH_USER}\", \"User:ANONYMOUS\"]\n\
connections:\n  max_connections: {BENCH_MAX_CONNECTIONS}\n  max_connections_per_ip: {BENCH_MAX_CONNECTIONS}\n\
ops:\n  address: 127.0.0.1:0\n",
        ports.0, ports.1
    );
    // No rules: the bench user is a super user. The broker refuses to start
    // without the file (acl.allow_missing is off).
    let acls = dir.join("acls.yaml");
    if !acls.exists() {
        std::fs::write(&acls, "rules: []\n")?;
    }
    let path = dir.join("bench.yaml");
    std::fs::write(&path, cfg)?;
    Ok(path)
}

/// Starts `portcullis serve`; returns the process and the time until it
/// listened (start-up time).
fn start_broker(
    bin: &Path,
    dir: &Path,
    ports: (u16, u16),
) -> anyhow::Result<(BrokerProcess, Duration)> {
    let cfg = write_config(dir, ports)?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("broker.log"))?;
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
                dir.join("broker.log").display()
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
fn broker_bin(args: &BenchArgs) -> anyhow::Result<PathBuf> {
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

fn port(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

/// The broker under test: one this run started, or a running one.
struct Endpoint {
    plaintext: Option<String>,
    secure: Option<String>,
    pid: Option<u32>,
    ca: PathBuf,
    user: String,
    password: String,
}

impl Endpoint {
    fn client(&self, addr: &str, secure: bool) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", addr);
        if secure {
            c.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanism", "SCRAM-SHA-512")
                .set("sasl.username", &self.user)
                .set("sasl.password", &self.password)
                .set("ssl.ca.location", self.ca.display().to_string());
        }
        c
    }

    fn scram_target(&self, addr: &str) -> anyhow::Result<connections::Target> {
        Ok(connections::Target {
            addr: addr.to_string(),
            connector: portcullis::client::Connector::tls(portcullis::client::tls_connector(
                &self.ca, None,
            )?)
            .with_client_id("portcullis-bench"),
            user: self.user.clone(),
            password: self.password.clone(),
        })
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

/// CPU the broker and this process (the clients) used while `f` ran.
struct CpuSplit {
    /// `None` when the broker's process is unknown (a running broker
    /// measured without --broker-pid).
    broker: Option<f64>,
    clients: f64,
    wall: f64,
}

impl CpuSplit {
    async fn measure<T, F: std::future::Future<Output = T>>(
        broker_pid: Option<u32>,
        f: F,
    ) -> (T, CpuSplit) {
        let b = broker_pid.map(|p| p.to_string());
        let broker_cpu = || b.as_deref().map(cpu_secs);
        let (b0, c0, t0) = (broker_cpu(), cpu_secs("self"), std::time::Instant::now());
        let out = f.await;
        let split = CpuSplit {
            broker: broker_cpu().zip(b0).map(|(now, then)| now - then),
            clients: cpu_secs("self") - c0,
            wall: t0.elapsed().as_secs_f64(),
        };
        (out, split)
    }

    /// "broker 0.93 cores, clients 1.02 cores": who had the two cores.
    fn line(&self) -> String {
        let w = self.wall.max(1e-9);
        let broker = self
            .broker
            .map(|b| format!("{:.2} cores", b / w))
            .unwrap_or_else(|| "not measured".into());
        format!(
            "cpu: broker {broker}, clients {:.2} cores",
            self.clients / w
        )
    }

    /// The same, plus what one broker core sustains at the broker's own
    /// cost per MB: the figure once clients have cores of their own.
    fn line_per_mb(&self, mb_per_s: f64) -> String {
        let mb = (mb_per_s * self.wall).max(1e-9);
        let broker = self
            .broker
            .map(|b| {
                let per_mb = b / mb;
                format!(
                    "; broker {:.2} ms CPU per MB = {:.0} MB/s per broker core",
                    per_mb * 1000.0,
                    1.0 / per_mb.max(1e-9)
                )
            })
            .unwrap_or_default();
        format!(
            "{}{broker}; {}",
            self.line(),
            self.client_bound(mb, "MB/s", "MB")
        )
    }

    /// The most the clients' own measured cost allows on this machine:
    /// every core theirs and a broker that costs nothing. A target above it
    /// cannot be met here by any broker.
    fn client_bound(&self, units: f64, rate_unit: &str, per: &str) -> String {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let per_unit = self.clients / units.max(1e-9);
        format!(
            "client-only bound {:.0} {rate_unit} ({:.0} us client CPU per {per})",
            cores / per_unit.max(1e-12),
            per_unit * 1e6
        )
    }
}

/// Writes every dirty page of the page cache back to disk.
fn sync_page_cache() {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

fn ratio(v: f64, ceiling: f64) -> String {
    if ceiling > 0.0 {
        format!("{:.2}x", v / ceiling)
    } else {
        "-".into()
    }
}

fn main() -> std::process::ExitCode {
    let args = BenchArgs::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let fd_limit = connections::raise_fd_limit();
    let (dir, _guard) = match &args.data_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            (d.clone(), None)
        }
        None => {
            let d = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
            std::fs::create_dir_all(&d)?;
            (d.clone(), Some(TempDirGuard(d)))
        }
    };
    println!(
        "portcullis bench on {} cores, fd limit {fd_limit}, scratch {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        dir.display()
    );
    println!(
        "workload: {} records x {} B, compression {}, {} partitions, batch.size {}",
        args.records, args.record_size, args.compression, args.partitions, args.batch_bytes
    );

    let (mut tls_ceiling, mut gc_ceiling) = (0.0, 0.0);
    if args.wants("ceilings") {
        let dir2 = dir.clone();
        tls_ceiling =
            tokio::task::spawn_blocking(move || ceilings::tls_loopback_mb_s(&dir2, 2000)).await??;
        let dir2 = dir.clone();
        let fsync =
            tokio::task::spawn_blocking(move || ceilings::fdatasync_latency(&dir2, 200)).await??;
        let dir2 = dir.clone();
        let batch = args.batch_bytes.clamp(16 * 1024, 1 << 20);
        gc_ceiling =
            tokio::task::spawn_blocking(move || ceilings::group_commit_mb_s(&dir2, 4, batch, 3.0))
                .await??;
        println!("\n== ceilings of this machine");
        println!("rustls TLS 1.3 bulk over loopback:  {tls_ceiling:10.1} MB/s");
        println!(
            "fdatasync (4 KiB):                  p50 {:.3} ms  p99 {:.3} ms",
            fsync.value_at_quantile(0.5) as f64 / 1000.0,
            fsync.value_at_quantile(0.99) as f64 / 1000.0
        );
        println!(
            "group commit (4 writers, {} KiB):  {gc_ceiling:10.1} MB/s",
            batch / 1024
        );
    }

    // First, in a fresh process: a broker's reload runs in a heap shaped by
    // the broker, not by the librdkafka clients of the runs below (which
    // made a reload ~100 ms slower), and closing 10,000 connections keeps
    // both cores busy for a while, which is not what a reload competes with.
    if args.wants("acl") {
        let (d, n) = (dir.clone(), args.acl_rules);
        let f = tokio::task::spawn_blocking(move || acl::run(&d, n, 1_000_000)).await??;
        println!("\n== ACLs ({} rules, {} KiB file)", f.rules, f.file_kib);
        println!(
            "authorize(): p50 {} ns  p99 {} ns  p99.9 {} ns   (target p99 <= 1000 ns)",
            f.authorize_ns.value_at_quantile(0.5),
            f.authorize_ns.value_at_quantile(0.99),
            f.authorize_ns.value_at_quantile(0.999)
        );
        println!("reload (parse + validate + index, off the request path): p50 {:.1} ms  max {:.1} ms   (target <= 250 ms)", f.reload_ms_p50, f.reload_ms_max);
    }

    let external = args.bootstrap.is_some() || args.secure_bootstrap.is_some();
    let (ep, broker) = if external {
        let secure = args.secure_bootstrap.clone();
        let password = match &secure {
            Some(_) => std::env::var("PORTCULLIS_BENCH_PASSWORD").context(
                "--secure-bootstrap needs the SCRAM password in PORTCULLIS_BENCH_PASSWORD",
            )?,
            None => String::new(),
        };
        let ep = Endpoint {
            plaintext: args.bootstrap.clone(),
            secure,
            pid: args.broker_pid,
            ca: args.ca.clone().unwrap_or_default(),
            user: args.user.clone(),
            password,
        };
        println!(
            "\nrunning broker: PLAINTEXT {} SASL_SSL {} (pid {})",
            ep.plaintext.as_deref().unwrap_or("-"),
            ep.secure.as_deref().unwrap_or("-"),
            ep.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into())
        );
        (ep, None)
    } else {
        let bin = broker_bin(&args)?;
        let password = portcullis::broker::random_password();
        let store = portcullis::security::credentials::CredentialStore::open_or_init(
            dir.join("credentials.yaml"),
        )?;
        store.modify(|f| {
            if !f.contains(BENCH_USER) {
                f.add_user(
                    BENCH_USER,
                    &password,
                    portcullis::security::scram::MIN_ITERATIONS,
                )
            } else {
                f.set_password(
                    BENCH_USER,
                    &password,
                    portcullis::security::scram::MIN_ITERATIONS,
                )
            }
        })?;
        drop(store);
        let (broker, first_start) = start_broker(&bin, &dir, (0, 0))?;
        println!(
            "\nbroker {} pid {} started in {:.0} ms: PLAINTEXT {} SASL_SSL {}",
            bin.display(),
            broker.child.id(),
            first_start.as_secs_f64() * 1000.0,
            broker.plaintext,
            broker.secure
        );
        let ep = Endpoint {
            plaintext: Some(broker.plaintext.clone()),
            secure: Some(broker.secure.clone()),
            pid: Some(broker.child.id()),
            ca: dir.join("certs/ca.crt"),
            user: BENCH_USER.into(),
            password,
        };
        (ep, Some((broker, bin)))
    };
    let pid = ep.pid;

    for (name, secure) in [("plaintext", false), ("secure", true)] {
        if !args.wants(name) {
            continue;
        }
        let Some(addr) = (if secure { &ep.secure } else { &ep.plaintext }) else {
            println!("\n== {name}: skipped (no listener given)");
            continue;
        };
        let base = ep.client(addr, secure);
        let label = if secure {
            "SASL_SSL + SCRAM-SHA-512"
        } else {
            "PLAINTEXT"
        };
        println!("\n== {label}");
        let t1 = format!("bench-{name}-acks1");
        let t_all = format!("bench-{name}-acksall");
        let t_lat = format!("bench-{name}-latency");
        for t in [&t1, &t_all, &t_lat] {
            kafka::create_topic(&base, t, args.partitions).await?;
        }
        let run = |acks: &'static str, topic: String| {
            let (a, b) = (args.clone(), base.clone());
            tokio::task::spawn_blocking(move || kafka::produce_throughput(&a, &b, &topic, acks))
        };
        let (res, cpu) = CpuSplit::measure(pid, run("1", t1.clone())).await;
        let (mb1, r1) = res??;
        println!("produce acks=1:    {mb1:9.1} MB/s {r1:11.0} rec/s   ratio to TLS ceiling {}   (target >= 0.6x over TLS)   {}", ratio(mb1, tls_ceiling), cpu.line_per_mb(mb1));
        let (res, cpu) = CpuSplit::measure(pid, run("all", t_all.clone())).await;
        let (mba, ra) = res??;
        println!("produce acks=all:  {mba:9.1} MB/s {ra:11.0} rec/s   ratio to group-commit ceiling {}   (target >= 0.75x)   {}", ratio(mba, gc_ceiling), cpu.line_per_mb(mba));
        let (a, b, t) = (args.clone(), base.clone(), t1.clone());
        let n = args.records;
        let (consumed, cpu) = CpuSplit::measure(
            pid,
            tokio::task::spawn_blocking(move || kafka::consume_throughput(&a, &b, &t, n)),
        )
        .await;
        let (mbc, rc) = consumed??;
        println!("consume:           {mbc:9.1} MB/s {rc:11.0} rec/s   ratio to TLS ceiling {}   (target >= 0.7x over TLS)   {}", ratio(mbc, tls_ceiling), cpu.line_per_mb(mbc));
        // The throughput runs leave gigabytes of dirty log pages; the
        // kernel's writeback of them would land in the latency runs.
        tokio::task::spawn_blocking(sync_page_cache).await?;
        let (a, b, t) = (args.clone(), base.clone(), t_lat.clone());
        let (lat, cpu) = CpuSplit::measure(
            pid,
            tokio::task::spawn_blocking(move || kafka::produce_latency(&a, &b, &t)),
        )
        .await;
        let (h, errs, achieved) = lat??;
        println!(
            "latency at {:.0} MB/s (achieved {achieved:.1}) acks=1 linger.ms {}: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  ({} acked, {errs} failed)   (target p99 <= 2 ms, p99.9 <= 5 ms)   {}",
            args.latency_rate_mb,
            args.latency_linger_ms,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.value_at_quantile(0.999) as f64 / 1000.0,
            h.len(),
            cpu.line()
        );
        let probe = async {
            let (topic, parts, size) = (t_lat.as_str(), args.partitions, args.record_size);
            let (rate, secs) = (args.latency_rate_mb, args.latency_secs);
            if secure {
                let target = ep.scram_target(addr)?;
                let s = connections::connect_once(&target, &Default::default()).await?;
                probe::produce_latency(s, topic, parts, size, rate, secs).await
            } else {
                let s = tokio::net::TcpStream::connect(addr).await?;
                s.set_nodelay(true)?;
                probe::produce_latency(s, topic, parts, size, rate, secs).await
            }
        };
        let (res, cpu) = CpuSplit::measure(pid, probe).await;
        let r = res?;
        println!(
            "latency, minimal client (what the broker adds): 1 request/ms at {:.1} MB/s: p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  ({} requests, {} failed)   {}",
            r.mb_per_s,
            r.latency_us.value_at_quantile(0.5) as f64 / 1000.0,
            r.latency_us.value_at_quantile(0.99) as f64 / 1000.0,
            r.latency_us.value_at_quantile(0.999) as f64 / 1000.0,
            r.latency_us.len(),
            r.errors,
            cpu.line()
        );
    }

    if let Some(secure) = ep.secure.as_deref().filter(|_| args.wants("connections")) {
        let target = Arc::new(ep.scram_target(secure)?);
        println!("\n== connections (TCP + TLS 1.3 + SCRAM-SHA-512)");
        let (connected, cpu) = CpuSplit::measure(
            pid,
            connections::connects_per_second(target.clone(), 32, args.connect_secs),
        )
        .await;
        let (rate, failed) = connected?;
        // The clients' TLS handshakes and SCRAM run on the same two cores:
        // what one broker core serves is the broker's own cost per connect.
        let per_connect = cpu
            .broker
            .map(|b| {
                let each = b / (rate * cpu.wall).max(1.0);
                format!(
                    "; broker {:.0} us CPU per connect = {:.0} connects/s per broker core",
                    each * 1e6,
                    1.0 / each.max(1e-9)
                )
            })
            .unwrap_or_default();
        println!(
            "full connects: {rate:9.0} /s ({failed} failed)   (target >= 3000/s)   {}{per_connect}; {}",
            cpu.line(),
            cpu.client_bound(rate * cpu.wall, "connects/s", "connect"),
        );
        match pid {
            Some(pid) => {
                let (per, opened) =
                    connections::idle_memory_per_connection(target, pid, args.idle_connections)
                        .await?;
                println!("idle authenticated connections: {opened} open, broker RSS {:.1} KiB per connection   (target <= 16 KiB)", per / 1024.0);
            }
            None => println!("idle connection memory: skipped (needs --broker-pid)"),
        }
    }

    if let Some(addr) = ep.plaintext.as_deref().filter(|_| args.wants("scale")) {
        scale::run(addr, pid).await?;
    }

    if let Some((mut broker, bin)) = broker.filter(|_| args.wants("restart")) {
        let ports = (port(&broker.plaintext), port(&broker.secure));
        grow_log(&args, &ep, &dir).await?;
        let bytes: u64 = walk_size(&dir.join("data"));
        let pid = broker.child.id();
        // Clean restart: SIGTERM, then time until listening again.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = broker.child.wait();
        drop(broker);
        let (b2, clean) = start_broker(&bin, &dir, ports)?;
        let mut b2 = b2;
        let _ = b2.child.kill();
        let _ = b2.child.wait();
        drop(b2);
        let (b3, crash) = start_broker(&bin, &dir, ports)?;
        println!("\n== restart with {:.2} GB of log", bytes as f64 / 1e9);
        println!("clean restart: {:.0} ms   after kill -9 (recovery): {:.0} ms   (target < 1 s for 100 GB)", clean.as_secs_f64() * 1000.0, crash.as_secs_f64() * 1000.0);
        drop(b3);
    } else if args.wants("restart") && external {
        println!("\n== restart: skipped (only a broker this run started is restarted)");
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// Produces into `bench-restart` until the data directory holds
/// `--restart-log-gb`.
async fn grow_log(args: &BenchArgs, ep: &Endpoint, dir: &Path) -> anyhow::Result<()> {
    let want = (args.restart_log_gb * 1e9) as u64;
    let have = walk_size(&dir.join("data"));
    if want <= have {
        return Ok(());
    }
    let Some(plaintext) = &ep.plaintext else {
        return Ok(());
    };
    let base = ep.client(plaintext, false);
    kafka::create_topic(&base, "bench-restart", args.partitions).await?;
    let mut fill = args.clone();
    fill.records = ((want - have) / (args.record_size as u64 + 30)) as usize;
    println!(
        "\n== growing the log from {:.1} to {:.1} GB",
        have as f64 / 1e9,
        want as f64 / 1e9
    );
    let (mb_s, _) = tokio::task::spawn_blocking(move || {
        kafka::produce_throughput(&fill, &base, "bench-restart", "1")
    })
    .await??;
    println!("filled at {mb_s:.0} MB/s");
    Ok(())
}

fn walk_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk_size(&path)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

/// Removes the bench's scratch directory when the run ends.
struct TempDirGuard(PathBuf);
impl Drop for TempDirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
