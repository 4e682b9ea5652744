use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestHeader};

use crate::acl::model::CLUSTER_NAME;
use crate::acl::{AclSet, Operation, ResourceType};
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
    /// The rule set in force when the request arrived: one request sees one
    /// consistent set even if the file is reloaded meanwhile.
    pub acls: Arc<AclSet>,
}

impl RequestContext<'_> {
    /// The single authorization choke point for handlers.
    pub fn authorize(&self, op: Operation, rt: ResourceType, name: &str) -> bool {
        self.acls
            .allowed(self.principal, self.peer.ip(), op, rt, name)
    }

    pub fn authorize_cluster(&self, op: Operation) -> bool {
        self.authorize(op, ResourceType::Cluster, CLUSTER_NAME)
    }

    pub fn authorize_topic(&self, op: Operation, topic: &str) -> bool {
        self.authorize(op, ResourceType::Topic, topic)
    }
}
