//! Helpers of tests/gateway_kafka.rs (included there with `#[path]`): a
//! Portcullis gateway process in front of the harness's real Kafka cluster
//! (tests/common/kafka.rs), raw Kafka requests to a node's internal
//! PLAINTEXT listener (the harness's super user `User:ANONYMOUS`), Kafka's
//! dynamic broker loggers, and Kafka's request and authorizer logs parsed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use serde_json::Value;

use crate::common::strip_ansi;

/// The `portcullis` binary the gateway runs: `PORTCULLIS_BIN` when set (a
/// build of one's own when several worktrees share one target directory,
/// whose `target/debug/portcullis` is whichever was built last), else
/// Cargo's.
pub fn bin() -> PathBuf {
    match std::env::var_os("PORTCULLIS_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_portcullis")),
    }
}

// ---------------------------------------------------------------------------
// The gateway process
// ---------------------------------------------------------------------------

/// What the gateway printed on stdout.
#[derive(Default)]
struct Announced {
    /// Client listeners, `protocol -> host:port`.
    listening: BTreeMap<String, String>,
    /// Per-broker listeners, `upstream node id -> host:port` (SASL_SSL).
    nodes: BTreeMap<i32, String>,
    admin_password: Option<String>,
    lines: Vec<String>,
}

/// `portcullis serve` in gateway mode: one SASL_SSL client listener, its
/// own dev certificates, credential store, ACL file and audit log.
pub struct GatewayProc {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    announced: Arc<Mutex<Announced>>,
    /// Client listener `host:port` (the bootstrap address).
    pub bootstrap: String,
    pub admin_password: String,
}

pub struct GatewayOpts<'a> {
    /// Upstream `bootstrap_servers`.
    pub upstream: &'a [String],
    /// PEM CA the upstream's certificates chain to.
    pub upstream_ca: &'a Path,
    pub service_user: &'a str,
    pub service_password: &'a str,
    /// The gateway's own ACL file text.
    pub acl: &'a str,
}

impl GatewayProc {
    pub fn start(dir: &Path, opts: &GatewayOpts<'_>) -> GatewayProc {
        std::fs::create_dir_all(dir).unwrap();
        let certs = dir.join("certs");
        let acl = dir.join("gw-acls.yaml");
        std::fs::write(&acl, opts.acl).unwrap();
        let upstream: Vec<String> = opts.upstream.iter().map(|a| format!("\"{a}\"")).collect();
        let config = dir.join("portcullis.yaml");
        std::fs::write(
            &config,
            format!(
                "data_dir: {data}\n\
                 listeners:\n  - security_protocol: SASL_SSL\n    address: 127.0.0.1:0\n\
                 tls:\n  cert: {c}/server.crt\n  key: {c}/server.key\n\
                 certs:\n  dir: {c}\n  auto_generate: true\n\
                 sasl:\n  credentials: {creds}\n\
                 acl:\n  file: {acl}\n\
                 audit:\n  file: {audit}\n\
                 ops:\n  address: 127.0.0.1:0\n\
                 backend: gateway\n\
                 gateway:\n  bootstrap_servers: [{up}]\n  security_protocol: SASL_SSL\n  \
                 tls:\n    ca_file: {ca}\n  sasl:\n    username: {user}\n    password: {pw}\n",
                data = dir.join("data").display(),
                c = certs.display(),
                creds = dir.join("credentials.yaml").display(),
                acl = acl.display(),
                audit = dir.join("audit/audit.log").display(),
                up = upstream.join(", "),
                ca = opts.upstream_ca.display(),
                user = opts.service_user,
                pw = opts.service_password,
            ),
        )
        .unwrap();
        let mut gw = GatewayProc {
            child: None,
            dir: dir.to_path_buf(),
            config,
            announced: Arc::default(),
            bootstrap: String::new(),
            admin_password: String::new(),
        };
        gw.launch();
        gw
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = Command::new(bin())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("PORTCULLIS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start portcullis");
        let stdout = child.stdout.take().unwrap();
        let announced = self.announced.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut a = announced.lock().unwrap();
                if let Some(rest) = line.strip_prefix("portcullis: listening ") {
                    let url = rest.split_whitespace().next().unwrap_or("");
                    if let Some((proto, addr)) = url.split_once("://") {
                        a.listening.insert(proto.to_string(), addr.to_string());
                    }
                } else if let Some(rest) = line.strip_prefix("portcullis: gateway node ") {
                    let mut it = rest.split_whitespace();
                    let node = it.next().and_then(|n| n.parse::<i32>().ok());
                    let url = it.nth(1).unwrap_or("");
                    if let (Some(node), Some((_, addr))) = (node, url.split_once("://")) {
                        a.nodes.insert(node, addr.to_string());
                    }
                } else if let Some((_, pw)) = line.split_once("with password: ") {
                    a.admin_password = Some(pw.trim().to_string());
                }
                a.lines.push(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let a = self.announced.lock().unwrap();
                if let (Some(addr), Some(pw)) = (a.listening.get("SASL_SSL"), &a.admin_password) {
                    self.bootstrap = addr.clone();
                    self.admin_password = pw.clone();
                    break;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the gateway exited ({status}):\n{}", self.log_tail(40));
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not start; stdout {:?}\n{}",
                self.announced.lock().unwrap().lines,
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until the gateway announced a per-broker listener for each of
    /// `nodes`; returns `node id -> host:port`.
    pub fn wait_nodes(&self, nodes: &[i32]) -> BTreeMap<i32, String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let known = self.announced.lock().unwrap().nodes.clone();
            if nodes.iter().all(|n| known.contains_key(n)) {
                return known;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway announced per-broker listeners {known:?}, not all of {nodes:?}\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn node_addrs(&self) -> BTreeMap<i32, String> {
        self.announced.lock().unwrap().nodes.clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway runs").id()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("certs/ca.crt")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.join("audit/audit.log")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("broker.log")
    }

    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(self.log_path()).unwrap_or_default())
    }

    pub fn log_tail(&self, n: usize) -> String {
        format!(
            "--- gateway log ({}):\n{}",
            self.log_path().display(),
            crate::common::kafka::tail_lines(&self.log(), n)
        )
    }

    /// `portcullis user add NAME --password-stdin` against this gateway's
    /// config, then waits until the gateway loaded `users` users.
    pub fn add_user(&self, name: &str, password: &str, users: usize) {
        let mut child = Command::new(bin())
            .args(["user", "add", name, "--password-stdin", "--config"])
            .arg(&self.config)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("portcullis user add");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "user add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = format!("users={users}");
        crate::common::wait_for(
            &format!("the gateway to load {users} users"),
            Duration::from_secs(60),
            || {
                self.log()
                    .lines()
                    .any(|l| l.contains("credential file reloaded") && l.ends_with(&want))
                    .then_some(())
            },
        );
    }
}

impl Drop for GatewayProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Raw requests to a Kafka node's internal PLAINTEXT listener
// ---------------------------------------------------------------------------

/// One request/response on a new connection to `addr` (PLAINTEXT).
pub fn kafka_call<Q: Encodable, R: Decodable>(
    addr: &str,
    api: ApiKey,
    version: i16,
    req: &Q,
) -> Result<R, String> {
    let sock = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("portcullis-harness")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| e.to_string())?;
    req.encode(&mut buf, version).map_err(|e| e.to_string())?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&buf)
        .map_err(|e| format!("{api:?} to {addr}: {e}"))?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)
        .map_err(|e| format!("{api:?} from {addr}: {e}"))?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body)
        .map_err(|e| format!("{api:?} from {addr}: {e}"))?;
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, api.response_header_version(version))
        .map_err(|e| e.to_string())?;
    R::decode(&mut body, version).map_err(|e| e.to_string())
}

