//! Property-style fuzzing of a running broker over the network:
//!
//! 1. SaslAuthenticate payloads (and SaslHandshake v0 raw tokens) derived
//!    from valid SCRAM-SHA-512 client-first / client-final messages by bit
//!    flips, truncation, insertions and very long strings: every attempt
//!    ends in an error response or a close, never in a login (unless the
//!    mutation was a no-op) and never in a hang.
//! 2. Mutated request frames for Metadata v12, Produce v9, Fetch v12,
//!    CreateTopics v7 and ApiVersions v3 on a PLAINTEXT listener: each is
//!    answered with a decodable response or closes its connection, and the
//!    broker keeps serving.
//!
//! Deterministic: a fixed seed (override with `FUZZ_SEED=0x...`), one
//! derived PRNG per case, and failures name the case. Re-run a single case
//! with `FUZZ_SEED=<seed> FUZZ_CASE=<i> cargo test --test fuzz_inputs <test>`.
//! `FUZZ_SASL_CASES` / `FUZZ_FRAME_CASES` change the case counts.

mod common;

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, ResponseKind, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use portcullis::client::ScramClient;
use sha2::{Digest, Sha512};

use common::{scratch, Broker};

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const ILLEGAL_SASL_STATE: i16 = 34;
const DEFAULT_SEED: u64 = 0x5EC0_F022_C0FF_EE01;

// ---------------------------------------------------------------------------
// Deterministic PRNG (SplitMix64): no dependency on rand's algorithm choice.
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    /// Independent stream per (seed, test, case) so a case replays alone.
    fn for_case(seed: u64, stream: u64, case: usize) -> Rng {
        let mut r = Rng(seed
            ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (case as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        r.next();
        r
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
    fn range(&mut self, lo: usize, hi_inclusive: usize) -> usize {
        lo + self.below(hi_inclusive - lo + 1)
    }
    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    fn printable(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| {
                // Nonce alphabet: printable ASCII except ','.
                let c = 0x21 + self.below(0x7e - 0x21 + 1) as u8;
                if c == b',' {
                    '~'
                } else {
                    c as char
                }
            })
            .collect()
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn seed() -> u64 {
    env_u64("FUZZ_SEED").unwrap_or(DEFAULT_SEED)
}

/// Short printable preview of a payload for failure messages.
fn preview(b: &[u8]) -> String {
    let head: String = b
        .iter()
        .take(160)
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    format!(
        "{} bytes: \"{head}\"{}",
        b.len(),
        if b.len() > 160 { "..." } else { "" }
    )
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

enum Rx {
    Frame(Vec<u8>),
    Closed,
    Timeout,
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

struct Conn {
    s: TcpStream,
    corr: i32,
}

impl Conn {
    fn open(addr: &str, timeout: Duration) -> Conn {
        let s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(timeout)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn { s, corr: 0 }
    }

    fn send_raw(&mut self, payload: &[u8]) -> bool {
        let mut frame = (payload.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(payload);
        self.s.write_all(&frame).is_ok()
    }

    fn recv_raw(&mut self) -> Rx {
        let mut len = [0u8; 4];
        match self.s.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if is_close(&e) => return Rx::Closed,
            Err(_) => return Rx::Timeout,
        }
        let n = i32::from_be_bytes(len);
        if n < 0 {
            panic!("broker sent a negative frame size {n}");
        }
        let mut body = vec![0u8; n as usize];
        match self.s.read_exact(&mut body) {
            Ok(()) => Rx::Frame(body),
            // A response cut in the middle is a broker bug either way.
            Err(e) => panic!("response of {n} bytes cut short: {e}"),
        }
    }

    fn send<Q: Encodable>(&mut self, api: ApiKey, version: i16, req: &Q) -> i32 {
        self.corr += 1;
        let corr = self.corr;
        self.send_raw(&encode_request(api, version, corr, req));
        corr
    }

    /// Request/response; Err describes a close or timeout.
    fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<R, &'static str> {
        let corr = self.send(api, version, req);
        match self.recv_raw() {
            Rx::Frame(f) => Ok(decode_response(api, version, corr, &f)),
            Rx::Closed => Err("closed"),
            Rx::Timeout => Err("timeout"),
        }
    }

    fn handshake(&mut self, version: i16) -> Result<SaslHandshakeResponse, &'static str> {
        let req = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512"));
        self.call(ApiKey::SaslHandshake, version, &req)
    }

    fn authenticate(
        &mut self,
        version: i16,
        token: &[u8],
    ) -> Result<SaslAuthenticateResponse, &'static str> {
        let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
        self.call(ApiKey::SaslAuthenticate, version, &req)
    }

    fn raw_token(&mut self, token: &[u8]) -> Rx {
        if !self.send_raw(token) {
            return Rx::Closed;
        }
        self.recv_raw()
    }

    /// The broker has closed, or closes now: a probe gets no answer.
    fn closed(&mut self) -> Result<(), String> {
        let probe = encode_request(ApiKey::ApiVersions, 0, 4242, &ApiVersionsRequest::default());
        let _ = self.send_raw(&probe);
        match self.recv_raw() {
            Rx::Closed => Ok(()),
            Rx::Frame(f) => Err(format!(
                "connection stayed open after a failed authentication ({}-byte answer to a probe)",
                f.len()
            )),
            Rx::Timeout => Err("neither closed nor answered after a failed authentication".into()),
        }
    }
}

fn encode_request<Q: Encodable>(api: ApiKey, version: i16, corr: i32, req: &Q) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(corr)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, api.request_header_version(version))
        .unwrap();
    req.encode(&mut buf, version).unwrap();
    buf.to_vec()
}

