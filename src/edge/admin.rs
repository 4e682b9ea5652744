//! CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs,
//! IncrementalAlterConfigs and the legacy AlterConfigs.

use crate::audit::coalesce::CodeSink;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse as LegacyAlterResult;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

use super::backend::{Backend, Lookup};
use super::plan::{merge_into, refuse_or_forward, split, split_policy, Plan};
use crate::acl::model::CLUSTER_NAME;
use crate::acl::{Operation, ResourceType};
use crate::edge::{errors, RequestContext};
use crate::policy::Violation;

/// Config resource types (DescribeConfigs, IncrementalAlterConfigs).
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// KIP-848 group configs (Kafka 4.x).
pub const RESOURCE_GROUP: i8 = 32;

fn denied_message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str("Authorization failed."))
}

fn throttled_message() -> Option<StrBytes> {
    Some(StrBytes::from_static_str(crate::quota::MUTATION_REFUSED))
}

/// The answers for what authorization denied, then for what the mutation
/// quota refused.
fn refusals<T, R>(
    denied: &[T],
    throttled: &[T],
    refuse: impl Fn(&T, ResponseError, Option<StrBytes>) -> R,
) -> Vec<R> {
    let denied = denied
        .iter()
        .map(|t| refuse(t, ResponseError::TopicAuthorizationFailed, denied_message()));
    let throttled = throttled.iter().map(|t| {
        refuse(
            t,
            ResponseError::ThrottlingQuotaExceeded,
            throttled_message(),
        )
    });
    denied.chain(throttled).collect()
}

/// Partitions a topic has, for the mutation quota (a back end that cannot
/// tell, the gateway, counts one).
fn partitions_of(ctx: &RequestContext<'_>, topic: &str) -> u32 {
    ctx.broker
        .logs
        .topic(topic)
        .map_or(1, |t| t.partition_count().max(1) as u32)
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
    let validate_only = r.validate_only;
    let embedded = ctx.broker.config.backend == crate::config::Backend::Embedded;
    let (allowed, violating) = split_policy(allowed, |t| {
        if ctx.policies.is_empty() {
            return None;
        }
        // The broker's defaults where the embedded back end has them; an
        // upstream's are unknown (-1: not checked).
        let defaults = ctx.broker.logs.defaults();
        let partitions = match (t.num_partitions, t.assignments.len()) {
            (_, n) if n > 0 => n as i32,
            (-1, _) if embedded => defaults.default_partitions,
            (-1, _) => crate::policy::set::UNKNOWN_PARTITIONS,
            (n, _) => n,
        };
        // With an assignment the factor is the assignment's (Kafka then
        // requires -1 here): its largest replica list is checked.
        let assigned = t.assignments.iter().map(|a| a.broker_ids.len()).max();
        let replication = match (assigned, t.replication_factor) {
            (Some(n), _) => n as i16,
            (None, -1) if embedded => 1,
            (None, -1) => crate::policy::set::UNKNOWN_REPLICATION,
            (None, n) => n,
        };
        let configs: Vec<(&str, Option<&str>)> = t
            .configs
            .iter()
            .map(|c| (c.name.as_str(), c.value.as_deref()))
            .collect();
        let decision =
            ctx.policies
                .create_topic(ctx.principal, &t.name, partitions, replication, &configs);
        ctx.policy(decision, "topic", &t.name)
    });
    // KIP-599: v6+ refuses what comes while the client's mutation rate is
    // in debt; older clients only get throttled.
    let (allowed, throttled) = split(allowed, |t| {
        let partitions = if !t.assignments.is_empty() {
            t.assignments.len() as u32
        } else if t.num_partitions > 0 {
            t.num_partitions as u32
        } else {
            ctx.broker.logs.defaults().default_partitions.max(1) as u32
        };
        validate_only || ctx.quota.mutate(partitions, ctx.version >= 6).is_ok()
    });
    let refuse = |t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
                  code: ResponseError,
                  message: Option<StrBytes>| {
        CreatableTopicResult::default()
            .with_name(t.name.clone())
            .with_error_code(code.code())
            .with_error_message(message.filter(|_| ctx.version >= 1))
            .with_num_partitions(-1)
            .with_replication_factor(-1)
    };
    let mut refused: Vec<CreatableTopicResult> = refusals(&denied, &throttled, refuse);
    refused.extend(violating.iter().map(|(t, v)| {
        refuse(
            t,
            ResponseError::PolicyViolation,
            Some(StrBytes::from_string(v.message.clone())),
        )
    }));
    let nothing_left = allowed.is_empty();
    let asked: Vec<(String, i32, BTreeMap<String, String>)> = allowed
        .iter()
        .map(|t| {
            let configs = t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect();
            (t.name.to_string(), t.num_partitions, configs)
        })
        .collect();
    r.topics = allowed;
    refuse_or_forward!(
        CreateTopics,
        CreateTopicsResponse,
        topics,
        refused,
        nothing_left,
        r
    )
    .recording(move |resp, ctx| {
        let ResponseKind::CreateTopics(resp) = resp else {
            return;
        };
        for (name, partitions, configs) in asked {
            let done = resp
                .topics
                .iter()
                .find(|t| t.name.as_str() == name && t.error_code == errors::NONE);
            if let Some(t) = done.filter(|_| !validate_only) {
                // v5+ answers say how many partitions the default gave.
                let partitions = if t.num_partitions > 0 {
                    t.num_partitions
                } else {
                    partitions
                };
                let mut details =
                    serde_json::json!({ "partitions": partitions, "configs": configs });
                if let Some(on) = configs.get("cleanup.policy").map(|v| compaction(v)) {
                    details["compaction"] = on.into();
                }
                ctx.admin_action("create_topic", "topic", &name, Some(details));
            }
        }
    })
}

