//! The edge: every request passes here before any back end sees it.
//!
//! `handle_frame` turns one request frame into at most one response frame:
//! peek the header, gate it on the session (login state, revoked
//! credentials), decode with kafka-protocol, then either answer at the edge
//! (ApiVersions, SASL, ACLs, SCRAM credentials) or authorize the request
//! once, split it into its allowed part and the refusals (`plan`), hand the
//! allowed part to the back end (`backend::Backend`: the embedded log
//! engine or an upstream cluster) and merge the refusals into its answer.
//! The audit records the decisions made here, with the codes the client got.

pub mod acls;
pub mod admin;
pub mod backend;
pub mod context;
mod data;
pub mod errors;
pub mod fetch_session;
pub mod fetch_walk;
mod groups;
mod metadata;
pub mod plan;
mod quotas;
pub mod refusals;
mod response;
pub mod sasl;
pub mod scram_credentials;
pub mod throttle;
pub mod txn;
pub mod versions;

use crate::audit::coalesce::CodeSink;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseKind};
use kafka_protocol::protocol::Decodable;

pub use context::RequestContext;
pub use response::{encode_response, FrameRest, Outcome, ResponseFrame};
pub use versions::forwards;

use backend::{Allowed, Backend, Executed};
use plan::{Fix, Plan};

use crate::audit::coalesce::Outcomes;
use crate::audit::AuditEvent;
use crate::broker::Broker;
use crate::quota::{ConnectionQuota, QuotaKey};
use crate::security::session::{Gate, Session};
use crate::server::BoundListener;

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

/// The edge in front of one back end: the broker's shared state (sessions,
/// ACLs, audit, limits) and where the allowed part of each request goes.
pub struct Edge {
    pub broker: Arc<Broker>,
    pub backend: Arc<dyn Backend>,
}

/// What the edge keeps for one client connection between its requests.
#[derive(Default)]
pub struct ConnectionState {
    pub quota: ConnectionQuota,
    pub fetch_sessions: fetch_session::SharedFetchSessions,
    pub backend: backend::ConnectionSlot,
}

pub async fn handle_frame(
    edge: &Edge,
    listener: &BoundListener,
    peer: std::net::SocketAddr,
    session: &mut Session,
    state: &mut ConnectionState,
    frame: Bytes,
) -> Outcome {
    let ConnectionState {
        quota,
        fetch_sessions,
        backend: backend_slot,
    } = state;
    let started = std::time::Instant::now();
    let broker = &*edge.broker;
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
        policies: broker.policies.snapshot(),
        policy_records: Default::default(),
        fetch_sessions,
        backend_slot: std::sync::Mutex::new(backend_slot),
        audit: Default::default(),
        // Before login nothing is spent (Kafka's authenticator answers those
        // requests outside its quotas): an unauthenticated flood cannot
        // throttle the anonymous principal's other connections.
        quota: if session.is_authenticated() {
            quota.for_request(
                &broker.quotas,
                session.principal(),
                header.client_id.as_deref().unwrap_or(""),
            )
        } else {
            Default::default()
        },
    };
    // Served by the edge itself, whatever the back end.
    let local = match body {
        RequestKind::ApiVersions(r) => ResponseKind::ApiVersions(versions::handle(
            &ctx,
            |ours| edge.backend.narrow_versions(ours),
            r,
        )),
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(acls::create(&ctx, r)),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(acls::describe(&ctx, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(acls::delete(&ctx, r)),
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(scram_credentials::describe(&ctx, r))
        }
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(scram_credentials::alter(&ctx, r))
        }
        RequestKind::DescribeClientQuotas(r) => {
            ResponseKind::DescribeClientQuotas(quotas::describe(&ctx, r))
        }
        RequestKind::AlterClientQuotas(r) => {
            ResponseKind::AlterClientQuotas(quotas::alter(&ctx, r))
        }
        body => {
            let outcome = through_backend(&ctx, &*edge.backend, frame, body, started).await;
            quota.mute_for(throttled(&ctx));
            return outcome;
        }
    };
    let mut local = local;
    if ctx.quota.times_requests() {
        ctx.quota.spend_time(started.elapsed());
    }
    throttle::set_on(&mut local, ctx.quota.throttle_ms());
    quota.mute_for(throttled(&ctx));
    flush_audit(broker, &ctx, Some(&local)).await;
    encode_response(api, version, correlation_id, &local)
}

