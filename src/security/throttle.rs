//! Brute-force throttling of SASL logins, per client address and per user
//! name (`sasl.login_throttle`).
//!
//! The attack it answers: a client repeating a SCRAM exchange with a fixed
//! bogus proof costs itself no PBKDF2 and the broker a few HMACs, so
//! without a brake it could try thousands of passwords a second.
//!
//! How it brakes:
//! - Every failed SaslAuthenticate (error 58) counts against the client's
//!   address and against the user name it claimed. After
//!   `failures_before_delay` failures from an address (or
//!   `user_failures_before_delay` for a name), the answer to each further
//!   failure is held back `base_delay_ms * 2^(n-1)` (n = failures beyond the
//!   threshold), capped at `max_delay_ms`. A counter forgets after
//!   `window_ms` without a failure.
//! - The answer is held, not refused: the error code stays 58 and the
//!   message the same, and the counters never look at the credential
//!   store, so a known and an unknown user see the same codes and the same
//!   delays (enumeration resistance).
//! - A held answer occupies one of the address's `max_waiting` slots for
//!   the whole delay, even if the client hangs up, so an address gets at
//!   most `max_waiting` verified guesses per delay, however many connections
//!   it opens. An attempt from a throttled address that finds every slot
//!   taken is closed at once, before its proof is checked (and the accept
//!   loop closes such an address's new connections before the TLS handshake;
//!   see [`LoginThrottle::saturated`]). Closing, rather than answering
//!   "failed" at once, is what keeps both costs bounded: nothing waits, so
//!   fds are not held; no SCRAM work or response is made, so CPU per refused
//!   attempt is an accept and a close; and a Kafka client reads a close
//!   during authentication as a network error and reconnects with its
//!   backoff, while an error 58 would make it give up with "wrong password"
//!   even when the password is right.
//! - A correct password is answered at once, even while its address or its
//!   name is throttled (as long as the address has a free slot). The
//!   per-user counter only delays failures and never refuses: Kafka has no
//!   account lockout, and a lockout would let anyone lock `admin` out from
//!   everywhere by guessing wrong on purpose. The trade-off: an attacker
//!   spread over many addresses gets each address's free failures, and then
//!   the per-user delay makes every further guess hold a slot for up to
//!   `max_delay_ms`, so its guess rate is bounded by (addresses x
//!   `max_waiting`) / `max_delay_ms`; the real user, from an address that is
//!   not failing, logs in without waiting.
//! - IPv6 clients are counted per /64 (one host usually owns a whole /64);
//!   IPv4-mapped IPv6 addresses count as the IPv4 address.
//!
//! Memory is bounded: at most `max_tracked` addresses and `max_tracked`
//! user names (names are kept as a keyed 64-bit hash, whatever their
//! length). When a table is full, expired entries go first, then the
//! eighth that failed longest ago.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `sasl.login_throttle` in the config.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginThrottleConfig {
    /// Delays on repeated failures. Aggregated auditing of failures (the
    /// `audit_*` keys) stays on either way.
    pub enabled: bool,
    /// Failures from one client address answered without delay.
    pub failures_before_delay: u32,
    /// Failures for one user name (from any address) answered without delay.
    pub user_failures_before_delay: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay_ms: u64,
    pub max_delay_ms: u64,
    /// Connections of one address that may wait in a delay at once; beyond
    /// that, the address's login attempts are closed at once.
    pub max_waiting: u32,
    /// A counter with no failure for this long starts again from zero.
    pub window_ms: u64,
    /// Addresses, and user names, tracked at most (each).
    pub max_tracked: usize,
    /// Distinct (address, user, mechanism, reason) keys of failed logins
    /// counted per audit window; further keys fold into one overflow count.
    pub audit_max_keys: usize,
    /// Repeated failures of a key are written as one aggregated record per
    /// this window (and at shutdown).
    pub audit_window_ms: u64,
}

impl Default for LoginThrottleConfig {
    fn default() -> Self {
        LoginThrottleConfig {
            enabled: true,
            failures_before_delay: 5,
            user_failures_before_delay: 20,
            base_delay_ms: 100,
            max_delay_ms: 10_000,
            max_waiting: 4,
            window_ms: 600_000,
            max_tracked: 20_000,
            audit_max_keys: 4096,
            audit_window_ms: 60_000,
        }
    }
}

