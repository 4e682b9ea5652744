//! Portcullis: a Kafka-compatible broker whose network edge is a security gateway.
//!
//! `ARCHITECTURE.md` is the map: `server` (listeners, framing, the connection
//! loop) hands each request to the `edge` (one home per Kafka API family:
//! authorization, refusals, audit), which passes what it allowed to a back
//! end, `embedded` (the `log` engine and coordinators) or `gateway` (an
//! upstream cluster). `start` wires them together.

pub mod acl;
pub mod alloc_guard;
pub mod audit;
pub mod broker;
pub mod client;
pub mod config;
pub mod dynamic_config;
pub mod edge;
pub mod embedded;
pub mod gateway;
pub mod group;
pub mod group_config;
pub mod log;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod quota;
pub mod security;
pub mod server;
pub mod start;
pub mod tls;
pub mod txn;
pub mod util;

// Every binary that links this library gets the guard; see `alloc_guard` for why.
#[global_allocator]
static GLOBAL: alloc_guard::HugeAllocGuard = alloc_guard::HugeAllocGuard;
