//! DescribeClientQuotas, answered by the edge in both modes: client quotas
//! are about the edge's own principals (the upstream of a gateway only
//! ever sees the service user), so they can only live here.
//!
//! No client quota can be configured yet, so a valid, authorized request
//! matches no entity. The filter is still validated as Kafka validates it,
//! so a client learns about a malformed filter now rather than the day
//! quotas exist. `kafka-configs --describe --entity-type users` asks for
//! quotas and SCRAM credentials together, which is what makes it work.

use std::collections::BTreeSet;

use kafka_protocol::messages::{
    DescribeClientQuotasRequest, DescribeClientQuotasResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use crate::acl::Operation;
use crate::edge::RequestContext;

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
    DescribeClientQuotasResponse::default().with_entries(Some(Vec::new()))
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
