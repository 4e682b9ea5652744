//! Metadata and DescribeCluster: this broker is the whole cluster, node
//! `node_id`, reachable at the listener the client came in on.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::acl::Operation;
use crate::log::Topic;

use crate::edge::errors;
use crate::edge::RequestContext;

fn node(ctx: &RequestContext<'_>) -> BrokerId {
    BrokerId(ctx.broker.config.node_id)
}

fn topic_entry(ctx: &RequestContext<'_>, t: &Topic) -> MetadataResponseTopic {
    let leader = node(ctx);
    let partitions = (0..t.partition_count())
        .map(|i| {
            MetadataResponsePartition::default()
                .with_partition_index(i)
                .with_leader_id(leader)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![leader])
                .with_isr_nodes(vec![leader])
        })
        .collect();
    let mut entry = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.to_string()))))
        .with_partitions(partitions);
    if ctx.version >= 1 {
        entry.is_internal = t.name.starts_with("__");
    }
    if ctx.version >= 10 {
        entry.topic_id = t.id;
    }
    entry
}

fn unknown_topic(name: Option<TopicName>, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(name)
        .with_error_code(code)
}

/// Kafka answers (and authorizes) each named topic once, however often the
/// request names it. Marks the first entry of each name, and every entry by
/// id, without a set of all the names: a sorted index costs one word a name
/// and borrows the names from the request.
fn first_occurrences(list: &[MetadataRequestTopic]) -> Vec<bool> {
    let mut first = vec![true; list.len()];
    fn text(n: &TopicName) -> &str {
        n
    }
    let name = |i: usize| list[i].name.as_ref().map(text);
    let mut order: Vec<usize> = (0..list.len()).filter(|&i| name(i).is_some()).collect();
    order.sort_unstable_by(|&a, &b| name(a).cmp(&name(b)).then(a.cmp(&b)));
    for pair in order.windows(2) {
        if name(pair[0]) == name(pair[1]) {
            first[pair[1]] = false;
        }
    }
    first
}

pub fn handle_metadata(ctx: &RequestContext<'_>, req: MetadataRequest) -> MetadataResponse {
    let logs = &ctx.broker.logs;
    let topics = match req.topics {
        // All topics: silently drop what the principal may not describe.
        None => logs
            .topics()
            .iter()
            .filter(|t| {
                ctx.authorize_quiet(
                    Operation::Describe,
                    crate::acl::ResourceType::Topic,
                    &t.name,
                )
            })
            .map(|t| topic_entry(ctx, t))
            .collect(),
        Some(list) => {
            let first = first_occurrences(&list);
            let mut out = Vec::with_capacity(first.iter().filter(|f| **f).count());
            for (wanted, first) in list.into_iter().zip(first) {
                if !first {
                    continue;
                }
                // Authorization comes before existence: an unauthorized
                // client learns nothing about which topics exist.
                if let Some(n) = &wanted.name {
                    if !ctx.authorize_topic(Operation::Describe, n) {
                        out.push(unknown_topic(
                            wanted.name.clone(),
                            errors::TOPIC_AUTHORIZATION_FAILED,
                        ));
                        continue;
                    }
                }
                let found = match &wanted.name {
                    Some(n) => logs.topic(n),
                    None => logs.topic_by_id(wanted.topic_id),
                };
                let found = match found {
                    Some(t) => Some(t),
                    None => match &wanted.name {
                        Some(n)
                            if req.allow_auto_topic_creation
                                && logs.defaults.auto_create_topics
                                && (ctx.authorize_quiet(
                                    Operation::Create,
                                    crate::acl::ResourceType::Cluster,
                                    crate::acl::model::CLUSTER_NAME,
                                ) || ctx.authorize_topic(Operation::Create, n)) =>
                        {
                            ctx.broker.auto_create(n)
                        }
                        _ => None,
                    },
                };
                // By id, the name is only known after the lookup.
                let found = found.filter(|t| {
                    wanted.name.is_some() || ctx.authorize_topic(Operation::Describe, &t.name)
                });
                out.push(match found {
                    Some(t) => topic_entry(ctx, &t),
                    None if wanted.name.is_none() => {
                        let mut e = unknown_topic(None, errors::UNKNOWN_TOPIC_ID);
                        e.topic_id = wanted.topic_id;
                        e
                    }
                    None => {
                        let code = match &wanted.name {
                            Some(n) if crate::log::manager::validate_topic_name(n).is_err() => {
                                errors::INVALID_TOPIC_EXCEPTION
                            }
                            _ => errors::UNKNOWN_TOPIC_OR_PARTITION,
                        };
                        unknown_topic(wanted.name, code)
                    }
                });
            }
            out
        }
    };
    let l = ctx.listener;
    let mut resp = MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node(ctx))
            .with_host(StrBytes::from_string(l.advertised_host.clone()))
            .with_port(l.advertised_port as i32)])
        .with_controller_id(node(ctx))
        .with_topics(topics);
    if ctx.version >= 2 {
        resp.cluster_id = Some(StrBytes::from_string(logs.cluster_id.clone()));
    }
    resp
}

pub fn handle_describe_cluster(
    ctx: &RequestContext<'_>,
    _req: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let l = ctx.listener;
    if !ctx.authorize_cluster(Operation::Describe) {
        return DescribeClusterResponse::default()
            .with_error_code(errors::CLUSTER_AUTHORIZATION_FAILED)
            .with_error_message(Some(StrBytes::from_static_str(
                "Cluster authorization failed.",
            )));
    }
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(ctx.broker.logs.cluster_id.clone()))
        .with_controller_id(node(ctx))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node(ctx))
            .with_host(StrBytes::from_string(l.advertised_host.clone()))
            .with_port(l.advertised_port as i32)])
}
