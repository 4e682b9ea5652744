//! Hostile clients: login abuse. A client repeating SCRAM logins with a
//! fixed bogus proof (no PBKDF2 on its side) must be slowed to the
//! throttle's backoff bound, must not flood the audit log (repeats become
//! aggregated records whose counts add up to every failure), must not lock
//! the real user out from another address, and must see the same codes and
//! delays for a known and an unknown user.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::Bytes;
use kafka_protocol::messages::{
    ApiKey, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use portcullis::client::encode_request as request_frame;
use portcullis::client::scram::ScramClient;
use serde_json::Value;

use crate::common::audit_files::{is, n, raw_lines, s};
use crate::common::{log_tail, scratch, wait_for, Broker};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
/// The defaults of `sasl.login_throttle`, which these tests run with.
const FAILURES_BEFORE_DELAY: u32 = 5;
const USER_FAILURES_BEFORE_DELAY: u32 = 20;
const BASE_DELAY_MS: u64 = 100;
const MAX_DELAY_MS: u64 = 10_000;
const MAX_WAITING: usize = 4;

// ---------------------------------------------------------------------------
// A raw SCRAM client bound to a chosen loopback source address
// ---------------------------------------------------------------------------

/// Connects to `dst` from `src` (any 127.0.0.0/8 address works as a source
/// on Linux loopback: the whole /8 is local).
fn connect_from(src: Ipv4Addr, dst: &str) -> std::io::Result<TcpStream> {
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .expect("runtime");
    }
    let dst: SocketAddr = dst.parse().expect("broker address");
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src.into(), 0))?;
    let stream = RT.with(|rt| rt.block_on(sock.connect(dst)))?;
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    // Longer than the longest hold (10 s): an answer always arrives.
    stream.set_read_timeout(Some(Duration::from_secs(40)))?;
    Ok(stream)
}

/// One request, one response; `None` when the broker closed instead.
fn call<Q: Encodable, R: Decodable>(
    s: &mut TcpStream,
    api: ApiKey,
    version: i16,
    corr: i32,
    req: &Q,
) -> Option<R> {
    let frame = request_frame(api, version, corr, "login-abuse", req).expect("encode");
    if let Err(e) = s.write_all(&frame) {
        assert!(is_close(&e), "write: {e}");
        return None;
    }
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if is_close(&e) => return None,
        Err(e) => panic!("{api:?}: no answer and no close: {e}"),
    }
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body).expect("response body");
    let mut b = Bytes::from(body);
    let h = ResponseHeader::decode(&mut b, api.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, corr);
    Some(R::decode(&mut b, version).expect("decodable response"))
}

fn is_close(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnexpectedEof
            | ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
    )
}

#[derive(Debug, Clone)]
enum Attempt {
    /// The broker answered the proof: code, message, how long the answer
    /// took after the proof was sent.
    Answered {
        code: i16,
        message: String,
        wait: Duration,
    },
    /// Closed before the SaslHandshake was answered (the accept loop's
    /// refusal of a saturated address).
    RefusedAtConnect,
    /// Closed later, before the proof was checked.
    RefusedLater,
}

fn handshake(s: &mut TcpStream) -> bool {
    let hs =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
    match call::<_, SaslHandshakeResponse>(s, ApiKey::SaslHandshake, 1, 1, &hs) {
        Some(r) => {
            assert_eq!(r.error_code, 0, "SaslHandshake");
            true
        }
        None => false,
    }
}

fn authenticate(s: &mut TcpStream, corr: i32, token: Vec<u8>) -> Option<SaslAuthenticateResponse> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    call(s, ApiKey::SaslAuthenticate, 2, corr, &req)
}

/// One login with a fixed bogus proof, as the attacker of issue #12 did:
/// the server's nonce echoed, the proof 64 zero bytes.
fn bogus_login(src: Ipv4Addr, addr: &str, user: &str) -> Attempt {
    let mut s = match connect_from(src, addr) {
        Ok(s) => s,
        Err(e) => panic!("connect from {src}: {e}"),
    };
    if !handshake(&mut s) {
        return Attempt::RefusedAtConnect;
    }
    let first = format!("n,,n={user},r=fixedclientnonce");
    let Some(r) = authenticate(&mut s, 2, first.into_bytes()) else {
        return Attempt::RefusedLater;
    };
    assert_eq!(r.error_code, 0, "client-first answered with a challenge");
    let server_first = String::from_utf8(r.auth_bytes.to_vec()).unwrap();
    let nonce = server_first
        .split(',')
        .find_map(|p| p.strip_prefix("r="))
        .expect("server nonce");
    let fin = format!("c=biws,r={nonce},p={}", B64.encode([0u8; 64]));
    let sent = Instant::now();
    let Some(r) = authenticate(&mut s, 3, fin.into_bytes()) else {
        return Attempt::RefusedLater;
    };
    Attempt::Answered {
        code: r.error_code,
        message: r.error_message.map(|m| m.to_string()).unwrap_or_default(),
        wait: sent.elapsed(),
    }
}

