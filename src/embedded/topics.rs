//! CreateTopics, DeleteTopics, CreatePartitions.

use kafka_protocol::ResponseError;
use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::log::{topic_config, LogError};

use crate::edge::errors::code_for;
use crate::edge::RequestContext;

fn msg(s: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(s.into()))
}

pub fn create(ctx: &RequestContext<'_>, req: CreateTopicsRequest) -> CreateTopicsResponse {
    let logs = &ctx.broker.logs;
    let node = ctx.broker.config.node_id;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let name = t.name.to_string();
        let mut r = CreatableTopicResult::default().with_name(t.name.clone());
        let fail = |mut r: CreatableTopicResult, code: i16, m: String| {
            r.error_code = code;
            if ctx.version >= 1 {
                r.error_message = msg(m);
            }
            r
        };
        if seen.get(&name).copied().unwrap_or(0) > 1 {
            results.push(fail(
                r,
                ResponseError::InvalidRequest.code(),
                format!("topic `{name}` appears more than once in the request"),
            ));
            continue;
        }
        if t.replication_factor > 1 {
            results.push(fail(
                r,
                ResponseError::InvalidReplicationFactor.code(),
                format!(
                    "Replication factor: {} larger than available brokers: 1.",
                    t.replication_factor
                ),
            ));
            continue;
        }
        if t.replication_factor == 0 || t.replication_factor < -1 {
            results.push(fail(
                r,
                ResponseError::InvalidReplicationFactor.code(),
                "Replication factor must be larger than 0, or -1 to use the default value.".into(),
            ));
            continue;
        }
        let partitions = if !t.assignments.is_empty() {
            if t.num_partitions != -1 || t.replication_factor != -1 {
                results.push(fail(
                    r,
                    ResponseError::InvalidRequest.code(),
                    "both assignments and partitions/replication factor given".into(),
                ));
                continue;
            }
            let bad = t.assignments.iter().enumerate().any(|(i, a)| {
                a.partition_index != i as i32 || a.broker_ids.iter().map(|b| b.0).ne([node])
            });
            if bad {
                results.push(fail(
                    r,
                    ResponseError::InvalidReplicaAssignment.code(),
                    format!("this cluster has one broker, id {node}"),
                ));
                continue;
            }
            t.assignments.len() as i32
        } else if t.num_partitions == -1 {
            logs.defaults().default_partitions
        } else {
            t.num_partitions
        };
        let overrides: BTreeMap<String, String> = t
            .configs
            .iter()
            .filter_map(|c| {
                c.value
                    .as_ref()
                    .map(|v| (c.name.to_string(), v.to_string()))
            })
            .collect();
        match logs.create_topic(&name, partitions, overrides.clone(), req.validate_only) {
            Ok(topic) => {
                tracing::info!(topic = %name, partitions, validate_only = req.validate_only, "topic created");
                if ctx.version >= 5 {
                    r.num_partitions = partitions;
                    r.replication_factor = 1;
                    r.configs = Some(
                        topic_config::KNOWN_KEYS
                            .iter()
                            .map(|k| {
                                let v = overrides.get(*k).cloned().unwrap_or_else(|| {
                                    topic_config::default_value(&logs.defaults(), k)
                                });
                                CreatableTopicConfigs::default()
                                    .with_name(StrBytes::from_static_str(k))
                                    .with_value(msg(v))
                                    .with_config_source(if overrides.contains_key(*k) {
                                        1
                                    } else {
                                        5
                                    })
                            })
                            .collect(),
                    );
                }
                if ctx.version >= 7 {
                    if let Some(topic) = topic {
                        r.topic_id = topic.id;
                    }
                }
                results.push(r);
            }
            Err(e) => {
                let code = code_for(&e);
                results.push(fail(r, code, e.to_string()));
            }
        }
    }
    CreateTopicsResponse::default().with_topics(results)
}

pub fn delete(ctx: &RequestContext<'_>, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let logs = &ctx.broker.logs;
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<TopicName>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        req.topic_names
            .into_iter()
            .map(|n| (Some(n), uuid::Uuid::nil()))
            .collect()
    };
    let responses = targets
        .into_iter()
        .map(|(name, id)| {
            let topic = match &name {
                Some(n) => logs.topic(n),
                None => logs.topic_by_id(id),
            };
            let mut r = DeletableTopicResult::default().with_name(name.clone());
            if ctx.version >= 6 {
                r.topic_id = id;
            }
            let result = match topic {
                Some(t) => logs.delete_topic(&t.name).map(|t| {
                    if ctx.version >= 6 {
                        r.topic_id = t.id;
                        r.name = Some(TopicName(StrBytes::from_string(t.name.to_string())));
                    }
                    tracing::info!(topic = %t.name, "topic deleted");
                }),
                None => Err(LogError::UnknownTopic(
                    name.as_ref()
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| id.to_string()),
                )),
            };
            if let Err(e) = result {
                r.error_code = if name.is_none() && matches!(e, LogError::UnknownTopic(_)) {
                    ResponseError::UnknownTopicId.code()
                } else {
                    code_for(&e)
                };
                if ctx.version >= 5 {
                    r.error_message = msg(e.to_string());
                }
            }
            r
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}

pub fn create_partitions(
    ctx: &RequestContext<'_>,
    req: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let logs = &ctx.broker.logs;
    let node = ctx.broker.config.node_id;
    let results = req
        .topics
        .into_iter()
        .map(|t| {
            let mut r = CreatePartitionsTopicResult::default().with_name(t.name.clone());
            let outcome = match logs.topic(&t.name) {
                None => Err((
                    ResponseError::UnknownTopicOrPartition.code(),
                    format!("topic `{}` does not exist", &*t.name),
                )),
                Some(topic) => {
                    let bad_assignment = t.assignments.as_ref().is_some_and(|a| {
                        a.len() as i32 != t.count - topic.partition_count()
                            || a.iter()
                                .any(|x| x.broker_ids.iter().map(|b| b.0).ne([node]))
                    });
                    if bad_assignment {
                        Err((
                            ResponseError::InvalidReplicaAssignment.code(),
                            format!("this cluster has one broker, id {node}"),
                        ))
                    } else {
                        topic
                            .add_partitions(
                                t.count,
                                logs.defaults().max_partitions_per_topic,
                                req.validate_only,
                            )
                            .map_err(|e| (code_for(&e), e.to_string()))
                    }
                }
            };
            if let Err((code, m)) = outcome {
                r.error_code = code;
                r.error_message = msg(m);
            }
            r
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
