//! Policy violations, audited through the [`Aggregator`]: the first
//! violation of a (principal, rule, resource, decision) in a window is
//! written as its full record; repeats within the window become one
//! `policy_violation` record with `details.count`, `first` and `last`.
//!
//! The job: a busy producer breaking an audit-only rule (or retrying a
//! refused request) sends hundreds of requests a second, each a violation;
//! the trail keeps one record per window and key, not one per request.

use super::aggregate::{self, Aggregate, WindowedAudit};
use super::{AuditEvent, EventKind};

/// What makes two violations "the same" for the audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ViolationKey {
    pub principal: String,
    pub rule: String,
    pub resource_type: String,
    /// Bounded like every resource name in the audit.
    pub resource: String,
    /// `blocked` or `audited`.
    pub decision: &'static str,
}

/// Policy violations by key, one record per key and window.
pub type PolicyViolations = WindowedAudit<ViolationKey>;

impl PolicyViolations {
    pub fn new(max_keys: usize, window_ms: u64) -> PolicyViolations {
        WindowedAudit::with_record(max_keys, window_ms, record)
    }
}

fn record(a: &Aggregate<ViolationKey>, window_ms: u64) -> AuditEvent {
    let mut ev = AuditEvent::new(EventKind::PolicyViolation);
    ev.details = Some(aggregate::details(a, window_ms));
    match &a.key {
        Some(k) => {
            ev.principal = Some(k.principal.clone());
            ev.resource_type = Some(k.resource_type.clone());
            ev.resource_name = Some(k.resource.clone());
            ev.decision = Some(k.decision.to_string());
            if let Some(d) = ev.details.as_mut() {
                d["rule"] = k.rule.clone().into();
            }
        }
        None => {
            ev.reason = Some("more distinct policy violations than the table holds".into());
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rule: &str) -> ViolationKey {
        ViolationKey {
            principal: "User:alice".into(),
            rule: rule.into(),
            resource_type: "topic".into(),
            resource: "src-a-b-avro".into(),
            decision: "audited",
        }
    }

    #[test]
    fn repeats_become_one_record_with_a_count() {
        let v = PolicyViolations::new(16, 10_000);
        assert!(v.note(key("acks")));
        for _ in 0..499 {
            assert!(!v.note(key("acks")));
        }
        assert!(v.note(key("codecs")));
        let recs = v.drain_records();
        assert_eq!(recs.len(), 1);
        let d = recs[0].details.as_ref().unwrap();
        assert_eq!(d["count"], 499);
        assert_eq!(d["rule"], "acks");
        assert_eq!(recs[0].decision.as_deref(), Some("audited"));
    }
}
