//! `portcullis topic`: topics through the running broker (create, list,
//! describe, alter, delete: Kafka's admin APIs, so the edge authorizes and
//! audits them like any client's), and `topic inspect`, which reads a
//! topic's partitions as they are on disk, with the log cleaner's state
//! for compacted topics (dirty ratio, last clean, what the last pass did).
//! `inspect` reads the data directory named by the broker config and works
//! beside a running broker: every file it reads is replaced atomically by
//! the broker.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest,
    DescribeConfigsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse, MetadataResponse,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::json;

use portcullis::config::{Config, Overrides};
use portcullis::embedded::log_dirs::SEGMENT_COUNT_TAG;
use portcullis::log::cleaner::{inspect_dir, DirStatus};
use portcullis::log::segment::now_ms;
use portcullis::log::topic::stored_meta;

use super::connect::{
    check, print_json, topic_name, usage, BrokerError, Cluster, ConnectArgs, OutputArgs, EARLIEST,
    LATEST,
};

const CREATE_TOPICS: std::ops::RangeInclusive<i16> = 2..=7;
const DELETE_TOPICS: std::ops::RangeInclusive<i16> = 1..=6;
const CREATE_PARTITIONS: std::ops::RangeInclusive<i16> = 0..=3;
const INCREMENTAL_ALTER_CONFIGS: std::ops::RangeInclusive<i16> = 0..=1;
const DESCRIBE_CONFIGS: std::ops::RangeInclusive<i16> = 1..=4;
const DESCRIBE_LOG_DIRS: std::ops::RangeInclusive<i16> = 1..=4;

/// ConfigResource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// DescribeConfigs source of a config set on the topic itself.
const SOURCE_TOPIC: i8 = 1;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

#[derive(Args)]
pub struct TopicArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

/// Config conveniences shared by create and alter, each one topic config;
/// the others come as `--config KEY=VALUE` (see [`ConnectArgs`]).
#[derive(Args, Default)]
struct ConfigArgs {
    /// Shorthand for --config retention.ms=MS.
    #[arg(long, value_name = "MS")]
    retention_ms: Option<i64>,
    /// Shorthand for --config cleanup.policy=POLICY (delete, compact or
    /// delete,compact).
    #[arg(long, value_name = "POLICY")]
    cleanup_policy: Option<String>,
}

