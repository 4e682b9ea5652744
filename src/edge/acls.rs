//! CreateAcls, DescribeAcls and DeleteAcls. The ACL file stays the source
//! of truth: creations and deletions are written through to it atomically
//! and then put in force, exactly like an edit by hand.

use crate::audit::outcome::worst;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::ResponseError;
use std::collections::BTreeMap;

use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::acl::filter::AclFilter;
use crate::acl::model::{validate_principal, CLUSTER_NAME};
use crate::acl::{HostMatch, Operation, PatternType, Permission, ResourceType, Rule};

use super::RequestContext;

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn denied() -> (i16, Option<StrBytes>) {
    (
        ResponseError::ClusterAuthorizationFailed.code(),
        Some(s("Cluster authorization failed.")),
    )
}

fn rule_from_creation(
    c: &kafka_protocol::messages::create_acls_request::AclCreation,
) -> Result<Rule, String> {
    let resource_type = ResourceType::from_code(c.resource_type)
        .ok_or_else(|| format!("invalid resource type {}", c.resource_type))?;
    let pattern = PatternType::from_code(c.resource_pattern_type).ok_or_else(|| {
        format!(
            "invalid pattern type {} (literal or prefixed)",
            c.resource_pattern_type
        )
    })?;
    let operation = Operation::from_code(c.operation)
        .ok_or_else(|| format!("invalid operation {}", c.operation))?;
    let permission = Permission::from_code(c.permission_type)
        .ok_or_else(|| format!("invalid permission {}", c.permission_type))?;
    validate_principal(&c.principal).map_err(|e| e.0)?;
    let host: HostMatch = c
        .host
        .parse()
        .map_err(|e: crate::acl::model::ParseError| e.0)?;
    if c.resource_name.is_empty() {
        return Err("empty resource name".into());
    }
    if resource_type == ResourceType::Cluster && c.resource_name.as_str() != CLUSTER_NAME {
        return Err(format!("the cluster resource is called {CLUSTER_NAME}"));
    }
    Ok(Rule {
        principal: c.principal.to_string(),
        host,
        resource_type,
        pattern,
        name: c.resource_name.to_string(),
        operation,
        permission,
    })
}

pub fn create(ctx: &RequestContext<'_>, req: CreateAclsRequest) -> CreateAclsResponse {
    if !ctx.authorize_cluster(Operation::Alter) {
        let (code, msg) = denied();
        let results = req
            .creations
            .iter()
            .map(|_| {
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(msg.clone())
            })
            .collect();
        return CreateAclsResponse::default().with_results(results);
    }
    let parsed: Vec<Result<Rule, String>> = req.creations.iter().map(rule_from_creation).collect();
    let valid: Vec<Rule> = parsed
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    let write = if valid.is_empty() {
        Ok(())
    } else {
        ctx.broker
            .acls
            .modify(|file| {
                for r in valid {
                    if !file.rules.contains(&r) {
                        file.rules.push(r);
                    }
                }
            })
            .map_err(|e| e.to_string())
    };
    let results = parsed
        .into_iter()
        .map(|r| {
            let outcome = match (&r, &write) {
                (Err(m), _) => Err((ResponseError::InvalidRequest.code(), m.clone())),
                (Ok(_), Err(m)) => Err((ResponseError::UnknownServerError.code(), m.clone())),
                (Ok(rule), Ok(())) => {
                    tracing::info!(principal = ctx.principal, rule = %rule, "ACL created");
                    ctx.admin_action(
                        "create_acl",
                        &rule.resource_type.to_string(),
                        &rule.name,
                        Some(serde_json::json!({ "rule": crate::acl::file::render_rule(rule) })),
                    );
                    Ok(())
                }
            };
            match outcome {
                Ok(()) => AclCreationResult::default(),
                Err((code, m)) => AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(s(m))),
            }
        })
        .collect();
    CreateAclsResponse::default().with_results(results)
}

