//! What every admin command that talks to the running broker shares: the
//! connection flags, the connect-and-login logic, the `--output` switch and
//! how a broker's error code becomes an error a person (and a script, by
//! the exit code) can read. `group`, `topic`, `cluster` and `quota` use it,
//! so they reach the broker through the same edge, ACLs and audit as any
//! other Kafka client.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use portcullis::client::{Connection, Connector};
use portcullis::config::{Config, Overrides};

pub const TIMEOUT: Duration = Duration::from_secs(15);

const METADATA: std::ops::RangeInclusive<i16> = 1..=12;
const LIST_OFFSETS: std::ops::RangeInclusive<i16> = 1..=7;

/// ListOffsets timestamps: the log start and the end.
pub const EARLIEST: i64 = -2;
pub const LATEST: i64 = -1;

/// How to reach and log in to the broker. Global, so the flags may stand
/// before or after the subcommand; shown under their own heading.
#[derive(Args, Clone, Debug)]
#[command(next_help_heading = "Connection options")]
pub struct ConnectArgs {
    /// Broker config file (default: config/portcullis.yaml): the first
    /// listener, its protocol and the CA are used unless given below. For
    /// `topic create|alter`, a KEY=VALUE is a topic config instead
    /// (repeatable), as in Kafka's tools.
    #[arg(long = "config", global = true, value_name = "FILE|KEY=VALUE", value_parser = parse_config_flag)]
    pub config_flags: Vec<ConfigFlag>,
    /// host:port of the broker (default: the config's first listener).
    #[arg(long, global = true)]
    pub bootstrap: Option<String>,
    /// SCRAM user (default: $PORTCULLIS_USER or admin).
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Read the password from standard input (default: $PORTCULLIS_PASSWORD).
    #[arg(long, global = true)]
    pub password_stdin: bool,
    /// CA certificate for TLS listeners (default: <certs.dir>/ca.crt).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
}

/// One `--config`: the broker config file, or (with `=`) a topic config.
/// Both spellings are what people type: `--config` names our YAML in every
/// other command, and a topic config in Kafka's `kafka-topics`.
#[derive(Clone, Debug)]
pub enum ConfigFlag {
    File(PathBuf),
    Topic(String, String),
}

pub fn parse_config_flag(s: &str) -> Result<ConfigFlag, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('/') => {
            Ok(ConfigFlag::Topic(k.to_string(), v.to_string()))
        }
        _ if s.is_empty() => Err("empty".into()),
        _ => Ok(ConfigFlag::File(PathBuf::from(s))),
    }
}

/// The broker config file among `--config`s: the last one given, else the
/// default.
pub fn config_file(flags: &[ConfigFlag]) -> PathBuf {
    flags
        .iter()
        .rev()
        .find_map(|f| match f {
            ConfigFlag::File(p) => Some(p.clone()),
            ConfigFlag::Topic(..) => None,
        })
        .unwrap_or_else(|| PathBuf::from("config/portcullis.yaml"))
}

/// The KEY=VALUE topic configs among `--config`s, in order.
pub fn topic_configs(flags: &[ConfigFlag]) -> Vec<(String, String)> {
    flags
        .iter()
        .filter_map(|f| match f {
            ConfigFlag::Topic(k, v) => Some((k.clone(), v.clone())),
            ConfigFlag::File(_) => None,
        })
        .collect()
}

impl ConnectArgs {
    /// The broker config file: the last one given, else the default.
    pub fn config(&self) -> PathBuf {
        config_file(&self.config_flags)
    }

    /// The KEY=VALUE `--config`s, in order.
    pub fn topic_configs(&self) -> Vec<(String, String)> {
        topic_configs(&self.config_flags)
    }

    /// Refuses KEY=VALUE `--config`s where no topic config is taken.
    pub fn no_topic_configs(&self) -> anyhow::Result<()> {
        if let Some((k, v)) = self.topic_configs().first() {
            usage!(
                "--config {k}={v}: a topic config is taken by `topic create` and `topic alter` only; --config here names the broker config file"
            );
        }
        Ok(())
    }
}

/// `--output`: a table for people or one JSON document for scripts.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Aligned text.
    #[default]
    Text,
    /// One JSON document on standard output.
    Json,
}