fn response_header_version(api: ApiKey, version: i16) -> i16 {
    if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    }
}

fn decode_response<R: Decodable>(api: ApiKey, version: i16, corr: i32, frame: &[u8]) -> R {
    let mut buf = Bytes::copy_from_slice(frame);
    let header = ResponseHeader::decode(&mut buf, response_header_version(api, version))
        .unwrap_or_else(|e| panic!("{api:?} v{version}: bad response header: {e}"));
    assert_eq!(
        header.correlation_id, corr,
        "{api:?} v{version}: correlation id"
    );
    let resp = R::decode(&mut buf, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version}: undecodable response: {e}"));
    assert!(buf.is_empty(), "{api:?} v{version}: trailing bytes");
    resp
}

// ---------------------------------------------------------------------------
// SCRAM-SHA-512 messages built by hand: the valid bases the cases mutate
// (any GS2 header, any nonce, chosen by the case's PRNG)
// ---------------------------------------------------------------------------

fn hmac(key: &[u8], data: &[u8]) -> [u8; 64] {
    let mut mac = <Hmac<Sha512> as Mac>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().into()
}

struct ServerFirst {
    raw: String,
    nonce: String,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(bytes: &[u8]) -> Result<ServerFirst, String> {
    let raw = std::str::from_utf8(bytes)
        .map_err(|_| format!("server-first is not UTF-8: {}", preview(bytes)))?
        .to_string();
    let bad = || format!("malformed server-first: {}", preview(bytes));
    let parts: Vec<&str> = raw.split(',').collect();
    if parts.len() != 3 {
        return Err(bad());
    }
    let nonce = parts[0].strip_prefix("r=").ok_or_else(bad)?.to_string();
    let salt = B64
        .decode(parts[1].strip_prefix("s=").ok_or_else(bad)?)
        .map_err(|_| bad())?;
    let iterations: u32 = parts[2]
        .strip_prefix("i=")
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())?;
    if nonce.is_empty() || salt.is_empty() || !(4096..=16384).contains(&iterations) {
        return Err(bad());
    }
    Ok(ServerFirst {
        raw,
        nonce,
        salt,
        iterations,
    })
}

/// (client-final, expected server-final)
fn client_final(bare: &str, sf: &ServerFirst, gs2: &str, salted: &[u8; 64]) -> (Vec<u8>, Vec<u8>) {
    let without_proof = format!("c={},r={}", B64.encode(gs2), sf.nonce);
    let auth = format!("{bare},{},{without_proof}", sf.raw);
    let client_key = hmac(salted, b"Client Key");
    let stored: [u8; 64] = Sha512::digest(client_key).into();
    let sig = hmac(&stored, auth.as_bytes());
    let proof: Vec<u8> = client_key.iter().zip(sig).map(|(a, b)| a ^ b).collect();
    let server_sig = hmac(&hmac(salted, b"Server Key"), auth.as_bytes());
    (
        format!("{without_proof},p={}", B64.encode(proof)).into_bytes(),
        format!("v={}", B64.encode(server_sig)).into_bytes(),
    )
}

/// A well-formed client-final with a random (wrong) proof.
fn wrong_final(rng: &mut Rng, sf: &ServerFirst) -> Vec<u8> {
    format!("c=biws,r={},p={}", sf.nonce, B64.encode(rng.bytes(64))).into_bytes()
}

// ---------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------

const SCRAM_TOKENS: &[&str] = &[
    ",",
    "=",
    ",r=",
    ",p=",
    ",c=",
    ",n=",
    ",a=",
    "m=",
    ",m=x",
    "=2C",
    "=3D",
    "==",
    "n,,",
    "y,,",
    "p=tls-unique,",
    ",tokenauth=true",
    "c=biws",
    "\0",
    "\u{7f}",
    "\u{e9}",
    "\u{1F600}",
];