pub fn describe(ctx: &RequestContext<'_>, req: DescribeAclsRequest) -> DescribeAclsResponse {
    if !ctx.authorize_cluster(Operation::Describe) {
        let (code, msg) = denied();
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(msg);
    }
    let filter = match AclFilter::from_wire(
        req.resource_type_filter,
        req.resource_name_filter.as_deref(),
        req.pattern_type_filter,
        req.principal_filter.as_deref(),
        req.host_filter.as_deref(),
        req.operation,
        req.permission_type,
    ) {
        Ok(f) => f,
        Err(m) => {
            return DescribeAclsResponse::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_error_message(Some(s(m)))
        }
    };
    let mut grouped: BTreeMap<(i8, String, i8), Vec<AclDescription>> = BTreeMap::new();
    for r in ctx.acls.rules().iter().filter(|r| filter.matches(r)) {
        grouped
            .entry((r.resource_type.code(), r.name.clone(), r.pattern.code()))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(s(r.principal.clone()))
                    .with_host(s(r.host.to_string()))
                    .with_operation(r.operation.code())
                    .with_permission_type(r.permission.code()),
            );
    }
    let resources = grouped
        .into_iter()
        .map(|((rt, name, pt), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(rt)
                .with_resource_name(s(name))
                .with_pattern_type(pt)
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

pub fn delete(ctx: &RequestContext<'_>, req: DeleteAclsRequest) -> DeleteAclsResponse {
    if !ctx.authorize_cluster(Operation::Alter) {
        let (code, msg) = denied();
        let results = req
            .filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(msg.clone())
            })
            .collect();
        return DeleteAclsResponse::default().with_filter_results(results);
    }
    let filters: Vec<Result<AclFilter, String>> = req
        .filters
        .iter()
        .map(|f| {
            AclFilter::from_wire(
                f.resource_type_filter,
                f.resource_name_filter.as_deref(),
                f.pattern_type_filter,
                f.principal_filter.as_deref(),
                f.host_filter.as_deref(),
                f.operation,
                f.permission_type,
            )
        })
        .collect();
    let outcome = ctx.broker.acls.modify(|file| {
        let mut removed: Vec<Vec<Rule>> = Vec::with_capacity(filters.len());
        for f in &filters {
            match f {
                Ok(f) => {
                    removed.push(
                        file.rules
                            .iter()
                            .filter(|r| f.matches(r))
                            .cloned()
                            .collect(),
                    );
                }
                Err(_) => removed.push(Vec::new()),
            }
        }
        file.rules.retain(|r| {
            !filters
                .iter()
                .any(|f| f.as_ref().is_ok_and(|f| f.matches(r)))
        });
        removed
    });
    let results = match outcome {
        Err(e) => filters
            .iter()
            .map(|_| {
                DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::UnknownServerError.code())
                    .with_error_message(Some(s(e.to_string())))
            })
            .collect(),
        Ok(removed) => filters
            .iter()
            .zip(removed)
            .map(|(f, rules)| match f {
                Err(m) => DeleteAclsFilterResult::default()
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(s(m.clone()))),
                Ok(_) => DeleteAclsFilterResult::default().with_matching_acls(
                    rules
                        .into_iter()
                        .map(|r| {
                            tracing::info!(principal = ctx.principal, rule = %r, "ACL deleted");
                            ctx.admin_action("delete_acl", &r.resource_type.to_string(), &r.name, Some(serde_json::json!({ "rule": crate::acl::file::render_rule(&r) })));
                            DeleteAclsMatchingAcl::default()
                                .with_resource_type(r.resource_type.code())
                                .with_resource_name(s(r.name.clone()))
                                .with_pattern_type(r.pattern.code())
                                .with_principal(s(r.principal.clone()))
                                .with_host(s(r.host.to_string()))
                                .with_operation(r.operation.code())
                                .with_permission_type(r.permission.code())
                        })
                        .collect(),
                ),
            })
            .collect(),
    };
    DeleteAclsResponse::default().with_filter_results(results)
}

/// The single code of an ACL answer, for its cluster-level decision.
pub fn top_code(resp: &ResponseKind) -> Option<i16> {
    match resp {
        ResponseKind::DescribeAcls(r) => Some(r.error_code),
        ResponseKind::CreateAcls(r) => Some(worst(r.results.iter().map(|x| x.error_code))),
        ResponseKind::DeleteAcls(r) => Some(worst(r.filter_results.iter().map(|x| x.error_code))),
        _ => None,
    }
}