/// How long the connection is muted for what this request spent; each
/// quota that asked for it is counted in the metrics.
fn throttled(ctx: &RequestContext<'_>) -> std::time::Duration {
    for (key, ms) in ctx.quota.throttled() {
        ctx.broker.metrics.throttled(key.name(), ms);
    }
    std::time::Duration::from_millis(ctx.quota.throttle_ms())
}

/// Authorizes the request, runs what is allowed on the back end and merges
/// the edge's refusals into its answer.
async fn through_backend(
    ctx: &RequestContext<'_>,
    backend: &dyn Backend,
    frame: Bytes,
    body: RequestKind,
    started: std::time::Instant,
) -> Outcome {
    let broker = ctx.broker;
    let (api, version, correlation_id) = (ctx.api, ctx.version, ctx.header.correlation_id);
    // Kafka's quota order: a Fetch from a client over its byte rate gets
    // no data until it has waited; a Produce is appended and throttled
    // after (never dropped), by its size.
    if throttle::is_fetch(api) && ctx.quota.in_debt(QuotaKey::ConsumerByteRate) {
        let mut resp = throttle::throttled_fetch(ctx.quota.throttle_ms());
        data::fetch_throttled(ctx, body, &mut resp);
        return encode_response(api, version, correlation_id, &resp);
    }
    if api == ApiKey::Produce {
        ctx.quota
            .spend(QuotaKey::ProducerByteRate, frame.len() as f64);
    }
    let (body, changed, fix) = match plan(ctx, backend, body) {
        Plan::Local(None) => {
            flush_audit(broker, ctx, None).await;
            return Outcome::Silent;
        }
        Plan::Local(Some(mut resp)) => {
            throttle::set_on(&mut resp, ctx.quota.throttle_ms());
            flush_audit(broker, ctx, Some(&resp)).await;
            return encode_response(api, version, correlation_id, &resp);
        }
        Plan::Forward {
            mut body,
            mut changed,
            fix,
        } => {
            // A Fetch asks for at most what the consumer may read in a quota
            // window (Kafka caps fetch.max.bytes the same way), so one
            // answer cannot carry minutes of quota.
            if let (RequestKind::Fetch(f), Some(cap)) = (&mut body, ctx.quota.fetch_cap()) {
                if f.max_bytes > cap {
                    f.max_bytes = cap;
                    changed = true;
                }
            }
            (body, changed, fix)
        }
    };
    // An allowed decision's audit record carries the error code the client
    // got, which only the answer holds; denials know theirs.
    let audit_needs_it = ctx
        .audit
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .has_allows();
    // The throttle goes into the answer: a pass-through answer cannot
    // carry it (Fetch excepted, patched below).
    let throttles = ctx.quota.throttle_ms() > 0 || ctx.quota.times_requests();
    data::count_produced(ctx, &body);
    // What a Fetch answer passed on as bytes may hold at most.
    let fetch_partitions = match &body {
        RequestKind::Fetch(f) => f.topics.iter().map(|t| t.partitions.len()).sum(),
        _ => 0,
    };
    let needs_answer = fix.is_some() || audit_needs_it || throttles && !throttle::is_fetch(api);
    // A session's large answer may pass uncut, read as it goes.
    let takes_streamed = matches!(fix, Some(Fix::Session { .. })) && !audit_needs_it;
    let allowed = Allowed {
        frame,
        body,
        changed,
        needs_answer,
        takes_streamed,
        // A Fetch's answer is counted against the consumer's quota here.
        may_answer_later: !needs_answer && !throttle::is_fetch(api),
    };
    let executed = if ctx.quota.times_requests() {
        let before = started.elapsed();
        let (executed, busy) = throttle::Busy::new(backend.execute(ctx, allowed)).await;
        ctx.quota.spend_time(before + busy);
        executed
    } else {
        backend.execute(ctx, allowed).await
    };
    let executed = match executed {
        Executed::Answer(mut resp) => {
            if throttle::is_fetch(api) {
                ctx.quota.spend(
                    QuotaKey::ConsumerByteRate,
                    throttle::fetch_bytes(&resp) as f64,
                );
            }
            throttle::set_on(&mut resp, ctx.quota.throttle_ms());
            Executed::Answer(resp)
        }
        Executed::Encoded(frame) if throttle::is_fetch(api) => {
            ctx.quota
                .spend(QuotaKey::ConsumerByteRate, frame.frame_len() as f64);
            match ctx.quota.throttle_ms() {
                0 => Executed::Encoded(frame),
                // The throttle is in the frame's first bytes.
                ms => Executed::Encoded(frame.map_head(|head| {
                    throttle::patch_encoded_fetch(head, version, ms).unwrap_or_else(|b| b)
                })),
            }
        }
        other => other,
    };
    match executed {
        Executed::Silent => {
            flush_audit(broker, ctx, None).await;
            Outcome::Silent
        }
        Executed::Answer(mut resp) => {
            data::count_fetched(ctx, &resp);
            if let Some(fix) = fix {
                fix.apply(&mut resp, ctx);
            }
            flush_audit(broker, ctx, Some(&resp)).await;
            encode_response(api, version, correlation_id, &resp)
        }
        Executed::Encoded(frame) => {
            let frame = match (api, fix) {
                (ApiKey::Fetch, Some(Fix::Session { session, .. })) => {
                    data::watch_fetch(ctx, frame, Some(session), fetch_partitions)
                }
                (ApiKey::Fetch, None) => data::watch_fetch(ctx, frame, None, fetch_partitions),
                (_, None) => frame,
                (_, Some(_)) => {
                    return Outcome::Close(format!("{api:?}: an answer to fix came as bytes"))
                }
            };
            flush_audit(broker, ctx, None).await;
            Outcome::Respond(frame)
        }
        Executed::Later(answer) => {
            // Allowed writes are recorded as appended; a later fsync
            // failure reaches the client, not the audit record.
            flush_audit(broker, ctx, None).await;
            let merge = fix.map(Fix::into_merge);
            let throttle_ms = ctx.quota.throttle_ms();
            Outcome::Deferred(Box::pin(async move {
                match answer.await {
                    Executed::Answer(mut resp) => {
                        throttle::set_on(&mut resp, throttle_ms);
                        if let Some(Some(merge)) = merge {
                            merge(&mut resp);
                        }
                        encode_response(api, version, correlation_id, &resp)
                    }
                    Executed::Encoded(frame) => Outcome::Respond(frame),
                    Executed::Silent => Outcome::Silent,
                    Executed::Close(reason) => Outcome::Close(reason),
                    Executed::Later(_) => {
                        Outcome::Close(format!("{api:?}: back end answered later twice"))
                    }
                }
            }))
        }
        Executed::Close(reason) => {
            flush_audit(broker, ctx, None).await;
            Outcome::Close(reason)
        }
    }
}