impl LoginThrottleConfig {
    /// The first bad key under `sasl.login_throttle` and what is wrong.
    pub fn problems(&self) -> Option<(&'static str, &'static str)> {
        if self.base_delay_ms == 0 || self.base_delay_ms > self.max_delay_ms {
            return Some((
                "sasl.login_throttle.base_delay_ms",
                "must be at least 1 and at most max_delay_ms",
            ));
        }
        // A Kafka client gives up on a request after request.timeout.ms
        // (30 s by default): a longer delay would read as a dead broker.
        if self.max_delay_ms > 30_000 {
            return Some((
                "sasl.login_throttle.max_delay_ms",
                "must be at most 30000 (clients' request timeout)",
            ));
        }
        if self.max_waiting == 0 {
            return Some(("sasl.login_throttle.max_waiting", "must be at least 1"));
        }
        if self.window_ms < 1000 {
            return Some(("sasl.login_throttle.window_ms", "must be at least 1000"));
        }
        if self.max_tracked < 16 {
            return Some(("sasl.login_throttle.max_tracked", "must be at least 16"));
        }
        if self.audit_max_keys == 0 {
            return Some(("sasl.login_throttle.audit_max_keys", "must be at least 1"));
        }
        if self.audit_window_ms < 100 {
            return Some((
                "sasl.login_throttle.audit_window_ms",
                "must be at least 100",
            ));
        }
        None
    }
}

/// An attempt refused outright: the address is throttled and all its
/// waiting slots are taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused;

/// Failures within the window, as of the last one.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    failures: u32,
    /// Milliseconds since the throttle's epoch.
    last_ms: u64,
}

impl Count {
    fn current(&self, now_ms: u64, window_ms: u64) -> u32 {
        if now_ms.saturating_sub(self.last_ms) > window_ms {
            0
        } else {
            self.failures
        }
    }

    fn fail(&mut self, now_ms: u64, window_ms: u64) -> u32 {
        self.failures = self.current(now_ms, window_ms).saturating_add(1);
        self.last_ms = now_ms;
        self.failures
    }
}

struct AddrEntry {
    count: Count,
    /// Slots held by attempts of this address (verifying or delayed).
    waiting: u32,
    /// Last use, for eviction: a failure or a slot taken.
    seen_ms: u64,
    /// Tells a slot's release from a re-created entry's slots.
    id: u64,
}

struct Tables {
    addrs: HashMap<IpAddr, AddrEntry>,
    users: HashMap<u64, Count>,
    next_id: u64,
}

pub struct LoginThrottle {
    cfg: LoginThrottleConfig,
    /// Keyed hash of user names: fixed-size entries, and names an attacker
    /// picks cannot be made to collide.
    names: RandomState,
    epoch: Instant,
    tables: Mutex<Tables>,
}

/// The address an attempt counts against: IPv6 per /64.
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The delay for the `failures`-th failure with `threshold` free ones.
pub fn backoff(failures: u32, threshold: u32, base_ms: u64, max_ms: u64) -> Duration {
    if failures <= threshold {
        return Duration::ZERO;
    }
    let doublings = (failures - threshold - 1).min(40);
    let ms = base_ms.saturating_mul(1u64 << doublings).min(max_ms);
    Duration::from_millis(ms)
}

/// Makes room for one more entry: drops expired entries, then the eighth
/// used longest ago. Amortized O(1) per insert.
fn make_room<K: Hash + Eq, V>(
    map: &mut HashMap<K, V>,
    cap: usize,
    now_ms: u64,
    window_ms: u64,
    seen: impl Fn(&V) -> u64,
) {
    if map.len() < cap {
        return;
    }
    map.retain(|_, v| now_ms.saturating_sub(seen(v)) <= window_ms);
    if map.len() < cap {
        return;
    }
    let mut ages: Vec<u64> = map.values().map(&seen).collect();
    let nth = (cap / 8).clamp(1, ages.len() - 1);
    let (_, cutoff, _) = ages.select_nth_unstable(nth);
    let cutoff = *cutoff;
    map.retain(|_, v| seen(v) > cutoff);
}

impl LoginThrottle {
    pub fn new(cfg: &LoginThrottleConfig) -> LoginThrottle {
        LoginThrottle {
            cfg: cfg.clone(),
            names: RandomState::new(),
            epoch: Instant::now(),
            tables: Mutex::new(Tables {
                addrs: HashMap::new(),
                users: HashMap::new(),
                next_id: 0,
            }),
        }
    }

