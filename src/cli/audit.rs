//! `portcullis audit tail`: reads the audit log across rotated files,
//! filters it, and prints a table (or the JSON lines); `-f` keeps following
//! the live file through rotations.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use portcullis::audit::sink::{files_oldest_first, rotated_path};
use portcullis::audit::AuditEvent;
use portcullis::config::{Config, Overrides};

#[derive(Args)]
pub struct AuditArgs {
    /// Broker config naming the audit log (audit.file).
    #[arg(long, global = true, default_value = "config/portcullis.yaml")]
    config: PathBuf,
    /// Read this audit log instead of the config's.
    #[arg(long, global = true)]
    file: Option<PathBuf>,
    #[command(subcommand)]
    command: AuditCommand,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print audit records, oldest first.
    Tail {
        /// Keep printing new records as they are written.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only records of this principal (e.g. User:alice).
        #[arg(long)]
        principal: Option<String>,
        /// Only refusals: denied authorizations and failed logins.
        #[arg(long)]
        denied: bool,
        /// Only this event kind (authorization, authentication, admin_action, ...).
        #[arg(long)]
        event: Option<String>,
        /// Only records about this topic.
        #[arg(long)]
        topic: Option<String>,
        /// Only records at or after this time: RFC 3339, or an age like 30m, 2h, 7d.
        #[arg(long)]
        since: Option<String>,
        /// Print the JSON records instead of a table.
        #[arg(long)]
        json: bool,
    },
}

struct Filter {
    principal: Option<String>,
    denied: bool,
    event: Option<String>,
    topic: Option<String>,
    since: Option<String>,
}

impl Filter {
    fn keep(&self, ev: &AuditEvent) -> bool {
        self.principal.as_ref().is_none_or(|p| ev.principal.as_ref() == Some(p))
            && (!self.denied || ev.is_denial())
            && self
                .event
                .as_ref()
                .is_none_or(|k| ev.event.map(|e| e.as_str()) == Some(k.as_str()))
            && self.topic.as_ref().is_none_or(|t| {
                ev.resource_type.as_deref() == Some("topic")
                    && (ev.resource_name.as_ref() == Some(t)
                        // A coalesced record names only a sample of its topics.
                        || ev.sample.as_ref().is_some_and(|s| s.contains(t)))
            })
            // RFC 3339 UTC timestamps of one format compare as strings.
            && self.since.as_ref().is_none_or(|s| ev.time.as_str() >= s.as_str())
    }
}

fn parse_since(s: &str) -> anyhow::Result<String> {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let unit = s.chars().last().unwrap_or(' ');
    let digits = &s[..s.len() - unit.len_utf8().min(s.len())];
    if let (Ok(n), true) = (digits.parse::<i64>(), "smhd".contains(unit)) {
        let mult = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86400,
        };
        let t = n
            .checked_mul(mult)
            .filter(|secs| *secs <= 100 * 365 * 86400)
            .and_then(|secs| {
                time::OffsetDateTime::now_utc().checked_sub(time::Duration::seconds(secs))
            })
            .with_context(|| format!("--since `{s}` is too far back"))?;
        return Ok(t.format(&fmt)?);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("--since `{s}` is neither RFC 3339 nor an age like 30m"))?;
    Ok(t.to_offset(time::UtcOffset::UTC).format(&fmt)?)
}

fn print(ev: &AuditEvent, line: &str, json: bool) {
    if json {
        println!("{line}");
        return;
    }
    let client = match (&ev.client_address, ev.client_port) {
        (Some(a), Some(p)) => format!("{a}:{p}"),
        (Some(a), None) => a.clone(),
        _ => "-".into(),
    };
    let resource = match (&ev.resource_type, &ev.resource_name) {
        (Some(t), Some(n)) => format!("{t}:{n}"),
        (Some(t), None) if ev.count.is_some() => format!(
            "{t}:{} names, e.g. {}",
            ev.count.unwrap_or(0),
            ev.sample
                .as_ref()
                .and_then(|s| s.first())
                .map_or("-", |n| n)
        ),
        _ => ev.action.clone().unwrap_or_else(|| "-".into()),
    };
    let why = ev
        .rule
        .clone()
        .or_else(|| ev.reason.clone())
        .or_else(|| ev.details.as_ref().map(|d| d.to_string()))
        .unwrap_or_default();
    println!(
        "{}  {:<19} {:<18} {:<21} {:<16} {:<28} {:<16} {:<8} {:>4}  {}",
        ev.time,
        ev.event.map(|e| e.as_str()).unwrap_or("-"),
        ev.principal
            .as_deref()
            .or(ev.user.as_deref())
            .unwrap_or("-"),
        client,
        ev.api.as_deref().unwrap_or("-"),
        resource,
        ev.operation.as_deref().unwrap_or("-"),
        ev.decision.as_deref().unwrap_or("-"),
        ev.error_code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "-".into()),
        why
    );
}

fn emit_lines(reader: impl BufRead, f: &Filter, json: bool) {
    for line in reader.lines().map_while(Result::ok) {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AuditEvent>(&line) {
            Ok(ev) if f.keep(&ev) => print(&ev, &line, json),
            Ok(_) => {}
            Err(e) => eprintln!("skipping a malformed audit line: {e}"),
        }
    }
}

fn audit_path(args: &AuditArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &args.file {
        return Ok(p.clone());
    }
    Ok(Config::load(&args.config, &Overrides::default())?
        .audit
        .file)
}

/// Follows the live file; when it is rotated away, finishes the rotated
/// copy first so nothing written before the rotation is skipped.
fn follow(path: &Path, f: &Filter, json: bool) -> anyhow::Result<()> {
    let open = |p: &Path| std::fs::File::open(p);
    let mut file = open(path)?;
    let mut inode = file.metadata()?.ino();
    let mut pos = file.seek(SeekFrom::End(0))?;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let current = std::fs::metadata(path).ok().map(|m| m.ino());
        if current.is_some() && current != Some(inode) {
            // Rotated: the old inode is now `.1`; read what is left of it.
            if let Ok(mut old) = open(&rotated_path(path, 1)) {
                if old.metadata()?.ino() == inode {
                    old.seek(SeekFrom::Start(pos))?;
                    emit_lines(BufReader::new(old), f, json);
                }
            }
            file = open(path)?;
            inode = file.metadata()?.ino();
            pos = 0;
        }
        file.seek(SeekFrom::Start(pos))?;
        let mut buf = String::new();
        file.read_to_string(&mut buf)?;
        // Only whole lines; a partial last line is read next time.
        let complete = buf.rfind('\n').map(|i| i + 1).unwrap_or(0);
        emit_lines(BufReader::new(&buf.as_bytes()[..complete]), f, json);
        pos += complete as u64;
    }
}

pub fn run(args: AuditArgs) -> anyhow::Result<()> {
    let path = audit_path(&args)?;
    match args.command {
        AuditCommand::Tail {
            follow: follow_mode,
            principal,
            denied,
            event,
            topic,
            since,
            json,
        } => {
            let f = Filter {
                principal,
                denied,
                event,
                topic,
                since: since.as_deref().map(parse_since).transpose()?,
            };
            let files = files_oldest_first(&path);
            if files.is_empty() && !follow_mode {
                bail!("no audit log at {}", path.display());
            }
            for p in &files {
                let file = std::fs::File::open(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                emit_lines(BufReader::new(file), &f, json);
            }
            if follow_mode {
                follow(&path, &f, json)?;
            }
        }
    }
    Ok(())
}