/// The `--output` flag of the read commands (only theirs: a write
/// command has nothing to print as JSON).
#[derive(Args, Clone, Copy, Debug)]
pub struct OutputArgs {
    /// Output format: text, or JSON: one document (`audit tail`: one per
    /// record and line). `--json` is short for `--output json`.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Same as `--output json`.
    #[arg(long)]
    pub json: bool,
}

impl OutputArgs {
    pub fn json(&self) -> bool {
        self.json || self.output == Output::Json
    }
}

/// Prints `v` as one pretty JSON document.
pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// An error code the broker answered with. Kept typed so that `main` can
/// tell a refusal (authorization, exit code 3) from other failures.
#[derive(Debug)]
pub struct BrokerError {
    /// What was being done, e.g. "create topic `orders`".
    pub what: String,
    pub code: i16,
    pub message: Option<String>,
}

impl BrokerError {
    pub fn new(what: impl Into<String>, code: i16, message: Option<&str>) -> BrokerError {
        BrokerError {
            what: what.into(),
            code,
            message: message.filter(|m| !m.is_empty()).map(str::to_string),
        }
    }

    /// Refused for want of a permission (Kafka's *_AUTHORIZATION_FAILED
    /// codes) or a login: exit code 3.
    pub fn is_refusal(&self) -> bool {
        let name = error_name(self.code);
        name.ends_with("_AUTHORIZATION_FAILED") || name == "SASL_AUTHENTICATION_FAILED"
    }
}

impl std::fmt::Display for BrokerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.what, kafka_error(self.code))?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BrokerError {}

/// A usage mistake clap cannot see (flags that only make sense together,
/// nothing asked for): exit code 2, like clap's own.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// `Err(UsageError)`, as `bail!` does for other errors.
macro_rules! usage {
    ($($t:tt)*) => {
        return Err($crate::cli::connect::UsageError(format!($($t)*)).into())
    };
}
pub(crate) use usage;

/// `Err(BrokerError)` unless `code` is 0.
pub fn check(what: impl Into<String>, code: i16, message: Option<&StrBytes>) -> anyhow::Result<()> {
    if code == 0 {
        return Ok(());
    }
    Err(BrokerError::new(what, code, message.map(|m| m.as_str())).into())
}

