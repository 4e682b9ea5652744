//! DescribeClientQuotas and AlterClientQuotas, answered by the edge in
//! both modes: client quotas are about the edge's own principals (the
//! upstream of a gateway only ever sees the service user) and are enforced
//! here, so they can only live here. The values are kept by `quota::Quotas`.
//! `kafka-configs --describe --entity-type users` asks for quotas and SCRAM
//! credentials together, which is what makes it work.

use std::collections::BTreeSet;

use kafka_protocol::messages::alter_client_quotas_response::{
    EntityData as AlteredEntity, EntryData as AlterResult,
};
use kafka_protocol::messages::describe_client_quotas_response::{
    EntityData as DescribedEntity, EntryData, ValueData,
};
use kafka_protocol::messages::{
    AlterClientQuotasRequest, AlterClientQuotasResponse, DescribeClientQuotasRequest,
    DescribeClientQuotasResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::acl::Operation;
use crate::audit::outcome::worst;
use crate::edge::RequestContext;
use crate::quota::{Change, Entity, Name, QuotaKey, Quotas};

/// Kafka's quota entity types (`ClientQuotaEntity`).
const ENTITY_TYPES: &[&str] = &["user", "client-id", "ip"];

/// `match_type` values of a filter component.
const MATCH_EXACT: i8 = 0;
const MATCH_DEFAULT: i8 = 1;
const MATCH_ANY: i8 = 2;

pub fn describe(
    ctx: &RequestContext<'_>,
    req: DescribeClientQuotasRequest,
) -> DescribeClientQuotasResponse {
    let refuse = |code: ResponseError, message: String| {
        DescribeClientQuotasResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_string(message)))
            .with_entries(None)
    };
    // Kafka: DESCRIBE_CONFIGS on the cluster.
    if !ctx.authorize_cluster(Operation::DescribeConfigs) {
        return refuse(
            ResponseError::ClusterAuthorizationFailed,
            "Cluster authorization failed.".into(),
        );
    }
    if let Err(why) = validate(&req) {
        return refuse(ResponseError::InvalidRequest, why);
    }
    let entries = ctx
        .broker
        .quotas
        .entries()
        .into_iter()
        .filter(|(entity, _)| matches(&req, entity))
        .map(|(entity, values)| {
            EntryData::default()
                .with_entity(
                    entity
                        .parts()
                        .into_iter()
                        .map(|(t, n)| {
                            DescribedEntity::default()
                                .with_entity_type(StrBytes::from_static_str(t))
                                .with_entity_name(n.map(|n| StrBytes::from_string(n.into())))
                        })
                        .collect(),
                )
                .with_values(
                    values
                        .into_iter()
                        .map(|(k, v)| {
                            ValueData::default()
                                .with_key(StrBytes::from_static_str(k.name()))
                                .with_value(v)
                        })
                        .collect(),
                )
        })
        .collect();
    DescribeClientQuotasResponse::default().with_entries(Some(entries))
}

/// Kafka's filter semantics: every component names a type the entity has
/// (exactly that name, the default, or any); `strict` also rules out
/// entities with types the filter does not name.
fn matches(req: &DescribeClientQuotasRequest, entity: &Entity) -> bool {
    let parts = entity.parts();
    let all_named = req.components.iter().all(|c| {
        let Some((_, name)) = parts.iter().find(|(t, _)| *t == c.entity_type.as_str()) else {
            return false;
        };
        match c.match_type {
            MATCH_EXACT => *name == c._match.as_deref(),
            MATCH_DEFAULT => name.is_none(),
            _ => true,
        }
    });
    all_named && (!req.strict || parts.len() == req.components.len())
}