pub fn delete_topics(
    ctx: &RequestContext<'_>,
    backend: &dyn Backend,
    mut r: DeleteTopicsRequest,
) -> Plan {
    let refuse = |name: Option<kafka_protocol::messages::TopicName>, id| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_error_message(denied_message().filter(|_| ctx.version >= 5))
    };
    let mut refused = Vec::new();
    let names = std::mem::take(&mut r.topic_names);
    let (ok_names, bad_names) = split(names, |n| ctx.authorize_topic(Operation::Delete, n));
    refused.extend(
        bad_names
            .into_iter()
            .map(|n| refuse(Some(n), Default::default())),
    );
    // By id (v6) the back end names the topic so that the edge can decide
    // by name; an id no topic has goes on (to be answered UNKNOWN_TOPIC_ID),
    // one the back end cannot name is refused.
    let states = std::mem::take(&mut r.topics);
    let (ok_states, bad_states) = split(states, |t| match &t.name {
        Some(n) => ctx.authorize_topic(Operation::Delete, n),
        None => match backend.topic_name(ctx, t.topic_id) {
            Lookup::Found(n) => ctx.authorize_topic(Operation::Delete, &n),
            Lookup::Absent => true,
            Lookup::Unknown => false,
        },
    });
    refused.extend(bad_states.into_iter().map(|t| refuse(t.name, t.topic_id)));
    let strict = ctx.version >= 5;
    let throttle_refusal = |name, id| {
        DeletableTopicResult::default()
            .with_name(name)
            .with_topic_id(id)
            .with_error_code(ResponseError::ThrottlingQuotaExceeded.code())
            .with_error_message(throttled_message())
    };
    let (ok_names, slow_names) = split(ok_names, |n| {
        ctx.quota.mutate(partitions_of(ctx, n), strict).is_ok()
    });
    refused.extend(
        slow_names
            .into_iter()
            .map(|n| throttle_refusal(Some(n), Default::default())),
    );
    let (ok_states, slow_states) = split(ok_states, |t| {
        let n = t.name.as_deref().map_or(1, |n| partitions_of(ctx, n));
        ctx.quota.mutate(n, strict).is_ok()
    });
    refused.extend(
        slow_states
            .into_iter()
            .map(|t| throttle_refusal(t.name, t.topic_id)),
    );
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
    .recording(|resp, ctx| {
        if let ResponseKind::DeleteTopics(resp) = resp {
            for t in resp
                .responses
                .iter()
                .filter(|t| t.error_code == errors::NONE)
            {
                if let Some(name) = &t.name {
                    ctx.admin_action("delete_topic", "topic", name, None);
                }
            }
        }
    })
}