/// A real login (the library's SCRAM client, PBKDF2 and all); returns how
/// long the broker took to answer the proof.
fn real_login(src: Ipv4Addr, addr: &str, user: &str, password: &str) -> Result<Duration, String> {
    let mut s = connect_from(src, addr).map_err(|e| e.to_string())?;
    if !handshake(&mut s) {
        return Err("closed before the handshake was answered".into());
    }
    let client = ScramClient::new(user, password);
    let r = authenticate(&mut s, 2, client.first()).ok_or("closed at client-first")?;
    if r.error_code != 0 {
        return Err(format!("client-first refused: {}", r.error_code));
    }
    let (fin, awaiting) = client.respond(&r.auth_bytes).map_err(|e| e.to_string())?;
    let sent = Instant::now();
    let r = authenticate(&mut s, 3, fin).ok_or("closed at client-final")?;
    let wait = sent.elapsed();
    if r.error_code != 0 {
        return Err(format!("refused with {} after {wait:?}", r.error_code));
    }
    awaiting.verify(&r.auth_bytes).map_err(|e| e.to_string())?;
    Ok(wait)
}

/// What a hostile client saw, per attempt, with when it ended.
#[derive(Default)]
struct Tally {
    answered: Vec<(Instant, Attempt)>,
    refused_at_connect: u64,
    refused_later: u64,
}

impl Tally {
    /// Records one attempt; false when it was refused.
    fn add(&mut self, a: Attempt) -> bool {
        match a {
            a @ Attempt::Answered { .. } => {
                self.answered.push((Instant::now(), a));
                return true;
            }
            Attempt::RefusedAtConnect => self.refused_at_connect += 1,
            Attempt::RefusedLater => self.refused_later += 1,
        }
        false
    }

    fn refused(&self) -> u64 {
        self.refused_at_connect + self.refused_later
    }
}

/// Waits until the running broker has loaded `user` (its credential-change
/// record is written), without a login attempt that would count as a
/// failure.
fn wait_user_loaded(audit: &Path, user: &str) {
    wait_for(
        &format!("the broker to load user {user}"),
        Duration::from_secs(20),
        || {
            records(audit)
                .iter()
                .any(|r| {
                    is(r, "event", "credential_change")
                        && r["details"]["added"]
                            .as_array()
                            .is_some_and(|a| a.iter().any(|u| u == user))
                })
                .then_some(())
        },
    );
}