/// One random edit of a SCRAM message.
fn mutate_once(rng: &mut Rng, m: &mut Vec<u8>) {
    let len = m.len();
    match rng.below(11) {
        0 if len > 0 => {
            let p = rng.below(len);
            m[p] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let p = rng.below(len);
            m[p] = rng.byte();
        }
        2 if len > 0 => {
            let p = rng.below(len);
            m[p] = rng.pick(&[
                b',', b'=', 0, 0xff, 0x80, b' ', 0x7f, b'a', b'r', b'p', b'c',
            ]);
        }
        3 => m.truncate(rng.below(len + 1)),
        4 => {
            let p = rng.below(len + 1);
            let n = rng.range(1, 16);
            let ins = rng.bytes(n);
            m.splice(p..p, ins);
        }
        5 => {
            // Very long strings, up to 100 KB.
            let n = rng.pick(&[255usize, 4095, 4096, 4097, 10_000, 65_536, 100_000]);
            let filler: Vec<u8> = match rng.below(3) {
                0 => vec![rng.pick(&[b'a', b'A', b'=', b',', b'/', 0xff]); n],
                1 => rng.printable(n).into_bytes(),
                _ => rng.bytes(n),
            };
            let p = rng.below(len + 1);
            m.splice(p..p, filler);
        }
        6 if len > 0 => {
            let a = rng.below(len);
            let b = rng.range(a, len);
            m.drain(a..b);
        }
        7 if len > 0 => {
            let a = rng.below(len);
            let b = rng.range(a, len);
            let dup = m[a..b].to_vec();
            let p = rng.below(len + 1);
            m.splice(p..p, dup);
        }
        8 => {
            let tok = rng.pick(SCRAM_TOKENS).as_bytes().to_vec();
            let p = rng.below(len + 1);
            m.splice(p..p, tok);
        }
        9 => {
            // Attribute-level: drop, duplicate or swap comma-separated parts.
            let mut parts: Vec<Vec<u8>> = m.split(|&b| b == b',').map(<[u8]>::to_vec).collect();
            let n = parts.len();
            match rng.below(3) {
                0 if n > 1 => {
                    parts.remove(rng.below(n));
                }
                1 => {
                    let i = rng.below(n);
                    let dup = parts[i].clone();
                    parts.insert(rng.below(n + 1), dup);
                }
                _ => {
                    let (i, j) = (rng.below(n), rng.below(n));
                    parts.swap(i, j);
                }
            }
            *m = parts.join(&b","[..]);
        }
        _ => {
            // Flip the case of an attribute name or a base64 character.
            if len > 0 {
                let p = rng.below(len);
                m[p] = if m[p].is_ascii_lowercase() {
                    m[p].to_ascii_uppercase()
                } else {
                    m[p].to_ascii_lowercase()
                };
            }
        }
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..rng.range(1, 4) {
        mutate_once(rng, &mut m);
    }
    // Stacked insertions can grow a token past the pre-login frame cap the
    // SASL fuzz configures; such frames are closed from their size prefix
    // (tested in hostile_clients), so they would never reach the parser.
    m.truncate(MAX_FUZZ_TOKEN);
    m
}

/// The largest SCRAM token the fuzzer sends; the SASL fuzz broker admits
/// pre-login frames up to `PRE_LOGIN_FRAME_CAP`, which leaves room for the
/// request header and the length prefixes around the token.
const MAX_FUZZ_TOKEN: usize = 120_000;
const PRE_LOGIN_FRAME_CAP: usize = 131_072;

// ---------------------------------------------------------------------------
// 1. SASL payload fuzzing
// ---------------------------------------------------------------------------

const FUZZ_USER: &str = "fuzzer";
const FUZZ_PASSWORD: &str = "fuzz-password-1";

struct SaslTarget {
    addr: String,
    /// SaltedPassword for FUZZ_USER's salt (PBKDF2 once, not per case).
    salted: [u8; 64],
}

fn base_first(rng: &mut Rng) -> (String, String) {
    let gs2 = rng
        .pick(&["n,,", "n,,", "n,,", "y,,", "n,a=fuzzer,"])
        .to_string();
    let n = rng.range(8, 32);
    let nonce = rng.printable(n);
    let mut bare = format!("n={FUZZ_USER},r={nonce}");
    if rng.percent(15) {
        bare.push_str(",ext=value");
    }
    (gs2, bare)
}

/// After a challenge to a (possibly mutated) client-first: a wrong or
/// mutated client-final must be refused with 58 and a close.
fn finish_refused(
    c: &mut Conn,
    rng: &mut Rng,
    version: i16,
    sf: &ServerFirst,
) -> Result<&'static str, String> {
    let fin = if rng.percent(50) {
        wrong_final(rng, sf)
    } else {
        let w = wrong_final(rng, sf);
        mutate(rng, &w)
    };
    match c.authenticate(version, &fin) {
        Ok(r) if r.error_code == SASL_AUTHENTICATION_FAILED => {
            c.closed()?;
            Ok("challenge, then refused")
        }
        Ok(r) => Err(format!(
            "client-final with a random proof got error code {} ({})",
            r.error_code,
            preview(&fin)
        )),
        Err(e) => Err(format!(
            "client-final with a random proof: {e} without a response"
        )),
    }
}

