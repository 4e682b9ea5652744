//! Producer guarantees: producer ids, idempotent-producer state, and the
//! transaction coordinator with its per-partition bookkeeping and markers.

pub mod coordinator;
pub mod markers;
pub mod partition_index;
pub mod producer_ids;
pub mod producer_state;
