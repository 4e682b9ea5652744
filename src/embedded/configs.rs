//! DescribeConfigs, IncrementalAlterConfigs and the legacy AlterConfigs:
//! topic configs here, broker configs (static and dynamic) in
//! `configs/broker.rs`, group configs (KIP-848) in `configs/group.rs`.

mod broker;
mod group;

use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyAlterResult;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::log::{topic_config, LogError};

use crate::edge::admin::{RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};
use crate::edge::errors::code_for;
use crate::edge::RequestContext;

const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;

const TYPE_UNKNOWN: i8 = 0;
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_SHORT: i8 = 4;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;
const TYPE_PASSWORD: i8 = 9;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_key_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => TYPE_LIST,
        "max.message.bytes" | "min.insync.replicas" | "segment.bytes" => TYPE_INT,
        "retention.bytes"
        | "retention.ms"
        | "segment.ms"
        | "delete.retention.ms"
        | "min.compaction.lag.ms"
        | "max.compaction.lag.ms" => TYPE_LONG,
        "min.cleanable.dirty.ratio" => TYPE_DOUBLE,
        _ => TYPE_STRING,
    }
}

struct Synonym {
    name: String,
    value: Option<String>,
    source: i8,
}

struct Entry {
    name: String,
    /// `None` for a sensitive value (never sent, as in Kafka).
    value: Option<String>,
    source: i8,
    config_type: i8,
    read_only: bool,
    sensitive: bool,
    /// Kafka's synonym chain, strongest first; `None`: the entry itself.
    synonyms: Option<Vec<Synonym>>,
    doc: Option<&'static str>,
}

fn to_result(
    ctx: &RequestContext<'_>,
    e: Entry,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResourceResult {
    let mut r = DescribeConfigsResourceResult::default()
        .with_name(s(e.name.clone()))
        .with_value(e.value.clone().map(s))
        .with_read_only(e.read_only)
        .with_is_sensitive(e.sensitive)
        .with_config_source(e.source);
    if synonyms {
        r.synonyms = match e.synonyms {
            Some(chain) => chain
                .into_iter()
                .map(|c| {
                    DescribeConfigsSynonym::default()
                        .with_name(s(c.name))
                        .with_value(c.value.map(s))
                        .with_source(c.source)
                })
                .collect(),
            None => vec![DescribeConfigsSynonym::default()
                .with_name(s(e.name))
                .with_value(e.value.map(s))
                .with_source(e.source)],
        };
    }
    if ctx.version >= 3 {
        r.config_type = e.config_type;
        if documentation {
            r.documentation = e.doc.map(s);
        }
    }
    r
}

pub fn describe(ctx: &RequestContext<'_>, req: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let logs = &ctx.broker.logs;
    let results = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = DescribeConfigsResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let wanted = |name: &str| {
                res.configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            let entries: Result<Vec<Entry>, (i16, String)> = match res.resource_type {
                RESOURCE_TOPIC => match logs.topic(&res.resource_name) {
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("topic `{}` does not exist", res.resource_name.as_str()),
                    )),
                    Some(t) => {
                        let o = t.overrides();
                        Ok(topic_config::KNOWN_KEYS
                            .iter()
                            .map(|k| {
                                // Kafka's chain: the topic's override, then the
                                // broker settings it falls back to (dynamic,
                                // static, default); the first is the source.
                                let mut chain = Vec::new();
                                if let Some(v) = o.get(*k) {
                                    chain.push(Synonym {
                                        name: k.to_string(),
                                        value: Some(v.clone()),
                                        source: SOURCE_DYNAMIC_TOPIC,
                                    });
                                }
                                chain.extend(broker::topic_default_chain(ctx, k));
                                Entry {
                                    name: k.to_string(),
                                    value: Some(o.get(*k).cloned().unwrap_or_else(|| {
                                        topic_config::default_value(&logs.defaults(), k)
                                    })),
                                    source: chain.first().map_or(SOURCE_DEFAULT, |c| c.source),
                                    config_type: topic_key_type(k),
                                    read_only: false,
                                    sensitive: false,
                                    synonyms: Some(chain),
                                    doc: None,
                                }
                            })
                            .collect())
                    }
                },
                RESOURCE_BROKER => broker::describe(ctx, &res.resource_name),
                RESOURCE_GROUP => group::describe(ctx, &res.resource_name),
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("unsupported resource type {other}"),
                )),
            };
            match entries {
                Ok(list) => {
                    out.configs = list
                        .into_iter()
                        .filter(|e| wanted(&e.name))
                        .map(|e| to_result(ctx, e, req.include_synonyms, req.include_documentation))
                        .collect();
                }
                Err((code, m)) => {
                    out.error_code = code;
                    out.error_message = Some(s(m));
                }
            }
            out
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

