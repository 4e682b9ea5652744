//! Metadata, DescribeCluster and DescribeLogDirs: describing the cluster.
//! Broker addresses are rewritten elsewhere (`gateway::rewrite`); here:
//! which topics the client may see.

use crate::audit::coalesce::CodeSink;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::{
    DescribeClusterRequest, DescribeLogDirsRequest, DescribeLogDirsResponse, MetadataRequest,
    RequestKind, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::plan::{Fix, Fixup, Plan};
use crate::acl::model::CLUSTER_NAME;
use crate::acl::{Operation, ResourceType};
use crate::edge::RequestContext;

/// Kafka's "authorized operations not asked for" value. When they are
/// asked for, the edge computes them for the client
/// ([`RequestContext::authorized_operations`]): the upstream's answer would
/// describe the service principal.
const OPERATIONS_UNKNOWN: i32 = i32::MIN;

/// The cluster's authorized operations as Kafka answers them when asked:
/// none without DESCRIBE on the cluster.
fn cluster_operations(ctx: &RequestContext<'_>) -> i32 {
    if ctx.authorize_quiet(Operation::Describe, ResourceType::Cluster, CLUSTER_NAME) {
        ctx.authorized_operations(ResourceType::Cluster, CLUSTER_NAME)
    } else {
        0
    }
}

/// Kafka answers (and authorizes) each named topic once, however often the
/// request names it. Marks the first entry of each name, and every entry by
/// id, without a set of all the names: a sorted index costs one word a name
/// and borrows the names from the request.
fn first_occurrences(list: &[MetadataRequestTopic]) -> Vec<bool> {
    let mut first = vec![true; list.len()];
    let name = |i: usize| list[i].name.as_deref().map(|n| n.as_str());
    let mut order: Vec<usize> = (0..list.len()).filter(|&i| name(i).is_some()).collect();
    order.sort_unstable_by(|&a, &b| name(a).cmp(&name(b)).then(a.cmp(&b)));
    for pair in order.windows(2) {
        if name(pair[0]) == name(pair[1]) {
            first[pair[1]] = false;
        }
    }
    first
}

pub fn metadata(ctx: &RequestContext<'_>, mut r: MetadataRequest) -> Plan {
    let mut changed = false;
    let mut refused = Vec::new();
    // Topics asked by id: their names (and so the decision) are only known
    // from the answer.
    let mut by_id = Vec::new();
    let all = r.topics.is_none();
    if let Some(mut list) = r.topics.take() {
        // The Java client asks by id with the name left at its default, ""
        // (not null); Kafka goes by the id whenever there is one.
        for t in list.iter_mut() {
            if !t.topic_id.is_nil() && t.name.as_ref().is_some_and(|n| n.is_empty()) {
                t.name = None;
                changed = true;
            }
        }
        let first = first_occurrences(&list);
        changed |= first.iter().any(|f| !f);
        let mut keep = Vec::with_capacity(list.len());
        for (t, first) in list.into_iter().zip(first) {
            if !first {
                continue;
            }
            match &t.name {
                // Authorization comes before existence: an unauthorized
                // client learns nothing about which topics exist.
                Some(n) if !ctx.authorize_topic(Operation::Describe, n) => {
                    refused.push(
                        MetadataResponseTopic::default()
                            .with_name(Some(n.clone()))
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_topic_authorized_operations(OPERATIONS_UNKNOWN),
                    );
                    changed = true;
                }
                Some(_) => keep.push(t),
                None => {
                    by_id.push(t.topic_id);
                    keep.push(t);
                }
            }
        }
        r.topics = Some(keep);
    }
    if r.allow_auto_topic_creation {
        // Decided quietly: a client that may not create a topic is simply
        // not given one (Kafka answers UNKNOWN_TOPIC_OR_PARTITION).
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
    // Sorted once: the answer is checked against it topic by topic, and a
    // request may name hundreds of thousands of ids.
    by_id.sort_unstable();
    // v0 reads an empty list as "all topics": when nothing named is left,
    // whatever comes back was not asked for.
    let none_asked = r.topics.as_ref().is_some_and(|t| t.is_empty());
    // Metadata v8+ (the cluster's only up to v10).
    let topic_ops = r.include_topic_authorized_operations;
    let cluster_ops = r.include_cluster_authorized_operations;
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        let ResponseKind::Metadata(m) = resp else {
            return;
        };
        m.cluster_authorized_operations = if cluster_ops {
            cluster_operations(ctx)
        } else {
            OPERATIONS_UNKNOWN
        };
        if none_asked {
            m.topics.clear();
        }
        m.topics.retain_mut(|t| {
            t.topic_authorized_operations = OPERATIONS_UNKNOWN;
            let Some(name) = t.name.as_deref().map(|n| n.as_str()) else {
                return true;
            };
            let allowed = if all {
                // Listing all topics: undescribable ones are left out
                // quietly; hiding them is filtering, not a refusal.
                ctx.authorize_quiet(Operation::Describe, ResourceType::Topic, name)
            } else {
                // Asked by name: authorized above.
                by_id.binary_search(&t.topic_id).is_err()
                    || ctx.authorize_topic(Operation::Describe, name)
            };
            if allowed {
                if topic_ops {
                    t.topic_authorized_operations =
                        ctx.authorized_operations(ResourceType::Topic, name);
                }
                return true;
            }
            if all {
                return false;
            }
            t.name = None;
            t.error_code = ResponseError::TopicAuthorizationFailed.code();
            t.partitions.clear();
            true
        });
        m.topics.extend(refused);
    });
    Plan::Forward {
        body: RequestKind::Metadata(r),
        changed,
        fix: Some(Fix::Filter(fix)),
    }
}