pub fn create_partitions(ctx: &RequestContext<'_>, mut r: CreatePartitionsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        ctx.authorize_topic(Operation::Alter, &t.name)
    });
    let validate_only = r.validate_only;
    let (allowed, violating) = split_policy(allowed, |t| {
        if ctx.policies.is_empty() {
            return None;
        }
        let decision = ctx
            .policies
            .create_partitions(ctx.principal, &t.name, t.count);
        ctx.policy(decision, "topic", &t.name)
    });
    let (allowed, throttled) = split(allowed, |t| {
        let now = ctx
            .broker
            .logs
            .topic(&t.name)
            .map_or(0, |t| t.partition_count());
        let added = t.count.saturating_sub(now).max(1) as u32;
        validate_only || ctx.quota.mutate(added, ctx.version >= 3).is_ok()
    });
    let refuse =
        |t: &kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
         code: ResponseError,
         message: Option<StrBytes>| {
            CreatePartitionsTopicResult::default()
                .with_name(t.name.clone())
                .with_error_code(code.code())
                .with_error_message(message)
        };
    let mut refused: Vec<CreatePartitionsTopicResult> = refusals(&denied, &throttled, refuse);
    refused.extend(violating.iter().map(|(t, v)| {
        refuse(
            t,
            ResponseError::PolicyViolation,
            Some(StrBytes::from_string(v.message.clone())),
        )
    }));
    let nothing_left = allowed.is_empty();
    let asked: Vec<(String, i32)> = allowed
        .iter()
        .map(|t| (t.name.to_string(), t.count))
        .collect();
    r.topics = allowed;
    refuse_or_forward!(
        CreatePartitions,
        CreatePartitionsResponse,
        results,
        refused,
        nothing_left,
        r
    )
    .recording(move |resp, ctx| {
        let ResponseKind::CreatePartitions(resp) = resp else {
            return;
        };
        for (name, total) in asked.into_iter().filter(|_| !validate_only) {
            if resp
                .results
                .iter()
                .any(|t| t.name.as_str() == name && t.error_code == errors::NONE)
            {
                ctx.admin_action(
                    "create_partitions",
                    "topic",
                    &name,
                    Some(serde_json::json!({ "total": total })),
                );
            }
        }
    })
}

/// Topic configs need `op` on the topic, group configs on the group (as in
/// Kafka 4.x), broker configs on the cluster.
fn config_denial(
    ctx: &RequestContext<'_>,
    op: Operation,
    rtype: i8,
    name: &str,
) -> Option<(i16, &'static str)> {
    const CLUSTER: (i16, &str) = (
        ResponseError::ClusterAuthorizationFailed.code(),
        "Cluster authorization failed.",
    );
    match rtype {
        RESOURCE_TOPIC if !ctx.authorize_topic(op, name) => Some((
            ResponseError::TopicAuthorizationFailed.code(),
            "Authorization failed.",
        )),
        RESOURCE_TOPIC => None,
        RESOURCE_GROUP if !ctx.authorize(op, ResourceType::Group, name) => Some((
            ResponseError::GroupAuthorizationFailed.code(),
            "Group authorization failed.",
        )),
        RESOURCE_GROUP => None,
        RESOURCE_BROKER if !ctx.authorize_cluster(op) => Some(CLUSTER),
        RESOURCE_BROKER => None,
        // Broker loggers and the rest: cluster-level.
        _ if !ctx.authorize_cluster(op) => Some(CLUSTER),
        _ => None,
    }
}

/// Splits config resources into the allowed ones and the refusals
/// (`refuse` builds the answer entry for a refused resource).
fn split_configs<R, A>(
    ctx: &RequestContext<'_>,
    op: Operation,
    resources: Vec<R>,
    kind: impl Fn(&R) -> (i8, &str),
    policy: impl Fn(&R) -> Option<Violation>,
    refuse: impl Fn(R, i16, StrBytes) -> A,
) -> (Vec<R>, Vec<A>) {
    let mut allowed = Vec::with_capacity(resources.len());
    let mut refused = Vec::new();
    for res in resources {
        let (rtype, name) = kind(&res);
        if let Some((code, message)) = config_denial(ctx, op, rtype, name) {
            refused.push(refuse(res, code, StrBytes::from_static_str(message)));
            continue;
        }
        // Topic config changes after authorization: the policies' bounds.
        match (rtype == RESOURCE_TOPIC).then(|| policy(&res)).flatten() {
            Some(v) => refused.push(refuse(
                res,
                ResponseError::PolicyViolation.code(),
                StrBytes::from_string(v.message),
            )),
            None => allowed.push(res),
        }
    }
    (allowed, refused)
}

