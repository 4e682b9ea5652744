//! Connection-level figures: full connects per second (TCP + TLS + SCRAM)
//! and broker memory per idle authenticated connection. The client side is
//! a minimal SCRAM-SHA-512 client on tokio-rustls that caches the salted
//! password (as a long-lived client library would), so the figure is what
//! the broker sustains, not what PBKDF2 on the client allows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use hmac::{Hmac, Mac};
use kafka_protocol::messages::{
    ApiKey, RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use sha2::{Digest, Sha512};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

type HmacSha512 = Hmac<Sha512>;

/// (salt, iterations, SaltedPassword) of the last login.
pub type SaltCache = std::sync::Mutex<Option<(Vec<u8>, u32, Vec<u8>)>>;

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = HmacSha512::new_from_slice(key).expect("HMAC takes any key length");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

/// One request as sent on the wire: size, header, body.
pub fn request_frame(
    api: ApiKey,
    version: i16,
    corr: i32,
    client_id: &'static str,
    body: &impl Encodable,
) -> anyhow::Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str(client_id)));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, api.request_header_version(version))?;
    body.encode(&mut buf, version)?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf)
}

async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    key: i16,
    version: i16,
    body: &impl Encodable,
    corr: i32,
) -> anyhow::Result<Bytes> {
    let api =
        kafka_protocol::messages::ApiKey::try_from(key).map_err(|_| anyhow::anyhow!("api key"))?;
    let buf = request_frame(api, version, corr, "portcullis-bench", body)?;
    s.write_all(&buf).await?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await?;
    let mut resp = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut resp).await?;
    let mut b = Bytes::from(resp);
    ResponseHeader::decode(&mut b, api.response_header_version(version))?;
    Ok(b)
}

/// Logs in with SCRAM-SHA-512 over an established stream. `salted` caches
/// the PBKDF2 output for the (salt, iterations) the server announced.
pub async fn scram_login<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    user: &str,
    password: &str,
    salted: &SaltCache,
) -> anyhow::Result<()> {
    let hs =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
    let mut b = call(s, 17, 1, &hs, 1).await?;
    let r = SaslHandshakeResponse::decode(&mut b, 1)?;
    anyhow::ensure!(r.error_code == 0, "handshake error {}", r.error_code);
    let nonce: String = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        (0..24)
            .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
            .collect()
    };
    let first_bare = format!("n={user},r={nonce}");
    let req =
        SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(format!("n,,{first_bare}")));
    let mut b = call(s, 36, 2, &req, 2).await?;
    let r = SaslAuthenticateResponse::decode(&mut b, 2)?;
    anyhow::ensure!(r.error_code == 0, "auth error {}", r.error_code);
    let server_first = String::from_utf8(r.auth_bytes.to_vec())?;
    let mut rn = "";
    let mut salt = Vec::new();
    let mut iters = 0u32;
    for part in server_first.split(',') {
        if let Some(v) = part.strip_prefix("r=") {
            rn = v;
        } else if let Some(v) = part.strip_prefix("s=") {
            salt = STANDARD.decode(v)?;
        } else if let Some(v) = part.strip_prefix("i=") {
            iters = v.parse()?;
        }
    }
    let sp = {
        let mut cache = salted.lock().unwrap_or_else(|p| p.into_inner());
        match cache.as_ref() {
            Some((s, i, sp)) if *s == salt && *i == iters => sp.clone(),
            _ => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, iters, &mut out);
                *cache = Some((salt.clone(), iters, out.to_vec()));
                out.to_vec()
            }
        }
    };
    let client_key = hmac(&sp, b"Client Key");
    let stored = Sha512::digest(&client_key);
    let final_no_proof = format!("c=biws,r={rn}");
    let auth_msg = format!("{first_bare},{server_first},{final_no_proof}");
    let sig = hmac(&stored, auth_msg.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
    let fin = format!("{final_no_proof},p={}", STANDARD.encode(proof));
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(fin));
    let mut b = call(s, 36, 2, &req, 3).await?;
    let r = SaslAuthenticateResponse::decode(&mut b, 2)?;
    anyhow::ensure!(r.error_code == 0, "auth error {}", r.error_code);
    let _ = b.remaining();
    Ok(())
}

pub struct Target {
    pub addr: String,
    pub connector: tokio_rustls::TlsConnector,
    pub user: String,
    pub password: String,
}

pub async fn connect_once(
    t: &Target,
    salted: &SaltCache,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(&t.addr).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let mut tls = t.connector.connect(name, tcp).await?;
    scram_login(&mut tls, &t.user, &t.password, salted).await?;
    Ok(tls)
}

/// Full connects (TCP + TLS + SCRAM) per second with `concurrency` loops.
pub async fn connects_per_second(
    t: Arc<Target>,
    concurrency: usize,
    secs: f64,
) -> anyhow::Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let salted = Arc::new(std::sync::Mutex::new(None));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (t, done, failed, salted) = (t.clone(), done.clone(), failed.clone(), salted.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                match connect_once(&t, &salted).await {
                    Ok(mut s) => {
                        let _ = s.shutdown().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((
        done.load(Ordering::Relaxed) as f64 / secs,
        failed.load(Ordering::Relaxed),
    ))
}

/// Resident set size of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Opens `n` authenticated connections and keeps them idle; returns the
/// broker's RSS growth per connection in bytes.
pub async fn idle_memory_per_connection(
    t: Arc<Target>,
    broker_pid: u32,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let salted = Arc::new(std::sync::Mutex::new(None));
    // Warm up allocator arenas and TLS state before the baseline.
    let mut held = Vec::with_capacity(n);
    for _ in 0..16 {
        held.push(connect_once(&t, &salted).await?);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_kib(broker_pid).unwrap_or(0);
    let mut opened = 0;
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut pending = Vec::new();
    for _ in 0..n {
        let (t, salted, sem) = (t.clone(), salted.clone(), sem.clone());
        pending.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await;
            connect_once(&t, &salted).await
        }));
    }
    for p in pending {
        if let Ok(Ok(s)) = p.await {
            held.push(s);
            opened += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(broker_pid).unwrap_or(0);
    let per = (after.saturating_sub(before) as f64 * 1024.0) / opened.max(1) as f64;
    drop(held);
    Ok((per, opened))
}

/// Raises this process's open-file limit to the hard limit (children
/// inherit it), so thousands of connections fit.
pub fn raise_fd_limit() -> u64 {
    crate::server::limits::raise_fd_limit().map_or(0, |(_, after)| after)
}
