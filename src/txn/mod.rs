//! Producer guarantees above the log: producer ids and the transaction
//! coordinator. The per-partition state that appends check and update
//! (idempotent-producer state, open and aborted transactions, the marker
//! batches) lives in the log (`log::producer_state`, `log::txn_index`,
//! `log::txn_markers`), so the log never imports this module.

pub mod coordinator;
pub mod producer_ids;