    pub fn config(&self) -> &LoginThrottleConfig {
        &self.cfg
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn addr_entry<'t>(&self, t: &'t mut Tables, addr: IpAddr, now_ms: u64) -> &'t mut AddrEntry {
        if !t.addrs.contains_key(&addr) {
            make_room(
                &mut t.addrs,
                self.cfg.max_tracked,
                now_ms,
                self.cfg.window_ms,
                |e| if e.waiting > 0 { u64::MAX } else { e.seen_ms },
            );
            t.next_id += 1;
        }
        let id = t.next_id;
        t.addrs.entry(addr).or_insert(AddrEntry {
            count: Count::default(),
            waiting: 0,
            seen_ms: now_ms,
            id,
        })
    }

    /// True when a new connection from `ip` would only be refused: the
    /// address is throttled and every waiting slot is taken. The accept loop
    /// then closes it before the TLS handshake and before any audit record
    /// of its own (the refusal is counted in the aggregated record).
    pub fn saturated(&self, ip: IpAddr) -> bool {
        if !self.cfg.enabled {
            return false;
        }
        let now_ms = self.now_ms();
        let t = self.lock();
        t.addrs.get(&address_key(ip)).is_some_and(|e| {
            e.count.current(now_ms, self.cfg.window_ms) >= self.cfg.failures_before_delay
                && e.waiting >= self.cfg.max_waiting
        })
    }

    /// Before a SASL step whose failure counts: admits the attempt, holding
    /// a waiting slot when a failure would be delayed, or refuses it when
    /// the address is throttled and has no free slot. `user` is the name
    /// claimed so far (none before client-first).
    pub fn admit(&self, ip: IpAddr, user: Option<&str>) -> Result<Attempt<'_>, Refused> {
        let addr = address_key(ip);
        let mut attempt = Attempt {
            throttle: self,
            addr,
            held: None,
        };
        if !self.cfg.enabled {
            return Ok(attempt);
        }
        let now_ms = self.now_ms();
        let window = self.cfg.window_ms;
        let mut t = self.lock();
        let addr_failures = t
            .addrs
            .get(&addr)
            .map_or(0, |e| e.count.current(now_ms, window));
        let user_failures = user
            .and_then(|u| t.users.get(&self.names.hash_one(u)))
            .map_or(0, |c| c.current(now_ms, window));
        let throttled = addr_failures >= self.cfg.failures_before_delay
            || user_failures >= self.cfg.user_failures_before_delay;
        if !throttled {
            return Ok(attempt);
        }
        let max_waiting = self.cfg.max_waiting;
        let e = self.addr_entry(&mut t, addr, now_ms);
        if e.waiting >= max_waiting {
            return Err(Refused);
        }
        e.waiting += 1;
        e.seen_ms = now_ms;
        attempt.held = Some(e.id);
        Ok(attempt)
    }
}

/// One admitted attempt. Dropping it gives its waiting slot back, so hold
/// it until the (delayed) answer has been sent.
pub struct Attempt<'a> {
    throttle: &'a LoginThrottle,
    addr: IpAddr,
    held: Option<u64>,
}

