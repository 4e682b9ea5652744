//! Embedded and gateway mode side by side (tests/edge_parity.rs): broker E
//! (embedded back end) and gateway G in front of an upstream Portcullis U,
//! with the same users and the very same ACL file; a raw Kafka connection
//! per side; and the comparison of answers (field by field, after
//! normalizing what legitimately differs) and of audit records.
//!
//! Included with `#[path]` by the test file, so `tests/common/mod.rs` stays
//! as it is.

use std::collections::BTreeMap;
use std::fmt;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    RequestHeader, ResponseHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use serde_json::Value;

use crate::common::audit_files::raw_lines;
use crate::common::{raw_request, scratch, strip_ansi, tail, wait_for, Broker};

pub const DEADLINE: Duration = Duration::from_secs(30);

pub fn password_of(user: &str) -> String {
    format!("{user}-Parity-Secret-7")
}

// ---------------------------------------------------------------------------
// Login helper. Isolated on purpose: to be replaced by the shared Kafka
// client module (`portcullis::client`, issue #13 item 3) once it exists.
// The SCRAM arithmetic is the crate's own client, not a new copy.
// ---------------------------------------------------------------------------

/// A raw Kafka connection.
pub struct Conn {
    stream: TcpStream,
    /// Our side's port: how the broker's audit records name this connection.
    pub port: u16,
}

impl Conn {
    pub fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let port = stream.local_addr().unwrap().port();
        Conn { stream, port }
    }

    /// One request, its answer; `Err` when the broker closed the
    /// connection or sent something that does not decode.
    pub fn call<R: Request>(
        &mut self,
        correlation_id: i32,
        version: i16,
        req: &R,
    ) -> Result<R::Response, String> {
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("parity")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, R::header_version(version))
            .and_then(|_| req.encode(&mut buf, version))
            .map_err(|e| format!("cannot encode the request: {e}"))?;
        let resp = raw_request(&mut self.stream, &buf)
            .ok_or_else(|| "connection closed without an answer".to_string())?;
        let mut resp = Bytes::from(resp);
        let header = ResponseHeader::decode(&mut resp, R::Response::header_version(version))
            .map_err(|e| format!("undecodable response header: {e}"))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "answer for correlation id {} to request {correlation_id}",
                header.correlation_id
            ));
        }
        R::Response::decode(&mut resp, version).map_err(|e| format!("undecodable answer: {e}"))
    }

    /// SaslHandshake v1 + SaslAuthenticate v2 with SCRAM-SHA-512,
    /// correlation ids 1..=3; the server's signature is verified.
    pub fn login(addr: &str, user: &str, password: &str) -> Conn {
        use portcullis::client::ScramClient;
        let mut c = Conn::open(addr);
        let hs: SaslHandshakeResponse = c
            .call(
                1,
                1,
                &SaslHandshakeRequest::default()
                    .with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512")),
            )
            .unwrap_or_else(|e| panic!("SaslHandshake to {addr}: {e}"));
        assert_eq!(hs.error_code, 0, "SaslHandshake to {addr}");
        let auth = |c: &mut Conn, corr: i32, bytes: Vec<u8>| -> SaslAuthenticateResponse {
            let r: SaslAuthenticateResponse = c
                .call(
                    corr,
                    2,
                    &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes)),
                )
                .unwrap_or_else(|e| panic!("SaslAuthenticate to {addr}: {e}"));
            assert_eq!(
                r.error_code, 0,
                "login of {user} at {addr}: {:?}",
                r.error_message
            );
            r
        };
        let scram = ScramClient::new(user, password);
        let first = auth(&mut c, 2, scram.first());
        let (client_final, awaiting) = scram
            .respond(&first.auth_bytes)
            .unwrap_or_else(|e| panic!("server-first from {addr}: {e}"));
        let last = auth(&mut c, 3, client_final);
        awaiting
            .verify(&last.auth_bytes)
            .unwrap_or_else(|e| panic!("server-final from {addr}: {e}"));
        c
    }
}

// ---------------------------------------------------------------------------
// Setup: E, and G in front of U
// ---------------------------------------------------------------------------

pub struct Sides {
    // Drop order: the gateway, its upstream, the embedded broker, then the
    // directory.
    pub gw: Broker,
    pub up: Broker,
    pub emb: Broker,
    pub emb_audit: PathBuf,
    pub gw_audit: PathBuf,
    _dir: tempfile::TempDir,
}

