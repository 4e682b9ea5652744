//! Consumer groups: the classic rebalance protocol and committed offsets.

pub mod coordinator;
pub mod offsets;

pub use coordinator::{Coordinator, GroupSettings, GroupState};
pub use offsets::OffsetStore;