fn sasl_case(t: &SaslTarget, rng: &mut Rng) -> Result<&'static str, String> {
    let mut c = Conn::open(&t.addr, Duration::from_secs(10));
    let version = rng.below(3) as i16;
    let kind = rng.below(100);
    if kind < 3 {
        // SaslAuthenticate without a handshake, random payload.
        let payload = mutate(rng, b"n,,n=fuzzer,r=abc");
        return match c.authenticate(version, &payload) {
            Ok(r) if r.error_code == ILLEGAL_SASL_STATE => c.closed().map(|_| "illegal state"),
            Ok(r) => Err(format!(
                "SaslAuthenticate before handshake: code {}",
                r.error_code
            )),
            Err(e) => Err(format!("SaslAuthenticate before handshake: {e}")),
        };
    }
    if kind < 13 {
        // SaslHandshake v0: raw tokens, failures close without an answer.
        let hs = c.handshake(0).map_err(|e| format!("handshake v0: {e}"))?;
        if hs.error_code != 0 {
            return Err(format!("handshake v0 refused: {}", hs.error_code));
        }
        let (gs2, bare) = base_first(rng);
        let first = format!("{gs2}{bare}").into_bytes();
        if rng.percent(50) {
            let m = mutate(rng, &first);
            return match c.raw_token(&m) {
                Rx::Closed => Ok("raw first: closed"),
                Rx::Timeout => Err(format!(
                    "raw client-first: no answer, no close ({})",
                    preview(&m)
                )),
                Rx::Frame(f) => {
                    let sf = parse_server_first(&f)?;
                    match c.raw_token(&wrong_final(rng, &sf)) {
                        Rx::Closed => Ok("raw first: challenge, then closed"),
                        Rx::Frame(_) => Err("raw wrong proof was answered".into()),
                        Rx::Timeout => Err("raw wrong proof: no answer, no close".into()),
                    }
                }
            };
        }
        let sf = match c.raw_token(&first) {
            Rx::Frame(f) => parse_server_first(&f)?,
            _ => return Err("valid raw client-first not answered".into()),
        };
        let (good, expected) = client_final(&bare, &sf, &gs2, &t.salted);
        let m = mutate(rng, &good);
        return match c.raw_token(&m) {
            Rx::Closed => Ok("raw final: closed"),
            Rx::Frame(f) if m == good && f == expected => Ok("no-op mutation: login"),
            Rx::Frame(f) => Err(format!(
                "AUTHENTICATION BYPASS? mutated raw client-final answered with {} (sent {})",
                preview(&f),
                preview(&m)
            )),
            Rx::Timeout => Err(format!(
                "raw client-final: no answer, no close ({})",
                preview(&m)
            )),
        };
    }

    let hs = c.handshake(1).map_err(|e| format!("handshake v1: {e}"))?;
    if hs.error_code != 0 {
        return Err(format!("handshake v1 refused: {}", hs.error_code));
    }
    let (gs2, bare) = base_first(rng);
    let first = format!("{gs2}{bare}").into_bytes();

    if !(55..90).contains(&kind) {
        // Mutated (or entirely random) client-first.
        let m = if kind >= 90 {
            let n = match rng.below(10) {
                0..=4 => rng.below(64),
                5..=7 => rng.below(4097),
                _ => rng.below(100_001),
            };
            if rng.percent(50) {
                rng.bytes(n)
            } else {
                rng.printable(n).into_bytes()
            }
        } else {
            mutate(rng, &first)
        };
        return match c.authenticate(version, &m) {
            Ok(r) if r.error_code == SASL_AUTHENTICATION_FAILED => {
                if !r.auth_bytes.is_empty() {
                    return Err("a refusal carried auth bytes".into());
                }
                c.closed().map(|_| "first: refused")
            }
            Ok(r) if r.error_code == 0 => {
                let sf = parse_server_first(&r.auth_bytes)?;
                finish_refused(&mut c, rng, version, &sf)
            }
            Ok(r) => Err(format!(
                "client-first got error code {} ({})",
                r.error_code,
                preview(&m)
            )),
            Err(e) => Err(format!(
                "client-first: {e} without a SaslAuthenticate response ({})",
                preview(&m)
            )),
        };
    }

    // Valid client-first, mutated client-final.
    let r = c
        .authenticate(version, &first)
        .map_err(|e| format!("valid client-first: {e}"))?;
    if r.error_code != 0 {
        return Err(format!("valid client-first refused with {}", r.error_code));
    }
    let sf = parse_server_first(&r.auth_bytes)?;
    let (good, expected) = client_final(&bare, &sf, &gs2, &t.salted);
    let m = mutate(rng, &good);
    match c.authenticate(version, &m) {
        Ok(r) if r.error_code == SASL_AUTHENTICATION_FAILED => c.closed().map(|_| "final: refused"),
        Ok(r) if r.error_code == 0 && m == good && r.auth_bytes[..] == expected[..] => {
            Ok("no-op mutation: login")
        }
        Ok(r) if r.error_code == 0 => Err(format!(
            "AUTHENTICATION BYPASS: mutated client-final accepted ({})",
            preview(&m)
        )),
        Ok(r) => Err(format!(
            "client-final got error code {} ({})",
            r.error_code,
            preview(&m)
        )),
        Err(e) => Err(format!(
            "client-final: {e} without a SaslAuthenticate response ({})",
            preview(&m)
        )),
    }
}

/// A correct login; returns the server-first for the salt.
fn good_login(addr: &str, user: &str, password: &str) -> Result<ServerFirst, String> {
    let mut c = Conn::open(addr, Duration::from_secs(10));
    let hs = c.handshake(1).map_err(|e| format!("handshake: {e}"))?;
    if hs.error_code != 0 {
        return Err(format!("handshake error {}", hs.error_code));
    }
    // The library's client: the fuzz cases below mutate messages built
    // here by hand; the correct login is the one every client of ours makes.
    let client = ScramClient::new(user, password);
    let r = c
        .authenticate(2, &client.first())
        .map_err(|e| format!("client-first: {e}"))?;
    if r.error_code != 0 {
        return Err(format!("client-first error {}", r.error_code));
    }
    let sf = parse_server_first(&r.auth_bytes)?;
    let (fin, awaiting) = client.respond(&r.auth_bytes).map_err(|e| e.to_string())?;
    let r = c
        .authenticate(2, &fin)
        .map_err(|e| format!("client-final: {e}"))?;
    if r.error_code != 0 {
        return Err(format!("login refused with {}", r.error_code));
    }
    awaiting.verify(&r.auth_bytes).map_err(|e| e.to_string())?;
    let m: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(None),
        )
        .map_err(|e| format!("Metadata after login: {e}"))?;
    if m.brokers.len() != 1 {
        return Err("Metadata after login has no broker".into());
    }
    Ok(sf)
}