/// Waits until `broker` has loaded a credential store of `users` users
/// (the CLI writes the file; the broker's watcher picks it up).
fn wait_users_loaded(broker: &Broker, users: usize, what: &str) {
    let want = format!("users={users}");
    wait_for(&format!("{what} to load {users} users"), DEADLINE, || {
        strip_ansi(&broker.log())
            .lines()
            .any(|l| l.contains("credential file reloaded") && l.ends_with(&want))
            .then_some(())
    });
}

impl Sides {
    /// E and G each get a SASL_PLAINTEXT listener, `users` (password
    /// `password_of`) next to the `admin` they create, an audit log that
    /// records every decision, and the same ACL file with `acl_rules`. U is
    /// PLAINTEXT and lets the gateway (User:ANONYMOUS there) do anything.
    pub fn start(name: &str, acl_rules: &str, users: &[&str]) -> Sides {
        let dir = scratch(name);
        let acl = dir.path().join("acls.yaml");
        std::fs::write(&acl, acl_rules).unwrap();
        let emb_dir = dir.path().join("emb");
        let up_dir = dir.path().join("up");
        let gw_dir = dir.path().join("gw");
        let emb_audit = emb_dir.join("audit/audit.log");
        let gw_audit = gw_dir.join("audit/audit.log");

        let emb = Broker::start_listeners(
            &emb_dir,
            &["SASL_PLAINTEXT"],
            &format!(
                "acl:\n  file: {}\naudit:\n  file: {}\n  allow_level: all\n",
                acl.display(),
                emb_audit.display()
            ),
        );
        let up = Broker::start(
            &up_dir,
            "super_users: [\"User:admin\", \"User:ANONYMOUS\"]\n",
        );
        let gw_yaml = format!(
            "backend: gateway\ngateway:\n  bootstrap_servers: [\"{up}\"]\n  security_protocol: PLAINTEXT\nsasl:\n  credentials: {creds}\naudit:\n  file: {audit}\n  allow_level: all\nacl:\n  file: {acl}\n",
            up = up.addr("PLAINTEXT"),
            creds = gw_dir.join("credentials.yaml").display(),
            audit = gw_audit.display(),
            acl = acl.display(),
        );
        let gw = Broker::start_listeners(&gw_dir, &["SASL_PLAINTEXT"], &gw_yaml);
        for (b, what) in [(&emb, "the embedded broker"), (&gw, "the gateway")] {
            assert!(
                b.admin_password.is_some(),
                "{what} did not create its admin user; log:\n{}",
                tail(&b.log(), 40)
            );
            for u in users {
                b.add_user(u, &password_of(u));
            }
            wait_users_loaded(b, users.len() + 1, what);
        }
        Sides {
            gw,
            up,
            emb,
            emb_audit,
            gw_audit,
            _dir: dir,
        }
    }

    pub fn emb_addr(&self) -> &str {
        self.emb.addr("SASL_PLAINTEXT")
    }

    pub fn gw_addr(&self) -> &str {
        self.gw.addr("SASL_PLAINTEXT")
    }

    pub fn login_emb(&self, user: &str) -> Conn {
        Conn::login(self.emb_addr(), user, &self.password(&self.emb, user))
    }

    pub fn login_gw(&self, user: &str) -> Conn {
        Conn::login(self.gw_addr(), user, &self.password(&self.gw, user))
    }

    fn password(&self, b: &Broker, user: &str) -> String {
        if user == "admin" {
            b.admin_password.clone().unwrap()
        } else {
            password_of(user)
        }
    }

    /// The ends of the three brokers' logs, for failure messages.
    pub fn logs(&self) -> String {
        [
            ("embedded", &self.emb),
            ("gateway", &self.gw),
            ("upstream", &self.up),
        ]
        .iter()
        .map(|(what, b)| {
            format!(
                "--- {what} log ({}):\n{}",
                b.dir.join("broker.log").display(),
                tail(&b.log(), 30)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
    }
}

// ---------------------------------------------------------------------------
// Differences
// ---------------------------------------------------------------------------

/// One way the two modes answered or audited the same request differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub request: String,
    pub field: String,
    pub embedded: String,
    pub gateway: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\n    embedded: {}\n    gateway:  {}",
            self.request, self.field, self.embedded, self.gateway
        )
    }
}

const ABSENT: &str = "(absent)";

/// A compared value, and what was really sent when normalization replaced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    pub compared: String,
    pub raw: String,
}

impl Leaf {
    fn plain(v: String) -> Leaf {
        Leaf {
            compared: v.clone(),
            raw: v,
        }
    }

    fn shown(&self) -> String {
        if self.compared == self.raw {
            self.raw.clone()
        } else {
            format!("{} (compared as {})", self.raw, self.compared)
        }
    }
}

