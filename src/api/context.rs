use std::net::SocketAddr;

use kafka_protocol::messages::{ApiKey, RequestHeader};

use crate::broker::Broker;
use crate::server::BoundListener;

/// Everything a handler may know about the request beyond its body.
pub struct RequestContext<'a> {
    pub broker: &'a Broker,
    pub listener: &'a BoundListener,
    pub peer: SocketAddr,
    pub api: ApiKey,
    pub version: i16,
    pub header: &'a RequestHeader,
    /// Who is asking: `User:name`, or `User:ANONYMOUS`.
    pub principal: &'a str,
}