/// DescribeCluster is answered for every logged-in client, as Kafka does
/// (it reveals what Metadata already does: brokers and the cluster id).
/// Kafka's Java `Admin` (3.7+) sends it before `describeTopics`, so a
/// refusal here would break `kafka-topics --describe` for ordinary users.
/// Only the cluster's authorized operations depend on the caller's rights.
pub fn describe_cluster(_ctx: &RequestContext<'_>, r: DescribeClusterRequest) -> Plan {
    let include = r.include_cluster_authorized_operations;
    let fix: Fixup = Box::new(move |resp: &mut ResponseKind, ctx: &RequestContext<'_>| {
        if let ResponseKind::DescribeCluster(d) = resp {
            d.cluster_authorized_operations = if include {
                cluster_operations(ctx)
            } else {
                OPERATIONS_UNKNOWN
            };
        }
    });
    Plan::Forward {
        body: RequestKind::DescribeCluster(r),
        changed: false,
        fix: Some(Fix::Filter(fix)),
    }
}

/// DescribeLogDirs needs DESCRIBE on the cluster, as in Kafka, which then
/// answers for every partition asked (no per-topic check). Refused: no log
/// dirs and, from v3, the top-level CLUSTER_AUTHORIZATION_FAILED.
pub fn describe_log_dirs(ctx: &RequestContext<'_>, r: DescribeLogDirsRequest) -> Plan {
    if !ctx.authorize_cluster(Operation::Describe) {
        return Plan::local(ResponseKind::DescribeLogDirs(
            DescribeLogDirsResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        ));
    }
    Plan::Forward {
        body: RequestKind::DescribeLogDirs(r),
        changed: false,
        fix: None,
    }
}

/// The code the client got for each topic it named.
pub(super) fn codes(resp: &ResponseKind, f: &mut CodeSink<'_>) {
    if let ResponseKind::Metadata(r) = resp {
        for t in &r.topics {
            if let Some(n) = &t.name {
                f("topic", n, t.error_code);
            }
        }
    }
}

/// DescribeCluster's and DescribeLogDirs' single code.
pub(super) fn top_code(resp: &ResponseKind) -> Option<i16> {
    match resp {
        ResponseKind::DescribeCluster(r) => Some(r.error_code),
        ResponseKind::DescribeLogDirs(r) => Some(r.error_code),
        _ => None,
    }
}
