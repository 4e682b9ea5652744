//! Connection-level attacks: oversized frames before login, connections that
//! never log in or go idle, and floods of connections, against the real
//! binary. Each test asserts the bound the broker keeps and that a real
//! client (librdkafka) with a password still gets in.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::common::{scratch, wait_for, Broker, BIN};

// ---------------------------------------------------------------------------
// The broker process as the kernel sees it
// ---------------------------------------------------------------------------

/// The pid of the broker started with the config under `dir`.
pub fn broker_pid(dir: &Path) -> u32 {
    let needle = dir.to_string_lossy().to_string();
    wait_for("the broker's pid", Duration::from_secs(10), || {
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd);
            (cmd.contains("serve") && cmd.contains(&needle) && cmd.starts_with(BIN)).then_some(pid)
        })
    })
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// What the broker's descriptors point at, counted by kind.
fn fd_kinds(pid: u32) -> std::collections::BTreeMap<String, usize> {
    let mut kinds = std::collections::BTreeMap::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(e.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        let kind = target.split(':').next().unwrap_or("").to_string();
        *kinds.entry(kind).or_insert(0) += 1;
    }
    kinds
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

fn tls_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection with the handshake done.
fn tls_connect(addr: &str, cfg: &Arc<rustls::ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Blocks until the peer closes (EOF or reset); returns how long that took,
/// or `None` if it was still open at `limit`.
fn time_to_close(s: &mut impl Read, sock: &TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return Some(start.elapsed()),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(start.elapsed()),
        }
    }
    None
}

/// ApiVersions v3 with a valid software name: what every client sends first.
fn api_versions_v3(corr: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&18i16.to_be_bytes());
    b.extend_from_slice(&3i16.to_be_bytes());
    b.extend_from_slice(&corr.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(b"test");
    b.push(0); // header tagged fields
    for s in ["portcullis-test", "1.0"] {
        b.push(s.len() as u8 + 1);
        b.extend_from_slice(s.as_bytes());
    }
    b.push(0);
    b
}

fn framed(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as i32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f
}

/// librdkafka logs in over SASL_SSL and reads the cluster's metadata.
fn rdkafka_login(broker: &Broker, addr: &str, user: &str, password: &str) -> Result<(), String> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap())
        .set("group.id", "hostile-connections")
        .create()
        .map_err(|e| e.to_string())?;
    c.fetch_metadata(None, Duration::from_secs(20))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn admin(broker: &Broker) -> (String, String) {
    let pw = broker
        .admin_password
        .clone()
        .expect("the broker created admin");
    ("admin".to_string(), pw)
}

// ---------------------------------------------------------------------------
// 1. Frames before login
// ---------------------------------------------------------------------------

