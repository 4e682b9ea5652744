//! Bounds what one request may add to the audit trail.
//!
//! A request can name millions of resources (a Metadata request naming two
//! million topics, a Produce to every partition...). Recording each decision
//! wrote hundreds of megabytes per request and held every record in memory
//! until the response was known. Here the decisions of one request are
//! grouped by (resource type, operation, allowed): the first
//! [`INDIVIDUAL_PER_GROUP`] of a group are recorded one by one, the rest
//! become one coalesced record carrying how many decisions it stands for
//! (`count`), a few of their names (`sample`) and every error code the
//! client got for them (`error_codes`). Nothing is dropped: the individual
//! records plus `count` are all the decisions. Names are cut to
//! [`MAX_NAME_BYTES`]. A request therefore costs at most
//! groups x (`INDIVIDUAL_PER_GROUP` + 1) records, whatever it names.

use std::hash::{Hash, Hasher};

use crate::acl::{Operation, ResourceType};

use super::event::AuditEvent;
use super::outcome;

/// Decisions of one group recorded one by one before the rest coalesce.
pub const INDIVIDUAL_PER_GROUP: u32 = 16;
/// Names a coalesced record shows.
pub const SAMPLE_NAMES: usize = 8;
/// Longest resource name an audit record carries; longer ones are cut and
/// marked (Kafka's protocol allows 32 KiB names).
pub const MAX_NAME_BYTES: usize = 256;
/// Distinct error codes a coalesced record lists (Kafka defines about 120;
/// this only guards against a response full of made-up ones).
const MAX_CODES: usize = 32;

/// `name`, or its first [`MAX_NAME_BYTES`] (on a character boundary)
/// followed by a marker that gives the full length. The marker cannot be
/// mistaken for part of a topic name, whose characters are `[A-Za-z0-9._-]`.
pub fn bounded_name(name: &str) -> String {
    if name.len() <= MAX_NAME_BYTES {
        return name.to_string();
    }
    let mut cut = MAX_NAME_BYTES;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...[truncated, {} bytes]", &name[..cut], name.len())
}

fn name_hash(name: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// What groups decisions: one coalesced record per key and request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionKey {
    pub resource_type: ResourceType,
    pub operation: Operation,
    pub allowed: bool,
}

struct Recorded {
    ev: AuditEvent,
    /// The group of an individually recorded decision; `None` for other
    /// records (admin actions), which are never coalesced.
    group: Option<usize>,
    /// Hash of the full resource name, to find its outcome in the response.
    hash: u64,
}

struct Coalesced {
    /// Who and what, stamped at the group's first coalesced decision.
    ev: AuditEvent,
    count: u64,
    sample: Vec<String>,
    several_rules: bool,
}

struct Group {
    key: DecisionKey,
    individual: u32,
    coalesced: Option<Coalesced>,
}

/// Receives (kind, name, code) for each resource an answer names, kind as
/// in `resource_type` ("topic", "group", "cluster", ...).
pub type CodeSink<'a> = dyn FnMut(&'static str, &str, i16) + 'a;

/// What the client got for the resources a request named, as the API's
/// home at the edge reads it from the answer: the audit knows decisions,
/// not the shapes of Kafka responses.
pub struct Outcomes<'a> {
    /// Calls the sink for every resource the answer names.
    pub each: &'a dyn Fn(&mut CodeSink<'_>),
    /// The answer's single code, for cluster-level decisions.
    pub top: Option<i16>,
}

/// The audit records of one request, kept until its response is known.
#[derive(Default)]
pub struct AuditBuffer {
    records: Vec<Recorded>,
    groups: Vec<Group>,
}

impl AuditBuffer {
    /// A record that is not an authorization decision: always kept whole.
    pub fn push(&mut self, ev: AuditEvent) {
        self.records.push(Recorded {
            ev,
            group: None,
            hash: 0,
        });
    }

    pub fn is_empty(&self) -> bool {
        // A group's first decisions are always individual records.
        self.records.is_empty()
    }

    /// Whether an allowed decision was recorded (its outcome is only in the
    /// response; a denial's is known without it).
    pub fn has_allows(&self) -> bool {
        self.records.iter().any(|r| !r.ev.is_denial())
    }

