//! Kafka's own load generators as a second, independent client:
//! `kafka-producer-perf-test` and `kafka-consumer-perf-test` (the Java
//! classes `org.apache.kafka.tools.ProducerPerformance` and
//! `ConsumerPerformance` of the harness's jars), run against either broker
//! with the same records and settings as the librdkafka runs; their summary
//! lines are parsed. The tool's CPU comes from wait4's rusage of the JVM,
//! so it includes the JVM's start and JIT (a second or two of CPU): the
//! librdkafka figures are the ones to read for client cost.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::apache_kafka::{java_command, tool_jvm, tools_log4j};

pub const PRODUCER_PERF: &str = "org.apache.kafka.tools.ProducerPerformance";
pub const CONSUMER_PERF: &str = "org.apache.kafka.tools.ConsumerPerformance";

/// Where and how the tools connect.
#[derive(Clone, Copy)]
pub struct ToolTarget<'a> {
    pub jars: &'a Path,
    /// Scratch directory for properties files.
    pub dir: &'a Path,
    pub bootstrap: &'a str,
    /// `Some((user, password, ca))`: SASL_SSL with SCRAM-SHA-512.
    pub scram: Option<(&'a str, &'a str, &'a Path)>,
    /// For the broker's CPU over the run.
    pub broker_pid: Option<u32>,
}

/// One tool run: the tool's own figure and who spent the CPU.
pub struct ToolRun {
    pub mb_s: f64,
    pub records_s: f64,
    /// The JVM's user + system CPU, seconds (start and JIT included).
    pub tool_cpu: f64,
    /// The broker's CPU over the tool's whole run, seconds.
    pub broker_cpu: Option<f64>,
    /// MB the run moved.
    pub mb: f64,
    /// The tool's latency summary (producer only), as printed.
    pub latency: Option<String>,
}

fn properties(t: &ToolTarget<'_>, name: &str) -> anyhow::Result<PathBuf> {
    let path = t.dir.join(format!("{name}.properties"));
    let text = match t.scram {
        None => "security.protocol=PLAINTEXT\n".to_string(),
        Some((user, password, ca)) => {
            if password.contains(['"', '\\']) {
                bail!("the SCRAM password does not fit a JAAS line");
            }
            format!(
                "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n\
                 sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{user}\" password=\"{password}\";\n\
                 ssl.truststore.type=PEM\nssl.truststore.location={}\n",
                ca.display()
            )
        }
    };
    std::fs::write(&path, text)?;
    Ok(path)
}

/// `kafka-producer-perf-test`: `records` x `record_size` B, unthrottled.
#[allow(clippy::too_many_arguments)]
pub fn produce(
    t: &ToolTarget<'_>,
    topic: &str,
    records: usize,
    record_size: usize,
    acks: &str,
    linger_ms: u64,
    batch_bytes: usize,
    compression: &str,
) -> anyhow::Result<ToolRun> {
    let props = properties(t, "perf-producer")?;
    let mut cmd = java_command(t.jars, &tool_jvm(), &tools_log4j(t.dir)?, PRODUCER_PERF);
    cmd.args(["--bootstrap-server", t.bootstrap, "--topic", topic])
        .args(["--num-records", &records.to_string()])
        .args(["--record-size", &record_size.to_string()])
        .args(["--throughput", "-1", "--command-config"])
        .arg(&props)
        .arg("--command-property")
        .args([
            format!("acks={acks}"),
            format!("linger.ms={linger_ms}"),
            // The Java producer caps a request at max.request.size (1 MiB),
            // librdkafka a batch at message.max.bytes (1 MB): the same.
            format!("batch.size={}", batch_bytes.min(1_000_000)),
            format!("compression.type={compression}"),
            "buffer.memory=268435456".into(),
        ]);
    let (out, cpu, broker) = run(cmd, t.broker_pid, Duration::from_secs(600))?;
    // "300000 records sent, 94876.7 records/sec (92.65 MB/sec), 184.09 ms
    // avg latency, 504.00 ms max latency, 174 ms 50th, 361 ms 95th, ..."
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("records sent,"))
        .with_context(|| format!("no summary line from ProducerPerformance:\n{out}"))?;
    let records_s: f64 = line
        .split(", ")
        .nth(1)
        .and_then(|f| f.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("cannot read records/sec in {line:?}"))?;
    let latency = line
        .split_once("), ")
        .map(|(_, rest)| rest.trim_end_matches('.').to_string());
    let mb = (records * record_size) as f64 / 1e6;
    Ok(ToolRun {
        mb_s: records_s * record_size as f64 / 1e6,
        records_s,
        tool_cpu: cpu,
        broker_cpu: broker,
        mb,
        latency,
    })
}

