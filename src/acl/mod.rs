//! Authorization: Kafka's ACL model, an indexed authorizer, the ACL file
//! (the source of truth, hot-reloaded) and the live store.

pub mod authorizer;
mod fast_parse;
pub mod file;
pub mod filter;
pub mod model;
pub mod store;

pub use authorizer::{AclSet, Decision, Reason};
pub use model::{HostMatch, Operation, PatternType, Permission, ResourceType, Rule};
pub use store::AclStore;