/// Each entry is checked and applied on its own, as Kafka does; the
/// applied ones are written to the data dir together.
pub fn alter(ctx: &RequestContext<'_>, req: AlterClientQuotasRequest) -> AlterClientQuotasResponse {
    // Kafka: ALTER_CONFIGS on the cluster.
    let authorized = ctx.authorize_cluster(Operation::AlterConfigs);
    let mut results = Vec::with_capacity(req.entries.len());
    let mut apply: Vec<(Entity, Vec<Change>)> = Vec::new();
    let mut applied_at = Vec::new();
    for e in &req.entries {
        let echo = e
            .entity
            .iter()
            .map(|p| {
                AlteredEntity::default()
                    .with_entity_type(p.entity_type.clone())
                    .with_entity_name(p.entity_name.clone())
            })
            .collect();
        let result = AlterResult::default().with_entity(echo);
        let checked = if authorized {
            parse_entry(e)
        } else {
            Err((
                ResponseError::ClusterAuthorizationFailed,
                "Cluster authorization failed.".to_string(),
            ))
        };
        match checked {
            Ok(change) => {
                applied_at.push(results.len());
                apply.push(change);
                results.push(result);
            }
            Err((code, message)) => results.push(
                result
                    .with_error_code(code.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            ),
        }
    }
    if !req.validate_only && !apply.is_empty() {
        match ctx.broker.quotas.alter(&apply) {
            Ok(()) => {
                for (entity, changes) in &apply {
                    record(ctx, entity, changes);
                }
            }
            Err(e) => {
                tracing::error!("client quotas not changed: {e}");
                for i in applied_at {
                    let r = &mut results[i];
                    r.error_code = ResponseError::UnknownServerError.code();
                    r.error_message = Some(StrBytes::from_string(
                        "the broker could not persist the change".into(),
                    ));
                }
            }
        }
    }
    AlterClientQuotasResponse::default().with_entries(results)
}

type Refusal = (ResponseError, String);

fn parse_entry(
    e: &kafka_protocol::messages::alter_client_quotas_request::EntryData,
) -> Result<(Entity, Vec<Change>), Refusal> {
    let invalid = |m: String| (ResponseError::InvalidRequest, m);
    let mut entity = Entity::default();
    for p in &e.entity {
        let name = Name::from_wire(p.entity_name.as_deref());
        let slot = match p.entity_type.as_str() {
            "user" => &mut entity.user,
            "client-id" => &mut entity.client_id,
            "ip" => &mut entity.ip,
            other => {
                return Err(invalid(format!(
                    "Unhandled client quota entity type: {}",
                    shorten(other)
                )))
            }
        };
        if slot.replace(name).is_some() {
            return Err(invalid(format!(
                "Duplicate {} entity type",
                p.entity_type.as_str()
            )));
        }
    }
    let mut changes = Vec::with_capacity(e.ops.len());
    let mut keys = BTreeSet::new();
    for op in &e.ops {
        let key = QuotaKey::parse(&op.key)
            .ok_or_else(|| invalid(format!("Invalid configuration key {}", shorten(&op.key))))?;
        if !keys.insert(key) {
            return Err(invalid(format!("Duplicate quota key {key}")));
        }
        changes.push((key, (!op.remove).then_some(op.value)));
    }
    Quotas::validate(&entity, &changes).map_err(|e| invalid(e.to_string()))?;
    Ok((entity, changes))
}

/// One audit record and log line per entity changed.
fn record(ctx: &RequestContext<'_>, entity: &Entity, changes: &[Change]) {
    let set: serde_json::Map<String, serde_json::Value> = changes
        .iter()
        .filter_map(|(k, v)| Some((k.name().to_string(), (*v)?.into())))
        .collect();
    let removed: Vec<&str> = changes
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(k, _)| k.name())
        .collect();
    tracing::info!(principal = ctx.principal, entity = %entity, ?set, ?removed, "client quotas changed");
    let details = serde_json::json!({ "set": set, "removed": removed });
    ctx.admin_action(
        "alter_client_quotas",
        "client_quota",
        &entity.to_string(),
        Some(details),
    );
}

/// Kafka's rules for a quota filter: known entity types, each at most
/// once, `ip` on its own, and a name exactly when matching one entity.
fn validate(req: &DescribeClientQuotasRequest) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for c in &req.components {
        let kind: &str = &c.entity_type;
        if !ENTITY_TYPES.contains(&kind) {
            return Err(format!("Unknown entity type: {}", shorten(kind)));
        }
        if !seen.insert(kind) {
            return Err(format!("Duplicate {kind} filter component entity type"));
        }
        match (c.match_type, &c._match) {
            (MATCH_EXACT, Some(_)) | (MATCH_DEFAULT | MATCH_ANY, None) => {}
            (MATCH_EXACT, None) => {
                return Err(format!("Missing {kind} name for an exact match"));
            }
            (MATCH_DEFAULT | MATCH_ANY, Some(_)) => {
                return Err(format!("Unexpected {kind} name for a default or any match"));
            }
            (other, _) => return Err(format!("Unknown match type: {other}")),
        }
    }
    if seen.contains("ip") && seen.len() > 1 {
        return Err(
            "Invalid entity filter component combination: ip with user or client-id".into(),
        );
    }
    Ok(())
}

/// A client-chosen string in an error message, bounded.
fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The answer's single code, for the cluster-level decision's audit record.
pub(super) fn top_code(resp: &ResponseKind) -> Option<i16> {
    match resp {
        ResponseKind::DescribeClientQuotas(r) => Some(r.error_code),
        ResponseKind::AlterClientQuotas(r) => Some(worst(r.entries.iter().map(|e| e.error_code))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;

    fn component(kind: &str, match_type: i8, name: Option<&str>) -> ComponentData {
        ComponentData::default()
            .with_entity_type(StrBytes::from_string(kind.into()))
            .with_match_type(match_type)
            .with_match(name.map(|n| StrBytes::from_string(n.into())))
    }

    fn check(components: Vec<ComponentData>) -> Result<(), String> {
        validate(&DescribeClientQuotasRequest::default().with_components(components))
    }

    #[test]
    fn filters_are_validated_as_kafka_does() {
        assert!(check(vec![]).is_ok());
        assert!(check(vec![component("user", MATCH_ANY, None)]).is_ok());
        assert!(check(vec![
            component("user", MATCH_EXACT, Some("alice")),
            component("client-id", MATCH_DEFAULT, None),
        ])
        .is_ok());
        assert!(check(vec![component("ip", MATCH_EXACT, Some("10.0.0.1"))]).is_ok());

        assert!(check(vec![component("group", MATCH_ANY, None)]).is_err());
        assert!(check(vec![component("user", MATCH_EXACT, None)]).is_err());
        assert!(check(vec![component("user", MATCH_ANY, Some("alice"))]).is_err());
        assert!(check(vec![component("user", 7, None)]).is_err());
        assert!(check(vec![
            component("user", MATCH_ANY, None),
            component("user", MATCH_DEFAULT, None),
        ])
        .is_err());
        assert!(check(vec![
            component("ip", MATCH_ANY, None),
            component("user", MATCH_ANY, None),
        ])
        .is_err());
        let long = "x".repeat(10_000);
        let err = check(vec![component(&long, MATCH_ANY, None)]).unwrap_err();
        assert!(err.len() < 100, "{err}");
    }
}
