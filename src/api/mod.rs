//! Request dispatch and one handler module per Kafka API family.
//!
//! `handle_frame` turns one request frame into at most one response frame:
//! peek the header, check the API and version, decode with kafka-protocol,
//! run the handler, encode for the version asked.

pub mod acls;
pub mod configs;
pub mod context;
pub mod errors;
pub mod fetch;
pub mod group_offsets;
pub mod groups;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod producers;
pub mod sasl;
pub mod scram_credentials;
pub mod topics;
pub mod txn;
pub mod versions;

use std::panic::AssertUnwindSafe;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

pub use context::RequestContext;

use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::security::session::{Gate, Session};
use crate::server::BoundListener;

/// What the connection loop does after a request.
pub enum Outcome {
    Respond(Bytes),
    /// Produce with acks=0: Kafka sends nothing back.
    Silent,
    /// Protocol violation: Kafka closes the connection.
    Close(String),
    /// Send the answer (e.g. an authentication failure), then close.
    RespondThenClose(Bytes, String),
    /// The answer comes later (acks=all produce waiting for fsync); the
    /// connection goes on reading and keeps responses in request order.
    Deferred(std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>),
}

/// Peeks api key, version and correlation id without decoding the rest.
fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    Some((
        i16::from_be_bytes([frame[0], frame[1]]),
        i16::from_be_bytes([frame[2], frame[3]]),
        i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]),
    ))
}

pub async fn handle_frame(
    broker: &Broker,
    listener: &BoundListener,
    peer: std::net::SocketAddr,
    session: &mut Session,
    frame: Bytes,
) -> Outcome {
    let Some((key, version, correlation_id)) = peek_header(&frame) else {
        return Outcome::Close("frame shorter than a request header".into());
    };
    let Ok(api) = ApiKey::try_from(key) else {
        return Outcome::Close(format!("unknown API key {key}"));
    };
    let Some(range) = versions::supported(api) else {
        return Outcome::Close(format!("unsupported API {api:?}"));
    };
    // The edge decides before the body is even decoded: an unauthenticated
    // client gets nothing parsed beyond the header fields.
    if let Gate::Close(reason) = session.gate(api, std::time::Instant::now()) {
        return Outcome::Close(reason);
    }
    if let Some(store) = &broker.credentials {
        if !session.credentials_still_valid(store) {
            return Outcome::Close(format!(
                "credentials of {} were removed or changed",
                session.principal()
            ));
        }
    }
    if version < range.0 || version > range.1 {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer in v0 so any client can read the supported list.
            let resp = versions::unsupported_version_response();
            return encode_response(api, 0, correlation_id, &ResponseKind::ApiVersions(resp));
        }
        return Outcome::Close(format!("unsupported version {version} of {api:?}"));
    }
    let decoded = std::panic::catch_unwind(AssertUnwindSafe(|| {
        let mut buf = frame.clone();
        let header = RequestHeader::decode(&mut buf, api.request_header_version(version))?;
        let body = RequestKind::decode(api, &mut buf, version)?;
        Ok::<_, anyhow::Error>((header, body))
    }));
    let (header, body) = match decoded {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Outcome::Close(format!("malformed {api:?} v{version} request: {e}")),
        Err(_) => return Outcome::Close(format!("malformed {api:?} v{version} request")),
    };
    let client_id = header
        .client_id
        .as_deref()
        .map(crate::audit::coalesce::bounded_name);
    let complete = |mut ev: AuditEvent| {
        ev.client_id = client_id.clone();
        ev.api = Some(format!("{api:?}"));
        ev.api_version = Some(version);
        ev.correlation_id = Some(correlation_id);
        ev
    };
    let body = match body {
        RequestKind::SaslHandshake(r) => {
            let (resp, close, ev) = sasl::handshake(broker, listener, peer, session, version, r);
            if let Some(ev) = ev {
                broker.auditor.submit(complete(ev)).await;
            }
            return respond(
                api,
                version,
                correlation_id,
                ResponseKind::SaslHandshake(resp),
                close,
            );
        }
        RequestKind::SaslAuthenticate(r) => {
            let authenticated =
                sasl::authenticate(broker, listener, peer, session, version, r).await;
            let (resp, close, ev) = match authenticated {
                Ok(answer) => answer,
                Err(reason) => return Outcome::Close(reason),
            };
            if let Some(ev) = ev {
                broker.auditor.submit(complete(ev)).await;
            }
            return respond(
                api,
                version,
                correlation_id,
                ResponseKind::SaslAuthenticate(resp),
                close,
            );
        }
        other => other,
    };
    let ctx = RequestContext {
        broker,
        listener,
        peer,
        api,
        version,
        header: &header,
        principal: session.principal(),
        acls: broker.acls.snapshot().clone(),
        audit: Default::default(),
    };
    if let Some(gateway) = broker
        .gateway
        .as_ref()
        .filter(|_| crate::gateway::policy::forwards(api))
    {
        let fwd = gateway.forward(&ctx, frame, body).await;
        flush_audit(broker, &ctx, fwd.response.as_ref()).await;
        return fwd.outcome;
    }
    if let RequestKind::Produce(r) = body {
        return match produce::handle(&ctx, r) {
            produce::Produced::Nothing => {
                flush_audit(broker, &ctx, None).await;
                Outcome::Silent
            }
            produce::Produced::Now(r) => {
                let resp = ResponseKind::Produce(r);
                flush_audit(broker, &ctx, Some(&resp)).await;
                encode_response(api, version, correlation_id, &resp)
            }
            produce::Produced::Durable(pending) => {
                // Allowed writes are recorded as appended; a later fsync
                // failure reaches the client, not the audit record.
                flush_audit(broker, &ctx, None).await;
                Outcome::Deferred(Box::pin(async move {
                    let resp = ResponseKind::Produce(pending.await);
                    encode_response(api, version, correlation_id, &resp)
                }))
            }
        };
    }
    let resp = dispatch(&ctx, body).await;
    flush_audit(broker, &ctx, resp.as_ref()).await;
    match resp {
        Some(resp) => encode_response(api, version, correlation_id, &resp),
        None => Outcome::Silent,
    }
}

