//! Connection admission: how many connections the edge holds at once, in
//! total and per client address, counted at accept (before any TLS work).
//!
//! When a limit is reached, a new connection takes the place of the oldest
//! connection under that limit that has not logged in yet; only when every
//! such connection has logged in is the new one refused. So a flood of
//! connections that never log in cannot lock out a user with a password
//! (the admin included), and the login deadline bounds how long any of them
//! lives anyway. Refusals are counted and summarised, never logged per
//! connection.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::config::ConnectionsConfig;

/// File descriptors kept back for everything that is not a client
/// connection: segment and index files, the audit log, watched files,
/// listeners, the CLI's admin connection while under attack.
pub const RESERVED_FDS: u64 = 256;

/// The default total when the fd limit is high: every open connection costs
/// memory too (TLS state, buffers), not only a descriptor.
const DEFAULT_MAX_CONNECTIONS_CAP: usize = 16_384;

/// Without an explicit per-address limit, one address may hold this share of
/// the total (loopback deployments put every client on one address, so the
/// share is generous; it still leaves room for others).
const DEFAULT_PER_IP_DIVISOR: usize = 2;

/// The limits in force, after defaults were derived.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub overrides: HashMap<IpAddr, usize>,
}

impl Limits {
    /// Fills unset limits from the open-file limit: the total leaves
    /// `reserved` descriptors for the broker's own files.
    pub fn derive(cfg: &ConnectionsConfig, fd_limit: u64, reserved: u64) -> Limits {
        let by_fds = fd_limit.saturating_sub(reserved).max(16) as usize;
        let max_connections = cfg
            .max_connections
            .unwrap_or_else(|| by_fds.min(DEFAULT_MAX_CONNECTIONS_CAP));
        let max_connections_per_ip = cfg
            .max_connections_per_ip
            .unwrap_or((max_connections / DEFAULT_PER_IP_DIVISOR).max(1));
        Limits {
            max_connections,
            max_connections_per_ip,
            overrides: cfg
                .max_connections_per_ip_overrides
                .iter()
                .map(|(ip, n)| (*ip, *n))
                .collect(),
        }
    }

    fn per_ip(&self, ip: IpAddr) -> usize {
        self.overrides
            .get(&ip)
            .copied()
            .unwrap_or(self.max_connections_per_ip)
    }
}

/// Raises the soft open-file limit to the hard one (Kafka's start scripts
/// expect the operator to; we do it and say so). Returns (before, after).
pub fn raise_fd_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok((before, lim.rlim_max));
    }
    Ok((before, before))
}

/// Why a connection was not admitted, or was made to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    PerIp,
    Total,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::PerIp => "max_connections_per_ip",
            Refusal::Total => "max_connections",
        }
    }
}

struct Entry {
    ip: IpAddr,
    /// Not logged in yet: may be displaced by a newcomer.
    pending: bool,
    evict: Option<oneshot::Sender<Refusal>>,
}

#[derive(Default)]
struct PerIp {
    open: usize,
    pending: BTreeSet<u64>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    entries: HashMap<u64, Entry>,
    per_ip: HashMap<IpAddr, PerIp>,
    /// Ids of connections still in their login phase, oldest first.
    pending: BTreeSet<u64>,
}

impl State {
    /// Removes a connection from every count; returns its entry.
    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.pending.remove(&id);
        if let Some(p) = self.per_ip.get_mut(&e.ip) {
            p.open -= 1;
            p.pending.remove(&id);
            if p.open == 0 {
                self.per_ip.remove(&e.ip);
            }
        }
        Some(e)
    }

    fn evict(&mut self, id: u64, why: Refusal) {
        if let Some(mut e) = self.remove(id) {
            if let Some(tx) = e.evict.take() {
                let _ = tx.send(why);
            }
        }
    }
}

/// Counts of connections refused or displaced, by reason, since start.
#[derive(Default)]
pub struct RefusalCounts {
    pub per_ip: AtomicU64,
    pub total: AtomicU64,
    pub displaced: AtomicU64,
}

pub struct ConnectionTracker {
    /// Swapped whole by a dynamic `max.connections*` change; `admit` reads
    /// one snapshot per connection, so no lock is shared with readers.
    limits: arc_swap::ArcSwap<Limits>,
    /// What unset limits are derived from: (open-file limit, reserved).
    derived_from: (u64, u64),
    state: Mutex<State>,
    pub refused: RefusalCounts,
    summary: Mutex<SummaryClock>,
}

struct SummaryClock {
    last: Instant,
    reported: (u64, u64, u64),
}