/// Writes the audit records the request made, with the error codes the
/// client got.
async fn flush_audit(broker: &Broker, ctx: &RequestContext<'_>, resp: Option<&ResponseKind>) {
    // Finished before the first await: the reader borrows the answer.
    let events = {
        let each = |f: &mut CodeSink<'_>| {
            if let Some(resp) = resp {
                outcome_codes(resp, f);
            }
        };
        let outcomes = resp.map(|resp| Outcomes {
            each: &each,
            top: top_code(resp),
        });
        ctx.take_audit(outcomes.as_ref())
    };
    for ev in events {
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

/// The edge's decision on a request a back end executes: authorize every
/// resource it names, strip what is refused, say how to merge the refusals.
fn plan(ctx: &RequestContext<'_>, backend: &dyn Backend, body: RequestKind) -> Plan {
    use RequestKind as R;
    match body {
        R::Produce(r) => data::produce(ctx, r),
        R::Fetch(r) => data::fetch(ctx, r),
        R::ListOffsets(r) => data::list_offsets(ctx, r),
        R::DeleteRecords(r) => data::delete_records(ctx, r),
        R::Metadata(r) => metadata::metadata(ctx, r),
        R::DescribeCluster(r) => metadata::describe_cluster(ctx, r),
        R::DescribeLogDirs(r) => metadata::describe_log_dirs(ctx, r),
        R::CreateTopics(r) => admin::create_topics(ctx, r),
        R::DeleteTopics(r) => admin::delete_topics(ctx, backend, r),
        R::CreatePartitions(r) => admin::create_partitions(ctx, r),
        R::DescribeConfigs(r) => admin::describe_configs(ctx, r),
        R::IncrementalAlterConfigs(r) => admin::alter_configs(ctx, r),
        R::AlterConfigs(r) => admin::alter_configs_legacy(ctx, r),
        R::FindCoordinator(r) => groups::find_coordinator(ctx, r),
        R::JoinGroup(r) => groups::join(ctx, r),
        R::SyncGroup(r) => groups::sync(ctx, r),
        R::Heartbeat(r) => groups::heartbeat(ctx, r),
        R::LeaveGroup(r) => groups::leave(ctx, r),
        R::ListGroups(r) => groups::list(ctx, r),
        R::DescribeGroups(r) => groups::describe(ctx, r),
        R::DeleteGroups(r) => groups::delete(ctx, r),
        R::OffsetCommit(r) => groups::offset_commit(ctx, r),
        R::OffsetFetch(r) => groups::offset_fetch(ctx, r),
        R::OffsetDelete(r) => groups::offset_delete(ctx, r),
        R::ConsumerGroupHeartbeat(r) => groups::consumer_group_heartbeat(ctx, r),
        R::ConsumerGroupDescribe(r) => groups::consumer_group_describe(ctx, r),
        R::InitProducerId(r) => txn::init_producer_id(ctx, r),
        R::AddPartitionsToTxn(r) => txn::add_partitions(ctx, r),
        R::AddOffsetsToTxn(r) => txn::add_offsets(ctx, r),
        R::TxnOffsetCommit(r) => txn::txn_offset_commit(ctx, r),
        R::EndTxn(r) => txn::end(ctx, r),
        R::DescribeTransactions(r) => txn::describe(ctx, r),
        R::ListTransactions(r) => txn::list(ctx, r),
        // `versions::supported` admits nothing else; what it admits but the
        // gateway does not know how to authorize is never forwarded.
        _ => Plan::Local(None),
    }
}

/// The code the client got for each resource the answer names, read by the
/// API's home: the audit records it with the decision on that resource.
fn outcome_codes(resp: &ResponseKind, f: &mut CodeSink<'_>) {
    data::codes(resp, f);
    metadata::codes(resp, f);
    admin::codes(resp, f);
    groups::codes(resp, f);
}

/// An answer's single code, for its cluster-level decisions.
fn top_code(resp: &ResponseKind) -> Option<i16> {
    data::top_code(resp)
        .or_else(|| metadata::top_code(resp))
        .or_else(|| acls::top_code(resp))
        .or_else(|| scram_credentials::top_code(resp))
        .or_else(|| quotas::top_code(resp))
}