    /// Records one authorization decision on `name`, decided by `rule`.
    /// `base` makes a record that says who asked and in which request; it
    /// is called only for a record that is kept, not per coalesced decision.
    pub fn decision(
        &mut self,
        key: DecisionKey,
        name: &str,
        rule: String,
        base: impl FnOnce() -> AuditEvent,
    ) {
        let gi = match self.groups.iter().position(|g| g.key == key) {
            Some(i) => i,
            None => {
                self.groups.push(Group {
                    key,
                    individual: 0,
                    coalesced: None,
                });
                self.groups.len() - 1
            }
        };
        let g = &mut self.groups[gi];
        if g.individual < INDIVIDUAL_PER_GROUP {
            g.individual += 1;
            let mut ev = decision_record(base(), key, rule);
            ev.resource_name = Some(bounded_name(name));
            self.records.push(Recorded {
                ev,
                group: Some(gi),
                hash: name_hash(name),
            });
            return;
        }
        match &mut g.coalesced {
            None => {
                g.coalesced = Some(Coalesced {
                    ev: decision_record(base(), key, rule),
                    count: 1,
                    sample: vec![bounded_name(name)],
                    several_rules: false,
                })
            }
            Some(c) => {
                c.count += 1;
                if c.sample.len() < SAMPLE_NAMES {
                    c.sample.push(bounded_name(name));
                }
                if !c.several_rules && c.ev.rule.as_deref() != Some(rule.as_str()) {
                    c.several_rules = true;
                }
            }
        }
    }

