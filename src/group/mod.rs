//! Consumer groups: the classic rebalance protocol, the consumer protocol
//! of KIP-848 (`consumer/`) and committed offsets shared by both.

pub mod consumer;
pub mod coordinator;
pub mod offsets;

pub use coordinator::{Coordinator, GroupSettings, GroupState};
pub use offsets::OffsetStore;