fn apply_ops(
    mut configs: BTreeMap<String, String>,
    ops: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
) -> Result<BTreeMap<String, String>, LogError> {
    for op in ops {
        let key = op.name.to_string();
        let bad = |reason: &str| LogError::InvalidConfig {
            key: key.clone(),
            reason: reason.to_string(),
        };
        match op.config_operation {
            OP_SET => {
                let v = op.value.as_ref().ok_or_else(|| bad("SET needs a value"))?;
                configs.insert(key.clone(), v.to_string());
            }
            OP_DELETE => {
                configs.remove(&key);
            }
            OP_APPEND | OP_SUBTRACT => {
                if topic_key_type(&key) != TYPE_LIST {
                    return Err(bad("APPEND and SUBTRACT apply to list configs only"));
                }
                let v = op
                    .value
                    .as_ref()
                    .ok_or_else(|| bad("a value is required"))?;
                let mut items: Vec<String> = configs
                    .get(&key)
                    .map(|c| c.split(',').map(str::to_string).collect())
                    .unwrap_or_default();
                if op.config_operation == OP_APPEND {
                    if !items.iter().any(|i| i == v.as_str()) {
                        items.push(v.to_string());
                    }
                } else {
                    items.retain(|i| i != v.as_str());
                }
                configs.insert(key.clone(), items.join(","));
            }
            other => return Err(bad(&format!("unknown operation {other}"))),
        }
    }
    topic_config::validate_all(&configs)?;
    Ok(configs)
}

pub fn incremental_alter(
    ctx: &RequestContext<'_>,
    req: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let logs = &ctx.broker.logs;
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = AlterConfigsResourceResponse::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let outcome: Result<(), (i16, String)> = match res.resource_type {
                RESOURCE_TOPIC => match logs.topic(&res.resource_name) {
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("topic `{}` does not exist", res.resource_name.as_str()),
                    )),
                    Some(t) => apply_ops(t.overrides(), &res.configs)
                        .and_then(|new| {
                            if req.validate_only {
                                Ok(())
                            } else {
                                t.set_overrides(new, &logs.defaults())
                            }
                        })
                        .map(|_| {
                            tracing::info!(topic = %t.name, "topic config altered");
                        })
                        .map_err(|e| (code_for(&e), e.to_string())),
                },
                RESOURCE_BROKER => broker::incremental_alter(
                    ctx,
                    &res.resource_name,
                    &res.configs,
                    req.validate_only,
                ),
                RESOURCE_GROUP => group::incremental_alter(
                    ctx,
                    &res.resource_name,
                    &res.configs,
                    req.validate_only,
                ),
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unknown resource type {other}"),
                )),
            };
            if let Err((code, m)) = outcome {
                out.error_code = code;
                out.error_message = Some(s(m));
            }
            out
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The legacy AlterConfigs: a topic's overrides become exactly the configs
/// sent (validated together first, so a bad one changes nothing).
pub fn alter_legacy(ctx: &RequestContext<'_>, req: AlterConfigsRequest) -> AlterConfigsResponse {
    let logs = &ctx.broker.logs;
    let responses = req
        .resources
        .into_iter()
        .map(|res| {
            let mut out = LegacyAlterResult::default()
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name.clone());
            let outcome: Result<(), (i16, String)> = match res.resource_type {
                RESOURCE_TOPIC => match logs.topic(&res.resource_name) {
                    None => Err((
                        ResponseError::UnknownTopicOrPartition.code(),
                        format!("topic `{}` does not exist", res.resource_name.as_str()),
                    )),
                    Some(t) => {
                        let new: BTreeMap<String, String> = res
                            .configs
                            .iter()
                            .filter_map(|c| {
                                Some((c.name.to_string(), c.value.as_ref()?.to_string()))
                            })
                            .collect();
                        topic_config::validate_all(&new)
                            .and_then(|()| {
                                if req.validate_only {
                                    Ok(())
                                } else {
                                    t.set_overrides(new, &logs.defaults())
                                }
                            })
                            .map(|_| {
                                if !req.validate_only {
                                    tracing::info!(topic = %t.name, "topic config replaced");
                                }
                            })
                            .map_err(|e| (code_for(&e), e.to_string()))
                    }
                },
                RESOURCE_BROKER => {
                    broker::alter_legacy(ctx, &res.resource_name, &res.configs, req.validate_only)
                }
                RESOURCE_GROUP => {
                    group::alter_legacy(ctx, &res.resource_name, &res.configs, req.validate_only)
                }
                other => Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unknown resource type {other}"),
                )),
            };
            if let Err((code, m)) = outcome {
                out.error_code = code;
                out.error_message = Some(s(m));
            }
            out
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