#[test]
fn fuzz_sasl_authenticate_payloads() {
    let seed = seed();
    let cases = env_u64("FUZZ_SASL_CASES").unwrap_or(2000) as usize;
    let only = env_u64("FUZZ_CASE").map(|c| c as usize);
    let dir = scratch("fuzz-sasl");
    // Thousands of refused logins: skip the KIP-306 close delay and the
    // login throttle here, and let SASL tokens up to 100 KB reach the SCRAM
    // parser (the pre-login frame cap has its own test in hostile_clients).
    let sasl = format!(
        "sasl:\n  credentials: {}\n  failed_authentication_delay_ms: 0\n  login_throttle: {{enabled: false}}\nconnections:\n  max_unauthenticated_frame_bytes: {PRE_LOGIN_FRAME_CAP}\n",
        dir.path().join("credentials.yaml").display()
    );
    let mut broker = Broker::start_listeners(dir.path(), &["SASL_PLAINTEXT"], &sasl);
    let addr = broker.addr("SASL_PLAINTEXT").to_string();
    broker.add_user(FUZZ_USER, FUZZ_PASSWORD);
    // The broker reloads the store asynchronously.
    let deadline = Instant::now() + Duration::from_secs(10);
    let sf = loop {
        match good_login(&addr, FUZZ_USER, FUZZ_PASSWORD) {
            Ok(sf) => break sf,
            Err(e) if Instant::now() > deadline => panic!("initial login: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut salted = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(
        FUZZ_PASSWORD.as_bytes(),
        &sf.salt,
        sf.iterations,
        &mut salted,
    );
    let target = SaslTarget {
        addr: addr.clone(),
        salted,
    };

    let start = Instant::now();
    let mut outcomes: BTreeMap<&'static str, usize> = BTreeMap::new();
    for i in 0..cases {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut rng = Rng::for_case(seed, 1, i);
        match sasl_case(&target, &mut rng) {
            Ok(label) => *outcomes.entry(label).or_default() += 1,
            Err(e) => panic!(
                "SASL fuzz case {i} failed (FUZZ_SEED={seed:#x} FUZZ_CASE={i}): {e}\nbroker running: {}",
                broker.is_running()
            ),
        }
        if i % 250 == 249 {
            assert!(
                broker.is_running(),
                "broker died by case {i} (seed {seed:#x})"
            );
        }
    }
    eprintln!(
        "SASL fuzz: {} of {cases} cases in {:?} (seed {seed:#x}): {outcomes:?}",
        outcomes.values().sum::<usize>(),
        start.elapsed()
    );
    assert!(broker.is_running(), "broker died during SASL fuzzing");
    good_login(&addr, FUZZ_USER, FUZZ_PASSWORD).expect("a correct login still succeeds");
    let log = broker.log();
    assert!(
        !log.contains("panicked"),
        "broker panicked while fuzzed:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(!log.contains(FUZZ_PASSWORD), "password in the broker log");
}

// ---------------------------------------------------------------------------
// 2. Request frame fuzzing
// ---------------------------------------------------------------------------

const FUZZ_TOPIC: &str = "fuzz";

struct Template {
    name: &'static str,
    payload: Vec<u8>,
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn record_batch(n: i64) -> Bytes {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: -1,
            // Current time: old timestamps would be deleted by retention.
            timestamp: now_ms + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}-{}", "x".repeat(20)))),
            headers: IndexMap::new(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    buf.freeze()
}

fn produce_request(acks: i16, timeout_ms: i32) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(FUZZ_TOPIC))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(record_batch(3)))])])
}

fn fetch_request() -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(50)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(FUZZ_TOPIC))
            .with_partitions(vec![
                FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(65536),
                FetchPartition::default()
                    .with_partition(1)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(65536),
            ])])
        .with_rack_id(StrBytes::from_static_str(""))
}

fn metadata_request() -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(FUZZ_TOPIC))),
            MetadataRequestTopic::default().with_name(Some(topic_name("no-such-topic"))),
        ]))
        .with_allow_auto_topic_creation(false)
        .with_include_topic_authorized_operations(true)
}

fn create_topics_request(name: &str, validate_only: bool) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            // -1/-1: broker defaults. Bit flips of -1 stay invalid, so a
            // mutation cannot ask for thousands of partitions by accident.
            .with_num_partitions(-1)
            .with_replication_factor(-1)
            .with_configs(vec![CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("60000")))])])
        .with_timeout_ms(1000)
        .with_validate_only(validate_only)
}

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("fuzz-client"))
        .with_client_software_version(StrBytes::from_static_str("1.0.0"))
}

