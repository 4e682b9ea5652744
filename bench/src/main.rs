//! `portcullis-bench`: one command that starts a broker (the `portcullis`
//! binary as a child process, so its memory can be measured alone),
//! measures the machine's ceilings, then the broker over PLAINTEXT and
//! over SASL_SSL + SCRAM-SHA-512 with librdkafka, and prints every figure
//! with its ratio to its ceiling and its target. Figures are printed, never
//! asserted.
//!
//! With `--against-kafka` it also starts a single-node Apache Kafka
//! (apache_kafka.rs), measures it with the same clients, records and
//! settings, measures a Portcullis gateway in front of it, and ends with a
//! side-by-side table (report.rs). Kafka's own perf tools (perf_tools.rs)
//! run against both as a second, independent client.
//!
//! A crate of its own: librdkafka (and the OpenSSL it links) stays out of
//! the broker binary.

mod acl;
mod apache_kafka;
mod ceilings;
mod connections;
mod cpu;
mod delivery;
mod kafka;
mod measure;
mod metadata_probe;
mod perf_tools;
mod portcullis_proc;
mod probe;
mod relay;
mod report;
mod scale;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Parser;

use apache_kafka::{ApacheKafka, KafkaSetup};
use measure::{Ceilings, Endpoint, Scope, Tools};
use portcullis_proc::{broker_bin, port, start_broker, Role, BENCH_USER};
use report::{Figures, GatewayFigures};

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
    /// Records produced and consumed over each listener before its figures
    /// (not measured): a JVM broker runs its hot paths compiled only after
    /// a while, and neither broker should be measured cold.
    #[arg(long, default_value_t = 300_000)]
    pub warmup_records: usize,
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
    /// connections, acl, scale, restart, perftools, gateway); default all.
    #[arg(long)]
    pub only: Option<String>,
    /// Also start a single-node Apache Kafka (KRaft) and measure it the
    /// same way, a Portcullis gateway in front of it, and print both side
    /// by side with ratios.
    #[arg(long)]
    pub against_kafka: bool,
    /// Run Kafka's kafka-producer-perf-test / kafka-consumer-perf-test too
    /// (on by default with --against-kafka).
    #[arg(long)]
    pub perf_tools: bool,
    /// Directory of the Apache Kafka jars (default: what
    /// tests/kafka/fetch.sh prints, target/kafka-jars/<version>).
    #[arg(long)]
    pub kafka_jars: Option<PathBuf>,
    /// Kafka's heap (-Xmx and -Xms).
    #[arg(long, default_value = "2g")]
    pub kafka_heap: String,
    /// Internal: run as the byte relay of the gateway rows (`relay.rs`),
    /// listening on the first address and relaying to the second.
    #[arg(long, hide = true, num_args = 2, value_names = ["LISTEN", "TARGET"])]
    pub relay: Option<Vec<String>>,
}

impl BenchArgs {
    fn wants(&self, section: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.split(',').any(|s| s.trim() == section))
    }
}