/// Kafka's name of an error code, as its tools print it:
/// `TOPIC_AUTHORIZATION_FAILED`. kafka-protocol names the variants in
/// CamelCase, which converts one to one.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
        Some(e) => {
            let camel = e.to_string();
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

/// "NOT_COORDINATOR (16)"-style text for a Kafka error code.
pub fn kafka_error(code: i16) -> String {
    format!("{} ({code})", error_name(code))
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The cluster as a command sees it: a bootstrap address, how to connect
/// and log in, and one connection per broker address, opened on first use.
pub struct Cluster {
    pub bootstrap: String,
    connector: Connector,
    login: Option<(String, String)>,
    conns: HashMap<String, Connection>,
}

impl Cluster {
    /// Reads the config and the password; connects nothing yet.
    /// `client_id` names the command in the broker's logs and audit.
    pub fn new(args: &ConnectArgs, client_id: &str) -> anyhow::Result<Cluster> {
        args.no_topic_configs()?;
        let cfg = Config::load(&args.config(), &Overrides::default())?;
        let listener = cfg
            .listeners
            .first()
            .context("the config has no listener")?;
        let bootstrap = match &args.bootstrap {
            Some(b) => b.clone(),
            None => listener
                .advertised_address
                .clone()
                .unwrap_or_else(|| listener.address.clone()),
        };
        let proto = listener.security_protocol;
        let connector = if proto.uses_tls() {
            let ca = args
                .ca
                .clone()
                .unwrap_or_else(|| cfg.certs.dir.join("ca.crt"));
            Connector::tls(portcullis::client::tls_connector(&ca, None)?)
        } else {
            Connector::plaintext()
        }
        .with_client_id(client_id)
        .with_request_timeout(Some(TIMEOUT));
        let login = if proto.uses_sasl() {
            let user = args
                .user
                .clone()
                .or_else(|| std::env::var("PORTCULLIS_USER").ok())
                .unwrap_or_else(|| "admin".into());
            let password = if args.password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\n', '\r']).to_string()
            } else {
                std::env::var("PORTCULLIS_PASSWORD")
                    .context("give the password with --password-stdin or $PORTCULLIS_PASSWORD")?
            };
            Some((user, password))
        } else {
            None
        };
        Ok(Cluster {
            bootstrap,
            connector,
            login,
            conns: HashMap::new(),
        })
    }

    /// The SCRAM user this command logs in as, if the listener uses SASL.
    pub fn user(&self) -> Option<&str> {
        self.login.as_ref().map(|(u, _)| u.as_str())
    }

    /// The connection to `addr`: connected, versions known, logged in.
    pub async fn at(&mut self, addr: &str) -> anyhow::Result<&mut Connection> {
        if !self.conns.contains_key(addr) {
            let open = async {
                let mut c = self.connector.connect(addr).await?;
                c.api_versions().await?;
                if let Some((user, password)) = &self.login {
                    c.login_scram(user, password, None).await?;
                }
                anyhow::Ok(c)
            };
            let c = tokio::time::timeout(TIMEOUT, open)
                .await
                .map_err(|_| anyhow::anyhow!("{addr}: no connection within {TIMEOUT:?}"))?
                .with_context(|| format!("broker {addr}"))?;
            self.conns.insert(addr.to_string(), c);
        }
        Ok(self.conns.get_mut(addr).expect("inserted above"))
    }

    /// The connection to the bootstrap broker.
    pub async fn any(&mut self) -> anyhow::Result<&mut Connection> {
        let addr = self.bootstrap.clone();
        self.at(&addr).await
    }

    /// Metadata of `topics` (`None`: all). Never creates a topic.
    pub async fn metadata(&mut self, topics: Option<&[&str]>) -> anyhow::Result<MetadataResponse> {
        let c = self.any().await?;
        let v = c.version(ApiKey::Metadata, METADATA)?;
        let mut req = MetadataRequest::default().with_topics(topics.map(|t| {
            t.iter()
                .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                .collect()
        }));
        if v >= 4 {
            // Looking must not create a topic.
            req = req.with_allow_auto_topic_creation(false);
        }
        if (8..=10).contains(&v) {
            // The cluster's authorized operations (dropped from v11).
            req = req.with_include_cluster_authorized_operations(true);
        }
        if v >= 8 {
            req = req.with_include_topic_authorized_operations(true);
        }
        Ok(c.call(ApiKey::Metadata, v, &req).await?)
    }

    /// Offsets for `timestamp` (EARLIEST, LATEST or a time in ms) of
    /// `parts` of `topic`, each asked of its partition's leader.
    /// `committed`: the end is the last stable offset (read_committed),
    /// else the high watermark.
    pub async fn list_offsets(
        &mut self,
        md: &MetadataResponse,
        topic: &str,
        parts: &[i32],
        timestamp: i64,
        committed: bool,
    ) -> anyhow::Result<BTreeMap<i32, i64>> {
        let brokers: HashMap<BrokerId, String> = md
            .brokers
            .iter()
            .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
            .collect();
        let leaders: HashMap<i32, BrokerId> = md
            .topics
            .iter()
            .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic))
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.leader_id))
            })
            .collect();
        let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for p in parts {
            let addr = leaders
                .get(p)
                .and_then(|l| brokers.get(l))
                .with_context(|| format!("{topic} partition {p} has no leader"))?;
            by_leader.entry(addr.clone()).or_default().push(*p);
        }
        let mut out = BTreeMap::new();
        for (addr, ps) in by_leader {
            let c = self.at(&addr).await?;
            let v = c.version(ApiKey::ListOffsets, LIST_OFFSETS)?;
            let mut req = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        ps.iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            if v >= 2 && committed {
                req = req.with_isolation_level(1);
            }
            let r: ListOffsetsResponse = c.call(ApiKey::ListOffsets, v, &req).await?;
            for p in r.topics.iter().flat_map(|t| &t.partitions) {
                check(
                    format!("offsets of {topic} partition {}", p.partition_index),
                    p.error_code,
                    None,
                )?;
                out.insert(p.partition_index, p.offset);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(29), "TOPIC_AUTHORIZATION_FAILED");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert!(BrokerError::new("x", 31, None).is_refusal());
        assert!(!BrokerError::new("x", 36, None).is_refusal());
    }
}