/// Sets (or, with `None`, resets to the root level) one of node `addr`'s
/// log4j loggers at runtime: IncrementalAlterConfigs on a BROKER_LOGGER
/// resource, what `kafka-configs --entity-type broker-loggers` sends.
pub fn set_broker_logger(addr: &str, node_id: i32, logger: &str, level: Option<&str>) {
    const BROKER_LOGGER: i8 = 8;
    let (op, value) = match level {
        Some(l) => (0, Some(StrBytes::from_string(l.to_string()))),
        None => (1, None),
    };
    let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(BROKER_LOGGER)
            .with_resource_name(StrBytes::from_string(node_id.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_string(logger.to_string()))
                .with_config_operation(op)
                .with_value(value)]),
    ]);
    let resp: IncrementalAlterConfigsResponse =
        kafka_call(addr, ApiKey::IncrementalAlterConfigs, 0, &req)
            .unwrap_or_else(|e| panic!("set logger {logger} of node {node_id}: {e}"));
    for r in &resp.responses {
        assert_eq!(
            r.error_code, 0,
            "set logger {logger}={level:?} on node {node_id}: {:?}",
            r.error_message
        );
    }
}

/// Kafka's own answer to FindCoordinator (groups) for `group`: the node id.
pub fn kafka_group_coordinator(addr: &str, group: &str) -> i32 {
    let req = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_string(group.to_string())]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let resp: Result<FindCoordinatorResponse, String> =
            kafka_call(addr, ApiKey::FindCoordinator, 4, &req);
        if let Ok(r) = &resp {
            if let Some(c) = r.coordinators.first() {
                if c.error_code == 0 {
                    return c.node_id.0;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "Kafka's coordinator of {group}: {resp:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// Kafka's request log and authorizer log
// ---------------------------------------------------------------------------

/// One `kafka.request.logger` DEBUG line: `Completed request:{json}`.
#[derive(Debug, Clone)]
pub struct RequestLine {
    /// `PRODUCE`, `FETCH`, `JOIN_GROUP`, ...
    pub api: String,
    pub listener: String,
    pub principal: String,
    pub client_id: String,
    /// `(topic, partition)` the request names (Produce, Fetch, ListOffsets,
    /// OffsetCommit, TxnOffsetCommit, AddPartitionsToTxn).
    pub partitions: Vec<(String, i32)>,
    /// The group it names (group APIs, TxnOffsetCommit, AddOffsetsToTxn).
    pub group: Option<String>,
    /// Every non-zero `errorCode` of the response (top level, per topic,
    /// per partition).
    pub errors: Vec<i64>,
    pub raw: String,
}

/// Every request-log line of `log` (a node's server.log text).
pub fn request_lines(log: &str) -> Vec<RequestLine> {
    log.lines()
        .filter_map(|l| {
            let at = l.find("Completed request:")?;
            let json = l[at + "Completed request:".len()..].trim_end();
            let json = json
                .strip_suffix("(kafka.request.logger)")
                .unwrap_or(json)
                .trim_end();
            let v: Value = serde_json::from_str(json).ok()?;
            let header = &v["requestHeader"];
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            let req = &v["request"];
            let mut partitions = Vec::new();
            // Produce: topicData[].name / partitionData[].index; Fetch:
            // topics[].topic / partitions[].partition; the commit APIs:
            // topics[].name / partitions[].partitionIndex; ListOffsets:
            // topics[].name / partitions[].partitionIndex.
            for list in ["topicData", "topics"] {
                for t in req[list].as_array().into_iter().flatten() {
                    let name = t["name"].as_str().or(t["topic"].as_str()).unwrap_or("");
                    for key in ["partitionData", "partitions"] {
                        for p in t[key].as_array().into_iter().flatten() {
                            let idx = p["index"]
                                .as_i64()
                                .or(p["partition"].as_i64())
                                .or(p["partitionIndex"].as_i64())
                                .or(p.as_i64());
                            if let Some(i) = idx {
                                partitions.push((name.to_string(), i as i32));
                            }
                        }
                    }
                }
            }
            let group = req["groupId"].as_str().map(str::to_string);
            let mut errors = Vec::new();
            error_codes(&v["response"], &mut errors);
            Some(RequestLine {
                api: s(&header["requestApiKeyName"]),
                listener: s(&v["listener"]),
                principal: s(&v["principal"]),
                client_id: s(&header["clientId"]),
                partitions,
                group,
                errors,
                raw: l.to_string(),
            })
        })
        .collect()
}

fn error_codes(v: &Value, out: &mut Vec<i64>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x.as_i64()) {
                    ("errorCode", Some(c)) if c != 0 => out.push(c),
                    _ => error_codes(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| error_codes(x, out)),
        _ => {}
    }
}

/// The principals of `kafka.authorizer.logger` lines (`Principal = User:x
/// is Allowed/Denied ...`), with how often each was decided.
pub fn authorizer_principals(log: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for l in log
        .lines()
        .filter(|l| l.contains("kafka.authorizer.logger"))
    {
        if let Some(rest) = l.split("Principal = ").nth(1) {
            let p = rest.split_whitespace().next().unwrap_or("").to_string();
            *out.entry(p).or_insert(0) += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Raw requests through the gateway
// ---------------------------------------------------------------------------

/// One client connection to a gateway listener (SASL_SSL, SCRAM-SHA-512),
/// for raw requests at chosen versions: what a Kafka client sends, without
/// a client library's retries hiding the answers. Blocking; it runs its own
/// runtime.
pub struct GwConn {
    rt: tokio::runtime::Runtime,
    conn: portcullis::client::Connection,
    pub addr: String,
}

impl GwConn {
    /// Connects, asks ApiVersions and logs in.
    pub fn connect(addr: &str, ca: &Path, user: &str, password: &str) -> Result<GwConn, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(async {
            let tls = portcullis::client::tls_connector(ca, None).map_err(|e| e.to_string())?;
            let mut conn = portcullis::client::Connector::tls(tls)
                .with_client_id("gk-raw")
                // Longer than the gateway's own upstream deadlines would
                // take to answer for a dead broker: no answer in this
                // time is a failure of the test, not a slow answer.
                .with_request_timeout(Some(Duration::from_secs(60)))
                .connect(addr)
                .await
                .map_err(|e| format!("connect {addr}: {e}"))?;
            conn.api_versions()
                .await
                .map_err(|e| format!("ApiVersions at {addr}: {e}"))?;
            conn.login_scram(user, password, None)
                .await
                .map_err(|e| format!("login at {addr}: {e}"))?;
            Ok::<_, String>(conn)
        })?;
        Ok(GwConn {
            rt,
            conn,
            addr: addr.to_string(),
        })
    }

    /// One request and its answer; `Err` when the connection failed (the
    /// gateway closed it, say).
    pub fn call<Q: Encodable, R: Decodable>(
        &mut self,
        api: ApiKey,
        version: i16,
        req: &Q,
    ) -> Result<R, String> {
        let addr = &self.addr;
        self.rt
            .block_on(self.conn.call(api, version, req))
            .map_err(|e| format!("{api:?} v{version} at {addr}: {e}"))
    }

    /// The versions of `api` the gateway offers on this connection, among
    /// `wanted`.
    pub fn versions(&self, api: ApiKey, wanted: &[i16]) -> Vec<i16> {
        wanted
            .iter()
            .copied()
            .filter(|v| self.conn.version(api, *v..=*v).is_ok())
            .collect()
    }
}
