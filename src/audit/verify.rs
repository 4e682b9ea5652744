//! `portcullis audit verify`: reads the audit files oldest first (and the
//! anchor left by deleted files) and checks the hash chain record by
//! record. Reports gaps (missing seq), edits (a record that no longer
//! hashes to what its successor names), reordering and lines that are not
//! records, each with its file and line.
//!
//! Records are matched by seq through a bounded reorder buffer, so a swap
//! or a moved line is reported once as a reordering rather than as gaps,
//! and memory stays bounded however long the trail is.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::chain::{Anchor, ChainFields, ChainHash};

/// How many records may wait for a missing predecessor before it is
/// declared missing.
const REORDER_WINDOW: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    file: usize,
    line: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Records missing from the chain.
    Gap,
    /// A record changed after it was written.
    Edit,
    /// Records written in another order than their seq.
    Reorder,
    /// A line that is not an audit record (torn write or edit).
    Malformed,
    /// A new chain began after records of an earlier one.
    ChainRestart,
    /// A file could not be read, or the anchor is invalid.
    Unreadable,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Gap => "gap",
            ProblemKind::Edit => "edit",
            ProblemKind::Reorder => "reorder",
            ProblemKind::Malformed => "malformed",
            ProblemKind::ChainRestart => "chain restart",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub kind: ProblemKind,
    /// `file:line` (or the file alone).
    pub at: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.at, self.kind.as_str(), self.message)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub files: Vec<PathBuf>,
    /// Records carrying a seq.
    pub records: u64,
    /// Records written before the chain existed (no seq), at the start.
    pub legacy_records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub anchor: Option<Anchor>,
    /// Where chains begin, and why (the first one included).
    pub chain_starts: Vec<(String, String)>,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Copy)]
struct Rec {
    seq: u64,
    hash: ChainHash,
    prev_hash: Option<ChainHash>,
    loc: Loc,
}

struct Verifier {
    report: Report,
    /// The last record taken into the chain.
    prev: Option<Rec>,
    /// Records that arrived before their predecessor, by seq.
    pending: BTreeMap<u64, Rec>,
    chained: bool,
}

impl Verifier {
    fn at(&self, loc: Loc) -> String {
        let name = self
            .report
            .files
            .get(loc.file)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        format!("{name}:{}", loc.line)
    }

    fn problem(&mut self, kind: ProblemKind, loc: Loc, message: String) {
        let at = self.at(loc);
        self.report.problems.push(Problem { kind, at, message });
    }

    fn record(&mut self, line: &[u8], loc: Loc) {
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let Some(fields) = ChainFields::parse(line) else {
            self.problem(
                ProblemKind::Malformed,
                loc,
                "not an audit record (a torn write or an edit)".into(),
            );
            return;
        };
        let Some(seq) = fields.seq else {
            if self.chained {
                self.problem(
                    ProblemKind::Malformed,
                    loc,
                    "a record without seq after the chain began".into(),
                );
            } else {
                self.report.legacy_records += 1;
            }
            return;
        };
        let rec = Rec {
            seq,
            hash: ChainHash::of_line(line),
            prev_hash: fields.prev_hash,
            loc,
        };
        self.report.records += 1;
        if fields.is_chain_start() {
            self.flush();
            let reason = fields.reason.unwrap_or_default();
            if self.chained {
                self.problem(
                    ProblemKind::ChainRestart,
                    loc,
                    format!(
                        "a new chain begins at seq {seq} ({reason}); continuity with the records before cannot be shown"
                    ),
                );
            } else if let Some(a) = self.report.anchor.clone() {
                if self.report.legacy_records == 0 {
                    self.problem(
                        ProblemKind::Gap,
                        loc,
                        format!(
                            "the anchor says seq {} ({}) was deleted, but the trail begins a new chain",
                            a.seq, a.file
                        ),
                    );
                }
            }
            self.report.chain_starts.push((self.at(loc), reason));
            self.take(rec);
            self.chained = true;
            return;
        }
        if !self.chained {
            self.chained = true;
            self.first(rec);
            return;
        }
        self.arrive(rec);
    }

