//! Metadata and DescribeCluster. Broker addresses are rewritten elsewhere
//! (`gateway::rewrite`); here: which topics the client may see.

use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, RequestKind, ResponseKind,
};

use super::plan::{Fix, Fixup, Plan};
use crate::acl::model::CLUSTER_NAME;
use crate::acl::{Operation, ResourceType};
use crate::edge::{errors, RequestContext};

/// Kafka's "authorized operations not computed" value: the upstream's
/// answer describes the service principal, not the client.
const OPERATIONS_UNKNOWN: i32 = i32::MIN;

pub fn metadata(ctx: &RequestContext<'_>, mut r: MetadataRequest) -> Plan {
    let mut changed = false;
    let mut refused = Vec::new();
    let mut wanted: Option<Vec<String>> = None;
    if let Some(list) = r.topics.take() {
        let mut keep = Vec::with_capacity(list.len());
        let mut names = Vec::new();
        for t in list {
            match &t.name {
                // Authorization comes before existence, as in embedded mode.
                Some(n) if !ctx.authorize_topic(Operation::Describe, n) => {
                    refused.push(
                        MetadataResponseTopic::default()
                            .with_name(Some(n.clone()))
                            .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                            .with_topic_authorized_operations(OPERATIONS_UNKNOWN),
                    );
                    changed = true;
                }
                Some(n) => {
                    names.push(n.to_string());
                    keep.push(t);
                }
                None => keep.push(t),
            }
        }
        // v0 reads an empty list as "all topics": keep it meaning none.
        wanted = Some(names);
        r.topics = Some(keep);
    }
    if r.allow_auto_topic_creation {
        let may_create = |n: &str| {
            ctx.authorize_quiet(Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
                || ctx.authorize_quiet(Operation::Create, ResourceType::Topic, n)
        };
        let all_may = r.topics.as_ref().is_some_and(|ts| {
            ts.iter()
                .all(|t| t.name.as_ref().is_some_and(|n| may_create(n)))
        });
        if !all_may {
            r.allow_auto_topic_creation = false;
            changed = true;
        }
    }
    let by_id = r
        .topics
        .as_ref()
        .is_some_and(|ts| ts.iter().any(|t| t.name.is_none()));
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        let ResponseKind::Metadata(m) = resp else {
            return;
        };
        m.cluster_authorized_operations = OPERATIONS_UNKNOWN;
        m.topics.retain_mut(|t| {
            t.topic_authorized_operations = OPERATIONS_UNKNOWN;
            let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
                return true;
            };
            let asked = wanted.as_ref().map(|w| w.contains(&name));
            match asked {
                // Asked by name: already authorized above.
                Some(true) => true,
                // Listing all topics: undescribable ones are left out quietly.
                None => ctx.authorize_quiet(Operation::Describe, ResourceType::Topic, &name),
                // Asked by id (or v0's "all" for an empty list).
                Some(false) if by_id => {
                    if ctx.authorize_topic(Operation::Describe, &name) {
                        true
                    } else {
                        t.name = None;
                        t.error_code = errors::TOPIC_AUTHORIZATION_FAILED;
                        t.partitions.clear();
                        true
                    }
                }
                Some(false) => false,
            }
        });
        m.topics.extend(refused);
    });
    Plan::Forward {
        body: RequestKind::Metadata(r),
        changed,
        fix: Some(Fix::Filter(fix)),
    }
}

pub fn describe_cluster(ctx: &RequestContext<'_>, r: DescribeClusterRequest) -> Plan {
    if !ctx.authorize_cluster(Operation::Describe) {
        return Plan::local(ResponseKind::DescribeCluster(
            DescribeClusterResponse::default()
                .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
                .with_controller_id((-1).into())
                .with_cluster_authorized_operations(OPERATIONS_UNKNOWN),
        ));
    }
    let fix: Fixup = Box::new(|resp: &mut ResponseKind, _: &RequestContext<'_>| {
        if let ResponseKind::DescribeCluster(d) = resp {
            d.cluster_authorized_operations = OPERATIONS_UNKNOWN;
        }
    });
    Plan::Forward {
        body: RequestKind::DescribeCluster(r),
        changed: false,
        fix: Some(Fix::Filter(fix)),
    }
}