/// `kafka-consumer-perf-test` of `records` records from the beginning of
/// `topic`, in a new group. The rate is its fetch rate (after the group
/// join), as the librdkafka figure starts at the first record.
pub fn consume(
    t: &ToolTarget<'_>,
    topic: &str,
    records: usize,
    record_size: usize,
    group: &str,
) -> anyhow::Result<ToolRun> {
    let props = properties(t, "perf-consumer")?;
    let mut cmd = java_command(t.jars, &tool_jvm(), &tools_log4j(t.dir)?, CONSUMER_PERF);
    cmd.args(["--bootstrap-server", t.bootstrap, "--topic", topic])
        .args(["--num-records", &records.to_string()])
        .args(["--group", group, "--timeout", "60000", "--command-config"])
        .arg(&props);
    let (out, cpu, broker) = run(cmd, t.broker_pid, Duration::from_secs(600))?;
    // A header line, then one of values:
    // start.time, end.time, data.consumed.in.MB, MB.sec,
    // data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms,
    // fetch.MB.sec, fetch.nMsg.sec
    let mut lines = out.lines().skip_while(|l| !l.contains("fetch.nMsg.sec"));
    let header: Vec<&str> = lines
        .next()
        .with_context(|| format!("no header from ConsumerPerformance:\n{out}"))?
        .split(',')
        .map(str::trim)
        .collect();
    let values: Vec<&str> = lines
        .next()
        .with_context(|| format!("no summary from ConsumerPerformance:\n{out}"))?
        .split(',')
        .map(str::trim)
        .collect();
    let field = |name: &str| -> anyhow::Result<f64> {
        let i = header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("no {name} in ConsumerPerformance's header"))?;
        values
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("cannot read {name} in {values:?}"))
    };
    let n = field("data.consumed.in.nMsg")?;
    if n < records as f64 {
        bail!("ConsumerPerformance consumed {n} of {records} records");
    }
    let records_s = field("fetch.nMsg.sec")?;
    Ok(ToolRun {
        mb_s: records_s * record_size as f64 / 1e6,
        records_s,
        tool_cpu: cpu,
        broker_cpu: broker,
        mb: n * record_size as f64 / 1e6,
        latency: None,
    })
}

/// Runs the JVM to its end (killed at `timeout`); returns its stdout, its
/// CPU seconds (rusage of wait4) and the broker's CPU seconds meanwhile.
fn run(
    mut cmd: Command,
    broker_pid: Option<u32>,
    timeout: Duration,
) -> anyhow::Result<(String, f64, Option<f64>)> {
    let broker = || broker_pid.map(|p| super::cpu::cpu_secs(&p.to_string()));
    let b0 = broker();
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start java")?;
    let mut out = child.stdout.take().context("no stdout")?;
    let mut err = child.stderr.take().context("no stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: our own child; status and usage outlive the call.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break;
        }
        if r < 0 {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        if started.elapsed() > timeout {
            // SAFETY: plain syscall on the tool's own process group.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            bail!("the Kafka tool ran longer than {timeout:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let broker_cpu = broker().zip(b0).map(|(b1, b0)| b1 - b0);
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        bail!(
            "the Kafka tool failed (status {status}):\n{out}\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok((out, cpu, broker_cpu))
}
