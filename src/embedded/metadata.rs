//! Metadata and DescribeCluster: this broker is the whole cluster, node
//! `node_id`, reachable at the listener the client came in on.

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::log::Topic;

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

/// Answers for the topics the edge let through (each name once, the
/// undescribable ones already refused; topics asked by id are authorized
/// by the edge on this answer, once their names are known).
pub fn handle_metadata(ctx: &RequestContext<'_>, req: MetadataRequest) -> MetadataResponse {
    let logs = &ctx.broker.logs;
    let topics = match req.topics {
        None => logs.topics().iter().map(|t| topic_entry(ctx, t)).collect(),
        Some(list) => list
            .into_iter()
            .map(|wanted| {
                let found = match &wanted.name {
                    Some(n) => logs.topic(n),
                    None => logs.topic_by_id(wanted.topic_id),
                };
                let found = match (found, &wanted.name) {
                    (Some(t), _) => Some(t),
                    // The edge cleared the flag unless the client may
                    // create every topic it names.
                    (None, Some(n))
                        if req.allow_auto_topic_creation && logs.defaults().auto_create_topics =>
                    {
                        ctx.broker.auto_create(n)
                    }
                    (None, _) => None,
                };
                match found {
                    Some(t) => topic_entry(ctx, &t),
                    None if wanted.name.is_none() => {
                        let mut e = unknown_topic(None, ResponseError::UnknownTopicId.code());
                        e.topic_id = wanted.topic_id;
                        e
                    }
                    None => {
                        let code = match &wanted.name {
                            Some(n) if crate::log::manager::validate_topic_name(n).is_err() => {
                                ResponseError::InvalidTopicException.code()
                            }
                            _ => ResponseError::UnknownTopicOrPartition.code(),
                        };
                        unknown_topic(wanted.name, code)
                    }
                }
            })
            .collect(),
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
    DescribeClusterResponse::default()
        .with_cluster_id(StrBytes::from_string(ctx.broker.logs.cluster_id.clone()))
        .with_controller_id(node(ctx))
        .with_brokers(vec![DescribeClusterBroker::default()
            .with_broker_id(node(ctx))
            .with_host(StrBytes::from_string(l.advertised_host.clone()))
            .with_port(l.advertised_port as i32)])
}
