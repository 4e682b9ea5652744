//! The network edge: listeners, framing and the per-connection loop.

pub mod connection;
pub mod frame;
pub mod listener;

pub use listener::BoundListener;
