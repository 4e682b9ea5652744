//! Failed logins, audited through the [`Aggregator`]: the first failure of
//! a (client address, user, mechanism, reason) is written as today's full
//! record; repeats within `sasl.login_throttle.audit_window_ms` become one
//! `authentication`/`failure` record with `details.count`, `first` and
//! `last`. Successful logins are not aggregated.
//!
//! `user` in the key is the claimed name only when the credential store
//! knows it; every name that does not exist folds into one key per address
//! (`user` absent in the aggregated record), so an attacker spraying made-up
//! names cannot fill the table. The individual first record still carries
//! the name as claimed.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use super::aggregate::{self, Aggregate, WindowedAudit};
use super::{AuditEvent, Auditor, EventKind};

/// Longest client-chosen mechanism name kept in a key or a record.
const MAX_MECHANISM: usize = 64;

/// What makes two failed logins "the same" for the audit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoginFailureKey {
    pub address: IpAddr,
    /// A user the store knows; `None` for unknown names and no name.
    pub user: Option<String>,
    pub mechanism: Cow<'static, str>,
    /// Short stable label (`wrong_password`, `unknown_user`, `throttled`...).
    pub reason: &'static str,
    pub error_code: Option<i16>,
}

impl LoginFailureKey {
    /// `mechanism` as requested by the client, cut to a bounded length.
    pub fn mechanism_label(mechanism: &str) -> Cow<'static, str> {
        if mechanism == crate::security::scram::MECHANISM {
            return Cow::Borrowed(crate::security::scram::MECHANISM);
        }
        let mut end = mechanism.len().min(MAX_MECHANISM);
        while !mechanism.is_char_boundary(end) {
            end -= 1;
        }
        Cow::Owned(mechanism[..end].to_string())
    }
}

/// Label of attempts closed by the login throttle without being checked.
pub const THROTTLED: &str = "throttled";

/// Failed logins by key, one record per key and window.
pub type LoginFailures = WindowedAudit<LoginFailureKey>;

impl LoginFailures {
    pub fn new(max_keys: usize, window_ms: u64) -> LoginFailures {
        WindowedAudit::with_record(max_keys, window_ms, record)
    }

    /// A connection or attempt closed by the login throttle: counted, and
    /// written at once only when it is the first of its address this window.
    pub async fn throttled(&self, auditor: &Auditor, peer: SocketAddr, listener: &str) {
        let key = LoginFailureKey {
            address: peer.ip(),
            user: None,
            mechanism: Cow::Borrowed("none"),
            reason: THROTTLED,
            error_code: None,
        };
        if self.note(key) {
            let mut ev = AuditEvent::new(EventKind::Authentication).peer(peer, listener);
            ev.decision = Some("failure".into());
            ev.reason = Some(format!(
                "{THROTTLED}: too many failed logins from this address; closed before checking"
            ));
            auditor.submit(ev).await;
        }
    }
}

fn record(a: &Aggregate<LoginFailureKey>, window_ms: u64) -> AuditEvent {
    let mut ev = AuditEvent::new(EventKind::Authentication);
    ev.decision = Some("failure".into());
    ev.details = Some(aggregate::details(a, window_ms));
    match &a.key {
        Some(k) => {
            ev.client_address = Some(k.address.to_string());
            ev.user = k.user.clone();
            ev.mechanism = Some(k.mechanism.to_string());
            ev.reason = Some(k.reason.to_string());
            ev.error_code = k.error_code;
        }
        None => {
            ev.reason = Some("more distinct failed-login keys than audit_max_keys".into());
        }
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: Option<&str>) -> LoginFailureKey {
        LoginFailureKey {
            address: "10.0.0.1".parse().unwrap(),
            user: user.map(str::to_string),
            mechanism: LoginFailureKey::mechanism_label("SCRAM-SHA-512"),
            reason: "wrong_password",
            error_code: Some(58),
        }
    }

    #[test]
    fn repeats_become_one_record_with_a_count() {
        let f = LoginFailures::new(16, 60_000);
        assert!(f.note(key(Some("alice"))));
        for _ in 0..99 {
            assert!(!f.note(key(Some("alice"))));
        }
        assert!(f.note(key(None)));
        let recs = f.drain_records();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.event, Some(EventKind::Authentication));
        assert_eq!(r.decision.as_deref(), Some("failure"));
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(r.client_address.as_deref(), Some("10.0.0.1"));
        assert_eq!(r.error_code, Some(58));
        let d = r.details.as_ref().unwrap();
        assert_eq!(d["count"], 99);
        assert_eq!(d["aggregated"], true);
        assert!(d["first"].as_str().unwrap() <= d["last"].as_str().unwrap());
        let line = serde_json::to_string(r).unwrap();
        assert!(line.len() < 400, "{line}");
    }

    #[test]
    fn long_mechanism_names_are_cut() {
        let m = LoginFailureKey::mechanism_label(&"é".repeat(100));
        assert!(m.len() <= MAX_MECHANISM);
    }
}
