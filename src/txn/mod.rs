//! Producer ids and idempotent-producer state. (Transactions are not served
//! yet: transactional InitProducerId answers COORDINATOR_NOT_AVAILABLE.)

pub mod coordinator;
pub mod markers;
pub mod partition_index;
pub mod producer_ids;
pub mod producer_state;
