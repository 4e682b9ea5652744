//! DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554),
//! writing through to the same credential store file the CLI edits. One
//! credential per (user, mechanism): SCRAM-SHA-256 (Kafka's mechanism type
//! 1) and SCRAM-SHA-512 (2).

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
use crate::security::scram::{Mechanism, ScramCredential};

use super::RequestContext;

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
    // Every mechanism the user has a credential for, enabled or not: what
    // is stored is what an operator must be able to see (and delete).
    let info = |name: &str| -> Vec<CredentialInfo> {
        snapshot
            .credentials_of(name)
            .iter()
            .map(|c| {
                CredentialInfo::default()
                    .with_mechanism(c.mechanism.kafka_type())
                    .with_iterations(c.iterations as i32)
            })
            .collect()
    };
    // Kafka treats an empty list like a null one: describe everybody.
    let wanted = req.users.filter(|u| !u.is_empty());
    resp.results = match wanted {
        None => snapshot
            .names()
            .map(|name| {
                DescribeUserScramCredentialsResult::default()
                    .with_user(StrBytes::from_string(name.to_string()))
                    .with_credential_infos(info(name))
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
                    match info(&name) {
                        infos if !infos.is_empty() => r.with_credential_infos(infos),
                        _ => r
                            .with_error_code(ResponseError::ResourceNotFound.code())
                            .with_error_message(s(format!("Attempt to describe a user credential that does not exist: {name}"))),
                    }
                })
                .collect()
        }
    };
    resp
}

/// One entry of an AlterUserScramCredentials request, once checked.
enum Change {
    Delete(Mechanism),
    Upsert(ScramCredential),
}

type Refusal = (i16, String);

/// Answers one result per user, as Kafka does: a user's deletions and
/// upsertions are checked first and then applied together in one write of
/// the store, or, if any of them is refused, none is and the user's result
/// carries the first refusal.
pub fn alter(
    ctx: &RequestContext<'_>,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    // Kafka refuses a (user, mechanism) pair named twice in one request.
    let mut pairs: HashMap<(String, i8), usize> = HashMap::new();
    for key in req
        .deletions
        .iter()
        .map(|d| (d.name.to_string(), d.mechanism))
        .chain(
            req.upsertions
                .iter()
                .map(|u| (u.name.to_string(), u.mechanism)),
        )
    {
        *pairs.entry(key).or_default() += 1;
    }
    let store = ctx.broker.credentials.clone();
    let enabled = &ctx.broker.config.sasl.mechanisms;
    let authorized = ctx.authorize_cluster(Operation::Alter);
    let precheck = |name: &StrBytes, mechanism: i8| -> Result<Mechanism, Refusal> {
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
        if name.is_empty() {
            return Err((
                ResponseError::UnacceptableCredential.code(),
                "Username must not be empty".into(),
            ));
        }
        let Some(m) = Mechanism::from_kafka_type(mechanism) else {
            return Err((
                ResponseError::UnsupportedSaslMechanism.code(),
                "Unknown SCRAM mechanism".into(),
            ));
        };
        if pairs
            .get(&(name.to_string(), mechanism))
            .copied()
            .unwrap_or(0)
            > 1
        {
            return Err((
                ResponseError::DuplicateResource.code(),
                format!(
                    "A user credential cannot be altered twice in the same request: {}",
                    name.as_str()
                ),
            ));
        }
        Ok(m)
    };
    let mut users: Vec<(StrBytes, Vec<Result<Change, Refusal>>)> = Vec::new();
    let mut entry = |name: &StrBytes, change: Result<Change, Refusal>| match users
        .iter_mut()
        .find(|(n, _)| n == name)
    {
        Some((_, changes)) => changes.push(change),
        None => users.push((name.clone(), vec![change])),
    };
    for d in &req.deletions {
        // Deleting a credential of a mechanism that is not enabled is
        // allowed: it cannot log in now, but would again once re-enabled.
        entry(&d.name, precheck(&d.name, d.mechanism).map(Change::Delete));
    }
    for u in &req.upsertions {
        let change = precheck(&u.name, u.mechanism).and_then(|m| {
            if !enabled.iter().any(|e| e == m.name()) {
                return Err((
                    ResponseError::UnsupportedSaslMechanism.code(),
                    format!(
                        "{m} is not enabled on this broker (sasl.mechanisms: {})",
                        enabled.join(",")
                    ),
                ));
            }
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential.code(),
                    "salt and salted password must not be empty".into(),
                ));
            }
            ScramCredential::from_salted_password(
                m,
                &u.salted_password,
                &u.salt,
                u.iterations.max(0) as u32,
            )
            .map(Change::Upsert)
            .map_err(|e| (ResponseError::UnacceptableCredential.code(), e.to_string()))
        });
        entry(&u.name, change);
    }
    let map_err = |e: CredentialError| match e {
        CredentialError::NoSuchUser(u) | CredentialError::NoSuchCredential(u, _) => (
            ResponseError::ResourceNotFound.code(),
            format!("Attempt to delete a user credential that does not exist: {u}"),
        ),
        other => (
            ResponseError::UnacceptableCredential.code(),
            other.to_string(),
        ),
    };
    let mut results = Vec::new();
    for (name, changes) in users {
        let outcome = changes
            .into_iter()
            .collect::<Result<Vec<Change>, Refusal>>()
            .and_then(|changes| {
                let store = store
                    .as_ref()
                    .ok_or((ResponseError::UnacceptableCredential.code(), String::new()))?;
                store
                    .modify(|f| {
                        for c in &changes {
                            match c {
                                Change::Delete(m) => f.remove_credential(&name, *m)?,
                                Change::Upsert(cred) => f.upsert_credential(&name, cred.clone())?,
                            }
                        }
                        Ok(())
                    })
                    .map_err(map_err)?;
                Ok(changes)
            });
        let mut r = AlterUserScramCredentialsResult::default().with_user(name.clone());
        match outcome {
            Ok(changes) => {
                for c in changes {
                    let (action, mechanism, iterations) = match &c {
                        Change::Delete(m) => ("delete_scram_credential", *m, None),
                        Change::Upsert(cred) => (
                            "upsert_scram_credential",
                            cred.mechanism,
                            Some(cred.iterations),
                        ),
                    };
                    let what = match c {
                        Change::Delete(_) => "SCRAM credential deleted",
                        Change::Upsert(_) => "SCRAM credential set",
                    };
                    tracing::info!(principal = ctx.principal, user = %name.as_str(),
                        mechanism = mechanism.name(), "{what}");
                    let mut details = serde_json::json!({ "mechanism": mechanism.name() });
                    if let Some(it) = iterations {
                        details["iterations"] = it.into();
                    }
                    ctx.admin_action(action, "user", name.as_str(), Some(details));
                }
            }
            Err((code, m)) => {
                r.error_code = code;
                r.error_message = s(m);
            }
        }
        results.push(r);
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