impl ConfigArgs {
    fn all(&self, conn: &ConnectArgs) -> Vec<(String, String)> {
        let mut out = conn.topic_configs();
        if let Some(ms) = self.retention_ms {
            out.push(("retention.ms".into(), ms.to_string()));
        }
        if let Some(p) = &self.cleanup_policy {
            out.push(("cleanup.policy".into(), p.clone()));
        }
        out
    }
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Create a topic (CreateTopics).
    Create {
        /// The topic.
        name: String,
        /// Number of partitions.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: i32,
        /// Replicas per partition (default: the broker's default).
        #[arg(long, value_parser = clap::value_parser!(i16).range(1..))]
        replication_factor: Option<i16>,
        #[command(flatten)]
        configs: ConfigArgs,
    },
    /// List topics (Metadata).
    List {
        /// Also list internal topics (__consumer_offsets, ...).
        #[arg(long)]
        internal: bool,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Per partition: leader, replicas, log start, high watermark, size and
    /// segment count; and the configs set on the topic.
    Describe {
        /// The topic.
        name: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Change a topic's configs (IncrementalAlterConfigs) or add
    /// partitions (CreatePartitions).
    Alter {
        /// The topic.
        name: String,
        #[command(flatten)]
        configs: ConfigArgs,
        /// Remove a config from the topic, back to the broker's default
        /// (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete_configs: Vec<String>,
        /// The new partition count (partitions can only be added).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
    },
    /// Delete a topic and its records (DeleteTopics).
    Delete {
        /// The topic.
        name: String,
        /// Do not ask for confirmation (required when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Read a topic's partitions from the data directory (no broker
    /// needed): log start offset, segments, bytes and, when compacted, the
    /// cleaner's dirty ratio and last clean.
    Inspect {
        /// The topic.
        topic: String,
        /// The data directory (default: the config's data_dir).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub async fn run(args: TopicArgs) -> anyhow::Result<()> {
    if let TopicCommand::Inspect {
        topic,
        data_dir,
        out,
    } = &args.command
    {
        let dir = match data_dir {
            Some(d) => d.clone(),
            None => {
                args.conn.no_topic_configs()?;
                let path = args.conn.config();
                Config::load(&path, &Overrides::default())
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .data_dir
            }
        };
        return inspect(&dir, topic, out.json());
    }
    if let TopicCommand::Delete { name, yes: false } = &args.command {
        confirm_delete(name, args.conn.password_stdin)?;
    }
    // Cluster::new refuses topic configs; these two take them.
    let mut conn = args.conn.clone();
    let topic_configs = matches!(
        args.command,
        TopicCommand::Create { .. } | TopicCommand::Alter { .. }
    );
    if topic_configs {
        conn.config_flags
            .retain(|f| matches!(f, super::connect::ConfigFlag::File(_)));
    }
    let mut cl = Cluster::new(&conn, "portcullis-topic")?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = configs.all(&args.conn);
            create(&mut cl, &name, partitions, replication_factor, &configs).await
        }
        TopicCommand::List { internal, out } => list(&mut cl, internal, out.json()).await,
        TopicCommand::Describe { name, out } => describe(&mut cl, &name, out.json()).await,
        TopicCommand::Alter {
            name,
            configs,
            delete_configs,
            partitions,
        } => {
            let configs = configs.all(&args.conn);
            alter(&mut cl, &name, &configs, &delete_configs, partitions).await
        }
        TopicCommand::Delete { name, .. } => delete(&mut cl, &name).await,
        TopicCommand::Inspect { .. } => unreachable!("handled above"),
    }
}

/// Deleting is not undoable: without --yes, a person at a terminal types
/// the topic's name; a script must say --yes.
fn confirm_delete(name: &str, password_on_stdin: bool) -> anyhow::Result<()> {
    if password_on_stdin || !std::io::stdin().is_terminal() {
        usage!("deleting `{name}` needs --yes when standard input is not a terminal");
    }
    eprint!("delete topic `{name}` and all its records? Type its name to confirm: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != name {
        bail!("not confirmed; nothing deleted");
    }
    Ok(())
}

async fn create(
    cl: &mut Cluster,
    name: &str,
    partitions: i32,
    replication_factor: Option<i16>,
    configs: &[(String, String)],
) -> anyhow::Result<()> {
    let c = cl.any().await?;
    let v = c.version(ApiKey::CreateTopics, CREATE_TOPICS)?;
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            // -1: the broker's default.
            .with_replication_factor(replication_factor.unwrap_or(-1))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, val)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.clone()))
                            .with_value(Some(StrBytes::from_string(val.clone())))
                    })
                    .collect(),
            )]);
    let r: CreateTopicsResponse = c.call(ApiKey::CreateTopics, v, &req).await?;
    let t = r
        .topics
        .first()
        .context("CreateTopics: the broker answered no topic")?;
    check(
        format!("create topic `{name}`"),
        t.error_code,
        t.error_message.as_ref(),
    )?;
    println!("created topic `{name}` with {partitions} partition(s)");
    Ok(())
}

fn is_internal(t: &MetadataResponseTopic) -> bool {
    t.is_internal || t.name.as_ref().is_some_and(|n| n.starts_with("__"))
}

async fn list(cl: &mut Cluster, internal: bool, json: bool) -> anyhow::Result<()> {
    let md = cl.metadata(None).await?;
    let mut rows: Vec<(String, usize, bool)> = md
        .topics
        .iter()
        .filter(|t| t.error_code == 0 && (internal || !is_internal(t)))
        .filter_map(|t| {
            let n = t.name.as_ref()?;
            Some((n.to_string(), t.partitions.len(), is_internal(t)))
        })
        .collect();
    rows.sort();
    if json {
        return print_json(&json!({
            "topics": rows.iter().map(|(n, p, i)| json!({
                "topic": n, "partitions": p, "internal": i,
            })).collect::<Vec<_>>()
        }));
    }
    println!("{:<40} PARTITIONS", "TOPIC");
    for (n, p, i) in rows {
        let mark = if i { "  (internal)" } else { "" };
        println!("{n:<40} {p:>10}{mark}");
    }
    Ok(())
}