fn diff_maps(
    request: &str,
    prefix: &str,
    emb: &BTreeMap<String, Leaf>,
    gw: &BTreeMap<String, Leaf>,
    out: &mut Vec<Difference>,
) {
    let mut keys: Vec<&String> = emb.keys().chain(gw.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (e, g) = (emb.get(k), gw.get(k));
        if e.map(|l| &l.compared) != g.map(|l| &l.compared) {
            out.push(Difference {
                request: request.to_string(),
                field: format!("{prefix}{k}"),
                embedded: e.map_or(ABSENT.to_string(), Leaf::shown),
                gateway: g.map_or(ABSENT.to_string(), Leaf::shown),
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Answers, field by field
// ---------------------------------------------------------------------------

/// Fields whose values legitimately differ between the modes (addresses,
/// ids each cluster assigns, throttling, authorized-operations bitsets):
/// compared only as "a real value" versus Kafka's "none" values (-1, "").
const VARYING: &[&str] = &[
    "throttle_time_ms",
    "node_id",
    "host",
    "port",
    "cluster_id",
    "controller_id",
    "topic_id",
    "leader_id",
    "replica_nodes",
    "isr_nodes",
    "offline_replicas",
    "member_id",
    "producer_id",
    "topic_authorized_operations",
    "cluster_authorized_operations",
    "authorized_operations",
];

/// Fields that name a list element: elements are matched by them, not by
/// position, so answers compare whatever order they list things in.
const LABELS: &[&str] = &[
    "name",
    "topic",
    "key",
    "group_id",
    "transactional_id",
    "resource_name",
    "user",
    "partition_index",
    "index",
];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Struct,
    List,
    Tuple,
}

#[derive(Clone)]
enum Comp {
    Field(String),
    /// A list element: its index in `flatten`'s `elems`.
    Elem(usize),
    /// Inside `Some(..)` and newtypes: not shown.
    Pos,
}

/// The leaves of an answer's `{:#?}` rendering as `path -> value`, list
/// elements named by their label field, `VARYING` fields normalized.
pub fn flatten(debug: &str) -> BTreeMap<String, Leaf> {
    // (position in its list, label)
    let mut elems: Vec<(usize, Option<String>)> = Vec::new();
    let mut stack: Vec<(Comp, Kind, usize)> = Vec::new();
    let mut leaves: Vec<(Vec<Comp>, String)> = Vec::new();
    for line in debug.lines() {
        let t = line.trim();
        let t = t.strip_suffix(',').unwrap_or(t);
        if t.is_empty() {
            continue;
        }
        if matches!(t, "}" | "]" | ")") {
            stack.pop();
            continue;
        }
        let (comp, rest) = match t.split_once(": ") {
            Some((n, rest))
                if !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                (Comp::Field(n.to_string()), rest)
            }
            _ => match stack.last_mut() {
                Some((_, Kind::List, count)) => {
                    elems.push((*count, None));
                    *count += 1;
                    (Comp::Elem(elems.len() - 1), t)
                }
                _ => (Comp::Pos, t),
            },
        };
        let opens = match rest.chars().last() {
            Some('{') => Some(Kind::Struct),
            Some('[') => Some(Kind::List),
            Some('(') => Some(Kind::Tuple),
            _ => None,
        };
        if let Some(kind) = opens {
            stack.push((comp, kind, 0));
            continue;
        }
        let mut path: Vec<Comp> = stack.iter().map(|(c, _, _)| c.clone()).collect();
        path.push(comp);
        // A label: `<elem> label_field (Pos)*` -> value.
        if let Some(at) = path.iter().rposition(|c| matches!(c, Comp::Elem(_))) {
            if let (Comp::Elem(id), Some(Comp::Field(f))) = (&path[at], path.get(at + 1)) {
                if LABELS.contains(&f.as_str())
                    && path[at + 2..].iter().all(|c| matches!(c, Comp::Pos))
                    && elems[*id].1.is_none()
                {
                    elems[*id].1 = Some(rest.trim_matches('"').to_string());
                }
            }
        }
        leaves.push((path, rest.to_string()));
    }
    let mut out = BTreeMap::new();
    for (path, value) in leaves {
        let mut key = String::new();
        let mut varying = false;
        for c in &path {
            match c {
                Comp::Field(f) => {
                    varying |= VARYING.contains(&f.as_str());
                    if !key.is_empty() {
                        key.push('.');
                    }
                    key.push_str(f);
                }
                Comp::Elem(id) => match &elems[*id] {
                    (_, Some(label)) => key.push_str(&format!("[{label}]")),
                    (i, None) => key.push_str(&format!("[#{i}]")),
                },
                Comp::Pos => {}
            }
        }
        let compared = if varying && !matches!(value.as_str(), "-1" | "\"\"" | "None" | "[]") {
            "<varies>".to_string()
        } else {
            value.clone()
        };
        while out.contains_key(&key) {
            key.push_str(" (again)");
        }
        out.insert(
            key,
            Leaf {
                compared,
                raw: value,
            },
        );
    }
    out
}

/// Compares two answers (or the reasons there was none) field by field.
pub fn diff_answers<T: fmt::Debug>(
    request: &str,
    emb: &Result<T, String>,
    gw: &Result<T, String>,
    out: &mut Vec<Difference>,
) {
    match (emb, gw) {
        (Ok(e), Ok(g)) => diff_maps(
            request,
            "answer ",
            &flatten(&format!("{e:#?}")),
            &flatten(&format!("{g:#?}")),
            out,
        ),
        (Err(e), Err(g)) if e == g => {}
        _ => out.push(Difference {
            request: request.to_string(),
            field: "answer".to_string(),
            embedded: short(emb),
            gateway: short(gw),
        }),
    }
}

fn short<T: fmt::Debug>(r: &Result<T, String>) -> String {
    match r {
        Ok(v) => {
            let s = format!("{v:?}");
            match s.char_indices().nth(400) {
                Some((i, _)) => format!("{}...", &s[..i]),
                None => s,
            }
        }
        Err(e) => format!("no answer: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Audit records
// ---------------------------------------------------------------------------

/// Fields of an audit record that legitimately differ between the modes
/// (or between any two connections): everything else is compared.
const AUDIT_VARYING: &[&str] = &[
    "v",
    "seq",
    "prev_hash",
    "time",
    "client_address",
    "client_port",
    "listener",
    "correlation_id",
];

pub fn audit_records(log: &Path) -> Vec<Value> {
    raw_lines(log)
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line is not JSON ({e}): {l}"))
        })
        .collect()
}

/// The records a request made: those of its connection (client port) and
/// correlation id.
pub fn records_of(recs: &[Value], port: u16, correlation_id: i32) -> Vec<&Value> {
    recs.iter()
        .filter(|r| {
            r.get("client_port").and_then(Value::as_u64) == Some(port as u64)
                && r.get("correlation_id").and_then(Value::as_i64) == Some(correlation_id as i64)
        })
        .collect()
}

/// Waits (deadline, no sleep beyond polling) until `log` holds a record of
/// this connection and correlation id; false at the deadline.
pub fn wait_record(log: &Path, port: u16, correlation_id: i32) -> bool {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if !records_of(&audit_records(log), port, correlation_id).is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn audit_fields(r: &Value) -> BTreeMap<String, Leaf> {
    r.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !AUDIT_VARYING.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), Leaf::plain(v.to_string())))
        .collect()
}

/// What a record is about: records of the two sides are paired by it, and
/// then compared field by field.
fn audit_key(f: &BTreeMap<String, Leaf>) -> String {
    [
        "event",
        "resource_type",
        "resource_name",
        "sample",
        "operation",
        "action",
    ]
    .iter()
    .filter_map(|k| f.get(*k).map(|v| format!("{k}={}", v.raw)))
    .collect::<Vec<_>>()
    .join(" ")
}

/// Compares the audit records two sides wrote for one request.
pub fn diff_audit(request: &str, emb: &[&Value], gw: &[&Value], out: &mut Vec<Difference>) {
    let group = |recs: &[&Value]| {
        let mut m: BTreeMap<String, Vec<BTreeMap<String, Leaf>>> = BTreeMap::new();
        for r in recs {
            let f = audit_fields(r);
            m.entry(audit_key(&f)).or_default().push(f);
        }
        m
    };
    let (e, g) = (group(emb), group(gw));
    let mut keys: Vec<&String> = e.keys().chain(g.keys()).collect();
    keys.sort();
    keys.dedup();
    let none = Vec::new();
    for k in keys {
        let (es, gs) = (e.get(k).unwrap_or(&none), g.get(k).unwrap_or(&none));
        for i in 0..es.len().max(gs.len()) {
            match (es.get(i), gs.get(i)) {
                (Some(a), Some(b)) => diff_maps(request, &format!("audit {{{k}}} "), a, b, out),
                (a, b) => out.push(Difference {
                    request: request.to_string(),
                    field: format!("audit record {{{k}}}"),
                    embedded: a.map_or(ABSENT.to_string(), record_text),
                    gateway: b.map_or(ABSENT.to_string(), record_text),
                }),
            }
        }
    }
}

fn record_text(fields: &BTreeMap<String, Leaf>) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("\"{k}\":{}", v.raw))
        .collect();
    format!("{{{}}}", parts.join(","))
}