    /// The first chained record of the trail: it continues the anchor.
    fn first(&mut self, rec: Rec) {
        match self.report.anchor.clone() {
            Some(a) if rec.seq == a.seq.wrapping_add(1) => {
                if rec.prev_hash != Some(a.hash) {
                    self.problem(
                        ProblemKind::Edit,
                        rec.loc,
                        format!(
                            "seq {} does not continue the anchor (last deleted record seq {} in {}): prev_hash differs",
                            rec.seq, a.seq, a.file
                        ),
                    );
                }
            }
            Some(a) if rec.seq > a.seq => self.problem(
                ProblemKind::Gap,
                rec.loc,
                format!(
                    "seq {}..={} missing at the start of the trail (the anchor's last deleted record is seq {} in {})",
                    a.seq + 1,
                    rec.seq - 1,
                    a.seq,
                    a.file
                ),
            ),
            // The oldest file still holds the anchored record: the broker
            // stopped between writing the anchor and deleting the file.
            Some(_) => {}
            None => self.problem(
                ProblemKind::Gap,
                rec.loc,
                format!(
                    "the trail begins at seq {} with neither an audit_chain_start record nor an anchor: earlier records are missing",
                    rec.seq
                ),
            ),
        }
        self.take(rec);
    }

    fn take(&mut self, rec: Rec) {
        self.report.first_seq.get_or_insert(rec.seq);
        self.report.last_seq = Some(rec.seq);
        self.prev = Some(rec);
    }

    /// Links `rec` to the previous record (consecutive seq).
    fn link(&mut self, rec: Rec) {
        if let Some(p) = self.prev {
            if rec.prev_hash != Some(p.hash) {
                self.problem(
                    ProblemKind::Edit,
                    p.loc,
                    format!(
                        "seq {} was changed after it was written: seq {} at {} names another hash as its predecessor",
                        p.seq,
                        rec.seq,
                        self.at(rec.loc)
                    ),
                );
            }
        }
        self.take(rec);
    }

    fn next_seq(&self) -> u64 {
        self.prev.map(|p| p.seq.wrapping_add(1)).unwrap_or(0)
    }

    fn arrive(&mut self, rec: Rec) {
        let next = self.next_seq();
        if rec.seq < next {
            let (pseq, ploc) = self.prev.map(|p| (p.seq, p.loc)).unwrap_or((0, rec.loc));
            self.problem(
                ProblemKind::Reorder,
                rec.loc,
                format!(
                    "seq {} comes after seq {} at {} (out of order, or a copied record)",
                    rec.seq,
                    pseq,
                    self.at(ploc)
                ),
            );
            return;
        }
        if rec.seq > next {
            if let Some(dup) = self.pending.insert(rec.seq, rec) {
                self.problem(
                    ProblemKind::Reorder,
                    rec.loc,
                    format!(
                        "seq {} appears twice (also at {})",
                        rec.seq,
                        self.at(dup.loc)
                    ),
                );
            }
            if self.pending.len() > REORDER_WINDOW {
                self.skip_gap();
            }
            return;
        }
        self.link(rec);
        // Records that were written before this one but follow it in the
        // chain: one report for the run.
        let mut moved: Option<(Rec, u64)> = None;
        while let Some(r) = self.pending.remove(&self.next_seq()) {
            self.link(r);
            moved = Some(match moved {
                None => (r, 1),
                Some((first, n)) => (first, n + 1),
            });
        }
        if let Some((first, n)) = moved {
            let more = if n > 1 {
                format!(" and the {} records after it", n - 1)
            } else {
                String::new()
            };
            self.problem(
                ProblemKind::Reorder,
                first.loc,
                format!(
                    "seq {}{more} written before seq {} at {}, which precedes it in the chain",
                    first.seq,
                    rec.seq,
                    self.at(rec.loc)
                ),
            );
        }
    }

    /// The smallest waiting record's predecessors never came: report the
    /// gap and continue from it.
    fn skip_gap(&mut self) {
        let Some((_, r)) = self.pending.pop_first() else {
            return;
        };
        let next = self.next_seq();
        let after = self
            .prev
            .map(|p| format!(" (after seq {} at {})", p.seq, self.at(p.loc)))
            .unwrap_or_default();
        let missing = if r.seq - next == 1 {
            format!("seq {next} is missing")
        } else {
            format!("seq {next}..={} are missing", r.seq - 1)
        };
        self.problem(ProblemKind::Gap, r.loc, format!("{missing}{after}"));
        self.take(r);
        while let Some(r) = self.pending.remove(&self.next_seq()) {
            self.link(r);
        }
    }

    fn flush(&mut self) {
        while !self.pending.is_empty() {
            self.skip_gap();
        }
    }
}