/// One partition as describe shows it; `None`: not known (not reported,
/// or not authorized to ask).
#[derive(Default)]
struct PartRow {
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    log_start: Option<i64>,
    high_watermark: Option<i64>,
    size: Option<i64>,
    segments: Option<i32>,
}

fn brokers_of(md: &MetadataResponse) -> HashMap<BrokerId, String> {
    md.brokers
        .iter()
        .map(|b| (b.node_id, format!("{}:{}", b.host, b.port)))
        .collect()
}

async fn describe(cl: &mut Cluster, name: &str, json: bool) -> anyhow::Result<()> {
    let md = cl.metadata(Some(&[name])).await?;
    let t = md
        .topics
        .iter()
        .find(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
        .with_context(|| format!("the broker did not describe `{name}`"))?;
    check(format!("describe topic `{name}`"), t.error_code, None)?;
    let mut rows: BTreeMap<i32, PartRow> = t
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_index,
                PartRow {
                    leader: p.leader_id.0,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    ..PartRow::default()
                },
            )
        })
        .collect();
    let parts: Vec<i32> = rows.keys().copied().collect();
    if !parts.is_empty() {
        let low = cl.list_offsets(&md, name, &parts, EARLIEST, false).await?;
        let high = cl.list_offsets(&md, name, &parts, LATEST, false).await?;
        for (p, row) in rows.iter_mut() {
            row.log_start = low.get(p).copied();
            row.high_watermark = high.get(p).copied();
        }
    }
    let mut notes = Vec::new();
    if let Err(e) = log_dirs(cl, &md, name, &mut rows).await {
        // Sizes need DESCRIBE on the cluster; a topic's owner without it
        // still sees the rest.
        match e.downcast_ref::<BrokerError>() {
            Some(b) if b.is_refusal() => notes.push(format!("sizes not shown: {b}")),
            _ => return Err(e),
        }
    }
    let configs = topic_configs(cl, name).await?;
    let id = t.topic_id;
    if json {
        return print_json(&json!({
            "topic": name,
            "topic_id": (!id.is_nil()).then(|| id.to_string()),
            "internal": is_internal(t),
            "partitions": rows.iter().map(|(p, r)| json!({
                "partition": p, "leader": r.leader, "replicas": r.replicas, "isr": r.isr,
                "log_start_offset": r.log_start, "high_watermark": r.high_watermark,
                "size_bytes": r.size, "segments": r.segments,
            })).collect::<Vec<_>>(),
            "configs": configs,
            "notes": notes,
        }));
    }
    println!(
        "topic {name}: {} partition(s){}",
        rows.len(),
        if id.is_nil() {
            String::new()
        } else {
            format!(", id {id}")
        }
    );
    for (k, v) in &configs {
        println!("  {k}={v}");
    }
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    println!(
        "{:<9} {:>6} {:>12} {:>14} {:>14} {:>8}  REPLICAS",
        "PARTITION", "LEADER", "LOG START", "HIGH WATERMARK", "SIZE", "SEGMENTS"
    );
    for (p, r) in &rows {
        println!(
            "{:<9} {:>6} {:>12} {:>14} {:>14} {:>8}  {:?}",
            p,
            r.leader,
            dash(r.log_start.map(|v| v.to_string())),
            dash(r.high_watermark.map(|v| v.to_string())),
            dash(r.size.map(|v| v.to_string())),
            dash(r.segments.map(|v| v.to_string())),
            r.replicas
        );
    }
    for n in notes {
        eprintln!("note: {n}");
    }
    Ok(())
}