/// The policies' decision on changing `topic`'s configs.
fn config_policy(
    ctx: &RequestContext<'_>,
    topic: &str,
    changes: &[(&str, Option<&str>)],
) -> Option<Violation> {
    if ctx.policies.is_empty() {
        return None;
    }
    let decision = ctx
        .policies
        .alter_topic_configs(ctx.principal, topic, changes);
    ctx.policy(decision, "topic", topic)
}

pub fn describe_configs(ctx: &RequestContext<'_>, mut r: DescribeConfigsRequest) -> Plan {
    let refused;
    (r.resources, refused) = split_configs(
        ctx,
        Operation::DescribeConfigs,
        std::mem::take(&mut r.resources),
        |res| (res.resource_type, &res.resource_name),
        |_| None,
        |res, code, message| {
            DescribeConfigsResult::default()
                .with_error_code(code)
                .with_error_message(Some(message))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
        },
    );
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
    let refused;
    (r.resources, refused) = split_configs(
        ctx,
        Operation::AlterConfigs,
        std::mem::take(&mut r.resources),
        |res| (res.resource_type, &res.resource_name),
        |res| {
            // DELETE (1) goes back to the default; APPEND (2) is checked
            // with the item it adds; SUBTRACT (3) as leaving an empty value
            // (the result is not known at the edge), so a bounded list key
            // cannot be emptied past a `values` bound.
            let changes: Vec<(&str, Option<&str>)> = res
                .configs
                .iter()
                .map(|c| {
                    let value = match c.config_operation {
                        1 => None,
                        3 => Some(""),
                        _ => c.value.as_deref(),
                    };
                    (c.name.as_str(), value)
                })
                .collect();
            config_policy(ctx, &res.resource_name, &changes)
        },
        |res, code, message| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(Some(message))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
        },
    );
    let asked = topic_changes(
        r.validate_only,
        r.resources.iter().map(|res| {
            let changes = res
                .configs
                .iter()
                .map(|c| {
                    // Kafka's ops: SET, DELETE, APPEND (+=), SUBTRACT (-=).
                    let op = match c.config_operation {
                        2 => "+=",
                        3 => "-=",
                        _ => "=",
                    };
                    format!(
                        "{}{op}{}",
                        c.name.as_str(),
                        c.value.as_deref().unwrap_or("<deleted>")
                    )
                })
                .collect();
            (res.resource_type, res.resource_name.to_string(), changes)
        }),
    );
    refuse_or_forward!(
        IncrementalAlterConfigs,
        IncrementalAlterConfigsResponse,
        responses,
        refused,
        r.resources.is_empty(),
        r
    )
    .recording(move |resp, ctx| {
        if let ResponseKind::IncrementalAlterConfigs(resp) = resp {
            record_topic_changes(
                ctx,
                asked,
                resp.responses
                    .iter()
                    .map(|t| (t.resource_type, t.resource_name.as_str(), t.error_code)),
            );
        }
    })
}

/// The legacy AlterConfigs (API 33): like IncrementalAlterConfigs, but a
/// resource's configs become exactly the ones sent (those left out return
/// to their defaults). librdkafka's `AlterConfigs` and older tools use it.
pub fn alter_configs_legacy(ctx: &RequestContext<'_>, mut r: AlterConfigsRequest) -> Plan {
    let refused;
    (r.resources, refused) = split_configs(
        ctx,
        Operation::AlterConfigs,
        std::mem::take(&mut r.resources),
        |res| (res.resource_type, &res.resource_name),
        |res| {
            let changes: Vec<(&str, Option<&str>)> = res
                .configs
                .iter()
                .map(|c| (c.name.as_str(), c.value.as_deref()))
                .collect();
            config_policy(ctx, &res.resource_name, &changes)
        },
        |res, code, message| {
            LegacyAlterResult::default()
                .with_error_code(code)
                .with_error_message(Some(message))
                .with_resource_type(res.resource_type)
                .with_resource_name(res.resource_name)
        },
    );
    let asked = topic_changes(
        r.validate_only,
        r.resources.iter().map(|res| {
            let mut changes: Vec<String> = vec!["<replaced>".into()];
            changes.extend(
                res.configs
                    .iter()
                    .map(|c| format!("{}={}", c.name.as_str(), c.value.as_deref().unwrap_or(""))),
            );
            (res.resource_type, res.resource_name.to_string(), changes)
        }),
    );
    refuse_or_forward!(
        AlterConfigs,
        AlterConfigsResponse,
        responses,
        refused,
        r.resources.is_empty(),
        r
    )
    .recording(move |resp, ctx| {
        if let ResponseKind::AlterConfigs(resp) = resp {
            record_topic_changes(
                ctx,
                asked,
                resp.responses
                    .iter()
                    .map(|t| (t.resource_type, t.resource_name.as_str(), t.error_code)),
            );
        }
    })
}