/// Verifies `files` (oldest first) against the anchor of `log`.
pub fn verify(log: &Path, files: &[PathBuf]) -> Report {
    let mut v = Verifier {
        report: Report {
            files: files.to_vec(),
            ..Default::default()
        },
        prev: None,
        pending: BTreeMap::new(),
        chained: false,
    };
    match Anchor::read(log) {
        Ok(a) => v.report.anchor = a,
        Err(e) => v.report.problems.push(Problem {
            kind: ProblemKind::Unreadable,
            at: super::chain::anchor_path(log).display().to_string(),
            message: e.to_string(),
        }),
    }
    let mut line = Vec::with_capacity(4096);
    for (i, path) in files.iter().enumerate() {
        let live = i + 1 == files.len();
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) => {
                v.report.problems.push(Problem {
                    kind: ProblemKind::Unreadable,
                    at: path.display().to_string(),
                    message: e.to_string(),
                });
                continue;
            }
        };
        let mut r = BufReader::with_capacity(256 * 1024, file);
        let mut n = 0u64;
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    let at = format!("{}:{}", path.display(), n + 1);
                    v.report.problems.push(Problem {
                        kind: ProblemKind::Unreadable,
                        at,
                        message: e.to_string(),
                    });
                    break;
                }
            }
            n += 1;
            let loc = Loc { file: i, line: n };
            match line.strip_suffix(b"\n") {
                Some(whole) => v.record(whole, loc),
                // The live file's last line may be being written now.
                None if live => {}
                None => v.problem(
                    ProblemKind::Malformed,
                    loc,
                    "a partial last line (a torn write)".into(),
                ),
            }
        }
    }
    v.flush();
    v.report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::Chain;
    use crate::audit::event::{AuditEvent, EventKind};

    /// A chain of `n` records after a chain start, as the writer makes it.
    fn lines(n: u64) -> Vec<String> {
        let mut chain = Chain::new();
        let mut out = Vec::new();
        for i in 0..=n {
            let mut ev = AuditEvent::new(if i == 0 {
                EventKind::AuditChainStart
            } else {
                EventKind::AdminAction
            });
            chain.stamp(&mut ev);
            let line = serde_json::to_string(&ev).unwrap();
            chain.advance(line.as_bytes());
            out.push(line);
        }
        out
    }

    fn run(lines: &[String]) -> Report {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        std::fs::write(&log, lines.join("\n") + "\n").unwrap();
        verify(&log, std::slice::from_ref(&log))
    }

    fn kinds(r: &Report) -> Vec<ProblemKind> {
        r.problems.iter().map(|p| p.kind).collect()
    }

    #[test]
    fn intact_edited_deleted_swapped() {
        let l = lines(50);
        let r = run(&l);
        assert!(r.ok(), "{:?}", r.problems);
        assert_eq!(
            (r.records, r.first_seq, r.last_seq),
            (51, Some(0), Some(50))
        );

        let mut e = l.clone();
        e[10] = e[10].replace("admin_action", "authorization");
        let r = run(&e);
        assert_eq!(kinds(&r), vec![ProblemKind::Edit], "{:?}", r.problems);
        assert!(r.problems[0].at.ends_with(":11"), "{}", r.problems[0]);

        let mut d = l.clone();
        d.remove(20);
        let r = run(&d);
        assert_eq!(kinds(&r), vec![ProblemKind::Gap], "{:?}", r.problems);
        assert!(r.problems[0].message.contains("seq 20 is missing"));

        let mut s = l.clone();
        s.swap(30, 31);
        let r = run(&s);
        assert_eq!(kinds(&r), vec![ProblemKind::Reorder], "{:?}", r.problems);
        assert!(r.problems[0].at.ends_with(":31"), "{}", r.problems[0]);

        let mut m = l.clone();
        let moved = m.remove(5);
        m.insert(40, moved);
        let r = run(&m);
        assert_eq!(kinds(&r), vec![ProblemKind::Reorder], "{:?}", r.problems);
    }

    #[test]
    fn a_trail_cut_at_the_head_needs_the_anchor() {
        let l = lines(20);
        let r = run(&l[5..]);
        assert_eq!(kinds(&r), vec![ProblemKind::Gap], "{:?}", r.problems);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        std::fs::write(&log, l[5..].join("\n") + "\n").unwrap();
        Anchor {
            seq: 4,
            hash: ChainHash::of_line(l[4].as_bytes()),
            file: "audit.log.3".into(),
            time: String::new(),
        }
        .write(&log)
        .unwrap();
        let r = verify(&log, std::slice::from_ref(&log));
        assert!(r.ok(), "{:?}", r.problems);
    }
}
