//! Policies: rules on what allowed requests may do (topic naming, config
//! bounds, partition counts, producer settings, consumer names), read from
//! the policy file (hot-reloaded like the ACL file) and evaluated by the
//! edge after authorization, before any back end.
//!
//! - `model.rs`: the file's serde shape;
//! - `file.rs`: reading, parsing and validating it (errors name the line);
//! - `set.rs`: the compiled, indexed rule set and its evaluation;
//! - `store.rs`: the live set, swapped on reload;
//! - `produce.rs`: facts read from Produce record batches.

pub mod file;
pub mod model;
pub mod produce;
pub mod set;
pub mod store;

pub use file::PolicyFileError;
pub use model::{Action, Codec};
pub use produce::{FactsError, ProduceFacts, ProduceNeeds};
pub use set::{Decision, PolicySet, Violation, MAX_AUDITED};
pub use store::PolicyStore;

#[cfg(test)]
mod tests;