/// Eight TLS connections announce 100 MB frames before logging in and push
/// body bytes: each is closed from the size prefix alone, and the broker's
/// memory does not follow the claims.
#[test]
fn pre_login_frames_are_capped_from_the_size_prefix() {
    let dir = scratch("pre-login-frame-cap");
    let broker = Broker::start_secure(dir.path(), "");
    let pid = broker_pid(dir.path());
    let cfg = tls_config(&broker.ca_file());
    let (user, pw) = admin(&broker);
    rdkafka_login(&broker, &broker.bootstrap, &user, &pw).unwrap();
    let before = status_kib(pid, "VmRSS:");

    let body = vec![b'x'; 1 << 20];
    let mut closed = Vec::new();
    for _ in 0..8 {
        let mut tls = tls_connect(&broker.bootstrap, &cfg);
        let mut sent = 0usize;
        let _ = tls.write_all(&(100_000_000i32).to_be_bytes());
        // Keep pushing until the broker hangs up (it should at once).
        for _ in 0..99 {
            if tls.write_all(&body).and_then(|_| tls.flush()).is_err() {
                break;
            }
            sent += body.len();
        }
        let sock = tls.sock.try_clone().unwrap();
        let t = time_to_close(&mut tls, &sock, Duration::from_secs(10));
        closed.push((t, sent));
    }
    for (t, sent) in &closed {
        assert!(
            t.is_some(),
            "a 100 MB pre-login frame was not refused (client sent {sent} bytes)"
        );
    }
    // A frame just above the cap (16 KiB default) is refused too; one
    // below it is read and answered.
    let mut tls = tls_connect(&broker.bootstrap, &cfg);
    tls.write_all(&framed(&vec![0u8; 17 * 1024])).unwrap();
    let sock = tls.sock.try_clone().unwrap();
    assert!(time_to_close(&mut tls, &sock, Duration::from_secs(10)).is_some());
    let mut tls = tls_connect(&broker.bootstrap, &cfg);
    tls.write_all(&framed(&api_versions_v3(1))).unwrap();
    tls.flush().unwrap();
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).unwrap();
    assert!(i32::from_be_bytes(len) > 0);

    let peak = status_kib(pid, "VmHWM:");
    let after = status_kib(pid, "VmRSS:");
    eprintln!("broker RSS before {before} KiB, after {after} KiB, peak {peak} KiB");
    assert!(
        after < before + 32 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    // After login, big requests are allowed as before: a 900 KB record.
    let p: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", &user)
        .set("sasl.password", &pw)
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap())
        .set("message.max.bytes", "1000000")
        .create()
        .unwrap();
    let admin_client: rdkafka::admin::AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", &user)
        .set("sasl.password", &pw)
        .set("ssl.ca.location", broker.ca_file().to_str().unwrap())
        .create()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let created = rt
        .block_on(admin_client.create_topics(
            &[rdkafka::admin::NewTopic::new(
                "big",
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        ))
        .unwrap();
    assert!(created[0].is_ok(), "{created:?}");
    let big = vec![7u8; 900_000];
    p.send(rdkafka::producer::BaseRecord::<(), _>::to("big").payload(&big))
        .map_err(|(e, _)| e)
        .unwrap();
    use rdkafka::producer::Producer;
    p.flush(Duration::from_secs(30)).unwrap();
}

// ---------------------------------------------------------------------------
// 2. Login deadline and idle limit
// ---------------------------------------------------------------------------

/// Connections that never log in are closed at the login deadline, whether
/// they stop before TLS, after it, or in the middle of SASL; a connection
/// that logged in (or a PLAINTEXT one) is closed once idle for
/// `connections_max_idle_ms`, and not while it keeps asking.
#[test]
fn login_deadline_and_idle_limit_close_dawdlers() {
    let dir = scratch("login-deadline");
    let broker = Broker::start_listeners(
        dir.path(),
        &["SASL_SSL", "PLAINTEXT"],
        "connections:\n  login_timeout_ms: 2000\n  connections_max_idle_ms: 3000\n",
    );
    let secure = broker.addr("SASL_SSL").to_string();
    let plain = broker.addr("PLAINTEXT").to_string();
    let cfg = tls_config(&broker.ca_file());
    let limit = Duration::from_secs(20);

    // Bare TCP, no TLS handshake.
    let start = Instant::now();
    let mut tcp = TcpStream::connect(&secure).unwrap();
    let sock = tcp.try_clone().unwrap();
    time_to_close(&mut tcp, &sock, limit).expect("bare TCP stayed open");
    let t_tcp = start.elapsed();
    // TLS done, then silence.
    let start = Instant::now();
    let mut tls = tls_connect(&secure, &cfg);
    let sock = tls.sock.try_clone().unwrap();
    time_to_close(&mut tls, &sock, limit).expect("TLS without SASL stayed open");
    let t_tls = start.elapsed();
    // TLS, ApiVersions and SaslHandshake, then silence.
    let start = Instant::now();
    let mut tls = tls_connect(&secure, &cfg);
    tls.write_all(&framed(&api_versions_v3(1))).unwrap();
    let mut hs = Vec::new();
    hs.extend_from_slice(&17i16.to_be_bytes());
    hs.extend_from_slice(&1i16.to_be_bytes());
    hs.extend_from_slice(&2i32.to_be_bytes());
    hs.extend_from_slice(&4i16.to_be_bytes());
    hs.extend_from_slice(b"test");
    hs.extend_from_slice(&13i16.to_be_bytes());
    hs.extend_from_slice(b"SCRAM-SHA-512");
    tls.write_all(&framed(&hs)).unwrap();
    tls.flush().unwrap();
    let sock = tls.sock.try_clone().unwrap();
    time_to_close(&mut tls, &sock, limit).expect("half-done SASL stayed open");
    let t_sasl = start.elapsed();
    for (what, t) in [("tcp", t_tcp), ("tls", t_tls), ("sasl", t_sasl)] {
        eprintln!("{what}: closed after {t:?}");
        assert!(
            t >= Duration::from_millis(1500),
            "{what} closed before the deadline: {t:?}"
        );
    }

    // PLAINTEXT: idle is closed; a client that keeps asking is not.
    let mut idle = TcpStream::connect(&plain).unwrap();
    let mut busy = TcpStream::connect(&plain).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let start = Instant::now();
    let mut corr = 0;
    while start.elapsed() < Duration::from_millis(5000) {
        corr += 1;
        busy.write_all(&framed(&api_versions_v3(corr))).unwrap();
        let mut len = [0u8; 4];
        busy.read_exact(&mut len)
            .expect("a busy connection was closed");
        let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
        busy.read_exact(&mut body).unwrap();
        std::thread::sleep(Duration::from_millis(500));
    }
    let sock = idle.try_clone().unwrap();
    let t_idle = time_to_close(&mut idle, &sock, limit).expect("idle PLAINTEXT stayed open");
    eprintln!("idle plaintext closed (after 5 s of the busy loop) {t_idle:?} later");
    let log = broker.log();
    assert!(log.contains("login not completed within login_timeout_ms"));
    assert!(log.contains("idle longer than connections_max_idle_ms"));
    // A client with a password is untouched by all of this.
    let (user, pw) = admin(&broker);
    rdkafka_login(&broker, &secure, &user, &pw).unwrap();
}

// ---------------------------------------------------------------------------
// 3. Connection limits
// ---------------------------------------------------------------------------

/// Opens up to `n` TCP connections from `local` to `addr`; returns those
/// the broker has not closed after a moment.
fn flood(addr: &str, local: &str, n: usize) -> Vec<TcpStream> {
    let target: SocketAddr = addr.parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..n {
        let sock = socket2_connect(local, target);
        if let Some(s) = sock {
            held.push(s);
        }
    }
    // Refused connections are reset at once; displaced ones closed.
    std::thread::sleep(Duration::from_millis(300));
    held.retain(still_open);
    held
}

/// The connections the broker has not closed, once it had time to close
/// those it displaced (waits until the count stops falling).
fn reap(mut held: Vec<TcpStream>) -> Vec<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let before = held.len();
        held.retain(still_open);
        if held.len() == before || Instant::now() > deadline {
            return held;
        }
    }
}