/// The config changes a request asks for, (resource type, name,
/// `key=value`s), to record once the back end says which it applied; none
/// for validate-only.
fn topic_changes(
    validate_only: bool,
    resources: impl Iterator<Item = (i8, String, Vec<String>)>,
) -> Vec<(i8, String, Vec<String>)> {
    resources
        .filter(|(rtype, _, _)| {
            !validate_only && matches!(*rtype, RESOURCE_TOPIC | RESOURCE_BROKER | RESOURCE_GROUP)
        })
        .collect()
}

/// One admin action per asked resource the answer (`(resource type, name,
/// code)` per resource) reports done: `alter_topic_config`,
/// `alter_broker_config` (name "" is the cluster-wide default) or
/// `alter_group_config`.
fn record_topic_changes<'a>(
    ctx: &RequestContext<'_>,
    asked: Vec<(i8, String, Vec<String>)>,
    answered: impl Iterator<Item = (i8, &'a str, i16)> + Clone,
) {
    for (rtype, name, changes) in asked {
        let done = answered
            .clone()
            .any(|(t, n, code)| t == rtype && n == name && code == errors::NONE);
        let (action, kind) = match rtype {
            RESOURCE_TOPIC => ("alter_topic_config", "topic"),
            RESOURCE_GROUP => ("alter_group_config", "group"),
            _ => ("alter_broker_config", "broker"),
        };
        if done {
            let mut details = serde_json::json!({ "changes": changes });
            // Turning compaction on or off changes what the topic keeps:
            // said in so many words, so an audit search finds it.
            let switch = changes.iter().find_map(|c| {
                let rest = c.strip_prefix("cleanup.policy")?;
                if let Some(v) = rest.strip_prefix("-=") {
                    // Subtracting `compact` turns it off; anything else
                    // leaves it as it was.
                    return (compaction(v) == "on").then_some("off");
                }
                let v = rest.strip_prefix("+=").or_else(|| rest.strip_prefix('='))?;
                // Appending `delete` to a compacted topic keeps compacting.
                (rest.starts_with('=') || compaction(v) == "on").then(|| compaction(v))
            });
            if let (RESOURCE_TOPIC, Some(on)) = (rtype, switch) {
                details["compaction"] = on.into();
            }
            ctx.admin_action(action, kind, &name, Some(details));
        }
    }
}

/// `on` when a `cleanup.policy` value compacts, else `off` (a deleted
/// value returns to the default, `delete`).
fn compaction(policy: &str) -> &'static str {
    if policy.split(',').any(|p| p.trim() == "compact") {
        "on"
    } else {
        "off"
    }
}

/// The resource kind of a config resource: broker configs are authorized
/// on the cluster.
fn config_kind(resource_type: i8) -> &'static str {
    match resource_type {
        RESOURCE_TOPIC => "topic",
        RESOURCE_GROUP => "group",
        RESOURCE_BROKER => "cluster",
        _ => "",
    }
}

/// The code the client got for each topic or config resource.
pub(super) fn codes(resp: &ResponseKind, f: &mut CodeSink<'_>) {
    match resp {
        ResponseKind::CreateTopics(r) => {
            for t in &r.topics {
                f("topic", &t.name, t.error_code);
            }
        }
        ResponseKind::DeleteTopics(r) => {
            for t in &r.responses {
                if let Some(n) = &t.name {
                    f("topic", n, t.error_code);
                }
            }
        }
        ResponseKind::CreatePartitions(r) => {
            for t in &r.results {
                f("topic", &t.name, t.error_code);
            }
        }
        ResponseKind::DescribeConfigs(r) => {
            for t in &r.results {
                f(config_kind(t.resource_type), &t.resource_name, t.error_code);
            }
        }
        ResponseKind::IncrementalAlterConfigs(r) => {
            for t in &r.responses {
                f(config_kind(t.resource_type), &t.resource_name, t.error_code);
            }
        }
        ResponseKind::AlterConfigs(r) => {
            for t in &r.responses {
                f(config_kind(t.resource_type), &t.resource_name, t.error_code);
            }
        }
        _ => {}
    }
}
