//! `portcullis policy list|check`: reads the policy file the broker would
//! (the config's `policy.file`, or `--file`) and explains how it decides a
//! request, without a broker. `check` exits 1 when the request would be
//! blocked (audit-only violations are printed and exit 0).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;

use super::connect::{parse_config_flag, usage, ConfigFlag, OutputArgs};
use portcullis::config::{Config, Overrides};
use portcullis::policy::model::{Acks, Codec};
use portcullis::policy::{file, Decision, PolicySet, ProduceFacts, Violation};

#[derive(Args)]
pub struct PolicyArgs {
    /// Broker config file naming the policy file (policy.file; default
    /// config/portcullis.yaml). For `policy check`, a KEY=VALUE is a topic
    /// config of the request instead (repeatable), as in `topic create`.
    #[arg(long = "config", global = true, value_name = "FILE|KEY=VALUE", value_parser = parse_config_flag)]
    config_flags: Vec<ConfigFlag>,
    /// Use this policy file instead of the config's (it must exist).
    #[arg(long, global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// List the rules of the policy file, in the order they are applied.
    List {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Decide a request as the broker would and print the deciding rule
    /// (exit 1 when blocked).
    Check(Box<CheckArgs>),
}

#[derive(Args)]
#[command(group(ArgGroup::new("request").required(true).args(["create_topic", "alter_topic", "produce", "consume"])))]
struct CheckArgs {
    /// The principal asking: User:NAME.
    #[arg(long)]
    principal: String,
    /// A CreateTopics request for this topic (with --partitions,
    /// --replication-factor, --config KEY=VALUE).
    #[arg(long, value_name = "TOPIC")]
    create_topic: Option<String>,
    /// A config change (--config KEY=VALUE, --delete-config KEY) and/or a
    /// CreatePartitions (--partitions: the new total) on this topic.
    #[arg(long, value_name = "TOPIC")]
    alter_topic: Option<String>,
    /// A Produce to this topic (with --acks, --idempotent, --compression, ...).
    #[arg(long, value_name = "TOPIC")]
    produce: Option<String>,
    /// A consumer (with --group and/or --client-id).
    #[arg(long)]
    consume: bool,
    /// Partition count: of the new topic (default: the broker's, not
    /// checked), or the new total with --alter-topic.
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    partitions: Option<i32>,
    /// Replication factor of the new topic (default: the broker's, not checked).
    #[arg(long, value_parser = clap::value_parser!(i16).range(1..))]
    replication_factor: Option<i16>,
    /// A topic config to delete (back to its default), with --alter-topic
    /// (repeatable).
    #[arg(long = "delete-config", value_name = "KEY")]
    delete_configs: Vec<String>,
    /// The producer's acks: all (-1), 1 or 0.
    #[arg(long, default_value = "all", value_parser = parse_acks)]
    acks: Acks,
    /// The producer is idempotent (enable.idempotence=true).
    #[arg(long)]
    idempotent: bool,
    /// The producer's transactional id (a transactional producer).
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// The producer's codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_codec)]
    compression: Codec,
    /// The largest record value produced, in bytes.
    #[arg(long, value_name = "N")]
    record_bytes: Option<u64>,
    /// A header key every record carries (repeatable).
    #[arg(long = "header", value_name = "KEY")]
    headers: Vec<String>,
    /// The consumer's group id.
    #[arg(long)]
    group: Option<String>,
    /// The client's client.id.
    #[arg(long)]
    client_id: Option<String>,
    #[command(flatten)]
    out: OutputArgs,
}

fn parse_acks(s: &str) -> Result<Acks, String> {
    s.parse()
}

fn parse_codec(s: &str) -> Result<Codec, String> {
    s.parse()
}

impl PolicyArgs {
    fn config_path(&self) -> PathBuf {
        super::connect::config_file(&self.config_flags)
    }

