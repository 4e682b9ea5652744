//! `portcullis group list|describe|reset-offsets`: a Kafka client of the
//! running broker (librdkafka), so it goes through the same edge, ACLs and
//! audit as any other client.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use portcullis::config::{Config, Overrides, SecurityProtocol};

const TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Args)]
pub struct GroupArgs {
    /// Broker config: the first listener, its protocol and the CA are used
    /// unless given below.
    #[arg(long, global = true, default_value = "config/portcullis.yaml")]
    config: PathBuf,
    /// host:port of the broker (default: the config's first listener).
    #[arg(long, global = true)]
    bootstrap: Option<String>,
    /// SCRAM user (default: $PORTCULLIS_USER or admin).
    #[arg(long, global = true)]
    user: Option<String>,
    /// Read the password from standard input (default: $PORTCULLIS_PASSWORD).
    #[arg(long, global = true)]
    password_stdin: bool,
    /// CA certificate for TLS listeners (default: <certs.dir>/ca.crt).
    #[arg(long, global = true)]
    ca: Option<PathBuf>,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List consumer groups and their states.
    List,
    /// Members, assignments, committed offsets and lag per partition.
    Describe { name: String },
    /// Move a group's committed offsets (the group must be empty).
    ResetOffsets {
        name: String,
        #[arg(long)]
        topic: String,
        #[arg(long, group = "to")]
        to_earliest: bool,
        #[arg(long, group = "to")]
        to_latest: bool,
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// RFC 3339 time: the first offset at or after it.
        #[arg(long, group = "to")]
        to_datetime: Option<String>,
    },
}

fn client_config(args: &GroupArgs) -> anyhow::Result<ClientConfig> {
    let cfg = Config::load(&args.config, &Overrides::default())?;
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
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &bootstrap);
    let proto = listener.security_protocol;
    c.set("security.protocol", proto.to_string().to_lowercase());
    if proto.uses_tls() {
        let ca = args
            .ca
            .clone()
            .unwrap_or_else(|| cfg.certs.dir.join("ca.crt"));
        c.set("ssl.ca.location", ca.display().to_string());
    }
    if proto.uses_sasl() {
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
        c.set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    let _ = SecurityProtocol::Plaintext;
    Ok(c)
}

/// Decodes Kafka's ConsumerProtocolAssignment: version, [topic, [partition]].
fn parse_assignment(b: &[u8]) -> Vec<(String, Vec<i32>)> {
    fn i16_at(b: &[u8], at: usize) -> Option<i16> {
        Some(i16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    }
    fn i32_at(b: &[u8], at: usize) -> Option<i32> {
        Some(i32::from_be_bytes([
            *b.get(at)?,
            *b.get(at + 1)?,
            *b.get(at + 2)?,
            *b.get(at + 3)?,
        ]))
    }
    let mut out = Vec::new();
    let mut at = 2;
    let Some(n) = i32_at(b, at) else { return out };
    at += 4;
    for _ in 0..n.max(0) {
        let Some(len) = i16_at(b, at) else { break };
        at += 2;
        let Some(name) = b.get(at..at + len.max(0) as usize) else {
            break;
        };
        at += len.max(0) as usize;
        let Some(np) = i32_at(b, at) else { break };
        at += 4;
        let mut parts = Vec::new();
        for _ in 0..np.max(0) {
            let Some(p) = i32_at(b, at) else { break };
            at += 4;
            parts.push(p);
        }
        out.push((String::from_utf8_lossy(name).into_owned(), parts));
    }
    out
}

fn group_state(c: &BaseConsumer, name: &str) -> anyhow::Result<Option<String>> {
    let list = c.fetch_group_list(Some(name), TIMEOUT)?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == name)
        .map(|g| g.state().to_string()))
}

pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let base = client_config(&args)?;
    match &args.command {
        GroupCommand::List => {
            let c: BaseConsumer = base.create()?;
            let list = c.fetch_group_list(None, TIMEOUT)?;
            println!("{:<32} {:<20} {:<10} MEMBERS", "GROUP", "STATE", "PROTOCOL");
            for g in list.groups() {
                println!(
                    "{:<32} {:<20} {:<10} {}",
                    g.name(),
                    g.state(),
                    g.protocol_type(),
                    g.members().len()
                );
            }
        }
        GroupCommand::Describe { name } => {
            let c: BaseConsumer = base.clone().set("group.id", name).create()?;
            let list = c.fetch_group_list(Some(name), TIMEOUT)?;
            let Some(g) = list.groups().iter().find(|g| g.name() == name) else {
                bail!("group `{name}` not found");
            };
            println!(
                "group {name}: state {}, protocol {} {}",
                g.state(),
                g.protocol_type(),
                g.protocol()
            );
            let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
            for m in g.members() {
                let assigned = m.assignment().map(parse_assignment).unwrap_or_default();
                println!(
                    "member {} client {} host {}",
                    m.id(),
                    m.client_id(),
                    m.client_host()
                );
                for (t, ps) in &assigned {
                    println!("    {t}: {ps:?}");
                    for p in ps {
                        owner.insert((t.clone(), *p), m.client_id().to_string());
                    }
                }
            }
            let md = c.fetch_metadata(None, TIMEOUT)?;
            let mut tpl = TopicPartitionList::new();
            for t in md.topics() {
                for p in t.partitions() {
                    tpl.add_partition(t.name(), p.id());
                }
            }
            let committed = c.committed_offsets(tpl, TIMEOUT)?;
            println!(
                "{:<28} {:>9} {:>12} {:>12} {:>8}  OWNER",
                "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
            );
            for e in committed.elements() {
                let Offset::Offset(off) = e.offset() else {
                    continue;
                };
                let (_, high) = c.fetch_watermarks(e.topic(), e.partition(), TIMEOUT)?;
                let who = owner
                    .get(&(e.topic().to_string(), e.partition()))
                    .cloned()
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:>9} {:>12} {:>12} {:>8}  {who}",
                    e.topic(),
                    e.partition(),
                    off,
                    high,
                    high - off
                );
            }
        }
        GroupCommand::ResetOffsets {
            name,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
        } => {
            let c: BaseConsumer = base
                .clone()
                .set("group.id", name)
                .set("enable.auto.commit", "false")
                .create()?;
            if let Some(state) = group_state(&c, name)? {
                if state != "Empty" && state != "Dead" {
                    bail!("group `{name}` is {state}: stop its consumers first (only an empty group's offsets can be reset)");
                }
            }
            let md = c.fetch_metadata(Some(topic), TIMEOUT)?;
            let parts: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if parts.is_empty() {
                bail!("topic `{topic}` not found (or not authorized)");
            }
            let mut tpl = TopicPartitionList::new();
            let ts = match to_datetime {
                Some(s) => Some(
                    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("--to-datetime `{s}` is not RFC 3339"))?
                        .unix_timestamp_nanos()
                        / 1_000_000,
                ),
                None => None,
            };
            for p in &parts {
                let (low, high) = c.fetch_watermarks(topic, *p, TIMEOUT)?;
                let target = if *to_earliest {
                    low
                } else if *to_latest {
                    high
                } else if let Some(o) = to_offset {
                    (*o).clamp(low, high)
                } else if let Some(ts) = ts {
                    let mut q = TopicPartitionList::new();
                    q.add_partition_offset(topic, *p, Offset::Offset(ts as i64))?;
                    let r = c.offsets_for_times(q, TIMEOUT)?;
                    match r.find_partition(topic, *p).map(|e| e.offset()) {
                        Some(Offset::Offset(o)) => o,
                        _ => high,
                    }
                } else {
                    bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime T");
                };
                tpl.add_partition_offset(topic, *p, Offset::Offset(target))?;
            }
            c.commit(&tpl, CommitMode::Sync)?;
            for e in tpl.elements() {
                if let Offset::Offset(o) = e.offset() {
                    println!("{} {} -> {}", e.topic(), e.partition(), o);
                }
            }
        }
    }
    Ok(())
}