/// Writes the audit records the request made, with the error codes the
/// client got.
async fn flush_audit(broker: &Broker, ctx: &RequestContext<'_>, resp: Option<&ResponseKind>) {
    for ev in ctx.take_audit(resp) {
        broker.auditor.submit(ev).await;
    }
}

fn respond(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: ResponseKind,
    close: Option<String>,
) -> Outcome {
    match (encode_response(api, version, correlation_id, &resp), close) {
        (Outcome::Respond(bytes), Some(reason)) => Outcome::RespondThenClose(bytes, reason),
        (other, _) => other,
    }
}

async fn dispatch(ctx: &RequestContext<'_>, body: RequestKind) -> Option<ResponseKind> {
    Some(match body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(versions::handle(ctx, r)),
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle_metadata(ctx, r)),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(metadata::handle_describe_cluster(ctx, r))
        }
        RequestKind::CreateTopics(r) => ResponseKind::CreateTopics(topics::create(ctx, r)),
        RequestKind::DeleteTopics(r) => ResponseKind::DeleteTopics(topics::delete(ctx, r)),
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(topics::create_partitions(ctx, r))
        }
        RequestKind::Fetch(r) => ResponseKind::Fetch(fetch::handle(ctx, r).await),
        RequestKind::ListOffsets(r) => ResponseKind::ListOffsets(offsets::list_offsets(ctx, r)),
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(offsets::delete_records(ctx, r))
        }
        RequestKind::DescribeConfigs(r) => ResponseKind::DescribeConfigs(configs::describe(ctx, r)),
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(ctx, r))
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(ctx, r))
        }
        RequestKind::JoinGroup(r) => ResponseKind::JoinGroup(groups::join(ctx, r).await),
        RequestKind::SyncGroup(r) => ResponseKind::SyncGroup(groups::sync(ctx, r).await),
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(ctx, r)),
        RequestKind::LeaveGroup(r) => ResponseKind::LeaveGroup(groups::leave(ctx, r)),
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(groups::list(ctx, r)),
        RequestKind::DescribeGroups(r) => ResponseKind::DescribeGroups(groups::describe(ctx, r)),
        RequestKind::DeleteGroups(r) => ResponseKind::DeleteGroups(groups::delete(ctx, r).await),
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(group_offsets::commit(ctx, r).await)
        }
        RequestKind::OffsetFetch(r) => ResponseKind::OffsetFetch(group_offsets::fetch(ctx, r)),
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(group_offsets::delete(ctx, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(producers::init_producer_id(ctx, r).await)
        }
        RequestKind::AddPartitionsToTxn(r) => {
            ResponseKind::AddPartitionsToTxn(txn::add_partitions(ctx, r).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            ResponseKind::AddOffsetsToTxn(txn::add_offsets(ctx, r).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            ResponseKind::TxnOffsetCommit(txn::txn_offset_commit(ctx, r).await)
        }
        RequestKind::EndTxn(r) => ResponseKind::EndTxn(txn::end(ctx, r).await),
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(txn::describe(ctx, r))
        }
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(txn::list(ctx, r)),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(ctx, r)),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(ctx, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(ctx, r)),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(ctx, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(ctx, r))
        }
        // `versions::supported` only admits the APIs above.
        _ => return None,
    })
}

pub(crate) fn encode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    resp: &ResponseKind,
) -> Outcome {
    // ApiVersions responses always use header v0 so old clients can parse them.
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        api.response_header_version(version)
    };
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    // A Fetch response can be tens of MB: sized up front it is allocated
    // once, instead of regrown (and copied) a dozen times on the way.
    let body_size = match resp {
        ResponseKind::Fetch(r) => r.compute_size(version).unwrap_or(0),
        // So can a Metadata answer to a request naming millions of topics.
        ResponseKind::Metadata(r) if r.topics.len() > 1024 => r.compute_size(version).unwrap_or(0),
        _ => 0,
    };
    let mut buf = BytesMut::with_capacity(256 + body_size);
    buf.put_i32(0);
    let res = header
        .encode(&mut buf, header_version)
        .and_then(|_| resp.encode(&mut buf, version));
    if let Err(e) = res {
        tracing::error!("cannot encode {api:?} v{version} response: {e}");
        return Outcome::Close(format!("internal error encoding {api:?} response"));
    }
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Outcome::Respond(buf.freeze())
}