/// Sizes and (embedded back end only) segment counts from DescribeLogDirs,
/// asked of each partition's leader: each broker reports what it hosts.
async fn log_dirs(
    cl: &mut Cluster,
    md: &MetadataResponse,
    name: &str,
    rows: &mut BTreeMap<i32, PartRow>,
) -> anyhow::Result<()> {
    let brokers = brokers_of(md);
    let mut by_leader: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (p, r) in rows.iter() {
        if let Some(addr) = brokers.get(&BrokerId(r.leader)) {
            by_leader.entry(addr.clone()).or_default().push(*p);
        }
    }
    for (addr, ps) in by_leader {
        let c = cl.at(&addr).await?;
        let v = c.version(ApiKey::DescribeLogDirs, DESCRIBE_LOG_DIRS)?;
        let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
            DescribableLogDirTopic::default()
                .with_topic(topic_name(name))
                .with_partitions(ps.clone()),
        ]));
        let r: DescribeLogDirsResponse = c.call(ApiKey::DescribeLogDirs, v, &req).await?;
        check("DescribeLogDirs", r.error_code, None)?;
        for dir in &r.results {
            check(
                format!("DescribeLogDirs {}", dir.log_dir.as_str()),
                dir.error_code,
                None,
            )?;
            for p in dir
                .topics
                .iter()
                .filter(|t| t.name.as_str() == name)
                .flat_map(|t| &t.partitions)
                .filter(|p| !p.is_future_key && ps.contains(&p.partition_index))
            {
                let Some(row) = rows.get_mut(&p.partition_index) else {
                    continue;
                };
                row.size = Some(row.size.unwrap_or(0) + p.partition_size);
                if let Some(b) = p.unknown_tagged_fields.get(&SEGMENT_COUNT_TAG) {
                    if let Ok(be) = <[u8; 4]>::try_from(&b[..]) {
                        row.segments = Some(row.segments.unwrap_or(0) + i32::from_be_bytes(be));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The configs set on the topic itself (not the broker's defaults).
async fn topic_configs(cl: &mut Cluster, name: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let c = cl.any().await?;
    let v = c.version(ApiKey::DescribeConfigs, DESCRIBE_CONFIGS)?;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(RESOURCE_TOPIC)
            .with_resource_name(StrBytes::from_string(name.to_string()))
            .with_configuration_keys(None)]);
    let r: DescribeConfigsResponse = c.call(ApiKey::DescribeConfigs, v, &req).await?;
    let mut out = BTreeMap::new();
    for res in &r.results {
        check(
            format!("configs of topic `{name}`"),
            res.error_code,
            res.error_message.as_ref(),
        )?;
        for cfg in res
            .configs
            .iter()
            .filter(|c| c.config_source == SOURCE_TOPIC)
        {
            let value = if cfg.is_sensitive {
                "(sensitive)".to_string()
            } else {
                cfg.value
                    .as_ref()
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            out.insert(cfg.name.to_string(), value);
        }
    }
    Ok(out)
}

async fn alter(
    cl: &mut Cluster,
    name: &str,
    set: &[(String, String)],
    delete: &[String],
    partitions: Option<i32>,
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() && partitions.is_none() {
        usage!("nothing to change: give --config, --delete-config or --partitions");
    }
    if !set.is_empty() || !delete.is_empty() {
        let c = cl.any().await?;
        let v = c.version(ApiKey::IncrementalAlterConfigs, INCREMENTAL_ALTER_CONFIGS)?;
        let ops = set
            .iter()
            .map(|(k, val)| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_SET)
                    .with_value(Some(StrBytes::from_string(val.clone())))
            })
            .chain(delete.iter().map(|k| {
                AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_DELETE)
                    .with_value(None)
            }))
            .collect();
        let req = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_TOPIC)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(ops),
        ]);
        let r: IncrementalAlterConfigsResponse =
            c.call(ApiKey::IncrementalAlterConfigs, v, &req).await?;
        for res in &r.responses {
            check(
                format!("alter configs of topic `{name}`"),
                res.error_code,
                res.error_message.as_ref(),
            )?;
        }
        for (k, val) in set {
            println!("{name}: {k}={val}");
        }
        for k in delete {
            println!("{name}: {k} removed (the broker's default applies)");
        }
    }
    if let Some(count) = partitions {
        let c = cl.any().await?;
        let v = c.version(ApiKey::CreatePartitions, CREATE_PARTITIONS)?;
        let req = CreatePartitionsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)
                .with_assignments(None)]);
        let r: CreatePartitionsResponse = c.call(ApiKey::CreatePartitions, v, &req).await?;
        for res in &r.results {
            check(
                format!("add partitions to topic `{name}`"),
                res.error_code,
                res.error_message.as_ref(),
            )?;
        }
        println!("{name}: {count} partition(s)");
    }
    Ok(())
}

