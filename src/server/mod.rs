//! The network edge: listeners, framing and the per-connection loop.

pub mod connection;
pub mod endpoint;
pub mod frame;
pub mod limits;
pub mod listener;
pub mod log_limit;

pub use endpoint::BoundListener;
