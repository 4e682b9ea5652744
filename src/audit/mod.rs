//! The audit trail: who did what, from where, allowed or denied, and with
//! which outcome. Records are built on the request path and written by a
//! dedicated thread behind a bounded queue.

pub mod aggregate;
pub mod chain;
pub mod coalesce;
pub mod event;
pub mod login_failures;
pub mod outcome;
pub mod policy_violations;
pub mod sink;
pub mod sources;
pub mod topic_mirror;
pub mod verify;

pub use event::{AuditEvent, EventKind};
pub use sink::{AllowLevel, AuditConfig, Auditor, WhenFull};
