//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! IncrementalAlterConfigs.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::plan::{merge_into, refuse_or_forward, split, Plan};
use crate::acl::model::CLUSTER_NAME;
use crate::acl::{Operation, ResourceType};
use crate::edge::{errors, RequestContext};
use crate::embedded::configs::{RESOURCE_BROKER, RESOURCE_TOPIC};

fn denied_message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed."))
}

pub fn create_topics(ctx: &RequestContext<'_>, mut r: CreateTopicsRequest) -> Plan {
    // Create on the cluster covers every topic; else per topic (audited).
    let cluster = ctx.authorize_quiet(Operation::Create, ResourceType::Cluster, CLUSTER_NAME);
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        if cluster {
            ctx.authorize_cluster(Operation::Create)
        } else {
            ctx.authorize_topic(Operation::Create, &t.name)
        }
    });
    let refused: Vec<CreatableTopicResult> = denied
        .iter()
        .map(|t| {
            CreatableTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                .with_error_message(denied_message())
                .with_num_partitions(-1)
                .with_replication_factor(-1)
        })
        .collect();
    let nothing_left = allowed.is_empty();
    r.topics = allowed;
    refuse_or_forward!(
        CreateTopics,
        CreateTopicsResponse,
        topics,
        refused,
        nothing_left,
        r
    )
}

pub fn delete_topics(ctx: &RequestContext<'_>, mut r: DeleteTopicsRequest) -> Plan {
    let refuse = |name: Option<kafka_protocol::messages::TopicName>, id| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
            .with_error_message(denied_message())
    };
    let mut refused = Vec::new();
    let names = std::mem::take(&mut r.topic_names);
    let (ok_names, bad_names) = split(names, |n| ctx.authorize_topic(Operation::Delete, n));
    refused.extend(
        bad_names
            .into_iter()
            .map(|n| refuse(Some(n), Default::default())),
    );
    // By id (v6) the edge cannot know the name, so it cannot authorize:
    // such deletions are refused.
    let states = std::mem::take(&mut r.topics);
    let (ok_states, bad_states) = split(states, |t| {
        t.name
            .as_ref()
            .is_some_and(|n| ctx.authorize_topic(Operation::Delete, n))
    });
    refused.extend(bad_states.into_iter().map(|t| refuse(t.name, t.topic_id)));
    let nothing_left = ok_names.is_empty() && ok_states.is_empty();
    r.topic_names = ok_names;
    r.topics = ok_states;
    refuse_or_forward!(
        DeleteTopics,
        DeleteTopicsResponse,
        responses,
        refused,
        nothing_left,
        r
    )
}

pub fn create_partitions(ctx: &RequestContext<'_>, mut r: CreatePartitionsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        ctx.authorize_topic(Operation::Alter, &t.name)
    });
    let refused: Vec<CreatePartitionsTopicResult> = denied
        .iter()
        .map(|t| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(errors::TOPIC_AUTHORIZATION_FAILED)
                .with_error_message(denied_message())
        })
        .collect();
    let nothing_left = allowed.is_empty();
    r.topics = allowed;
    refuse_or_forward!(
        CreatePartitions,
        CreatePartitionsResponse,
        results,
        refused,
        nothing_left,
        r
    )
}

/// Topic configs need `op` on the topic, broker configs on the cluster.
fn config_denial(ctx: &RequestContext<'_>, op: Operation, rtype: i8, name: &str) -> Option<i16> {
    match rtype {
        RESOURCE_TOPIC if !ctx.authorize_topic(op, name) => {
            Some(errors::TOPIC_AUTHORIZATION_FAILED)
        }
        RESOURCE_TOPIC => None,
        RESOURCE_BROKER if !ctx.authorize_cluster(op) => Some(errors::CLUSTER_AUTHORIZATION_FAILED),
        RESOURCE_BROKER => None,
        // Broker loggers and the rest: cluster-level.
        _ if !ctx.authorize_cluster(op) => Some(errors::CLUSTER_AUTHORIZATION_FAILED),
        _ => None,
    }
}

pub fn describe_configs(ctx: &RequestContext<'_>, mut r: DescribeConfigsRequest) -> Plan {
    let mut refused = Vec::new();
    let resources = std::mem::take(&mut r.resources);
    for res in resources {
        match config_denial(
            ctx,
            Operation::DescribeConfigs,
            res.resource_type,
            &res.resource_name,
        ) {
            Some(code) => refused.push(
                DescribeConfigsResult::default()
                    .with_error_code(code)
                    .with_error_message(denied_message())
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name),
            ),
            None => r.resources.push(res),
        }
    }
    refuse_or_forward!(
        DescribeConfigs,
        DescribeConfigsResponse,
        results,
        refused,
        r.resources.is_empty(),
        r
    )
}

pub fn alter_configs(ctx: &RequestContext<'_>, mut r: IncrementalAlterConfigsRequest) -> Plan {
    let mut refused = Vec::new();
    let resources = std::mem::take(&mut r.resources);
    for res in resources {
        match config_denial(
            ctx,
            Operation::AlterConfigs,
            res.resource_type,
            &res.resource_name,
        ) {
            Some(code) => refused.push(
                AlterConfigsResourceResponse::default()
                    .with_error_code(code)
                    .with_error_message(denied_message())
                    .with_resource_type(res.resource_type)
                    .with_resource_name(res.resource_name),
            ),
            None => r.resources.push(res),
        }
    }
    refuse_or_forward!(
        IncrementalAlterConfigs,
        IncrementalAlterConfigsResponse,
        responses,
        refused,
        r.resources.is_empty(),
        r
    )
}
