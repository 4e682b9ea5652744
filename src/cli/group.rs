//! `portcullis group list|describe|reset-offsets`: a Kafka client of the
//! running broker (our own, `portcullis::client`), so it goes through the
//! same edge, ACLs and audit as any other client.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::connect::{
    kafka_error, print_json, topic_name, Cluster, ConnectArgs, OutputArgs, EARLIEST, LATEST,
    TIMEOUT,
};

// The versions this command speaks: the highest each server also speaks
// is used. Capped below the versions that restructure a request (OffsetFetch
// v8 batches groups, FindCoordinator v4 batches keys) or need topic ids.
const LIST_GROUPS: std::ops::RangeInclusive<i16> = 0..=5;
const CONSUMER_GROUP_DESCRIBE: std::ops::RangeInclusive<i16> = 0..=1;
const DESCRIBE_GROUPS: std::ops::RangeInclusive<i16> = 0..=5;
const FIND_COORDINATOR: std::ops::RangeInclusive<i16> = 0..=3;
const OFFSET_FETCH: std::ops::RangeInclusive<i16> = 1..=7;
const OFFSET_COMMIT: std::ops::RangeInclusive<i16> = 2..=8;

#[derive(Args)]
pub struct GroupArgs {
    #[command(flatten)]
    conn: ConnectArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List consumer groups and their states.
    List {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Members, assignments, committed offsets and lag per partition.
    Describe {
        /// The group id.
        name: String,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Move a group's committed offsets (the group must be empty).
    ResetOffsets {
        /// The group id.
        name: String,
        /// The topic whose partitions' offsets move (all its partitions).
        #[arg(long)]
        topic: String,
        /// To each partition's log start offset.
        #[arg(long, group = "to")]
        to_earliest: bool,
        /// To each partition's end (the last stable offset).
        #[arg(long, group = "to")]
        to_latest: bool,
        /// To this offset, clamped into each partition's range.
        #[arg(long, group = "to")]
        to_offset: Option<i64>,
        /// RFC 3339 time: the first offset at or after it.
        #[arg(long, group = "to")]
        to_datetime: Option<String>,
    },
}

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

impl Cluster {
    /// The coordinator of `group`, as host:port. Retries while the
    /// coordinator is loading or not yet available.
    async fn coordinator(&mut self, group: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let addr = self.bootstrap.clone();
            let c = self.at(&addr).await?;
            let v = c.version(ApiKey::FindCoordinator, FIND_COORDINATOR)?;
            let r: FindCoordinatorResponse = c
                .call(
                    ApiKey::FindCoordinator,
                    v,
                    &FindCoordinatorRequest::default()
                        .with_key(StrBytes::from_string(group.to_string())),
                )
                .await?;
            match ResponseError::try_from_code(r.error_code) {
                None => return Ok(format!("{}:{}", r.host, r.port)),
                Some(e) if e.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(_) => bail!(
                    "no coordinator for group `{group}`: {}",
                    kafka_error(r.error_code)
                ),
            }
        }
    }

    async fn describe_groups(
        &mut self,
        addr: &str,
        groups: Vec<GroupId>,
    ) -> anyhow::Result<Vec<DescribedGroup>> {
        let c = self.at(addr).await?;
        let v = c.version(ApiKey::DescribeGroups, DESCRIBE_GROUPS)?;
        let r: DescribeGroupsResponse = c
            .call(
                ApiKey::DescribeGroups,
                v,
                &DescribeGroupsRequest::default().with_groups(groups),
            )
            .await?;
        Ok(r.groups)
    }

    /// ConsumerGroupDescribe (KIP-848) of `groups` at `addr`; `None` if
    /// the broker does not speak it.
    async fn describe_consumer_groups(
        &mut self,
        addr: &str,
        groups: Vec<GroupId>,
    ) -> anyhow::Result<Option<Vec<ConsumerDescribed>>> {
        let c = self.at(addr).await?;
        let Ok(v) = c.version(ApiKey::ConsumerGroupDescribe, CONSUMER_GROUP_DESCRIBE) else {
            return Ok(None);
        };
        let r: ConsumerGroupDescribeResponse = c
            .call(
                ApiKey::ConsumerGroupDescribe,
                v,
                &ConsumerGroupDescribeRequest::default().with_group_ids(groups),
            )
            .await?;
        Ok(Some(r.groups))
    }

    /// The group as its coordinator describes it: a consumer-protocol
    /// group with ConsumerGroupDescribe, else (GROUP_ID_NOT_FOUND there, as
    /// Kafka's admin client falls back) a classic one with DescribeGroups.
    async fn describe_any(&mut self, name: &str) -> anyhow::Result<Described> {
        let coordinator = self.coordinator(name).await?;
        if let Some(gs) = self
            .describe_consumer_groups(&coordinator, vec![group_id(name)])
            .await?
        {
            if let Some(g) = gs.into_iter().find(|g| g.group_id.as_str() == name) {
                match g.error_code {
                    0 => return Ok(Described::Consumer(g)),
                    c if c == ResponseError::GroupIdNotFound.code() => {}
                    c => bail!("group `{name}`: {}", kafka_error(c)),
                }
            }
        }
        Ok(Described::Classic(self.describe_group(name).await?))
    }

    /// The group as its coordinator describes it (an unknown group is
    /// described as Dead, as Kafka does).
    async fn describe_group(&mut self, name: &str) -> anyhow::Result<DescribedGroup> {
        let coordinator = self.coordinator(name).await?;
        let g = self
            .describe_groups(&coordinator, vec![group_id(name)])
            .await?
            .into_iter()
            .find(|g| g.group_id.as_str() == name)
            .with_context(|| format!("group `{name}` not found"))?;
        if g.error_code != 0 {
            bail!("group `{name}`: {}", kafka_error(g.error_code));
        }
        Ok(g)
    }
}

type ConsumerDescribed = kafka_protocol::messages::consumer_group_describe_response::DescribedGroup;

/// A group of either protocol, as its coordinator describes it.
enum Described {
    Classic(DescribedGroup),
    Consumer(ConsumerDescribed),
}

impl Described {
    fn state(&self) -> &str {
        match self {
            Described::Classic(g) => g.group_state.as_str(),
            Described::Consumer(g) => g.group_state.as_str(),
        }
    }
}

/// A KIP-848 assignment as (topic, partitions) rows.
fn consumer_assignment(
    a: &kafka_protocol::messages::consumer_group_describe_response::Assignment,
) -> Vec<(String, Vec<i32>)> {
    let mut rows: Vec<(String, Vec<i32>)> = a
        .topic_partitions
        .iter()
        .map(|t| {
            let mut ps = t.partitions.clone();
            ps.sort();
            (t.topic_name.to_string(), ps)
        })
        .collect();
    rows.sort();
    rows
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

pub async fn run(args: GroupArgs) -> anyhow::Result<()> {
    let mut cl = Cluster::new(&args.conn, "portcullis-group")?;
    match &args.command {
        GroupCommand::List { out } => list(&mut cl, out.json()).await,
        GroupCommand::Describe { name, out } => describe(&mut cl, name, out.json()).await,
        GroupCommand::ResetOffsets {
            name,
            topic,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
        } => {
            let to = if *to_earliest {
                To::Earliest
            } else if *to_latest {
                To::Latest
            } else if let Some(o) = to_offset {
                To::Offset(*o)
            } else if let Some(s) = to_datetime {
                To::Time(
                    (time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("--to-datetime `{s}` is not RFC 3339"))?
                        .unix_timestamp_nanos()
                        / 1_000_000) as i64,
                )
            } else {
                bail!("say where to: --to-earliest, --to-latest, --to-offset N or --to-datetime T");
            };
            reset_offsets(&mut cl, name, topic, to).await
        }
    }
}

/// Every broker's groups (ListGroups goes to each broker: each lists the
/// groups it coordinates), described by that broker for state and members.
async fn list(cl: &mut Cluster, json: bool) -> anyhow::Result<()> {
    let md = cl.metadata(Some(&[])).await?;
    let mut rows = Vec::new();
    for b in &md.brokers {
        let addr = format!("{}:{}", b.host, b.port);
        let c = cl.at(&addr).await?;
        let v = c.version(ApiKey::ListGroups, LIST_GROUPS)?;
        let r: ListGroupsResponse = c
            .call(ApiKey::ListGroups, v, &ListGroupsRequest::default())
            .await?;
        if r.error_code != 0 {
            bail!("ListGroups at {addr}: {}", kafka_error(r.error_code));
        }
        if r.groups.is_empty() {
            continue;
        }
        // ListGroups v5 says which protocol each group speaks (older
        // brokers know only the classic one).
        let is_consumer = |g: &kafka_protocol::messages::list_groups_response::ListedGroup| {
            g.group_type.as_str() == "consumer"
        };
        let ids = r
            .groups
            .iter()
            .filter(|g| !is_consumer(g))
            .map(|g| g.group_id.clone())
            .collect();
        let described = cl.describe_groups(&addr, ids).await?;
        let consumer_ids: Vec<GroupId> = r
            .groups
            .iter()
            .filter(|g| is_consumer(g))
            .map(|g| g.group_id.clone())
            .collect();
        let consumer = if consumer_ids.is_empty() {
            Vec::new()
        } else {
            cl.describe_consumer_groups(&addr, consumer_ids)
                .await?
                .unwrap_or_default()
        };
        for g in r.groups {
            let kind = if is_consumer(&g) {
                "consumer"
            } else {
                "classic"
            };
            let row = match (
                described
                    .iter()
                    .find(|d| d.group_id == g.group_id && d.error_code == 0),
                consumer
                    .iter()
                    .find(|d| d.group_id == g.group_id && d.error_code == 0),
            ) {
                (_, Some(d)) => (
                    g.group_id.to_string(),
                    d.group_state.to_string(),
                    kind,
                    "consumer".to_string(),
                    d.members.len(),
                ),
                (Some(d), None) => (
                    g.group_id.to_string(),
                    d.group_state.to_string(),
                    kind,
                    d.protocol_type.to_string(),
                    d.members.len(),
                ),
                // Listed but not describable: what the listing said.
                (None, None) => (
                    g.group_id.to_string(),
                    if g.group_state.is_empty() {
                        "-".to_string()
                    } else {
                        g.group_state.to_string()
                    },
                    kind,
                    g.protocol_type.to_string(),
                    0,
                ),
            };
            rows.push(row);
        }
    }
    rows.sort();
    if json {
        return print_json(&serde_json::json!({
            "groups": rows.iter().map(|(name, state, kind, protocol, members)| serde_json::json!({
                "group": name, "state": state, "type": kind, "protocol": protocol,
                "members": members,
            })).collect::<Vec<_>>()
        }));
    }
    println!(
        "{:<32} {:<20} {:<9} {:<10} MEMBERS",
        "GROUP", "STATE", "TYPE", "PROTOCOL"
    );
    for (name, state, kind, protocol, members) in rows {
        println!("{name:<32} {state:<20} {kind:<9} {protocol:<10} {members}");
    }
    Ok(())
}

async fn describe(cl: &mut Cluster, name: &str, json: bool) -> anyhow::Result<()> {
    use serde_json::json;
    let mut owner: BTreeMap<(String, i32), String> = BTreeMap::new();
    // Text lines, printed only when the JSON document is not.
    let mut text: Vec<String> = Vec::new();
    let mut members = Vec::new();
    let rows = |a: &[(String, Vec<i32>)]| {
        a.iter()
            .map(|(t, ps)| json!({"topic": t, "partitions": ps}))
            .collect::<Vec<_>>()
    };
    let header = match cl.describe_any(name).await? {
        Described::Classic(g) => {
            text.push(format!(
                "group {name}: state {}, protocol {} {}",
                g.group_state, g.protocol_type, g.protocol_data
            ));
            for m in &g.members {
                let assigned = parse_assignment(&m.member_assignment);
                text.push(format!(
                    "member {} client {} host {}",
                    m.member_id, m.client_id, m.client_host
                ));
                for (t, ps) in &assigned {
                    text.push(format!("    {t}: {ps:?}"));
                    for p in ps {
                        owner.insert((t.clone(), *p), m.client_id.to_string());
                    }
                }
                members.push(json!({
                    "member_id": m.member_id.as_str(), "client_id": m.client_id.as_str(),
                    "host": m.client_host.as_str(), "assignment": rows(&assigned),
                }));
            }
            json!({"group": name, "state": g.group_state.as_str(), "type": "classic",
                   "protocol_type": g.protocol_type.as_str(), "protocol": g.protocol_data.as_str()})
        }
        Described::Consumer(g) => {
            text.push(format!(
                "group {name}: state {}, type consumer, assignor {}, epoch {} (assignment epoch {})",
                g.group_state, g.assignor_name, g.group_epoch, g.assignment_epoch
            ));
            for m in &g.members {
                let instance = m
                    .instance_id
                    .as_ref()
                    .map(|i| format!(" instance {i}"))
                    .unwrap_or_default();
                text.push(format!(
                    "member {} client {} host {}{instance} epoch {}",
                    m.member_id, m.client_id, m.client_host, m.member_epoch
                ));
                let assigned = consumer_assignment(&m.assignment);
                for (t, ps) in &assigned {
                    text.push(format!("    {t}: {ps:?}"));
                    for p in ps {
                        owner.insert((t.clone(), *p), m.client_id.to_string());
                    }
                }
                let target = consumer_assignment(&m.target_assignment);
                if target != assigned {
                    // Still reconciling: where it is heading.
                    for (t, ps) in &target {
                        text.push(format!("    target {t}: {ps:?}"));
                    }
                }
                members.push(json!({
                    "member_id": m.member_id.as_str(), "client_id": m.client_id.as_str(),
                    "host": m.client_host.as_str(),
                    "instance_id": m.instance_id.as_ref().map(|i| i.as_str()),
                    "epoch": m.member_epoch, "assignment": rows(&assigned),
                    "target_assignment": rows(&target),
                }));
            }
            json!({"group": name, "state": g.group_state.as_str(), "type": "consumer",
                   "assignor": g.assignor_name.as_str(), "epoch": g.group_epoch,
                   "assignment_epoch": g.assignment_epoch})
        }
    };
    let md = cl.metadata(None).await?;
    let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for t in md.topics.iter().filter(|t| t.error_code == 0) {
        if let Some(n) = &t.name {
            let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
            ps.sort();
            topics.insert(n.to_string(), ps);
        }
    }
    let committed = committed_offsets(cl, name, &topics).await?;
    text.push(format!(
        "{:<28} {:>9} {:>12} {:>12} {:>8}  OWNER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    ));
    let mut offsets_json = Vec::new();
    for (topic, offsets) in &committed {
        let parts: Vec<i32> = offsets.keys().copied().collect();
        let ends = cl.list_offsets(&md, topic, &parts, LATEST, true).await?;
        for (p, off) in offsets {
            let high = ends.get(p).copied().unwrap_or(-1);
            let who = owner.get(&(topic.clone(), *p)).cloned();
            offsets_json.push(json!({
                "topic": topic, "partition": p, "committed": off, "end": high,
                "lag": high - off, "owner": who,
            }));
            let who = who.unwrap_or_else(|| "-".into());
            text.push(format!(
                "{:<28} {:>9} {:>12} {:>12} {:>8}  {who}",
                topic,
                p,
                off,
                high,
                high - off
            ));
        }
    }
    if json {
        let mut doc = header;
        doc["members"] = members.into();
        doc["offsets"] = offsets_json.into();
        return print_json(&doc);
    }
    for l in text {
        println!("{l}");
    }
    Ok(())
}

/// The group's committed offsets of `topics` (partitions without one are
/// left out), by topic and partition.
async fn committed_offsets(
    cl: &mut Cluster,
    group: &str,
    topics: &BTreeMap<String, Vec<i32>>,
) -> anyhow::Result<BTreeMap<String, BTreeMap<i32, i64>>> {
    let mut out: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
    if topics.is_empty() {
        return Ok(out);
    }
    let coordinator = cl.coordinator(group).await?;
    let c = cl.at(&coordinator).await?;
    let v = c.version(ApiKey::OffsetFetch, OFFSET_FETCH)?;
    let req = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(Some(
            topics
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect(),
        ));
    let r: OffsetFetchResponse = c.call(ApiKey::OffsetFetch, v, &req).await?;
    if r.error_code != 0 {
        bail!(
            "committed offsets of group `{group}`: {}",
            kafka_error(r.error_code)
        );
    }
    for t in &r.topics {
        for p in &t.partitions {
            if p.error_code != 0 {
                eprintln!(
                    "{} partition {}: no committed offset: {}",
                    t.name.as_str(),
                    p.partition_index,
                    kafka_error(p.error_code)
                );
            } else if p.committed_offset >= 0 {
                out.entry(t.name.to_string())
                    .or_default()
                    .insert(p.partition_index, p.committed_offset);
            }
        }
    }
    Ok(out)
}

enum To {
    Earliest,
    Latest,
    Offset(i64),
    /// Milliseconds since the epoch.
    Time(i64),
}

async fn reset_offsets(cl: &mut Cluster, name: &str, topic: &str, to: To) -> anyhow::Result<()> {
    let g = cl.describe_any(name).await?;
    let state = g.state();
    if state != "Empty" && state != "Dead" {
        bail!("group `{name}` is {state}: stop its consumers first (only an empty group's offsets can be reset)");
    }
    let md = cl.metadata(Some(&[topic])).await?;
    let mut parts: Vec<i32> = md
        .topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == topic) && t.error_code == 0)
        .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
        .collect();
    parts.sort();
    if parts.is_empty() {
        bail!("topic `{topic}` not found (or not authorized)");
    }
    let low = cl.list_offsets(&md, topic, &parts, EARLIEST, true).await?;
    let high = cl.list_offsets(&md, topic, &parts, LATEST, true).await?;
    let at_time = match to {
        To::Time(ms) => Some(cl.list_offsets(&md, topic, &parts, ms, true).await?),
        _ => None,
    };
    let mut targets = Vec::new();
    for p in &parts {
        let (lo, hi) = (low.get(p).copied(), high.get(p).copied());
        let (Some(lo), Some(hi)) = (lo, hi) else {
            bail!("{topic} partition {p}: the broker gave no offsets");
        };
        let target = match to {
            To::Earliest => lo,
            To::Latest => hi,
            To::Offset(o) => o.clamp(lo, hi),
            // No record at or after the time: the end.
            To::Time(_) => match at_time.as_ref().and_then(|m| m.get(p)) {
                Some(o) if *o >= 0 => *o,
                _ => hi,
            },
        };
        targets.push((*p, target));
    }
    commit(cl, name, topic, &targets).await?;
    for (p, o) in &targets {
        println!("{topic} {p} -> {o}");
    }
    Ok(())
}

/// OffsetCommit outside any generation (generation -1, no member): what
/// Kafka accepts for a group without members.
async fn commit(
    cl: &mut Cluster,
    group: &str,
    topic: &str,
    targets: &[(i32, i64)],
) -> anyhow::Result<()> {
    let coordinator = cl.coordinator(group).await?;
    let c = cl.at(&coordinator).await?;
    let v = c.version(ApiKey::OffsetCommit, OFFSET_COMMIT)?;
    let req = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(StrBytes::from_static_str(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(
                targets
                    .iter()
                    .map(|(p, o)| {
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(*p)
                            .with_committed_offset(*o)
                    })
                    .collect(),
            )]);
    let r: OffsetCommitResponse = c.call(ApiKey::OffsetCommit, v, &req).await?;
    let failed: Vec<String> = r
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .filter(|p| p.error_code != 0)
                .map(move |p| {
                    format!(
                        "{} {}: {}",
                        t.name.as_str(),
                        p.partition_index,
                        kafka_error(p.error_code)
                    )
                })
        })
        .collect();
    if !failed.is_empty() {
        bail!("commit failed: {}", failed.join(", "));
    }
    Ok(())
}
