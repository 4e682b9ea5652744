//! Audit volume per source (principal, client address): who fills the
//! audit log's size budget. Rotation deletes the oldest file, so a single
//! source that writes most of the bytes can push everyone else's records
//! out of the trail; this makes that visible (`portcullis audit sources`)
//! and raises an alarm (an `audit_volume_alarm` record and a WARN line)
//! while it happens.
//!
//! The table is Space-Saving (Metwally et al.): at most `capacity`
//! sources are tracked; a new source takes the place of the smallest one
//! and inherits its count as a possible overcount (`error`). Any source
//! with more than 1/capacity of the bytes is always in the table, and
//! `bytes - error` never overstates what it wrote, so an alarm is never
//! raised on an overcount.

use std::collections::HashMap;

use super::event::{AuditEvent, EventKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Principal,
    Address,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Principal => "principal",
            SourceKind::Address => "address",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SourceEntry {
    pub kind: SourceKind,
    pub name: Box<str>,
    /// Bytes counted for this source (an upper bound).
    pub bytes: u64,
    /// How much of `bytes` may belong to sources it replaced.
    pub error: u64,
    /// An alarm was raised for it in the current window.
    alarmed: bool,
}

impl SourceEntry {
    /// Bytes this source certainly wrote.
    pub fn guaranteed(&self) -> u64 {
        self.bytes - self.error
    }
}

/// Bounded heavy-hitter table of bytes per source.
#[derive(Debug)]
pub struct SourceTable {
    capacity: usize,
    entries: Vec<SourceEntry>,
    // One index per kind, so a lookup borrows the name (no allocation per
    // record; only a source new to the table allocates its name).
    principals: HashMap<Box<str>, usize>,
    addresses: HashMap<Box<str>, usize>,
}

impl SourceTable {
    pub fn new(capacity: usize) -> SourceTable {
        SourceTable {
            capacity: capacity.max(2),
            entries: Vec::new(),
            principals: HashMap::new(),
            addresses: HashMap::new(),
        }
    }

    fn index(&mut self, kind: SourceKind) -> &mut HashMap<Box<str>, usize> {
        match kind {
            SourceKind::Principal => &mut self.principals,
            SourceKind::Address => &mut self.addresses,
        }
    }

    /// Counts `bytes` for a source; returns its entry's position.
    pub fn add(&mut self, kind: SourceKind, name: &str, bytes: u64) -> usize {
        if let Some(&i) = self.index(kind).get(name) {
            self.entries[i].bytes = self.entries[i].bytes.saturating_add(bytes);
            return i;
        }
        let entry = |error: u64| SourceEntry {
            kind,
            name: name.into(),
            bytes: error.saturating_add(bytes),
            error,
            alarmed: false,
        };
        let i = if self.entries.len() < self.capacity {
            self.entries.push(entry(0));
            self.entries.len() - 1
        } else {
            // Replace the smallest: an O(capacity) scan, only for a source
            // the table does not hold.
            let (i, min) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.bytes)
                .map(|(i, e)| (i, e.bytes))
                .unwrap_or((0, 0));
            let old = std::mem::replace(&mut self.entries[i], entry(min));
            self.index(old.kind).remove(&old.name);
            i
        };
        self.index(kind).insert(name.into(), i);
        i
    }

    pub fn entry(&self, i: usize) -> &SourceEntry {
        &self.entries[i]
    }

    /// The largest sources first.
    pub fn top(&self, n: usize) -> Vec<&SourceEntry> {
        let mut v: Vec<&SourceEntry> = self.entries.iter().collect();
        v.sort_by(|a, b| {
            b.bytes
                .cmp(&a.bytes)
                .then(a.kind.cmp(&b.kind))
                .then(a.name.cmp(&b.name))
        });
        v.truncate(n);
        v
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.principals.clear();
        self.addresses.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The sources a record is counted for: its principal and its address.
/// Records of the broker itself (start, stop, reloads) have neither.
pub fn sources_of(ev: &AuditEvent) -> impl Iterator<Item = (SourceKind, &str)> {
    ev.principal
        .as_deref()
        .map(|p| (SourceKind::Principal, p))
        .into_iter()
        .chain(
            ev.client_address
                .as_deref()
                .map(|a| (SourceKind::Address, a)),
        )
}

/// How many sources the writer tracks per window.
pub const WRITER_CAPACITY: usize = 256;

/// The writer's alarm: within one window (the bytes written to the current
/// file since it was opened), once `min_bytes` are written, a source with
/// more than `share` of them raises one alarm per window.
#[derive(Debug)]
pub struct VolumeWatch {
    share: f64,
    min_bytes: u64,
    window_bytes: u64,
    table: SourceTable,
}

impl VolumeWatch {
    pub fn new(share: f64, min_bytes: u64) -> VolumeWatch {
        VolumeWatch {
            share,
            min_bytes: min_bytes.max(1),
            window_bytes: 0,
            table: SourceTable::new(WRITER_CAPACITY),
        }
    }

    /// A share of 1 or more can never be exceeded: the alarm is off.
    fn enabled(&self) -> bool {
        self.share < 1.0
    }

    /// A new window (the file rotated).
    pub fn reset(&mut self) {
        self.window_bytes = 0;
        self.table.clear();
    }

    /// Counts one written record of `bytes`; pushes an alarm record onto
    /// `alarms` for each of its sources that just crossed the share.
    pub fn account(&mut self, ev: &AuditEvent, bytes: u64, alarms: &mut Vec<AuditEvent>) {
        if !self.enabled() || ev.event == Some(EventKind::AuditVolumeAlarm) {
            return;
        }
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        for (kind, name) in sources_of(ev) {
            let i = self.table.add(kind, name, bytes);
            if self.window_bytes < self.min_bytes {
                continue;
            }
            let e = &self.table.entries[i];
            let share = e.guaranteed() as f64 / self.window_bytes as f64;
            if e.alarmed || share <= self.share {
                continue;
            }
            self.table.entries[i].alarmed = true;
            let e = &self.table.entries[i];
            tracing::warn!(
                source_kind = e.kind.as_str(),
                source = ?e.name,
                bytes = e.guaranteed(),
                window_bytes = self.window_bytes,
                share = format!("{:.0}%", share * 100.0),
                "audit volume alarm: one source wrote most of the audit log's current file \
                 (rotation deletes the oldest files, so this source is pushing others' records out)"
            );
            let mut rec = AuditEvent::new(EventKind::AuditVolumeAlarm);
            rec.reason = Some(format!(
                "{} {} wrote {:.0}% of the {} bytes of the current audit file (alarm above {:.0}%)",
                e.kind.as_str(),
                e.name,
                share * 100.0,
                self.window_bytes,
                self.share * 100.0
            ));
            rec.details = Some(serde_json::json!({
                "source_kind": e.kind.as_str(),
                "source": &*e.name,
                "bytes": e.guaranteed(),
                "window_bytes": self.window_bytes,
                "share": (share * 1000.0).round() / 1000.0,
                "alarm_share": self.share,
            }));
            alarms.push(rec);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(principal: &str, addr: &str) -> AuditEvent {
        let mut ev = AuditEvent::new(EventKind::Authentication);
        ev.principal = Some(principal.into());
        ev.client_address = Some(addr.into());
        ev
    }

    #[test]
    fn table_is_bounded_and_keeps_the_heavy_hitter() {
        let mut t = SourceTable::new(8);
        for i in 0..10_000u64 {
            t.add(
                SourceKind::Address,
                &format!("10.0.{}.{}", i / 256, i % 256),
                10,
            );
            t.add(SourceKind::Principal, "User:mallory", 30);
        }
        assert!(t.len() <= 8);
        let top = t.top(1);
        assert_eq!(&*top[0].name, "User:mallory");
        assert_eq!(top[0].guaranteed(), 300_000);
    }

    #[test]
    fn alarm_once_per_window_above_the_share() {
        let mut w = VolumeWatch::new(0.6, 1000);
        let mut alarms = Vec::new();
        // Two balanced sources: no alarm.
        for i in 0..100 {
            let ev = if i % 2 == 0 {
                rec("User:a", "10.0.0.1")
            } else {
                rec("User:b", "10.0.0.2")
            };
            w.account(&ev, 100, &mut alarms);
        }
        assert!(alarms.is_empty(), "{alarms:?}");
        // One source floods: one alarm per source kind, once.
        for _ in 0..1000 {
            w.account(&rec("User:a", "10.0.0.1"), 100, &mut alarms);
        }
        assert_eq!(alarms.len(), 2, "{alarms:?}");
        assert!(alarms
            .iter()
            .all(|a| a.event == Some(EventKind::AuditVolumeAlarm)));
        w.reset();
        alarms.clear();
        for _ in 0..20 {
            w.account(&rec("User:a", "10.0.0.1"), 100, &mut alarms);
        }
        assert_eq!(alarms.len(), 2, "a new window alarms again");
        // Off at share >= 1.
        let mut off = VolumeWatch::new(1.0, 1);
        alarms.clear();
        for _ in 0..20 {
            off.account(&rec("User:a", "10.0.0.1"), 100, &mut alarms);
        }
        assert!(alarms.is_empty());
    }
}