async fn delete(cl: &mut Cluster, name: &str) -> anyhow::Result<()> {
    let c = cl.any().await?;
    let v = c.version(ApiKey::DeleteTopics, DELETE_TOPICS)?;
    let mut req = DeleteTopicsRequest::default().with_timeout_ms(30_000);
    // v6 names topics by name or id; before, by name only.
    if v >= 6 {
        req = req.with_topics(vec![
            DeleteTopicState::default().with_name(Some(topic_name(name)))
        ]);
    } else {
        req = req.with_topic_names(vec![topic_name(name)]);
    }
    let r: DeleteTopicsResponse = c.call(ApiKey::DeleteTopics, v, &req).await?;
    let t = r
        .responses
        .first()
        .context("DeleteTopics: the broker answered no topic")?;
    check(
        format!("delete topic `{name}`"),
        t.error_code,
        t.error_message.as_ref(),
    )?;
    println!("deleted topic `{name}`");
    Ok(())
}

fn inspect(data_dir: &Path, topic: &str, json: bool) -> anyhow::Result<()> {
    if topic.is_empty() || topic.contains(['/', '\0']) || topic == "." || topic == ".." {
        bail!("`{topic}` is not a topic name");
    }
    let dir = data_dir.join("topics").join(topic);
    if !dir.is_dir() {
        bail!("no topic `{topic}` in {}", data_dir.display());
    }
    let (partitions, configs) =
        stored_meta(&dir).with_context(|| format!("cannot read topic `{topic}`"))?;
    let mut parts: Vec<(i32, DirStatus)> = Vec::new();
    for p in 0..partitions {
        let status = inspect_dir(&dir.join(p.to_string()))
            .with_context(|| format!("cannot read partition {p} of `{topic}`"))?;
        parts.push((p, status));
    }
    let policy = configs
        .get("cleanup.policy")
        .cloned()
        .unwrap_or_else(|| "delete".into());
    let compacted = policy.split(',').any(|p| p.trim() == "compact");
    if json {
        let out = json!({
            "topic": topic,
            "partitions": parts.iter().map(|(p, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["partition"] = (*p).into();
                v
            }).collect::<Vec<_>>(),
            "configs": configs,
            "compacted": compacted,
        });
        return print_json(&out);
    }
    println!("topic {topic}: {partitions} partition(s), cleanup.policy={policy}");
    for (k, v) in configs.iter().filter(|(k, _)| *k != "cleanup.policy") {
        println!("  {k}={v}");
    }
    let now = now_ms();
    println!(
        "{:<9} {:>12} {:>8} {:>14} {:>11}  LAST CLEAN",
        "PARTITION", "LOG START", "SEGMENTS", "BYTES", "DIRTY RATIO"
    );
    for (p, s) in &parts {
        let cp = &s.checkpoint;
        let (ratio, last) = if !compacted && cp.passes == 0 {
            ("-".to_string(), "-".to_string())
        } else if cp.last_clean_ms == 0 {
            (format!("{:.3}", s.dirty_ratio), "never".to_string())
        } else {
            (
                format!("{:.3}", s.dirty_ratio),
                format!(
                    "{} ({} ago; pass {}: {} -> {} bytes in {} ms)",
                    rfc3339(cp.last_clean_ms),
                    age(now - cp.last_clean_ms),
                    cp.passes,
                    cp.last_bytes_before,
                    cp.last_bytes_after,
                    cp.last_pass_ms
                ),
            )
        };
        println!(
            "{:<9} {:>12} {:>8} {:>14} {:>11}  {last}",
            p, s.log_start_offset, s.segments, s.bytes, ratio
        );
    }
    Ok(())
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(portcullis::audit::aggregate::rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3600),
    }
}