impl Attempt<'_> {
    /// The attempt failed (error 58) for `user` (as claimed, if parsed):
    /// counts it and returns how long to hold the answer back. The same for
    /// any name, known or not.
    pub fn failed(&mut self, user: Option<&str>) -> Duration {
        let th = self.throttle;
        if !th.cfg.enabled {
            return Duration::ZERO;
        }
        let cfg = &th.cfg;
        let now_ms = th.now_ms();
        let mut t = th.lock();
        let e = th.addr_entry(&mut t, self.addr, now_ms);
        let addr_failures = e.count.fail(now_ms, cfg.window_ms);
        e.seen_ms = now_ms;
        let delay_addr = backoff(
            addr_failures,
            cfg.failures_before_delay,
            cfg.base_delay_ms,
            cfg.max_delay_ms,
        );
        let delay_user = match user {
            Some(u) => {
                let h = th.names.hash_one(u);
                if !t.users.contains_key(&h) {
                    make_room(&mut t.users, cfg.max_tracked, now_ms, cfg.window_ms, |c| {
                        c.last_ms
                    });
                }
                let n = t.users.entry(h).or_default().fail(now_ms, cfg.window_ms);
                backoff(
                    n,
                    cfg.user_failures_before_delay,
                    cfg.base_delay_ms,
                    cfg.max_delay_ms,
                )
            }
            None => Duration::ZERO,
        };
        let delay = delay_addr.max(delay_user);
        if !delay.is_zero() && self.held.is_none() {
            // Attempts admitted together just below the threshold: this one
            // waits too, in a slot beyond `max_waiting` (bounded by how many
            // were admitted at once).
            let e = th.addr_entry(&mut t, self.addr, now_ms);
            e.waiting += 1;
            self.held = Some(e.id);
        }
        delay
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        let Some(id) = self.held else {
            return;
        };
        let mut t = self.throttle.lock();
        if let Some(e) = t.addrs.get_mut(&self.addr).filter(|e| e.id == id) {
            e.waiting = e.waiting.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LoginThrottleConfig {
        LoginThrottleConfig::default()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn backoff_doubles_from_the_threshold_and_stops_at_the_cap() {
        let d = |f| backoff(f, 5, 100, 10_000).as_millis();
        assert_eq!([d(0), d(5), d(6), d(7), d(8)], [0, 0, 100, 200, 400]);
        assert_eq!(d(12), 6400);
        assert_eq!(d(13), 10_000);
        assert_eq!(d(u32::MAX), 10_000);
    }

    #[test]
    fn failures_from_an_address_are_delayed_after_the_threshold() {
        let t = LoginThrottle::new(&cfg());
        let a = ip("10.0.0.1");
        let mut delays = Vec::new();
        for _ in 0..8 {
            let mut at = t.admit(a, Some("alice")).unwrap();
            delays.push(at.failed(Some("alice")).as_millis());
        }
        assert_eq!(delays, [0, 0, 0, 0, 0, 100, 200, 400]);
        // Another address is not affected, and an unknown name is counted
        // exactly like a known one.
        let mut at = t.admit(ip("10.0.0.2"), Some("mallory")).unwrap();
        assert_eq!(at.failed(Some("mallory")), Duration::ZERO);
    }

    #[test]
    fn a_throttled_address_gets_max_waiting_slots_then_refusals() {
        let t = LoginThrottle::new(&cfg());
        let a = ip("10.0.0.1");
        for _ in 0..5 {
            t.admit(a, None).unwrap().failed(None);
        }
        assert!(!t.saturated(a));
        let held: Vec<_> = (0..4).map(|_| t.admit(a, None).unwrap()).collect();
        assert!(t.admit(a, None).is_err(), "fifth waiting attempt refused");
        assert!(t.saturated(a));
        assert!(!t.saturated(ip("10.0.0.2")));
        // Another address, even for the same name, is admitted.
        assert!(t.admit(ip("10.0.0.2"), Some("alice")).is_ok());
        drop(held);
        assert!(t.admit(a, None).is_ok(), "slots come back");
        assert!(!t.saturated(a));
    }

    #[test]
    fn the_user_counter_delays_failures_but_never_refuses() {
        let t = LoginThrottle::new(&cfg());
        // 21 failures for alice from 21 addresses: each under its own
        // threshold, together over the user's.
        for i in 0..21 {
            let a = ip(&format!("10.1.0.{i}"));
            t.admit(a, Some("alice")).unwrap().failed(Some("alice"));
        }
        let fresh = ip("10.2.0.1");
        let mut at = t
            .admit(fresh, Some("alice"))
            .expect("admitted, not refused");
        assert_eq!(at.failed(Some("alice")).as_millis(), 200, "22nd failure");
        drop(at);
        // A correct password from a fresh address: admitted (the caller
        // answers a success at once; only failures are held back).
        assert!(t.admit(ip("10.2.0.2"), Some("alice")).is_ok());
        // bob is not affected by alice's counter.
        let mut at = t.admit(fresh, Some("bob")).unwrap();
        assert_eq!(at.failed(Some("bob")), Duration::ZERO);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            address_key(ip("2001:db8:1:2:bbbb::2"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:2::1")),
            address_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn tracked_keys_are_capped() {
        let c = LoginThrottleConfig {
            max_tracked: 64,
            ..cfg()
        };
        let t = LoginThrottle::new(&c);
        for i in 0..10_000u32 {
            let a = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let name = format!("user{i}");
            t.admit(a, Some(&name)).unwrap().failed(Some(&name));
        }
        let tables = t.lock();
        assert!(tables.addrs.len() <= 64, "{}", tables.addrs.len());
        assert!(tables.users.len() <= 64, "{}", tables.users.len());
    }

    #[test]
    fn disabled_never_delays_or_refuses() {
        let t = LoginThrottle::new(&LoginThrottleConfig {
            enabled: false,
            ..cfg()
        });
        let a = ip("10.0.0.1");
        for _ in 0..100 {
            assert_eq!(
                t.admit(a, Some("x")).unwrap().failed(Some("x")),
                Duration::ZERO
            );
        }
        assert!(!t.saturated(a));
    }

    #[test]
    fn defaults_are_valid_and_bad_values_named() {
        assert_eq!(cfg().problems(), None);
        let bad = LoginThrottleConfig {
            max_waiting: 0,
            ..cfg()
        };
        assert_eq!(bad.problems().unwrap().0, "sasl.login_throttle.max_waiting");
    }
}
