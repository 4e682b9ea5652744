//! The GROUP config resource (KIP-848, Kafka 4.x): a group's configs with
//! their sources, and per-group overrides set with IncrementalAlterConfigs.
//! The store and its checks are `crate::group_config`.

use kafka_protocol::ResponseError;

use super::{Entry, Synonym};
use crate::edge::RequestContext;
use crate::group_config::{self as gc, GroupConfigError, Op};

/// Kafka's ConfigSource.GROUP_CONFIG.
pub const SOURCE_GROUP: i8 = 8;

fn empty_name() -> (i16, String) {
    (
        ResponseError::InvalidRequest.code(),
        "Group name must not be empty".into(),
    )
}

pub(super) fn describe(ctx: &RequestContext<'_>, group: &str) -> Result<Vec<Entry>, (i16, String)> {
    if group.is_empty() {
        return Err(empty_name());
    }
    let store = &ctx.broker.group_configs;
    let overrides = store.overrides(group);
    let stat = &ctx.broker.config;
    Ok(gc::names()
        .map(|name| {
            let default = gc::default_value(name, store.defaults());
            let mut chain = Vec::new();
            if let Some(v) = overrides.get(name) {
                chain.push(Synonym {
                    name: name.to_string(),
                    value: Some(v.clone()),
                    source: SOURCE_GROUP,
                });
            }
            // The broker setting it falls back to, from the file or built in.
            match gc::broker_synonym(name) {
                Some((broker, yaml)) => chain.push(Synonym {
                    name: broker.to_string(),
                    value: Some(default.clone()),
                    source: if yaml.is_some_and(|y| stat.is_explicit(y)) {
                        super::broker::SOURCE_STATIC_BROKER
                    } else {
                        super::broker::SOURCE_DEFAULT
                    },
                }),
                None => chain.push(Synonym {
                    name: name.to_string(),
                    value: Some(default.clone()),
                    source: super::broker::SOURCE_DEFAULT,
                }),
            }
            Entry {
                name: name.to_string(),
                value: Some(overrides.get(name).cloned().unwrap_or(default)),
                source: chain
                    .first()
                    .map_or(super::broker::SOURCE_DEFAULT, |s| s.source),
                config_type: gc::config_type(name),
                read_only: false,
                sensitive: false,
                synonyms: Some(chain),
                doc: gc::documentation(name),
            }
        })
        .collect())
}

fn code_of(e: &GroupConfigError) -> i16 {
    match e {
        GroupConfigError::Invalid(_) => ResponseError::InvalidConfig.code(),
        _ => ResponseError::UnknownServerError.code(),
    }
}

pub(super) fn incremental_alter(
    ctx: &RequestContext<'_>,
    group: &str,
    configs: &[kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if group.is_empty() {
        return Err(empty_name());
    }
    let mut ops = Vec::with_capacity(configs.len());
    for c in configs {
        let key = c.name.as_str();
        let value = c.value.as_deref();
        let op = match (c.config_operation, value) {
            (super::OP_DELETE, _) => Op::Delete(key),
            (_, None) => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Null value not supported for : {key}"),
                ))
            }
            (super::OP_SET, Some(v)) => Op::Set(key, v),
            (super::OP_APPEND, Some(v)) => Op::Append(key, v),
            (super::OP_SUBTRACT, Some(v)) => Op::Subtract(key, v),
            (op, _) => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Unknown operations type {op}"),
                ))
            }
        };
        ops.push(op);
    }
    ctx.broker
        .group_configs
        .alter(group, &ops, validate_only)
        .map(|()| {
            if !validate_only {
                tracing::info!(group, "group config altered");
            }
        })
        .map_err(|e| {
            if !matches!(e, GroupConfigError::Invalid(_)) {
                tracing::error!("group config not saved: {e}");
            }
            (code_of(&e), e.to_string())
        })
}

pub(super) fn alter_legacy(
    ctx: &RequestContext<'_>,
    group: &str,
    configs: &[kafka_protocol::messages::alter_configs_request::AlterableConfig],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    if group.is_empty() {
        return Err(empty_name());
    }
    let current = ctx.broker.group_configs.overrides(group);
    let mut ops: Vec<Op<'_>> = current
        .keys()
        .filter(|k| !configs.iter().any(|c| c.name.as_str() == k.as_str()))
        .map(|k| Op::Delete(k.as_str()))
        .collect();
    for c in configs {
        match c.value.as_deref() {
            Some(v) => ops.push(Op::Set(c.name.as_str(), v)),
            None => {
                return Err((
                    ResponseError::InvalidRequest.code(),
                    format!("Null value not supported for : {}", c.name.as_str()),
                ))
            }
        }
    }
    ctx.broker
        .group_configs
        .alter(group, &ops, validate_only)
        .map_err(|e| (code_of(&e), e.to_string()))
}