fn main() -> std::process::ExitCode {
    let args = BenchArgs::parse();
    if let Some([listen, target]) = args.relay.as_deref() {
        if let Err(e) = relay::serve(listen, target) {
            eprintln!("relay: {e:#}");
        }
        return std::process::ExitCode::FAILURE;
    }
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

    let mut ceil = Ceilings::default();
    if args.wants("ceilings") {
        let dir2 = dir.clone();
        ceil.tls =
            tokio::task::spawn_blocking(move || ceilings::tls_loopback_mb_s(&dir2, 2000)).await??;
        let dir2 = dir.clone();
        let fsync =
            tokio::task::spawn_blocking(move || ceilings::fdatasync_latency(&dir2, 200)).await??;
        let dir2 = dir.clone();
        let batch = args.batch_bytes.clamp(16 * 1024, 1 << 20);
        ceil.group_commit =
            tokio::task::spawn_blocking(move || ceilings::group_commit_mb_s(&dir2, 4, batch, 3.0))
                .await??;
        let dir2 = dir.clone();
        let (append_mb_s, append_ms) =
            tokio::task::spawn_blocking(move || ceilings::page_cache_append(&dir2, 1000)).await??;
        println!("\n== ceilings of this machine");
        println!("rustls TLS 1.3 bulk over loopback:  {:10.1} MB/s", ceil.tls);
        println!(
            "fdatasync (4 KiB):                  p50 {:.3} ms  p99 {:.3} ms",
            fsync.value_at_quantile(0.5) as f64 / 1000.0,
            fsync.value_at_quantile(0.99) as f64 / 1000.0
        );
        println!(
            "group commit (4 writers, {} KiB):  {:10.1} MB/s",
            batch / 1024,
            ceil.group_commit
        );
        println!(
            "append to the page cache (1 MiB writes, no fsync): {append_mb_s:.1} MB/s, {append_ms:.2} ms CPU per MB (part of every broker's produce CPU)"
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

    let jars = if args.against_kafka || args.perf_tools {
        Some(apache_kafka::jars(args.kafka_jars.as_deref())?)
    } else {
        None
    };
    let tools_dir = dir.join("kafka-tools");
    std::fs::create_dir_all(&tools_dir)?;
    let tools = jars
        .as_deref()
        .filter(|_| args.wants("perftools"))
        .map(|jars| Tools {
            jars,
            dir: &tools_dir,
        });

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
            name: "Portcullis".into(),
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
        let password = bench_password(&dir)?;
        let (broker, first_start) = start_broker(&bin, &dir, (0, 0), Role::Broker)?;
        println!(
            "\nbroker {} pid {} started in {:.0} ms: PLAINTEXT {} SASL_SSL {}",
            bin.display(),
            broker.child.id(),
            first_start.as_secs_f64() * 1000.0,
            broker.plaintext,
            broker.secure
        );
        let ep = Endpoint {
            name: "Portcullis".into(),
            plaintext: Some(broker.plaintext.clone()),
            secure: Some(broker.secure.clone()),
            pid: Some(broker.child.id()),
            ca: dir.join("certs/ca.crt"),
            user: BENCH_USER.into(),
            password,
        };
        (ep, Some((broker, bin)))
    };

    // Portcullis first, alone: Kafka is not started before its figures.
    let mut pf = Figures::default();
    let full = Scope::Full { kafka: false };
    if args.wants("plaintext") {
        pf.plaintext = measure::listener(&args, &ep, false, full, ceil, tools.as_ref()).await?;
    }
    if args.wants("secure") {
        pf.secure = measure::listener(&args, &ep, true, full, ceil, tools.as_ref()).await?;
    }
    if args.wants("connections") {
        (pf.connects, pf.idle_kib) = measure::connections(&args, &ep, None).await?;
    }

    // Apache Kafka: the same figures, with Portcullis idle beside it.
    let mut kafka_run = None;
    if let (true, Some(jars)) = (args.against_kafka, jars.as_deref()) {
        let kdir = dir.join("kafka");
        let certs = dir.join("certs");
        // A running broker given by address left no certificates here.
        if !certs.join("server.key").exists() {
            portcullis::tls::init_certs(&certs, &[], &[], true)?;
        }
        let setup = KafkaSetup {
            jars,
            dir: &kdir,
            certs: &certs,
            user: BENCH_USER,
            password: &ep.password,
            heap: &args.kafka_heap,
        };
        let (k, started) = tokio::task::block_in_place(|| ApacheKafka::start(&setup))?;
        println!(
            "\nApache Kafka {} pid {} (heap {}) ready in {:.0} ms: PLAINTEXT {} SASL_SSL {}",
            k.version,
            k.pid().unwrap_or(0),
            args.kafka_heap,
            started.as_secs_f64() * 1000.0,
            k.plaintext,
            k.secure
        );
        let kep = Endpoint {
            name: "Kafka".into(),
            plaintext: Some(k.plaintext.clone()),
            secure: Some(k.secure.clone()),
            pid: k.pid(),
            ca: certs.join("ca.crt"),
            user: BENCH_USER.into(),
            password: ep.password.clone(),
        };
        let mut kf = Figures::default();
        let full = Scope::Full { kafka: true };
        if args.wants("plaintext") {
            kf.plaintext =
                measure::listener(&args, &kep, false, full, ceil, tools.as_ref()).await?;
        }
        if args.wants("secure") {
            kf.secure = measure::listener(&args, &kep, true, full, ceil, tools.as_ref()).await?;
        }
        if args.wants("connections") {
            let heap = || k.live_heap_kib();
            (kf.connects, kf.idle_kib) = measure::connections(&args, &kep, Some(&heap)).await?;
        }
        let mut gw = None;
        if let (true, Some((_, bin))) = (args.wants("gateway"), &broker) {
            gw = Some(gateway(&args, bin, &dir, &k, &kep, tools.as_ref()).await?);
        }
        kafka_run = Some((k, kf, gw));
    }

    if let Some(addr) = ep.plaintext.as_deref().filter(|_| args.wants("scale")) {
        scale::run(addr, ep.pid).await?;
    }

    if let Some((mut broker, bin)) = broker.filter(|_| args.wants("restart")) {
        let ports = (port(&broker.plaintext), port(&broker.secure));
        grow_log(&args, &ep, &dir.join("data")).await?;
        let bytes: u64 = walk_size(&dir.join("data"));
        let pid = broker.child.id();
        // Clean restart: SIGTERM, then time until listening again.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let _ = broker.child.wait();
        drop(broker);
        let (b2, clean) = start_broker(&bin, &dir, ports, Role::Broker)?;
        let mut b2 = b2;
        let _ = b2.child.kill();
        let _ = b2.child.wait();
        drop(b2);
        let (b3, crash) = start_broker(&bin, &dir, ports, Role::Broker)?;
        println!(
            "\n== Portcullis, restart with {:.2} GB of log",
            bytes as f64 / 1e9
        );
        println!("clean restart: {:.0} ms   after kill -9 (recovery): {:.0} ms   (target < 1 s for 100 GB)", clean.as_secs_f64() * 1000.0, crash.as_secs_f64() * 1000.0);
        pf.restart = Some((clean.as_secs_f64() * 1000.0, bytes as f64 / 1e9));
        drop(b3);
        if let Some((k, kf, _)) = kafka_run.as_mut() {
            let kep = Endpoint {
                name: "Kafka".into(),
                plaintext: Some(k.plaintext.clone()),
                secure: None,
                pid: k.pid(),
                ca: PathBuf::new(),
                user: String::new(),
                password: String::new(),
            };
            grow_log(&args, &kep, &k.data_dir()).await?;
            let bytes = walk_size(&k.data_dir());
            // Clean restart: SIGTERM and its clean shutdown, then process
            // start until the PLAINTEXT listener answers Metadata.
            let clean = tokio::task::block_in_place(|| {
                k.stop();
                k.launch()
            })?;
            println!(
                "\n== Kafka, restart with {:.2} GB of log",
                bytes as f64 / 1e9
            );
            println!(
                "clean restart: {:.0} ms (JVM start to Metadata answered)",
                clean.as_secs_f64() * 1000.0
            );
            kf.restart = Some((clean.as_secs_f64() * 1000.0, bytes as f64 / 1e9));
        }
    } else if args.wants("restart") && external {
        println!("\n== restart: skipped (only a broker this run started is restarted)");
    }

    if let Some((k, kf, gw)) = &kafka_run {
        println!(
            "\n== Portcullis and Apache Kafka {}, same run (broker and client CPU per MB in brackets)\n",
            k.version
        );
        println!("{}", report::table(&pf, kf, gw.as_ref(), &k.version));
    }
    std::io::stdout().flush()?;
    Ok(())
}

/// The bench user's SCRAM credential in the broker's store (a new random
/// password each run); returns the password.
fn bench_password(dir: &Path) -> anyhow::Result<String> {
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
    Ok(password)
}

/// Gateway mode: a Portcullis gateway (its own process, the broker's
/// certificates and credentials) in front of Kafka's PLAINTEXT listener,
/// measured over both of its listeners, each against the client talking
/// to Kafka directly just before; over PLAINTEXT also a byte relay
/// (`relay.rs`) in front of the same Kafka: what one more hop costs
/// before a gateway does anything.
async fn gateway(
    args: &BenchArgs,
    bin: &Path,
    dir: &Path,
    k: &ApacheKafka,
    kep: &Endpoint,
    tools: Option<&Tools<'_>>,
) -> anyhow::Result<GatewayFigures> {
    let (g, started) = start_broker(bin, dir, (0, 0), Role::Gateway(&k.plaintext))?;
    println!(
        "\ngateway pid {} started in {:.0} ms in front of Kafka {}: PLAINTEXT {} SASL_SSL {}",
        g.child.id(),
        started.as_secs_f64() * 1000.0,
        k.plaintext,
        g.plaintext,
        g.secure
    );
    let gep = Endpoint {
        name: "gateway".into(),
        plaintext: Some(g.plaintext.clone()),
        secure: Some(g.secure.clone()),
        // The broker CPU of these rows is the gateway's own.
        pid: Some(g.child.id()),
        ca: kep.ca.clone(),
        user: kep.user.clone(),
        password: kep.password.clone(),
    };
    let none = Ceilings::default();
    let mut out = GatewayFigures::default();
    // Kafka's own rate drifts over a run (its CPU per produced MB ranged
    // 2.9-12.7 ms from one section to the next on this machine): each
    // gateway figure is compared with Kafka measured directly just before
    // it, not with Kafka's section minutes earlier.
    let direct = Endpoint {
        name: "Kafka direct".into(),
        plaintext: kep.plaintext.clone(),
        secure: kep.secure.clone(),
        pid: kep.pid,
        ca: kep.ca.clone(),
        user: kep.user.clone(),
        password: kep.password.clone(),
    };
    for secure in [false, true] {
        if !args.wants(if secure { "secure" } else { "plaintext" }) {
            continue;
        }
        // Kafka's perf tools too: the Java consumer reads in a fetch
        // session, which the gateway keeps itself.
        let d = measure::listener(args, &direct, secure, Scope::Gateway, none, tools).await?;
        if !secure {
            let r = relay::RelayProcess::start(&std::env::current_exe()?, &k.relay, &k.relayed)?;
            println!(
                "\nbyte relay pid {} on {} in front of Kafka's listener {} (advertised as the relay)",
                r.pid(),
                r.addr,
                k.relayed
            );
            let rep = Endpoint {
                name: "byte relay".into(),
                plaintext: Some(r.addr.clone()),
                secure: None,
                pid: Some(r.pid()),
                ca: kep.ca.clone(),
                user: kep.user.clone(),
                password: kep.password.clone(),
            };
            out.relay_plaintext =
                measure::listener(args, &rep, false, Scope::Gateway, none, None).await?;
        }
        let g = measure::listener(args, &gep, secure, Scope::Gateway, none, tools).await?;
        let together = measure::probe_side_by_side(args, &direct, &gep, secure).await?;
        if secure {
            (out.direct_secure, out.secure) = (d, g);
            out.together_secure = Some(together);
        } else {
            (out.direct_plaintext, out.plaintext) = (d, g);
            out.together_plaintext = Some(together);
        }
    }
    drop(g);
    Ok(out)
}

/// Produces into `bench-restart` until `data` holds `--restart-log-gb`.
async fn grow_log(args: &BenchArgs, ep: &Endpoint, data: &Path) -> anyhow::Result<()> {
    let want = (args.restart_log_gb * 1e9) as u64;
    let have = walk_size(data);
    if want <= have {
        return Ok(());
    }
    let Some(plaintext) = &ep.plaintext else {
        return Ok(());
    };
    let base = ep.client(plaintext, false);
    kafka::create_topic(&base, "bench-restart", args.partitions, &[]).await?;
    let mut fill = args.clone();
    fill.records = ((want - have) / (args.record_size as u64 + 30)) as usize;
    println!(
        "\n== {}: growing the log from {:.1} to {:.1} GB",
        ep.name,
        have as f64 / 1e9,
        want as f64 / 1e9
    );
    let m = tokio::task::spawn_blocking(move || {
        kafka::produce_throughput(&fill, &base, "bench-restart", "1", None)
    })
    .await??;
    println!("filled at {:.0} MB/s", m.mb_s);
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
