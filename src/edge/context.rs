use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use kafka_protocol::messages::{ApiKey, RequestHeader};

use crate::acl::model::CLUSTER_NAME;
use crate::acl::{AclSet, Operation, ResourceType};
use crate::audit::coalesce::{bounded_name, AuditBuffer, DecisionKey, Outcomes};
use crate::audit::{AllowLevel, AuditEvent, EventKind};
use crate::broker::Broker;
use crate::server::BoundListener;

/// Everything a handler may know about the request beyond its body.
pub struct RequestContext<'a> {
    pub broker: &'a Broker,
    pub listener: &'a BoundListener,
    pub peer: SocketAddr,
    pub api: ApiKey,
    pub version: i16,
    pub header: &'a RequestHeader,
    /// Who is asking: `User:name`, or `User:ANONYMOUS`.
    pub principal: &'a str,
    /// The rule set in force when the request arrived: one request sees one
    /// consistent set even if the file is reloaded meanwhile.
    pub acls: Arc<AclSet>,
    /// Audit records made while handling; written after the response is
    /// known, so they carry its error codes. Decisions on many resources
    /// coalesce there, so a request's records stay bounded.
    pub audit: Mutex<AuditBuffer>,
    /// The quota buckets the request spends from, and its throttle.
    pub quota: crate::quota::RequestQuota,
    /// The policies in force when the request arrived (like `acls`).
    pub policies: Arc<crate::policy::PolicySet>,
    /// Policy violations recorded for this request so far (bounded).
    pub policy_records: std::sync::atomic::AtomicU32,
    /// The connection's incremental fetch sessions (requests on one
    /// connection are handled one at a time; shared only with the walk of
    /// an answer still passing to the client, `data::watch_fetch`).
    pub fetch_sessions: &'a crate::edge::fetch_session::SharedFetchSessions,
    /// What the back end keeps for this connection between requests.
    pub backend_slot: Mutex<&'a mut crate::edge::backend::ConnectionSlot>,
}

/// Policy violation records one request may write; past this, one more
/// record says that the rest were not recorded (a request naming
/// thousands of topics must not write thousands of records).
const MAX_POLICY_RECORDS: u32 = 16;