fn templates() -> Vec<Template> {
    vec![
        Template {
            name: "Metadata v12",
            payload: encode_request(ApiKey::Metadata, 12, 1001, &metadata_request()),
        },
        Template {
            name: "Produce v9",
            payload: encode_request(ApiKey::Produce, 9, 1002, &produce_request(1, 1000)),
        },
        Template {
            name: "Fetch v12",
            payload: encode_request(ApiKey::Fetch, 12, 1003, &fetch_request()),
        },
        Template {
            name: "CreateTopics v7",
            payload: encode_request(
                ApiKey::CreateTopics,
                7,
                1004,
                &create_topics_request("fuzz-new", true),
            ),
        },
        Template {
            name: "ApiVersions v3",
            payload: encode_request(ApiKey::ApiVersions, 3, 1005, &api_versions_request()),
        },
    ]
}

/// Offsets that look like count or length fields: classic i32 array
/// counts, i16 string lengths, compact (varint N+1) lengths.
fn count_candidates(b: &[u8], from: usize) -> Vec<(usize, u8)> {
    let mut out = Vec::new();
    for p in from..b.len() {
        if p + 4 <= b.len() {
            let v = i32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]);
            if (1..=16).contains(&v) {
                out.push((p, 4));
            }
        }
        if p + 2 <= b.len() {
            let v = i16::from_be_bytes([b[p], b[p + 1]]);
            if (1..=64).contains(&v) {
                out.push((p, 2));
            }
        }
        if (1..=40).contains(&b[p]) {
            out.push((p, 1));
        }
    }
    out
}

fn overwrite(m: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    for (i, &x) in bytes.iter().enumerate() {
        if at + i < m.len() {
            m[at + i] = x;
        } else {
            m.push(x);
        }
    }
}

fn corrupt_count(rng: &mut Rng, m: &mut Vec<u8>, from: usize) {
    let cands = count_candidates(m, from);
    if cands.is_empty() {
        return;
    }
    let (at, width) = rng.pick(&cands);
    match width {
        4 => {
            let v = rng.pick(&[
                -1i32,
                -2,
                0,
                i32::MAX,
                i32::MIN,
                0x0001_0000,
                1 << 24,
                0x7fff,
                17,
                1000,
            ]);
            overwrite(m, at, &v.to_be_bytes());
        }
        2 => {
            let v = rng.pick(&[-1i16, -2, 0, i16::MAX, i16::MIN, 0x7ff0, 255, 1000]);
            overwrite(m, at, &v.to_be_bytes());
        }
        _ => {
            let v: &[u8] = rng.pick::<&[u8]>(&[
                &[0x00][..],                               // null / -1
                &[0xff, 0xff, 0xff, 0xff, 0x0f][..],       // u32::MAX
                &[0xff, 0xff, 0xff, 0xff, 0x07][..],       // 2^31 - 1
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01][..], // over-long varint
                &[0xff][..],                               // unterminated varint
                &[0x7f][..],                               // 126 elements
                &[0xe8, 0x07][..],                         // 999
            ]);
            // Replace the one-byte length with the (possibly longer) varint.
            m.splice(at..at + 1, v.iter().copied());
        }
    }
}

fn mutate_frame(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    // Mostly keep api key, version and correlation id so that the body
    // decoders get the mutations; sometimes hit the header too.
    let from = if rng.percent(85) { 8 } else { 0 };
    for _ in 0..rng.range(1, 3) {
        let len = m.len();
        if len <= from {
            break;
        }
        match rng.below(8) {
            0 | 1 => {
                let p = rng.range(from, len - 1);
                m[p] ^= 1 << rng.below(8);
            }
            2 => {
                let p = rng.range(from, len - 1);
                m[p] = rng.byte();
            }
            3 => m.truncate(rng.range(from, len - 1)),
            4 | 5 => corrupt_count(rng, &mut m, from),
            6 => {
                let p = rng.range(from, len);
                let n = rng.range(1, 32);
                let ins = rng.bytes(n);
                m.splice(p..p, ins);
            }
            _ => {
                let p = rng.range(from, len - 1);
                let v = rng.pick(&[-1i32, 0, i32::MAX, i32::MIN, 1]);
                overwrite(&mut m, p, &v.to_be_bytes());
            }
        }
    }
    m
}

/// The broker's advertised (api, min, max), from ApiVersions.
type Ranges = Vec<(i16, i16, i16)>;

fn advertised(addr: &str) -> (ApiVersionsResponse, Ranges) {
    let mut c = Conn::open(addr, Duration::from_secs(10));
    let v: ApiVersionsResponse = c
        .call(ApiKey::ApiVersions, 3, &api_versions_request())
        .expect("ApiVersions v3");
    let ranges = v
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    (v, ranges)
}

