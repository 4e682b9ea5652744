//! What a connection knows of the listener it came in on.

use std::net::SocketAddr;

use crate::config::SecurityProtocol;

/// A listener after binding: what clients are told to connect to.
#[derive(Debug, Clone)]
pub struct BoundListener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub bound: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
    /// Position of the listener in the config (gateway routes are kept
    /// per configured listener).
    pub index: usize,
    /// Gateway mode: the upstream broker this listener stands for; `None`
    /// on the configured (bootstrap) listeners.
    pub upstream_node: Option<i32>,
}