impl<'a> RequestContext<'a> {
    pub fn backend_slot(
        &self,
    ) -> std::sync::MutexGuard<'_, &'a mut crate::edge::backend::ConnectionSlot> {
        self.backend_slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn fetch_sessions(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::edge::fetch_session::FetchSessions> {
        self.fetch_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// An audit record pre-filled with who, from where and which request.
    pub fn event(&self, kind: EventKind) -> AuditEvent {
        let mut ev = AuditEvent::new(kind).peer(self.peer, &self.listener.name);
        ev.principal = Some(self.principal.to_string());
        ev.client_id = self.header.client_id.as_deref().map(bounded_name);
        ev.api = Some(format!("{:?}", self.api));
        ev.api_version = Some(self.version);
        ev.correlation_id = Some(self.header.correlation_id);
        ev
    }

    fn is_audit_topic(&self, rt: ResourceType, name: &str) -> bool {
        rt == ResourceType::Topic && self.broker.auditor.topic.as_deref() == Some(name)
    }

    fn decide(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        if self.is_audit_topic(rt, name) {
            return self.acls.is_super_user(self.principal);
        }
        self.acls
            .allowed(self.principal, self.peer.ip(), op, rt, name)
    }

    /// The single authorization choke point for handlers. Denials are
    /// always audited; allows according to the configured level.
    pub fn authorize(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        let allowed = self.decide(op, rt, name);
        self.broker
            .metrics
            .authorization(self.api, op.as_str(), rt.as_str(), allowed);
        let auditor = &self.broker.auditor;
        // A super user reading the audit topic must not feed it: each read
        // would write a record that wakes the next read.
        let record = !allowed
            || !self.is_audit_topic(rt, name)
                && match auditor.allow_level {
                    AllowLevel::All => true,
                    AllowLevel::Admin => super::versions::is_admin(self.api),
                    AllowLevel::None => false,
                };
        if record && auditor.enabled() {
            let rule = if self.is_audit_topic(rt, name) {
                if allowed {
                    "super user"
                } else {
                    "audit topic: super users only"
                }
                .to_string()
            } else {
                self.acls
                    .authorize(self.principal, self.peer.ip(), op, rt, name)
                    .reason
                    .to_string()
            };
            let key = DecisionKey {
                resource_type: rt,
                operation: op,
                allowed,
            };
            self.audit
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .decision(key, name, rule, || self.event(EventKind::Authorization));
        }
        allowed
    }

    /// The request's audit records, finished with the outcomes in `resp`.
    pub fn take_audit(&self, outcomes: Option<&Outcomes<'_>>) -> Vec<AuditEvent> {
        let buffer = std::mem::take(&mut *self.audit.lock().unwrap_or_else(|p| p.into_inner()));
        if buffer.is_empty() {
            return Vec::new();
        }
        buffer.finish(outcomes, |key, name| {
            self.decide(key.operation, key.resource_type, name) == key.allowed
        })
    }

    /// Authorization without an audit record, for Metadata's all-topics
    /// listing: hiding undescribable topics there is filtering, not a
    /// refusal, and auditing it would log every topic on every refresh.
    pub fn authorize_quiet(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        self.decide(op, rt, name)
    }

    /// Kafka's authorized-operations bit field (`1 << code` per operation)
    /// for one resource: the operations Kafka lists for its type that this
    /// client may perform, decided quietly (Kafka logs none of them). The
    /// edge computes it for both back ends: an upstream's answer would
    /// describe the gateway's service principal.
    pub fn authorized_operations(&self, rt: ResourceType, name: &str) -> i32 {
        use Operation::*;
        // Kafka's AclEntry.supportedOperations (4.x: groups have configs).
        let ops: &[Operation] = match rt {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
        };
        ops.iter()
            .filter(|op| self.decide(**op, rt, name))
            .fold(0, |bits, op| bits | 1 << op.code())
    }

    /// An idempotent producer's InitProducerId: Kafka allows it with
    /// IDEMPOTENT_WRITE on the cluster or WRITE on any topic. A refusal is
    /// recorded like any other.
    pub fn may_write_idempotently(&self) -> bool {
        let allowed = self.authorize_quiet(
            Operation::IdempotentWrite,
            ResourceType::Cluster,
            CLUSTER_NAME,
        ) || self.acls.any_allow(
            self.principal,
            self.peer.ip(),
            Operation::Write,
            ResourceType::Topic,
        );
        if !allowed {
            self.authorize_cluster(Operation::IdempotentWrite);
        }
        allowed
    }

    pub fn authorize_cluster(&self, op: Operation) -> bool {
        self.authorize(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    pub fn authorize_topic(&self, op: Operation, topic: &str) -> bool {
        self.authorize(op, ResourceType::Topic, topic)
    }

    /// Records what the policies said about one resource (every violation,
    /// blocking or audit-only, gets an audit record naming its rule) and
    /// returns the blocking violation, if any. Called after authorization,
    /// for resources the principal may use.
    pub fn policy(
        &self,
        decision: crate::policy::Decision,
        resource_type: &str,
        name: &str,
    ) -> Option<crate::policy::Violation> {
        if decision.is_clean() {
            return None;
        }
        let blocked = decision.blocked.iter().map(|v| (v, "blocked"));
        let audited = decision.audited.iter().map(|v| (v, "audited"));
        for (v, outcome) in blocked.chain(audited) {
            self.policy_record(v, outcome, resource_type, name);
        }
        decision.blocked
    }

    fn policy_record(
        &self,
        v: &crate::policy::Violation,
        outcome: &str,
        resource_type: &str,
        name: &str,
    ) {
        use std::sync::atomic::Ordering;
        if !self.broker.auditor.enabled() {
            return;
        }
        // Repeats across requests (a busy producer, a retrying client)
        // are counted into one record per key and window.
        let key = crate::audit::policy_violations::ViolationKey {
            principal: self.principal.to_string(),
            rule: v.rule.clone(),
            resource_type: resource_type.to_string(),
            resource: bounded_name(name),
            decision: if outcome == "blocked" {
                "blocked"
            } else {
                "audited"
            },
        };
        if !self.broker.policy_violations.note(key) {
            return;
        }
        let n = self.policy_records.fetch_add(1, Ordering::Relaxed);
        if n > MAX_POLICY_RECORDS {
            return;
        }
        let mut ev = self.event(EventKind::PolicyViolation);
        if n == MAX_POLICY_RECORDS {
            ev.reason = Some("more policy violations in this request are not recorded".into());
        } else {
            ev.resource_type = Some(resource_type.to_string());
            ev.resource_name = Some(bounded_name(name));
            ev.decision = Some(outcome.to_string());
            ev.reason = Some(v.message.clone());
            ev.details = Some(serde_json::json!({ "rule": v.rule }));
        }
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ev);
    }

    /// Records a completed admin action (topic create/delete, config or ACL
    /// change, credential change, offset reset...).
    pub fn admin_action(
        &self,
        action: &str,
        resource_type: &str,
        name: &str,
        details: Option<serde_json::Value>,
    ) {
        if !self.broker.auditor.enabled() {
            return;
        }
        let mut ev = self.event(EventKind::AdminAction);
        ev.action = Some(action.to_string());
        ev.resource_type = Some(resource_type.to_string());
        ev.resource_name = Some(bounded_name(name));
        ev.decision = Some("allow".into());
        ev.error_code = Some(0);
        ev.details = details;
        self.audit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(ev);
    }
}