/// Checks a response to the mutated frame: its correlation id, and that it
/// decodes for the api/version the (mutated) header asked for.
fn check_response(frame: &[u8], sent: &[u8], ranges: &Ranges) -> Result<(), String> {
    if sent.len() < 8 {
        return Err("a frame shorter than a header was answered".into());
    }
    let key = i16::from_be_bytes([sent[0], sent[1]]);
    let mut version = i16::from_be_bytes([sent[2], sent[3]]);
    let corr = i32::from_be_bytes([sent[4], sent[5], sent[6], sent[7]]);
    let api = ApiKey::try_from(key).map_err(|_| format!("unknown API key {key} was answered"))?;
    let supported = ranges
        .iter()
        .any(|&(k, lo, hi)| k == key && (lo..=hi).contains(&version));
    if !supported {
        if api == ApiKey::ApiVersions {
            version = 0; // KIP-511 fallback answer
        } else {
            return Err(format!("unsupported {api:?} v{version} was answered"));
        }
    }
    let mut buf = Bytes::copy_from_slice(frame);
    let header = ResponseHeader::decode(&mut buf, response_header_version(api, version))
        .map_err(|e| format!("{api:?} v{version}: bad response header: {e}"))?;
    if header.correlation_id != corr {
        return Err(format!(
            "{api:?} v{version}: correlation id {} for request {corr}",
            header.correlation_id
        ));
    }
    ResponseKind::decode(api, &mut buf, version)
        .map_err(|e| format!("{api:?} v{version}: undecodable response: {e}"))?;
    if !buf.is_empty() {
        return Err(format!("{api:?} v{version}: {} trailing bytes", buf.len()));
    }
    Ok(())
}

const PROBE_CORR: i32 = 0x7A11_7A11;

enum FrameOutcome {
    Answered,
    Silent,
    Closed,
    Stalled,
}

fn frame_case(
    addr: &str,
    rng: &mut Rng,
    templates: &[Template],
    ranges: &Ranges,
) -> Result<(&'static str, FrameOutcome), String> {
    let t = &templates[rng.below(templates.len())];
    let m = mutate_frame(rng, &t.payload);
    let mut c = Conn::open(addr, Duration::from_secs(3));
    let ctx = |e: String| format!("{}: {e}; sent {}", t.name, preview(&m));

    // Sometimes: a size prefix that promises more than arrives, then EOF.
    if rng.percent(3) {
        let mut frame = ((m.len() + rng.range(1, 100)) as i32)
            .to_be_bytes()
            .to_vec();
        frame.extend_from_slice(&m);
        let _ = c.s.write_all(&frame);
        let _ = c.s.shutdown(Shutdown::Write);
        return match c.recv_raw() {
            Rx::Closed => Ok((t.name, FrameOutcome::Closed)),
            Rx::Frame(_) => Err(ctx("a truncated frame was answered".into())),
            Rx::Timeout => Err(ctx("a truncated frame + EOF did not close".into())),
        };
    }

    let probe_corr = if m.len() >= 8 && m[4..8] == PROBE_CORR.to_be_bytes() {
        PROBE_CORR + 1
    } else {
        PROBE_CORR
    };
    let probe = encode_request(
        ApiKey::ApiVersions,
        0,
        probe_corr,
        &ApiVersionsRequest::default(),
    );
    c.send_raw(&m);
    c.send_raw(&probe);
    let mut answered = false;
    for _ in 0..2 {
        match c.recv_raw() {
            Rx::Closed => return Ok((t.name, FrameOutcome::Closed)),
            Rx::Timeout => return Ok((t.name, FrameOutcome::Stalled)),
            Rx::Frame(f) => {
                if f.len() >= 4 && f[0..4] == probe_corr.to_be_bytes() {
                    let v: ApiVersionsResponse =
                        decode_response(ApiKey::ApiVersions, 0, probe_corr, &f);
                    if v.error_code != 0 {
                        return Err(ctx(format!("probe ApiVersions error {}", v.error_code)));
                    }
                    let outcome = if answered {
                        FrameOutcome::Answered
                    } else {
                        FrameOutcome::Silent
                    };
                    return Ok((t.name, outcome));
                }
                if answered {
                    return Err(ctx("two responses to one request".into()));
                }
                check_response(&f, &m, ranges).map_err(ctx)?;
                answered = true;
            }
        }
    }
    Err(ctx("probe not answered after the response".into()))
}

fn assert_broker_serves(addr: &str, ranges_before: &Ranges, what: &str) {
    let (v, ranges) = advertised(addr);
    assert_eq!(v.error_code, 0, "{what}: ApiVersions error");
    assert_eq!(&ranges, ranges_before, "{what}: advertised APIs changed");
    let mut c = Conn::open(addr, Duration::from_secs(10));
    let m: MetadataResponse = c
        .call(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(FUZZ_TOPIC)))
            ])),
        )
        .unwrap_or_else(|e| panic!("{what}: Metadata: {e}"));
    assert_eq!(m.brokers.len(), 1, "{what}: one broker");
    assert_eq!(m.topics.len(), 1, "{what}: one topic");
    let topic = &m.topics[0];
    assert_eq!(topic.error_code, 0, "{what}: topic error");
    assert_eq!(topic.name.as_ref().map(|n| n.0.as_str()), Some(FUZZ_TOPIC));
    assert_eq!(topic.partitions.len(), 2, "{what}: partitions");
    for p in &topic.partitions {
        assert_eq!(p.error_code, 0);
        assert_eq!(p.leader_id.0, m.brokers[0].node_id.0, "{what}: leader");
    }
}

