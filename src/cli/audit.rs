//! `portcullis audit tail`: reads the audit log across rotated files,
//! filters it, and prints a table (or the JSON lines); `-f` keeps following
//! the live file through rotations. `audit verify` checks the hash chain;
//! `audit sources` shows who fills the retained budget.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use portcullis::audit::sink::{files_oldest_first, rotated_path};
use portcullis::audit::sources::{SourceKind, SourceTable};
use portcullis::audit::verify::verify;
use portcullis::audit::{AuditConfig, AuditEvent};
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
    /// Print audit records, oldest first. With --output json, each record
    /// is one JSON document on its own line (a stream, so that -f works).
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
        #[command(flatten)]
        out: super::connect::OutputArgs,
    },
    /// Check the hash chain of every retained file (and the anchor of
    /// deleted ones): gaps, edits, reordering. Exits non-zero on any problem.
    Verify,
    /// Bytes of the retained audit files per source (principal, client
    /// address), largest first, with their share of the retained bytes.
    Sources {
        /// How many sources to show.
        #[arg(long, default_value_t = 10)]
        top: usize,
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

fn run_verify(path: &Path) -> anyhow::Result<()> {
    let files = files_oldest_first(path);
    if files.is_empty() {
        bail!("no audit log at {}", path.display());
    }
    let r = verify(path, &files);
    for p in &r.problems {
        println!("{p}");
    }
    let seqs = match (r.first_seq, r.last_seq) {
        (Some(a), Some(b)) => format!("seq {a}..={b}"),
        _ => "no chained record".into(),
    };
    let mut notes = Vec::new();
    if let Some(a) = &r.anchor {
        notes.push(format!(
            "continues the anchor: seq {} of deleted {}",
            a.seq, a.file
        ));
    }
    for (at, reason) in &r.chain_starts {
        notes.push(format!("chain starts at {at}: {reason}"));
    }
    if r.legacy_records > 0 {
        notes.push(format!(
            "{} earlier records without seq (written before the chain existed) are not verifiable",
            r.legacy_records
        ));
    }
    let summary = format!("{} records in {} files, {seqs}", r.records, r.files.len());
    if r.ok() {
        println!("intact: {summary}");
    } else {
        println!("NOT intact: {} problems; {summary}", r.problems.len());
    }
    for n in notes {
        println!("  {n}");
    }
    if !r.ok() {
        bail!("the audit trail has {} problems", r.problems.len());
    }
    Ok(())
}

/// The source fields of a record; the rest is not parsed.
#[derive(serde::Deserialize)]
struct SourceFields {
    principal: Option<String>,
    client_address: Option<String>,
}

fn run_sources(path: &Path, cfg: Option<&AuditConfig>, top: usize) -> anyhow::Result<()> {
    let files = files_oldest_first(path);
    if files.is_empty() {
        bail!("no audit log at {}", path.display());
    }
    let mut table = SourceTable::new(4096);
    let (mut total, mut records, mut broker_bytes) = (0u64, 0u64, 0u64);
    let mut line = Vec::new();
    for p in &files {
        let file =
            std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
        let mut r = BufReader::new(file);
        loop {
            line.clear();
            if r.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let bytes = line.len() as u64;
            total += bytes;
            records += 1;
            let Ok(f) = serde_json::from_slice::<SourceFields>(&line) else {
                continue;
            };
            if f.principal.is_none() && f.client_address.is_none() {
                broker_bytes += bytes;
            }
            if let Some(pr) = &f.principal {
                table.add(SourceKind::Principal, pr, bytes);
            }
            if let Some(a) = &f.client_address {
                table.add(SourceKind::Address, a, bytes);
            }
        }
    }
    let share = |b: u64| 100.0 * b as f64 / total.max(1) as f64;
    print!(
        "retained: {total} bytes, {records} records in {} files",
        files.len()
    );
    if let Some(c) = cfg {
        let budget = c
            .max_file_bytes
            .saturating_mul(c.keep_files.max(1) as u64 + 1);
        print!(
            " (budget {budget} bytes: {} files of {} bytes; {:.1}% used)",
            c.keep_files.max(1) + 1,
            c.max_file_bytes,
            100.0 * total as f64 / budget.max(1) as f64
        );
    }
    println!();
    println!("{:>7} {:>14}  source", "share", "bytes");
    for e in table.top(top) {
        let over = if e.error > 0 {
            format!(" (at most {} more)", e.error)
        } else {
            String::new()
        };
        println!(
            "{:>6.1}% {:>14}  {} {}{over}",
            share(e.guaranteed()),
            e.guaranteed(),
            e.kind.as_str(),
            e.name
        );
    }
    println!(
        "{:>6.1}% {:>14}  the broker itself (no principal or address)",
        share(broker_bytes),
        broker_bytes
    );
    Ok(())
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
        AuditCommand::Verify => run_verify(&path)?,
        AuditCommand::Sources { top } => {
            let cfg = match &args.file {
                Some(_) => None,
                None => Some(Config::load(&args.config, &Overrides::default())?.audit),
            };
            run_sources(&path, cfg.as_ref(), top)?
        }
        AuditCommand::Tail {
            follow: follow_mode,
            principal,
            denied,
            event,
            topic,
            since,
            out,
        } => {
            let json = out.json();
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
