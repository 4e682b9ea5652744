//! Who spent the CPU: the broker's process (from /proc) and this one (the
//! clients), over a measured window. Throughput figures are read as CPU per
//! MB, which other load on a shared machine moves much less than MB/s.

use std::time::Instant;

/// CPU seconds (user + system) used so far by a /proc entry: a process
/// id, or `self/task/<tid>` for one of this process's threads.
pub fn cpu_secs(pid: &str) -> f64 {
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
pub struct CpuSplit {
    /// `None` when the broker's process is unknown (a running broker
    /// measured without --broker-pid).
    pub broker: Option<f64>,
    pub clients: f64,
    pub wall: f64,
    /// The client thread that used the most CPU, and its CPU seconds:
    /// librdkafka does a connection's I/O, TLS included, on one thread
    /// per broker, so a run whose busiest thread had a whole core was
    /// bounded by the client, whatever the broker could take.
    pub busiest_thread: Option<(String, f64)>,
}

/// CPU seconds (user + system) of each thread of this process, by id.
fn thread_ticks() -> Vec<(String, f64)> {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    dir.flatten()
        .map(|t| {
            let tid = t.file_name().to_string_lossy().into_owned();
            let secs = cpu_secs(&format!("self/task/{tid}"));
            (tid, secs)
        })
        .collect()
}

/// The thread that used the most CPU between two [`thread_ticks`]
/// snapshots: its name and CPU seconds.
fn busiest(before: &[(String, f64)], after: &[(String, f64)]) -> Option<(String, f64)> {
    let (tid, secs) = after
        .iter()
        .map(|(tid, now)| {
            let then = before
                .iter()
                .find(|(t, _)| t == tid)
                .map_or(0.0, |(_, s)| *s);
            (tid, now - then)
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .map(|n| n.trim().to_string())
        .unwrap_or_else(|_| format!("thread {tid}"));
    Some((name, secs))
}

/// This process's CPU seconds (getrusage: microseconds, where /proc's
/// ticks are 10 ms, too coarse for sub-second runs).
pub fn self_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes it.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer cannot fail.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// A measured window opened by [`Meter::start`] and closed by
/// [`Meter::stop`]: for blocking clients that start the clock themselves
/// (after connecting, at the first record).
pub struct Meter {
    broker_pid: Option<String>,
    b0: Option<f64>,
    c0: f64,
    threads0: Vec<(String, f64)>,
    t0: Instant,
}

impl Meter {
    pub fn start(broker_pid: Option<u32>) -> Meter {
        let broker_pid = broker_pid.map(|p| p.to_string());
        Meter {
            b0: broker_pid.as_deref().map(cpu_secs),
            broker_pid,
            c0: self_cpu_secs(),
            threads0: thread_ticks(),
            t0: Instant::now(),
        }
    }

    pub fn stop(self) -> CpuSplit {
        CpuSplit {
            broker: self
                .broker_pid
                .as_deref()
                .map(cpu_secs)
                .zip(self.b0)
                .map(|(now, then)| now - then),
            clients: self_cpu_secs() - self.c0,
            wall: self.t0.elapsed().as_secs_f64(),
            busiest_thread: busiest(&self.threads0, &thread_ticks()),
        }
    }
}

impl CpuSplit {
    pub async fn measure<T, F: std::future::Future<Output = T>>(
        broker_pid: Option<u32>,
        f: F,
    ) -> (T, CpuSplit) {
        let m = Meter::start(broker_pid);
        let out = f.await;
        (out, m.stop())
    }

    /// The broker's CPU milliseconds per MB moved.
    pub fn broker_ms_per_mb(&self, mb: f64) -> Option<f64> {
        self.broker.map(|b| b * 1000.0 / mb.max(1e-9))
    }

    /// The clients' CPU milliseconds per MB moved.
    pub fn client_ms_per_mb(&self, mb: f64) -> f64 {
        self.clients * 1000.0 / mb.max(1e-9)
    }

    /// "broker 0.93 cores, clients 1.02 cores": who had the two cores.
    pub fn line(&self) -> String {
        let w = self.wall.max(1e-9);
        let broker = self
            .broker
            .map(|b| format!("{:.2} cores", b / w))
            .unwrap_or_else(|| "not measured".into());
        let thread = self
            .busiest_thread
            .as_ref()
            .map(|(name, secs)| format!(" (busiest thread {name} {:.2} cores)", secs / w))
            .unwrap_or_default();
        format!(
            "cpu: broker {broker}, clients {:.2} cores{thread}",
            self.clients / w
        )
    }

    /// Cores the busiest client thread used over the window.
    pub fn busiest_thread_cores(&self) -> Option<f64> {
        self.busiest_thread
            .as_ref()
            .map(|(_, secs)| secs / self.wall.max(1e-9))
    }

    /// The same, plus what one broker core sustains at the broker's own
    /// cost per MB: the figure once clients have cores of their own.
    pub fn line_per_mb(&self, mb_per_s: f64) -> String {
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
            "{}{broker}; clients {:.2} ms CPU per MB; {}",
            self.line(),
            self.client_ms_per_mb(mb),
            self.client_bound(mb, "MB/s", "MB")
        )
    }

    /// The most the clients' own measured cost allows on this machine:
    /// every core theirs and a broker that costs nothing. A target above it
    /// cannot be met here by any broker.
    pub fn client_bound(&self, units: f64, rate_unit: &str, per: &str) -> String {
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