/// Connects from a chosen loopback address (127.0.0.0/8 all route here).
fn socket2_connect(local: &str, target: SocketAddr) -> Option<TcpStream> {
    use std::os::fd::FromRawFd;
    let local: SocketAddr = format!("{local}:0").parse().unwrap();
    // SAFETY: plain socket calls on a descriptor this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return None;
        }
        let s = TcpStream::from_raw_fd(fd);
        let bind = sockaddr(local);
        if libc::bind(
            fd,
            &bind as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            return None;
        }
        let to = sockaddr(target);
        if libc::connect(
            fd,
            &to as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        ) != 0
        {
            return None;
        }
        Some(s)
    }
}

fn sockaddr(a: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(a) = a else {
        panic!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

fn still_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let open = match (&*s).read(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    open
}

/// Floods from one address and from several: the broker never holds more
/// than its limits, refusals are counted (one log line per period, an audit
/// record with the counts), and the admin logs in from the flooded address
/// while the flood holds every place.
#[test]
fn connection_limits_hold_and_the_admin_still_gets_in() {
    let dir = scratch("connection-limits");
    let broker = Broker::start_secure(
        dir.path(),
        "connections:\n  max_connections: 60\n  max_connections_per_ip: 40\n  max_connections_per_ip_overrides: {\"127.0.0.5\": 3}\n",
    );
    let pid = broker_pid(dir.path());
    let addr = broker.bootstrap.clone();
    let fds_before = fd_count(pid);

    let from_one = flood(&addr, "127.0.0.1", 200);
    assert!(
        from_one.len() <= 40,
        "{} connections from one address are open (limit 40)",
        from_one.len()
    );
    let mut others = Vec::new();
    for i in 2..=4 {
        others.extend(flood(&addr, &format!("127.0.0.{i}"), 40));
    }
    // Later floods displace the earlier addresses' oldest connections.
    let mut all = from_one;
    all.extend(others);
    let all = reap(all);
    let open = all.len();
    assert!(open <= 60, "{open} connections open (limit 60)");
    let overridden = flood(&addr, "127.0.0.5", 10);
    assert!(
        overridden.len() <= 3,
        "{} open (override 3)",
        overridden.len()
    );
    let fds = fd_count(pid);
    eprintln!("broker fds: {fds_before} before, {fds} under the flood; attacker holds {open}");
    assert!(
        fds <= fds_before + 60 + 8,
        "broker holds {fds} fds (was {fds_before})"
    );

    // The flood holds every place, none logged in: the admin's login takes
    // the place of the oldest of them.
    let (user, pw) = admin(&broker);
    let start = Instant::now();
    rdkafka_login(&broker, &addr, &user, &pw).unwrap();
    eprintln!("admin logged in under the flood in {:?}", start.elapsed());

    // Refusals are summarised, not logged one by one.
    let log = broker.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("connections refused at the connection limits"))
        .count();
    assert!(
        (1..=3).contains(&lines),
        "{lines} refusal log lines:\n{}",
        crate::common::tail(&log, 20)
    );
    drop((all, overridden));
}

/// The fd table itself: with a 400-descriptor limit and no limits in the
/// config, the defaults derived from the fd limit keep the broker's table
/// from filling, and the admin still logs in during the flood.
#[test]
fn defaults_follow_the_fd_limit_and_keep_descriptors_free() {
    let dir = scratch("fd-limit");
    let mut first = Broker::start_secure(dir.path(), "");
    let (user, pw) = admin(&first);
    first.stop();
    let cfg = first.config_path();
    let log_path = dir.path().join("limited.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child: Child = Command::new("prlimit")
        .args(["--nofile=400:400", BIN, "serve", "--config"])
        .arg(&cfg)
        .env("PORTCULLIS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("prlimit (util-linux) runs the broker");
    let stdout = child.stdout.take().unwrap();
    let addr = {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        loop {
            let line = lines
                .next()
                .expect("broker exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("portcullis: listening ") {
                let a = rest.split_whitespace().next().unwrap();
                break a.split("://").nth(1).unwrap().to_string();
            }
        }
    };
    let guard = KillOnDrop(child);
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("max_connections=44"),
        "limits not derived from 400 fds (less 256 kept and 100 for segment files):\n{text}"
    );
    let pid = guard.0.id();
    let mut held = Vec::new();
    for i in 1..=4 {
        held.extend(flood(&addr, &format!("127.0.0.{i}"), 120));
    }
    let held = reap(held);
    let fds = fd_count(pid);
    eprintln!(
        "attacker holds {} connections; broker uses {fds} of 400 fds",
        held.len()
    );
    assert!(
        held.len() <= 44,
        "attacker holds {} connections (limit 44)",
        held.len()
    );
    assert!(
        fds < 400 - 64,
        "broker fd table nearly full: {fds}: {:?}",
        fd_kinds(pid)
    );
    // `first` knows the CA; the admin logs in while the flood goes on.
    rdkafka_login(&first, &addr, &user, &pw).unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("Too many open files"), "{text}");
    drop(held);
}

struct KillOnDrop(Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------
// 7. Small things a client can trip
// ---------------------------------------------------------------------------

/// DescribeUserScramCredentials refused: Kafka's shape (one result per
/// named user with error 31), which confluent-kafka reads without crashing.
#[test]
fn refused_scram_describe_has_kafkas_shape() {
    let dir = scratch("describe-scram-denied");
    let broker = Broker::start_secure(dir.path(), "");
    broker.add_user("alice", "alice-secret-7");
    let ca = broker.ca_file();
    crate::common::run_script_ok(
        "sec_describe_denied.py",
        &[
            &broker.bootstrap,
            ca.to_str().unwrap(),
            "alice",
            "alice-secret-7",
        ],
        || crate::common::log_tail(&broker, 30),
    );
}

/// KIP-511: ApiVersions v3 names its client software with a plain token;
/// anything else (1 MB, newlines, escape codes) is INVALID_REQUEST and
/// never reaches the log.
#[test]
fn api_versions_software_names_are_validated() {
    let dir = scratch("api-versions-names");
    let broker = Broker::start(dir.path(), "");
    let request = |name: &[u8], version: &[u8]| {
        let mut b = Vec::new();
        b.extend_from_slice(&18i16.to_be_bytes());
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(&7i32.to_be_bytes());
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(b"test");
        b.push(0);
        for s in [name, version] {
            // Compact string: unsigned varint of len + 1.
            let mut n = s.len() as u32 + 1;
            while n >= 0x80 {
                b.push((n as u8 & 0x7f) | 0x80);
                n >>= 7;
            }
            b.push(n as u8);
            b.extend_from_slice(s);
        }
        b.push(0);
        let mut s = broker.connect();
        let resp = crate::common::raw_request(&mut s, &b).expect("an answer");
        // Response header v0 (correlation id), then error_code.
        i16::from_be_bytes([resp[4], resp[5]])
    };
    assert_eq!(request(b"librdkafka", b"2.3.0"), 0);
    assert_eq!(request(b"apache-kafka-java", b"3.7.0-rc1"), 0);
    let big = vec![b'a'; 1 << 20];
    for (name, version) in [
        (&b"evil\nINFO forged line"[..], &b"1.0"[..]),
        (b"\x1b[31mred", b"1.0"),
        (b"ok", b"1.0 "),
        (b"", b"1.0"),
        (&big[..], b"1.0"),
    ] {
        assert_eq!(
            request(name, version),
            42,
            "{:?}",
            String::from_utf8_lossy(&name[..name.len().min(30)])
        );
    }
    assert!(!broker.log().contains("forged line"));
}

/// A flood of failed TLS handshakes: a few log lines with a count of those
/// left out, and the audit log gets the first failure in full and the rest
/// as one aggregated record with their count (written at the latest at
/// shutdown), not a record per attempt.
#[test]
fn tls_handshake_failures_are_rate_limited_and_aggregated() {
    let dir = scratch("tls-failures");
    let mut broker = Broker::start_secure(dir.path(), "");
    let addr = broker.bootstrap.clone();
    let audit = dir.path().join("audit/audit.log");
    let audit_before = std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0);
    const ATTEMPTS: usize = 300;
    for _ in 0..ATTEMPTS {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        // Not a TLS record: rustls refuses it at once.
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut b = [0u8; 64];
        let _ = s.read(&mut b);
    }
    let grown = std::fs::metadata(&audit).map(|m| m.len()).unwrap_or(0) - audit_before;
    let log = broker.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("TLS handshake failed"))
        .count();
    eprintln!("{ATTEMPTS} failed handshakes: {lines} log lines, {grown} audit bytes");
    assert!(
        (1..=10).contains(&lines),
        "{lines} log lines for {ATTEMPTS} failed handshakes"
    );
    assert!(
        grown < 4096,
        "{grown} audit bytes for {ATTEMPTS} failed handshakes"
    );
    broker.stop();
    let text = std::fs::read_to_string(&audit).unwrap();
    let tls: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "authentication" && v["mechanism"] == "TLS")
        .collect();
    let aggregated: u64 = tls
        .iter()
        .filter_map(|v| v["details"]["count"].as_u64())
        .sum();
    let individual = tls
        .iter()
        .filter(|v| v["details"]["count"].is_null())
        .count() as u64;
    assert_eq!(individual, 1, "{tls:?}");
    assert_eq!(
        individual + aggregated,
        ATTEMPTS as u64,
        "every failure is counted"
    );
}