#[test]
fn fuzz_request_frames() {
    let seed = seed();
    let cases = env_u64("FUZZ_FRAME_CASES").unwrap_or(3000) as usize;
    let only = env_u64("FUZZ_CASE").map(|c| c as usize);
    let dir = scratch("fuzz-frames");
    let mut broker = Broker::start(dir.path(), "");
    let addr = broker.bootstrap.clone();

    // A topic with data, so Fetch and Produce templates hit real partitions.
    let mut c = Conn::open(&addr, Duration::from_secs(20));
    let mut create = create_topics_request(FUZZ_TOPIC, false);
    create.topics[0].num_partitions = 2;
    // No retention override: the data must outlive the run.
    create.topics[0].configs.clear();
    let r: CreateTopicsResponse = c
        .call(ApiKey::CreateTopics, 7, &create)
        .expect("CreateTopics");
    assert_eq!(
        r.topics[0].error_code, 0,
        "create {FUZZ_TOPIC}: {:?}",
        r.topics[0].error_message
    );
    let r: ProduceResponse = c
        .call(ApiKey::Produce, 9, &produce_request(-1, 30_000))
        .expect("Produce");
    let pr = &r.responses[0].partition_responses[0];
    assert_eq!(pr.error_code, 0, "setup produce: {:?}", pr.error_message);
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request()).expect("Fetch");
    let first_records = r.responses[0].partitions[0]
        .records
        .clone()
        .unwrap_or_default();
    assert!(
        !first_records.is_empty(),
        "setup: fetched the produced batch"
    );
    drop(c);
    let (_, ranges) = advertised(&addr);
    let templates = templates();
    // Every template is valid as is: answered, decodable.
    for t in &templates {
        let mut c = Conn::open(&addr, Duration::from_secs(10));
        c.send_raw(&t.payload);
        match c.recv_raw() {
            Rx::Frame(f) => check_response(&f, &t.payload, &ranges)
                .unwrap_or_else(|e| panic!("template {}: {e}", t.name)),
            _ => panic!("template {} not answered", t.name),
        }
    }

    // A bystander connection opened before the storm.
    let mut bystander = Conn::open(&addr, Duration::from_secs(10));
    let start = Instant::now();
    let mut stats: BTreeMap<(&'static str, &'static str), usize> = BTreeMap::new();
    let mut stalls = Vec::new();
    for i in 0..cases {
        if only.is_some_and(|o| o != i) {
            continue;
        }
        let mut rng = Rng::for_case(seed, 2, i);
        let (name, outcome) = frame_case(&addr, &mut rng, &templates, &ranges).unwrap_or_else(|e| {
            panic!(
                "frame fuzz case {i} failed (FUZZ_SEED={seed:#x} FUZZ_CASE={i}): {e}\nbroker running: {}",
                broker.is_running()
            )
        });
        let label = match outcome {
            FrameOutcome::Answered => "answered",
            FrameOutcome::Silent => "silent",
            FrameOutcome::Closed => "closed",
            FrameOutcome::Stalled => {
                // A long poll the mutation asked for (e.g. Fetch max_wait and
                // min_bytes both corrupted) is legitimate; the broker must
                // still serve everyone else meanwhile.
                stalls.push(i);
                assert!(
                    broker.is_running(),
                    "broker died on case {i} (seed {seed:#x})"
                );
                assert_broker_serves(&addr, &ranges, &format!("while case {i} stalls"));
                "stalled"
            }
        };
        *stats.entry((name, label)).or_default() += 1;
        if i % 500 == 499 {
            assert!(
                broker.is_running(),
                "broker died by case {i} (seed {seed:#x})"
            );
            let v: ApiVersionsResponse = bystander
                .call(ApiKey::ApiVersions, 3, &api_versions_request())
                .unwrap_or_else(|e| panic!("bystander after case {i}: {e}"));
            assert_eq!(v.error_code, 0);
        }
    }
    eprintln!(
        "frame fuzz: {} of {cases} cases in {:?} (seed {seed:#x}); stalled cases {stalls:?}",
        stats.values().sum::<usize>(),
        start.elapsed()
    );
    for ((name, label), n) in &stats {
        eprintln!("  {name:16} {label:9} {n}");
    }
    assert!(
        stalls.len() <= cases / 100 + 1,
        "too many stalled requests ({}): {stalls:?}",
        stalls.len()
    );
    assert!(broker.is_running(), "broker died during frame fuzzing");
    assert_broker_serves(&addr, &ranges, "after fuzzing");
    // The data written before the storm is intact.
    let mut c = Conn::open(&addr, Duration::from_secs(10));
    let r: FetchResponse = c.call(ApiKey::Fetch, 12, &fetch_request()).expect("Fetch");
    let p0 = &r.responses[0].partitions[0];
    assert_eq!(p0.error_code, 0);
    let records = p0.records.clone().unwrap_or_default();
    assert!(
        records.len() >= first_records.len() && records[..first_records.len()] == first_records[..],
        "the first batch of {FUZZ_TOPIC}-0 changed"
    );
    let log = broker.log();
    let panics: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("panicked"))
        .take(5)
        .collect();
    assert!(
        panics.is_empty(),
        "broker panicked while fuzzed:\n{}",
        panics.join("\n")
    );
}