/// How often refusals are summarised in the log while they go on.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// A connection's place under the limits; dropping it frees the place.
pub struct Admission {
    tracker: Arc<ConnectionTracker>,
    id: u64,
    /// Fires if a newcomer takes this connection's place before it logs in.
    pub evicted: oneshot::Receiver<Refusal>,
}

impl Admission {
    /// The connection logged in: it can no longer be displaced.
    pub fn logged_in(&self) {
        let mut st = self.tracker.lock();
        let State {
            entries,
            per_ip,
            pending,
            ..
        } = &mut *st;
        if let Some(e) = entries.get_mut(&self.id) {
            if e.pending {
                e.pending = false;
                pending.remove(&self.id);
                if let Some(p) = per_ip.get_mut(&e.ip) {
                    p.pending.remove(&self.id);
                }
            }
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.tracker.lock().remove(self.id);
    }
}

impl ConnectionTracker {
    pub fn new(limits: Limits) -> Arc<ConnectionTracker> {
        Self::with_base(limits, (0, 0))
    }

    /// A tracker that can re-derive its limits from a changed config
    /// (`reconfigure`) with the same descriptor budget as at start.
    pub fn with_base(limits: Limits, derived_from: (u64, u64)) -> Arc<ConnectionTracker> {
        Arc::new(ConnectionTracker {
            limits: arc_swap::ArcSwap::from_pointee(limits),
            derived_from,
            state: Mutex::new(State::default()),
            refused: RefusalCounts::default(),
            summary: Mutex::new(SummaryClock {
                // The first refusal is reported at once, later ones per period.
                last: Instant::now()
                    .checked_sub(SUMMARY_EVERY)
                    .unwrap_or_else(Instant::now),
                reported: (0, 0, 0),
            }),
        })
    }

    /// The limits in force.
    pub fn limits(&self) -> Arc<Limits> {
        self.limits.load_full()
    }

    /// The limits `cfg` would give, with the descriptor budget of start
    /// (a tracker built without one keeps its current total as budget).
    pub fn derive_for(&self, cfg: &ConnectionsConfig) -> Limits {
        let (fd_limit, reserved) = self.derived_from;
        if fd_limit == 0 {
            return Limits::derive(cfg, self.limits.load().max_connections as u64, 0);
        }
        Limits::derive(cfg, fd_limit, reserved)
    }

    /// Applies changed `max.connections*` settings (a dynamic broker config)
    /// to new connections from now on. Connections already open stay, as
    /// in Kafka: a lowered limit only refuses newcomers.
    pub fn reconfigure(&self, cfg: &ConnectionsConfig) -> Arc<Limits> {
        let limits = Arc::new(self.derive_for(cfg));
        self.limits.store(limits.clone());
        limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn open_connections(&self) -> usize {
        self.lock().entries.len()
    }

    /// Admits a new connection from `ip`, displacing the oldest connection
    /// that has not logged in where a limit is reached, or refuses it.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admission, Refusal> {
        let limits = self.limits.load_full();
        let per_ip_max = limits.per_ip(ip);
        let mut st = self.lock();
        let mut displaced = 0;
        let at_ip = st.per_ip.get(&ip).map_or(0, |p| p.open);
        if at_ip >= per_ip_max {
            let oldest = st.per_ip.get(&ip).and_then(|p| p.pending.first().copied());
            match oldest {
                Some(id) => {
                    st.evict(id, Refusal::PerIp);
                    displaced += 1;
                }
                None => {
                    drop(st);
                    self.refused.per_ip.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::PerIp);
                }
            }
        }
        if st.entries.len() >= limits.max_connections {
            match st.pending.first().copied() {
                Some(id) => {
                    st.evict(id, Refusal::Total);
                    displaced += 1;
                }
                None => {
                    drop(st);
                    self.refused.total.fetch_add(1, Ordering::Relaxed);
                    return Err(Refusal::Total);
                }
            }
        }
        let id = st.next_id;
        st.next_id += 1;
        let (tx, rx) = oneshot::channel();
        st.entries.insert(
            id,
            Entry {
                ip,
                pending: true,
                evict: Some(tx),
            },
        );
        st.pending.insert(id);
        let p = st.per_ip.entry(ip).or_default();
        p.open += 1;
        p.pending.insert(id);
        drop(st);
        if displaced > 0 {
            self.refused
                .displaced
                .fetch_add(displaced, Ordering::Relaxed);
        }
        Ok(Admission {
            tracker: self.clone(),
            id,
            evicted: rx,
        })
    }