    /// The finished records, with the error codes the client got, read
    /// from the answer in one pass by the API's home (`outcomes`).
    /// `decides` says whether `name` gets the key's decision (the request's
    /// rule set, asked again): it tells which answered names a coalesced
    /// record stands for without keeping them.
    pub fn finish(
        self,
        outcomes: Option<&Outcomes<'_>>,
        decides: impl Fn(DecisionKey, &str) -> bool,
    ) -> Vec<AuditEvent> {
        let AuditBuffer {
            mut records,
            groups,
        } = self;
        let top = outcomes.and_then(|o| o.top);
        let mut found: Vec<Option<i16>> = vec![None; records.len()];
        let mut codes: Vec<Vec<i16>> = vec![Vec::new(); groups.len()];
        let mut attributed: Vec<u64> = vec![0; groups.len()];
        if let Some(outcomes) = outcomes {
            let mut index: Vec<(u64, usize)> = records
                .iter()
                .enumerate()
                .filter(|(_, r)| r.group.is_some() && r.ev.error_code.is_none())
                .map(|(i, r)| (r.hash, i))
                .collect();
            index.sort_unstable();
            let any_coalesced = groups.iter().any(|g| g.coalesced.is_some());
            (outcomes.each)(&mut |kind, name, code| {
                // Groups that have this name among their individual records.
                let mut claimed: u128 = 0;
                let h = name_hash(name);
                let from = index.partition_point(|e| e.0 < h);
                for &(_, i) in index[from..].iter().take_while(|e| e.0 == h) {
                    let r = &records[i];
                    if r.ev.resource_type.as_deref() == Some(kind)
                        && r.ev
                            .resource_name
                            .as_deref()
                            .is_some_and(|n| same_name(name, n))
                    {
                        found[i] = Some(code);
                        if let Some(gi) = r.group.filter(|gi| *gi < 128) {
                            claimed |= 1 << gi;
                        }
                    }
                }
                if !any_coalesced {
                    return;
                }
                for (gi, g) in groups.iter().enumerate() {
                    if g.coalesced.is_none()
                        || g.key.resource_type.as_str() != kind
                        || (gi < 128 && claimed & (1 << gi) != 0)
                        || !decides(g.key, name)
                    {
                        continue;
                    }
                    attributed[gi] += 1;
                    if !codes[gi].contains(&code) && codes[gi].len() < MAX_CODES {
                        codes[gi].push(code);
                    }
                }
            });
        }
        for (r, code) in records.iter_mut().zip(found) {
            if r.group.is_none() || r.ev.error_code.is_some() {
                continue;
            }
            let rt = r.ev.resource_type.as_deref().unwrap_or_default();
            r.ev.error_code =
                Some(code.unwrap_or_else(|| outcome::fallback_code(rt, r.ev.is_denial(), top)));
        }
        let mut out: Vec<AuditEvent> = records.into_iter().map(|r| r.ev).collect();
        for ((g, mut codes), attributed) in groups.into_iter().zip(codes).zip(attributed) {
            let Some(c) = g.coalesced else {
                continue;
            };
            let mut ev = c.ev;
            // Names the response does not list got the code a decision
            // like theirs gets without a response entry.
            if attributed < c.count {
                let rt = g.key.resource_type.as_str();
                let code = outcome::fallback_code(rt, !g.key.allowed, top);
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
            codes.sort_unstable();
            if let [only] = codes[..] {
                ev.error_code = Some(only);
            }
            if c.several_rules {
                ev.rule = Some("several rules".into());
            }
            ev.count = Some(c.count);
            ev.sample = Some(c.sample);
            ev.error_codes = Some(codes);
            ev.details = Some(serde_json::json!({
                "recorded_individually": INDIVIDUAL_PER_GROUP,
            }));
            out.push(ev);
        }
        out
    }
}

/// Whether a recorded (possibly cut) name is `full`.
fn same_name(full: &str, recorded: &str) -> bool {
    if full.len() <= MAX_NAME_BYTES {
        full == recorded
    } else {
        recorded == bounded_name(full)
    }
}

fn decision_record(mut ev: AuditEvent, key: DecisionKey, rule: String) -> AuditEvent {
    ev.resource_type = Some(key.resource_type.to_string());
    ev.pattern = Some("literal".into());
    ev.operation = Some(key.operation.to_string());
    ev.decision = Some(if key.allowed { "allow" } else { "deny" }.into());
    ev.rule = Some(rule);
    ev
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::audit::EventKind;

    const DENY: DecisionKey = DecisionKey {
        resource_type: ResourceType::Topic,
        operation: Operation::Describe,
        allowed: false,
    };
    const CREATE_DENY: DecisionKey = DecisionKey {
        resource_type: ResourceType::Topic,
        operation: Operation::Create,
        allowed: false,
    };

    fn base() -> AuditEvent {
        AuditEvent::new(EventKind::Authorization)
    }

    /// An answer naming these topics with these codes.
    fn answer<'a>(names: &'a [(&'a str, i16)]) -> impl Fn(&mut CodeSink<'_>) + 'a {
        move |f| {
            for (n, c) in names {
                f("topic", n, *c);
            }
        }
    }

    #[test]
    fn names_are_cut_on_a_character_boundary_and_marked() {
        assert_eq!(bounded_name("orders"), "orders");
        let long = "é".repeat(200); // 400 bytes
        let cut = bounded_name(&long);
        assert!(cut.ends_with("...[truncated, 400 bytes]"), "{cut}");
        assert!(cut.len() <= MAX_NAME_BYTES + 30);
        assert!(same_name(&long, &cut));
        assert!(!same_name(&"é".repeat(201), &cut));
    }

    #[test]
    fn decisions_beyond_the_first_coalesce_and_add_up() {
        let mut b = AuditBuffer::default();
        let names: Vec<String> = (0..1000).map(|i| format!("t{i}")).collect();
        for n in &names {
            b.decision(DENY, n, "default deny".into(), base);
        }
        b.decision(CREATE_DENY, "t5", "default deny".into(), base);
        let mut answered: Vec<(&str, i16)> = names.iter().map(|n| (n.as_str(), 29)).collect();
        answered.push(("allowed", 0));
        // "allowed" is the only name the principal may describe.
        let each = answer(&answered);
        let out = b.finish(
            Some(&Outcomes {
                each: &each,
                top: None,
            }),
            |k, n| (n == "allowed") == k.allowed,
        );
        let individual: Vec<_> = out.iter().filter(|e| e.count.is_none()).collect();
        assert_eq!(individual.len(), 17);
        assert!(individual.iter().all(|e| e.error_code == Some(29)));
        let coalesced: Vec<_> = out.iter().filter(|e| e.count.is_some()).collect();
        assert_eq!(coalesced.len(), 1);
        let c = coalesced[0];
        assert_eq!(c.count, Some(1000 - 16));
        assert_eq!(c.sample.as_ref().unwrap().len(), SAMPLE_NAMES);
        assert_eq!(c.sample.as_ref().unwrap()[0], "t16");
        assert_eq!(c.error_codes, Some(vec![29]));
        assert_eq!(c.error_code, Some(29));
        assert_eq!(c.resource_name, None);
        assert_eq!(c.operation.as_deref(), Some("describe"));
        assert_eq!(c.rule.as_deref(), Some("default deny"));
    }

    #[test]
    fn coalesced_codes_come_from_the_response_and_rules_may_differ() {
        let mut b = AuditBuffer::default();
        for i in 0..40 {
            let rule = if i < 30 { "rule a" } else { "rule b" };
            b.decision(CREATE_DENY, &format!("n{i}"), rule.into(), base);
        }
        // Unknown topics whose creation was refused: 3, or 17 for an
        // invalid name; n39 is not in the response at all.
        let mut answered: Vec<(String, i16)> = (0..39)
            .map(|i| (format!("n{i}"), if i == 20 { 17 } else { 3 }))
            .collect();
        answered.push(("other".into(), 0));
        let refs: Vec<(&str, i16)> = answered.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        let each = answer(&refs);
        let out = b.finish(
            Some(&Outcomes {
                each: &each,
                top: None,
            }),
            |_, n| n != "other",
        );
        let c = out.iter().find(|e| e.count.is_some()).unwrap();
        assert_eq!(c.count, Some(24));
        assert_eq!(c.error_codes, Some(vec![3, 17, 29]));
        assert_eq!(c.error_code, None);
        assert_eq!(c.rule.as_deref(), Some("several rules"));
        assert!(out
            .iter()
            .filter(|e| e.count.is_none())
            .all(|e| e.error_code == Some(3)));
    }
}
