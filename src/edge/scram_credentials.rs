//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554),
//! writing through to the same credential store file the CLI edits.

use crate::audit::outcome::worst;
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::ResponseError;
use std::collections::HashMap;

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::acl::Operation;
use crate::security::credentials::CredentialError;
use crate::security::scram::ScramCredential;

use super::RequestContext;
/// Kafka's ScramMechanism byte for SCRAM-SHA-512.
const SCRAM_SHA_512: i8 = 2;

fn s(v: impl Into<String>) -> Option<StrBytes> {
    Some(StrBytes::from_string(v.into()))
}

pub fn describe(
    ctx: &RequestContext<'_>,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let mut resp = DescribeUserScramCredentialsResponse::default();
    let Some(store) = ctx.broker.credentials.as_ref() else {
        return resp;
    };
    if !ctx.authorize_cluster(Operation::Describe) {
        // Named users: one result per user carrying the refusal, and no
        // top-level error. librdkafka (confluent-kafka 2.16) aborts the
        // process on a top-level error here (as Kafka sends it) and on a
        // named request answered with no results; per-user errors reach
        // every client's per-user future. Describe-all has no user to carry
        // it, so it gets Kafka's top-level error.
        let msg = "Cluster authorization failed.";
        match req.users.filter(|u| !u.is_empty()) {
            Some(users) => {
                resp.results = users
                    .into_iter()
                    .map(|u| {
                        DescribeUserScramCredentialsResult::default()
                            .with_user(u.name)
                            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
                            .with_error_message(s(msg))
                    })
                    .collect();
            }
            None => {
                resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
                resp.error_message = s(msg);
            }
        }
        return resp;
    }
    let snapshot = store.snapshot();
    let users: Vec<(String, &'static str, u32)> = snapshot.users();
    let info = |iterations: u32| {
        vec![CredentialInfo::default()
            .with_mechanism(SCRAM_SHA_512)
            .with_iterations(iterations as i32)]
    };
    // Kafka treats an empty list like a null one: describe everybody.
    let wanted = req.users.filter(|u| !u.is_empty());
    resp.results = match wanted {
        None => users
            .iter()
            .map(|(name, _, it)| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(name.clone()))
                    .with_credential_infos(info(*it))
            })
            .collect(),
        Some(wanted) => {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for u in &wanted {
                *counts.entry(u.name.to_string()).or_default() += 1;
            }
            wanted
                .iter()
                .map(|u| {
                    let name = u.name.to_string();
                    let r = DescribeUserScramCredentialsResult::default().with_user(u.name.clone());
                    if counts[&name] > 1 {
                        return r
                            .with_error_code(ResponseError::DuplicateResource.code())
                            .with_error_message(s(format!("Cannot describe SCRAM credentials for the same user twice in a single request: {name}")));
                    }
                    match users.iter().find(|(n, _, _)| *n == name) {
                        Some((_, _, it)) => r.with_credential_infos(info(*it)),
                        None => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(s(format!("Attempt to describe a user credential that does not exist: {name}"))),
                    }
                })
                .collect()
        }
    };
    resp
}

pub fn alter(
    ctx: &RequestContext<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for n in req
        .deletions
        .iter()
        .map(|d| &d.name)
        .chain(req.upsertions.iter().map(|u| &u.name))
    {
        *counts.entry(n.to_string()).or_default() += 1;
    }
    let store = ctx.broker.credentials.clone();
    let authorized = ctx.authorize_cluster(Operation::Alter);
    let mut results = Vec::new();
    let mut push = |name: &StrBytes, outcome: Result<(), (i16, String)>| {
        let mut r = AlterUserScramCredentialsResult::default().with_user(name.clone());
        if let Err((code, m)) = outcome {
            r.error_code = code;
            r.error_message = s(m);
        }
        results.push(r);
    };
    let precheck = |name: &StrBytes, mechanism: i8| -> Result<(), (i16, String)> {
        if !authorized {
            return Err((
                ResponseError::ClusterAuthorizationFailed.code(),
                "Cluster authorization failed.".into(),
            ));
        }
        if store.is_none() {
            return Err((
                ResponseError::UnacceptableCredential.code(),
                "no SASL listener, so no credential store".into(),
            ));
        }
        if counts.get(name.as_str()).copied().unwrap_or(0) > 1 {
            return Err((
                ResponseError::DuplicateResource.code(),
                format!(
                    "A user credential cannot be altered twice in the same request: {}",
                    name.as_str()
                ),
            ));
        }
        if mechanism != SCRAM_SHA_512 {
            return Err((
                ResponseError::UnsupportedSaslMechanism.code(),
                "Only SCRAM-SHA-512 is supported".into(),
            ));
        }
        Ok(())
    };
    let map_err = |e: CredentialError| match e {
        CredentialError::NoSuchUser(u) => (
            ResponseError::ResourceNotFound.code(),
            format!("Attempt to delete a user credential that does not exist: {u}"),
        ),
        other => (
            ResponseError::UnacceptableCredential.code(),
            other.to_string(),
        ),
    };
    for d in &req.deletions {
        let outcome = precheck(&d.name, d.mechanism).and_then(|_| {
            let store = store
                .as_ref()
                .ok_or((ResponseError::UnacceptableCredential.code(), String::new()))?;
            store.modify(|f| f.remove_user(&d.name)).map_err(map_err)
        });
        if outcome.is_ok() {
            tracing::info!(principal = ctx.principal, user = %d.name.as_str(), "SCRAM credential deleted");
            ctx.admin_action("delete_scram_credential", "user", d.name.as_str(), None);
        }
        push(&d.name, outcome);
    }
    for u in &req.upsertions {
        let outcome = precheck(&u.name, u.mechanism).and_then(|_| {
            let store = store
                .as_ref()
                .ok_or((ResponseError::UnacceptableCredential.code(), String::new()))?;
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential.code(),
                    "salt and salted password must not be empty".into(),
                ));
            }
            let cred = ScramCredential::from_salted_password(
                &u.salted_password,
                &u.salt,
                u.iterations.max(0) as u32,
            )
            .map_err(|e| (ResponseError::UnacceptableCredential.code(), e.to_string()))?;
            store
                .modify(|f| f.upsert_credential(&u.name, cred))
                .map_err(map_err)
        });
        if outcome.is_ok() {
            tracing::info!(principal = ctx.principal, user = %u.name.as_str(), "SCRAM credential set");
            ctx.admin_action("upsert_scram_credential", "user", u.name.as_str(), None);
        }
        push(&u.name, outcome);
    }
    AlterUserScramCredentialsResponse::default().with_results(results)
}

/// The single code of a SCRAM credentials answer, for its cluster-level
/// decision.
pub fn top_code(resp: &ResponseKind) -> Option<i16> {
    match resp {
        ResponseKind::DescribeUserScramCredentials(r) => Some(r.error_code),
        ResponseKind::AlterUserScramCredentials(r) => {
            Some(worst(r.results.iter().map(|x| x.error_code)))
        }
        _ => None,
    }
}