    fn topic_configs(&self) -> Vec<(String, String)> {
        super::connect::topic_configs(&self.config_flags)
    }
}

/// The policy set the broker would load: `--file` (must exist), else the
/// config's `policy.file` (absent at the default path: no policies).
fn load(args: &PolicyArgs) -> anyhow::Result<(PathBuf, PolicySet)> {
    let (path, allow_missing) = match &args.file {
        Some(p) => (p.clone(), false),
        None => {
            let cfg = Config::load(&args.config_path(), &Overrides::default())?;
            let explicit = cfg.is_explicit("policy.file");
            (cfg.policy.file, !explicit)
        }
    };
    let set = file::load(&path, allow_missing)?;
    if set.is_empty() && !path.exists() {
        eprintln!(
            "no policy file at {} (the default path): no policies",
            path.display()
        );
    }
    Ok((path, set))
}

pub fn run(args: PolicyArgs) -> anyhow::Result<()> {
    match &args.command {
        PolicyCommand::List { out } => {
            if !args.topic_configs().is_empty() {
                usage!("--config KEY=VALUE is taken by `policy check` only; --config here names the broker config file");
            }
            let (path, set) = load(&args)?;
            list(&path, &set, out.json())
        }
        PolicyCommand::Check(check_args) => {
            check_usage(check_args, &args.topic_configs())?;
            let (_, set) = load(&args)?;
            check(&set, check_args, &args.topic_configs())
        }
    }
}

fn list(path: &std::path::Path, set: &PolicySet, json: bool) -> anyhow::Result<()> {
    if json {
        let rules: Vec<serde_json::Value> = set
            .rules()
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "action": r.action.to_string(),
                    "line": r.line,
                    "rule": serde_json::to_value(&r.model).unwrap_or_default(),
                })
            })
            .collect();
        return super::connect::print_json(&json!({
            "file": path.display().to_string(),
            "rules": rules,
        }));
    }
    for r in set.rules() {
        let m = &r.model;
        let principals = m
            .principals
            .as_ref()
            .map_or("everyone".to_string(), |p| p.join(","));
        let topics = match &m.topics {
            None => "every topic".to_string(),
            Some(t) => match (&t.name, &t.prefix, &t.pattern) {
                (Some(n), _, _) => format!("topic {n}"),
                (_, Some(p), _) => format!("topics {p}*"),
                (_, _, Some(p)) => format!("topics ~{p}"),
                _ => "every topic".to_string(),
            },
        };
        let checks: Vec<&str> = [
            (m.create_topic.is_some(), "create_topic"),
            (m.alter_configs.is_some(), "alter_configs"),
            (m.create_partitions.is_some(), "create_partitions"),
            (m.produce.is_some(), "produce"),
            (m.consume.is_some(), "consume"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        println!(
            "{:<24} {:<5} {principals:<20} {topics:<24} {} (line {})",
            r.name,
            r.action.to_string(),
            checks.join(","),
            r.line
        );
    }
    eprintln!("{} rule(s) in {}", set.len(), path.display());
    Ok(())
}

/// Flags that do not go together: refused before any file is read.
fn check_usage(a: &CheckArgs, configs: &[(String, String)]) -> anyhow::Result<()> {
    if !a.principal.contains(':') {
        usage!("--principal is TYPE:NAME, e.g. User:alice");
    }
    let takes_configs = a.create_topic.is_some() || a.alter_topic.is_some();
    if !configs.is_empty() && !takes_configs {
        usage!("--config KEY=VALUE is taken with --create-topic and --alter-topic only");
    }
    if !a.delete_configs.is_empty() && a.alter_topic.is_none() {
        usage!("--delete-config is taken with --alter-topic only");
    }
    if a.alter_topic.is_some()
        && configs.is_empty()
        && a.delete_configs.is_empty()
        && a.partitions.is_none()
    {
        usage!("nothing to change: give --config, --delete-config or --partitions");
    }
    if a.consume && a.group.is_none() && a.client_id.is_none() {
        usage!("--consume needs --group and/or --client-id");
    }
    Ok(())
}

/// Both decisions: the first block wins, audits add up.
fn merge(mut a: Decision, b: Decision) -> Decision {
    if a.blocked.is_none() {
        a.blocked = b.blocked;
    }
    a.audited.extend(b.audited);
    a
}

fn check(set: &PolicySet, a: &CheckArgs, configs: &[(String, String)]) -> anyhow::Result<()> {
    let p = a.principal.as_str();
    let (what, d) = if let Some(name) = &a.create_topic {
        let cs: Vec<(&str, Option<&str>)> = configs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        (
            format!("create topic {name}"),
            set.create_topic(
                p,
                name,
                a.partitions.unwrap_or(-1),
                a.replication_factor.unwrap_or(-1),
                &cs,
            ),
        )
    } else if let Some(name) = &a.alter_topic {
        let mut cs: Vec<(&str, Option<&str>)> = configs
            .iter()
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        cs.extend(a.delete_configs.iter().map(|k| (k.as_str(), None)));
        let mut d = Decision::default();
        if !cs.is_empty() {
            d = set.alter_topic_configs(p, name, &cs);
        }
        if let Some(n) = a.partitions {
            d = merge(d, set.create_partitions(p, name, n));
        }
        (format!("alter topic {name}"), d)
    } else if let Some(topic) = &a.produce {
        // The facts a real produce's batches would show.
        let missing = set
            .header_keys()
            .iter()
            .enumerate()
            .filter(|(_, k)| !a.headers.iter().any(|h| h.as_str() == &***k))
            .fold(0u64, |m, (i, _)| m | (1 << i));
        let facts = ProduceFacts {
            batches: 1,
            codecs: 1 << a.compression.id(),
            non_idempotent: !a.idempotent && a.transactional_id.is_none(),
            non_transactional: a.transactional_id.is_none(),
            records: 1,
            max_value_bytes: a.record_bytes.unwrap_or(0),
            missing_headers: missing,
            inflated: 0,
        };
        (
            format!("produce to {topic} with acks={}", a.acks.name()),
            set.produce(p, topic, a.acks.0, a.transactional_id.as_deref(), &facts),
        )
    } else if a.consume {
        (
            "consume".to_string(),
            set.consume(p, a.group.as_deref(), a.client_id.as_deref()),
        )
    } else {
        usage!("give one of --create-topic, --alter-topic, --produce, --consume");
    };
    let line_of = |v: &Violation| {
        set.rules()
            .iter()
            .find(|r| r.name == v.rule)
            .map_or(0, |r| r.line)
    };
    if a.out.json() {
        let v = |v: &Violation| json!({"rule": v.rule, "action": v.action.to_string(), "message": v.message, "line": line_of(v)});
        super::connect::print_json(&json!({
            "principal": p,
            "request": what,
            "decision": if d.is_allowed() { "allow" } else { "block" },
            "blocked": d.blocked.as_ref().map(v),
            "audited": d.audited.iter().map(v).collect::<Vec<_>>(),
        }))?;
    } else {
        match &d.blocked {
            Some(v) => println!(
                "BLOCK: {p} {what}: {} (rule {}, line {})",
                v.message,
                v.rule,
                line_of(v)
            ),
            None if d.audited.is_empty() => {
                println!("ALLOW: {p} {what}: no policy violated")
            }
            None => {
                println!("ALLOW: {p} {what}: only audit rules violated (recorded, not refused)")
            }
        }
        for v in &d.audited {
            println!(
                "AUDIT: {} (rule {}, line {})",
                v.message,
                v.rule,
                line_of(v)
            );
        }
    }
    if let Some(v) = &d.blocked {
        std::io::Write::flush(&mut std::io::stdout()).context("stdout")?;
        bail!("blocked by policy {}", v.rule);
    }
    Ok(())
}
