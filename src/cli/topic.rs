//! `portcullis topic describe`: a topic's partitions as they are on disk,
//! with the log cleaner's state for compacted topics (dirty ratio, last
//! clean, what the last pass did). It reads the data directory named by
//! the broker config and works beside a running broker: every file it
//! reads is replaced atomically by the broker.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use portcullis::config::{Config, Overrides};
use portcullis::log::cleaner::{inspect_dir, DirStatus};
use portcullis::log::segment::now_ms;
use portcullis::log::topic::stored_meta;

#[derive(Args)]
pub struct TopicArgs {
    /// Broker config naming the data directory (data_dir).
    #[arg(long, global = true, default_value = "config/portcullis.yaml")]
    config: PathBuf,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand)]
enum TopicCommand {
    /// Show a topic's configs and, per partition, its log start offset,
    /// segments, bytes and, when compacted, the cleaner's dirty ratio and
    /// last clean.
    Describe {
        /// The topic.
        topic: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let config = Config::load(&args.config, &Overrides::default())
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    match args.command {
        TopicCommand::Describe { topic, json } => describe(&config, &topic, json),
    }
}

fn describe(config: &Config, topic: &str, json: bool) -> anyhow::Result<()> {
    if topic.is_empty() || topic.contains(['/', '\0']) || topic == "." || topic == ".." {
        bail!("`{topic}` is not a topic name");
    }
    let dir = config.data_dir.join("topics").join(topic);
    if !dir.is_dir() {
        bail!("no topic `{topic}` in {}", config.data_dir.display());
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
        let out = serde_json::json!({
            "topic": topic,
            "partitions": parts.iter().map(|(p, s)| {
                let mut v = serde_json::to_value(s).unwrap_or_default();
                v["partition"] = (*p).into();
                v
            }).collect::<Vec<_>>(),
            "configs": configs,
            "compacted": compacted,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
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