/// `threads` clients from `src` hammering `user` until `stop`; each finishes
/// the attempt it is in, so every failure the broker counted was seen.
fn hammer(
    src: Ipv4Addr,
    addr: &str,
    user: &str,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<Tally>> {
    (0..threads)
        .map(|_| {
            let (addr, user, stop) = (addr.to_string(), user.to_string(), stop.clone());
            std::thread::spawn(move || {
                let mut t = Tally::default();
                while !stop.load(Ordering::Relaxed) {
                    if !t.add(bogus_login(src, &addr, &user)) {
                        // Not what an attacker would do: a refused connection
                        // is retried after a pause, so that the test does not
                        // burn the loopback's ephemeral ports other tests share.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                t
            })
        })
        .collect()
}

fn join(handles: Vec<std::thread::JoinHandle<Tally>>) -> Tally {
    let mut all = Tally::default();
    for h in handles {
        let t = h.join().expect("attacker thread");
        all.answered.extend(t.answered);
        all.refused_at_connect += t.refused_at_connect;
        all.refused_later += t.refused_later;
    }
    all.answered.sort_by_key(|(at, _)| *at);
    all
}

/// The most failures one address can have answered within `secs`: the
/// free ones at once, then `MAX_WAITING` slots each held for the i-th
/// failure's delay (scheduled greedily on the earliest free slot), plus
/// `slack` attempts admitted together just below the threshold.
fn answered_bound(secs: f64, slack: usize) -> usize {
    let delay = |i: u32| {
        let n = i - FAILURES_BEFORE_DELAY;
        (BASE_DELAY_MS.saturating_mul(1 << (n - 1).min(40))).min(MAX_DELAY_MS) as f64 / 1000.0
    };
    let mut slots = [0.0f64; MAX_WAITING];
    let mut i = FAILURES_BEFORE_DELAY + 1;
    let mut answered = FAILURES_BEFORE_DELAY as usize;
    loop {
        let (k, start) = slots
            .iter()
            .copied()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        let end = start + delay(i);
        if end > secs {
            return answered + slack;
        }
        slots[k] = end;
        answered += 1;
        i += 1;
    }
}

fn audit_size(log: &Path) -> u64 {
    crate::common::audit_files::log_files(log)
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn records(log: &Path) -> Vec<Value> {
    raw_lines(log)
        .iter()
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

fn is_failure_of(r: &Value, address: &str) -> bool {
    is(r, "event", "authentication")
        && is(r, "decision", "failure")
        && is(r, "client_address", address)
}

fn aggregated_count(r: &Value) -> Option<i64> {
    r.get("details")
        .filter(|d| d.get("aggregated") == Some(&Value::Bool(true)))
        .and_then(|d| d.get("count"))
        .and_then(Value::as_i64)
}

/// Failures of (address, reason label) the audit stands for: individual
/// records count one each, aggregated ones their `count`.
fn audited_failures(recs: &[Value], address: &str, label: &str) -> (i64, usize, usize) {
    let mut total = 0;
    let (mut individual, mut aggregated) = (0, 0);
    for r in recs.iter().filter(|r| is_failure_of(r, address)) {
        if !s(r, "reason").unwrap_or("").starts_with(label) {
            continue;
        }
        match aggregated_count(r) {
            Some(c) => {
                total += c;
                aggregated += 1;
            }
            None => {
                total += 1;
                individual += 1;
            }
        }
    }
    (total, individual, aggregated)
}

fn sasl_yaml(dir: &Path, extra: &str) -> String {
    format!(
        "sasl:\n  credentials: {}\n{extra}",
        dir.join("credentials.yaml").display()
    )
}

const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const REAL_USER_ADDRESS: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

// ---------------------------------------------------------------------------
// (a) rate and audit bytes, (b) the real user elsewhere, (d) aggregation
// ---------------------------------------------------------------------------

#[test]
fn fast_failing_logins_are_slowed_to_the_backoff_bound_and_aggregated() {
    const ATTACK: Duration = Duration::from_secs(10);
    const THREADS: usize = 6;
    let dir = scratch("login-abuse-rate");
    // Default throttle; a short audit window so the background flush shows.
    let mut broker = Broker::start_listeners(
        dir.path(),
        &["SASL_PLAINTEXT"],
        &sasl_yaml(dir.path(), "  login_throttle:\n    audit_window_ms: 2000\n"),
    );
    let addr = broker.addr("SASL_PLAINTEXT").to_string();
    broker.add_user("alice", "alice-real-pw");
    let audit = dir.path().join("audit/audit.log");
    wait_user_loaded(&audit, "alice");

    let before = audit_size(&audit);
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let main = hammer(ATTACKER, &addr, "alice", THREADS, stop.clone());
    // Helpers on five more addresses push alice's per-user counter past its
    // threshold, so the real user below logs in while her name is throttled.
    let helpers: Vec<_> = (3..=7)
        .map(|i| hammer(Ipv4Addr::new(127, 0, 0, i), &addr, "alice", 1, stop.clone()))
        .collect();

    // (b) Once 127.0.0.1 is throttled and alice's name too, the right
    // password from another address is answered without a delay...
    let mut probe = Tally::default();
    wait_for(
        "the attacker's address to be refused",
        Duration::from_secs(30),
        || (!probe.add(bogus_login(ATTACKER, &addr, "alice"))).then_some(()),
    );
    let throttled_at = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    // ... while a wrong password for her from a fresh address is held back
    // by the per-user counter (a failure, never a refusal) ...
    let user_throttled = {
        let addr = addr.clone();
        std::thread::spawn(move || bogus_login(Ipv4Addr::new(127, 0, 0, 8), &addr, "alice"))
    };
    let real_wait = real_login(REAL_USER_ADDRESS, &addr, "alice", "alice-real-pw")
        .unwrap_or_else(|e| panic!("alice from 127.0.0.2 while 127.0.0.1 is throttled: {e}"));
    let user_throttled = user_throttled.join().unwrap();

    let remaining = ATTACK.saturating_sub(started.elapsed());
    std::thread::sleep(remaining);
    let attack_secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let main = join(main);
    let helpers: Vec<Tally> = helpers.into_iter().map(join).collect();
    let grown = audit_size(&audit).saturating_sub(before);

    // (a) The attempt rate: answers the attacker got within the attack.
    let within = |t: &Tally, from: f64, to: f64| {
        t.answered
            .iter()
            .filter(|(at, _)| {
                let x = at.duration_since(started).as_secs_f64();
                x >= from && x <= to
            })
            .count()
    };
    let answered_in_attack = within(&main, 0.0, attack_secs);
    let bound = answered_bound(attack_secs, THREADS + 2);
    let late = within(&main, attack_secs / 2.0, attack_secs);
    let late_rate = late as f64 / (attack_secs / 2.0);
    eprintln!(
        "login abuse from 127.0.0.1, {THREADS} threads, {attack_secs:.1} s: {answered_in_attack} failures answered \
         (bound {bound}; {late_rate:.2}/s in the second half), {} refused at connect, {} refused later; \
         throttled after {throttled_at:.1?}; audit grew {grown} bytes ({:.0} B/s); \
         real user from 127.0.0.2 answered in {real_wait:?}; wrong password from a fresh address: {user_throttled:?}",
        main.refused_at_connect,
        main.refused_later,
        grown as f64 / attack_secs,
    );
    assert!(
        answered_in_attack <= bound,
        "{answered_in_attack} failures answered in {attack_secs:.1} s, more than the backoff allows ({bound})"
    );
    // Steady state: at most MAX_WAITING answers per max delay, plus the
    // slots' tails that straddle the half.
    let steady = MAX_WAITING as f64 * (attack_secs / 2.0) / (MAX_DELAY_MS as f64 / 1000.0)
        + MAX_WAITING as f64
        + THREADS as f64;
    assert!(
        (late as f64) <= steady,
        "{late} answers in the second half, steady-state bound {steady:.1}"
    );
    for (_, a) in &main.answered {
        let Attempt::Answered { code, .. } = a else {
            unreachable!()
        };
        assert_eq!(*code, SASL_AUTHENTICATION_FAILED, "{a:?}");
    }
    // (b) the real user, promptly; the per-user counter delayed a failure.
    assert!(
        real_wait < Duration::from_millis(2000),
        "the right password from another address took {real_wait:?}"
    );
    match &user_throttled {
        Attempt::Answered { code, wait, .. } => {
            assert_eq!(*code, SASL_AUTHENTICATION_FAILED);
            assert!(
                *wait >= Duration::from_millis(BASE_DELAY_MS),
                "alice's name is past {USER_FAILURES_BEFORE_DELAY} failures: a wrong password \
                 from a fresh address is held back, was answered in {wait:?}"
            );
        }
        other => panic!("the per-user counter must delay, not refuse: {other:?}"),
    }
    // Audit bytes: connection records of the answered attempts and of the
    // few refused after the accept, one first record per key, aggregated
    // records every 2 s. Before the throttle this attack wrote ~1 MB/s.
    let connections: u64 = (main.answered.len() as u64 + main.refused_later)
        + helpers
            .iter()
            .map(|t| t.answered.len() as u64 + t.refused_later)
            .sum::<u64>();
    let windows = attack_secs as u64 / 2 + 2;
    let audit_bound = 1200 * connections + 16 * 512 * windows + 16 * 1024;
    assert!(
        grown <= audit_bound,
        "audit grew {grown} bytes during the attack (bound {audit_bound})"
    );

    // (d) A background flush wrote an aggregated record during the run.
    wait_for(
        "an aggregated failure record from the background flush",
        Duration::from_secs(10),
        || {
            records(&audit)
                .iter()
                .any(|r| is_failure_of(r, "127.0.0.1") && aggregated_count(r).is_some())
                .then_some(())
        },
    );
    // After the stop flushed the rest, the records add up to every failure
    // and every refusal the attacker saw: nothing silently dropped.
    broker.stop();
    let recs = records(&audit);
    let (failures, individual, aggregated) = audited_failures(&recs, "127.0.0.1", "wrong_password");
    eprintln!(
        "audit for 127.0.0.1: {failures} failures in {individual} individual + {aggregated} aggregated records"
    );
    assert_eq!(
        failures,
        (main.answered.len() + probe.answered.len()) as i64,
        "audited failures vs failures answered to the attacker\n{}",
        log_tail(&broker, 20)
    );
    assert!(individual >= 1, "the first failure has its own record");
    assert!(
        individual <= 1 + (attack_secs as usize + 12) / 4,
        "{individual} individual records: only a key quiet for a whole window is written again"
    );
    for r in recs
        .iter()
        .filter(|r| is_failure_of(r, "127.0.0.1") && aggregated_count(r).is_some())
        .filter(|r| is(r, "reason", "wrong_password"))
    {
        assert_eq!(s(r, "user"), Some("alice"), "{r}");
        assert_eq!(s(r, "mechanism"), Some("SCRAM-SHA-512"), "{r}");
        assert_eq!(n(r, "error_code"), Some(58), "{r}");
        let d = &r["details"];
        assert!(d["first"].as_str() <= d["last"].as_str(), "{r}");
    }
    let (throttled, _, _) = audited_failures(&recs, "127.0.0.1", "throttled");
    assert_eq!(
        throttled,
        (main.refused() + probe.refused()) as i64,
        "audited refusals vs refusals the attacker saw"
    );
    for (i, t) in helpers.iter().enumerate() {
        let a = format!("127.0.0.{}", i + 3);
        let (f, _, _) = audited_failures(&recs, &a, "wrong_password");
        assert_eq!(f, t.answered.len() as i64, "audited failures from {a}");
    }
    // Successful logins stay individual records.
    assert!(recs.iter().any(|r| is(r, "event", "authentication")
        && is(r, "decision", "success")
        && is(r, "client_address", "127.0.0.2")
        && r.get("details").is_none()));
}

// ---------------------------------------------------------------------------
// (c) known and unknown users alike
// ---------------------------------------------------------------------------

#[test]
fn known_and_unknown_users_get_the_same_codes_and_delays() {
    const ATTEMPTS: u32 = 9;
    let dir = scratch("login-abuse-enum");
    let mut broker = Broker::start_listeners(dir.path(), &["SASL_PLAINTEXT"], "");
    let addr = broker.addr("SASL_PLAINTEXT").to_string();
    broker.add_user("alice", "alice-real-pw");
    let audit = dir.path().join("audit/audit.log");
    wait_user_loaded(&audit, "alice");
    // Two addresses, in parallel: one guesses for alice, one for a name
    // that does not exist.
    let run = |src: Ipv4Addr, user: &'static str| {
        let addr = addr.clone();
        std::thread::spawn(move || {
            (0..ATTEMPTS)
                .map(|_| bogus_login(src, &addr, user))
                .collect::<Vec<_>>()
        })
    };
    let known = run(Ipv4Addr::new(127, 0, 0, 3), "alice");
    let unknown = run(Ipv4Addr::new(127, 0, 0, 4), "mallory");
    let (known, unknown) = (known.join().unwrap(), unknown.join().unwrap());
    let mut first_message = None;
    for (i, (k, u)) in known.iter().zip(&unknown).enumerate() {
        let failure = i as u32 + 1;
        let expected = if failure > FAILURES_BEFORE_DELAY {
            BASE_DELAY_MS << (failure - FAILURES_BEFORE_DELAY - 1)
        } else {
            0
        };
        let (
            Attempt::Answered {
                code: kc,
                message: km,
                wait: kw,
            },
            Attempt::Answered {
                code: uc,
                message: um,
                wait: uw,
            },
        ) = (k, u)
        else {
            panic!("failure {failure}: both must be answered: {k:?} / {u:?}");
        };
        eprintln!("failure {failure}: known {kw:?}, unknown {uw:?} (held {expected} ms)");
        assert_eq!((*kc, *uc), (58, 58), "failure {failure}: codes");
        assert_eq!(km, um, "failure {failure}: messages must be identical");
        let first = first_message.get_or_insert_with(|| km.clone());
        assert_eq!(km, first, "the message never changes");
        for (who, w) in [("known", kw), ("unknown", uw)] {
            assert!(
                *w >= Duration::from_millis(expected),
                "failure {failure} for the {who} user answered after {w:?}, held {expected} ms"
            );
            // Comparable: the hold dominates; a loaded machine adds to both.
            assert!(
                *w < Duration::from_millis(expected + 1500),
                "failure {failure} for the {who} user answered after {w:?}, expected about {expected} ms"
            );
        }
    }
    // (d) Each key: one record at once, then one aggregated record with the
    // other ATTEMPTS - 1, written at shutdown. The unknown name folds into
    // a key without a user.
    broker.stop();
    let recs = records(&audit);
    for (address, label, user) in [
        ("127.0.0.3", "wrong_password", Some("alice")),
        ("127.0.0.4", "unknown_user", None),
    ] {
        let (total, individual, aggregated) = audited_failures(&recs, address, label);
        assert_eq!(
            (total, individual, aggregated),
            (ATTEMPTS as i64, 1, 1),
            "{address}"
        );
        let agg = recs
            .iter()
            .find(|r| is_failure_of(r, address) && aggregated_count(r).is_some())
            .unwrap();
        assert_eq!(aggregated_count(agg), Some(ATTEMPTS as i64 - 1), "{agg}");
        assert_eq!(s(agg, "user"), user, "{agg}");
    }
}