    /// The refusals since the last summary, at most once per
    /// `SUMMARY_EVERY`: (per address, total, displaced). `None` when there
    /// is nothing new or it is too early.
    pub fn summary_due(&self) -> Option<(u64, u64, u64)> {
        let mut clock = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        if clock.last.elapsed() < SUMMARY_EVERY {
            return None;
        }
        let now = (
            self.refused.per_ip.load(Ordering::Relaxed),
            self.refused.total.load(Ordering::Relaxed),
            self.refused.displaced.load(Ordering::Relaxed),
        );
        if now == clock.reported {
            return None;
        }
        let delta = (
            now.0 - clock.reported.0,
            now.1 - clock.reported.1,
            now.2 - clock.reported.2,
        );
        clock.reported = now;
        clock.last = Instant::now();
        Some(delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(total: usize, per_ip: usize) -> Arc<ConnectionTracker> {
        ConnectionTracker::new(Limits {
            max_connections: total,
            max_connections_per_ip: per_ip,
            overrides: [("10.0.0.9".parse().unwrap(), 1)].into_iter().collect(),
        })
    }

    #[test]
    fn per_ip_limit_displaces_the_oldest_pending_then_refuses() {
        let t = tracker(100, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let mut a = t.admit(ip).unwrap();
        let b = t.admit(ip).unwrap();
        // Third: a (oldest, not logged in) makes room.
        let c = t.admit(ip).unwrap();
        assert_eq!(a.evicted.try_recv().unwrap(), Refusal::PerIp);
        assert_eq!(t.open_connections(), 2);
        b.logged_in();
        c.logged_in();
        assert_eq!(t.admit(ip).err(), Some(Refusal::PerIp));
        // Another address is not affected; an override applies to its own.
        assert!(t.admit("10.0.0.2".parse().unwrap()).is_ok());
        let o = t.admit("10.0.0.9".parse().unwrap()).unwrap();
        o.logged_in();
        assert_eq!(
            t.admit("10.0.0.9".parse().unwrap()).err(),
            Some(Refusal::PerIp)
        );
        drop(b);
        assert!(t.admit(ip).is_ok());
        assert_eq!(t.refused.per_ip.load(Ordering::Relaxed), 2);
        assert_eq!(t.refused.displaced.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn total_limit_counts_every_address() {
        let t = tracker(3, 3);
        let held: Vec<_> = (1..=3)
            .map(|i| {
                let a = t.admit(format!("10.0.1.{i}").parse().unwrap()).unwrap();
                a.logged_in();
                a
            })
            .collect();
        assert_eq!(
            t.admit("10.0.1.9".parse().unwrap()).err(),
            Some(Refusal::Total)
        );
        drop(held);
        assert_eq!(t.open_connections(), 0);
        let mut pending = t.admit("10.0.2.1".parse().unwrap()).unwrap();
        let _x = t.admit("10.0.2.2".parse().unwrap()).unwrap();
        let _y = t.admit("10.0.2.3".parse().unwrap()).unwrap();
        let _z = t.admit("10.0.2.4".parse().unwrap()).unwrap();
        assert_eq!(pending.evicted.try_recv().unwrap(), Refusal::Total);
        assert_eq!(t.open_connections(), 3);
    }

    #[test]
    fn reconfigure_applies_to_newcomers() {
        let t = ConnectionTracker::with_base(
            Limits::derive(&ConnectionsConfig::default(), 1024, RESERVED_FDS),
            (1024, RESERVED_FDS),
        );
        let ip: IpAddr = "10.0.3.1".parse().unwrap();
        let a = t.admit(ip).unwrap();
        a.logged_in();
        let cfg = ConnectionsConfig {
            max_connections_per_ip: Some(1),
            ..Default::default()
        };
        let l = t.reconfigure(&cfg);
        assert_eq!(l.max_connections_per_ip, 1);
        assert_eq!(l.max_connections, 1024 - RESERVED_FDS as usize);
        assert_eq!(t.admit(ip).err(), Some(Refusal::PerIp));
        // Back to the derived default: room again.
        t.reconfigure(&ConnectionsConfig::default());
        assert!(t.admit(ip).is_ok());
    }

    #[test]
    fn defaults_follow_the_fd_limit() {
        let cfg = ConnectionsConfig::default();
        let l = Limits::derive(&cfg, 1024, RESERVED_FDS);
        assert_eq!(l.max_connections, 1024 - RESERVED_FDS as usize);
        assert_eq!(l.max_connections_per_ip, l.max_connections / 2);
        let l = Limits::derive(&cfg, 1 << 20, RESERVED_FDS);
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS_CAP);
        let l = Limits::derive(&cfg, 10, RESERVED_FDS);
        assert_eq!(l.max_connections, 16);
    }
}
