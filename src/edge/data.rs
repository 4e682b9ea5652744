//! Produce, Fetch, ListOffsets, DeleteRecords.

use crate::audit::coalesce::CodeSink;
use crate::audit::outcome::worst;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, FetchRequest, FetchResponse, ListOffsetsRequest,
    ListOffsetsResponse, ProduceRequest, ProduceResponse, RequestKind, ResponseKind,
};
use kafka_protocol::ResponseError;

use super::fetch_session::{Begin, Finished};
use super::fetch_walk::FetchWalk;
use super::plan::{merge_into, refuse_or_forward, split, split_policy, Fix, Fixup, Plan};
use super::refusals;
use super::response::{patch_fetch_head, ResponseFrame};
use crate::acl::{Operation, ResourceType};
use crate::edge::{errors, RequestContext};
use crate::policy::ProduceFacts;
use kafka_protocol::messages::produce_request::TopicProduceData;

pub fn produce(ctx: &RequestContext<'_>, mut r: ProduceRequest) -> Plan {
    let txn_denied = r
        .transactional_id
        .as_ref()
        .is_some_and(|t| !ctx.authorize(Operation::Write, ResourceType::TransactionalId, t));
    let (allowed, denied) = split(std::mem::take(&mut r.topic_data), |t| {
        ctx.authorize_topic(Operation::Write, &t.name) && !txn_denied
    });
    let code = if txn_denied {
        ResponseError::TransactionalIdAuthorizationFailed.code()
    } else {
        ResponseError::TopicAuthorizationFailed.code()
    };
    let mut refused = refusals::produce(&denied, code);
    // One budget of inflated bytes for the whole request, across topics.
    let mut inflated = 0u64;
    let (allowed, violating) = split_policy(allowed, |t| produce_policy(ctx, &r, t, &mut inflated));
    for (t, v) in &violating {
        refused.extend(refusals::produce_with_message(
            std::slice::from_ref(t),
            v.code,
            &v.message,
        ));
    }
    let denied_any = !denied.is_empty() || !violating.is_empty();
    if allowed.is_empty() {
        if r.acks == 0 {
            return Plan::Local(None);
        }
        return Plan::local(ResponseKind::Produce(
            ProduceResponse::default().with_responses(refused),
        ));
    }
    r.topic_data = allowed;
    Plan::Forward {
        body: RequestKind::Produce(r),
        changed: denied_any,
        fix: merge_into!(Produce, responses, refused),
    }
}

/// Why a topic's part of a Produce is refused by the policies: the code and
/// the message its partitions are answered with.
struct Refused {
    code: i16,
    message: String,
}

/// The produce rules for one topic. Costs one lookup when no rule covers
/// the principal and topic; the records are read only for the facts a rule
/// needs (batch headers, and record sizes and headers only when bounded).
fn produce_policy(
    ctx: &RequestContext<'_>,
    r: &ProduceRequest,
    t: &TopicProduceData,
    inflated: &mut u64,
) -> Option<Refused> {
    if ctx.policies.is_empty() {
        return None;
    }
    let needs = ctx.policies.produce_needs(ctx.principal, &t.name);
    if !needs.applies {
        return None;
    }
    let mut facts = ProduceFacts {
        inflated: *inflated,
        ..Default::default()
    };
    for p in &t.partition_data {
        if let Some(records) = &p.records {
            if let Err(e) = facts.add_records(records, &needs) {
                // The back end would refuse such records too.
                return Some(Refused {
                    code: ResponseError::InvalidRecord.code(),
                    message: e.to_string(),
                });
            }
        }
    }
    *inflated = facts.inflated;
    let decision = ctx.policies.produce(
        ctx.principal,
        &t.name,
        r.acks,
        r.transactional_id.as_ref().map(|t| t.as_str()),
        &facts,
    );
    ctx.policy(decision, "topic", &t.name).map(|v| Refused {
        code: ResponseError::PolicyViolation.code(),
        message: v.message,
    })
}

pub fn fetch(ctx: &RequestContext<'_>, mut r: FetchRequest) -> Plan {
    if r.replica_id.0 >= 0 && !ctx.authorize_cluster(Operation::ClusterAction) {
        return Plan::local(ResponseKind::Fetch(
            FetchResponse::default()
                .with_error_code(ResponseError::ClusterAuthorizationFailed.code()),
        ));
    }
    // The back end never sees a session (`fetch_session`): every forwarded
    // Fetch is a full, sessionless one, authorized as a whole, so a session
    // cannot carry a read past an ACL change.
    let changed = r.session_id != 0 || r.session_epoch != -1 || !r.forgotten_topics_data.is_empty();
    let begun = if ctx.version >= 7 {
        let max = ctx.broker.config.connections.max_fetch_session_partitions;
        ctx.fetch_sessions().begin(&mut r, max)
    } else {
        Begin::Sessionless
    };
    let session = match begun {
        Begin::Sessionless => None,
        Begin::InSession { id, new } => Some((id, new)),
        Begin::Error(code) => {
            ctx.broker.metrics.fetch_session("error");
            return Plan::local(ResponseKind::Fetch(
                FetchResponse::default().with_error_code(code),
            ));
        }
        Begin::Empty => return Plan::local(ResponseKind::Fetch(FetchResponse::default())),
    };
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        ctx.authorize_topic(Operation::Read, &t.topic)
    });
    let refused = refusals::fetch(&denied, ResponseError::TopicAuthorizationFailed.code());
    let nothing_left = allowed.is_empty();
    r.topics = allowed;
    // A Fetch naming no partition (a consumer closing its session sends
    // one) is answered at once, as Kafka does, not after a long poll.
    let Some((id, new)) = session else {
        if nothing_left && denied.is_empty() {
            return Plan::local(ResponseKind::Fetch(FetchResponse::default()));
        }
        let changed = changed || !denied.is_empty();
        return refuse_or_forward!(
            Fetch,
            FetchResponse,
            responses,
            refused,
            nothing_left,
            r,
            changed
        );
    };
    // In a session the refusals go in before the answer is cut down to
    // what changed: a refused partition is always shown.
    // Nothing refused: an answer passed on as bytes needs nothing merged,
    // so a large one may go to the client uncut as it arrives.
    let uncut_allowed = refused.is_empty();
    let finish = move |resp: &mut FetchResponse, ctx: &RequestContext<'_>| {
        resp.responses.extend(refused);
        let done = ctx.fetch_sessions().finish(id, new, resp);
        ctx.broker.metrics.fetch_session(session_label(done));
    };
    if nothing_left {
        let mut resp = FetchResponse::default();
        finish(&mut resp, ctx);
        return Plan::local(ResponseKind::Fetch(resp));
    }
    let cut: Fixup = Box::new(move |resp, ctx| {
        if let ResponseKind::Fetch(f) = resp {
            finish(f, ctx);
        }
    });
    Plan::Forward {
        body: RequestKind::Fetch(r),
        changed: true,
        fix: Some(if uncut_allowed {
            Fix::Session {
                cut,
                session: (id, new),
            }
        } else {
            Fix::Filter(cut)
        }),
    }
}

fn session_label(done: Finished) -> &'static str {
    match done {
        Finished::New => "new",
        Finished::Incremental => "incremental",
        Finished::Closed => "closed",
    }
}

/// A Fetch answer the back end passed on as bytes (the gateway's, from its
/// upstream): read as it goes to the client (`fetch_walk`), for the
/// records-read metrics and, in a session (`session`: its id, and whether
/// it is new), for what the session's next answer must carry. The answer
/// is not cut down; it gets the session's id. `partitions`: how many the
/// request named (the answer's bound).
pub(super) fn watch_fetch(
    ctx: &RequestContext<'_>,
    mut frame: ResponseFrame,
    session: Option<(i32, bool)>,
    partitions: usize,
) -> ResponseFrame {
    let mut walk = FetchWalk::new(ctx.version, partitions, session.is_some());
    for part in frame.in_hand() {
        walk.feed(part);
    }
    let sessions = ctx.fetch_sessions.clone();
    if let Some((id, new)) = session {
        // The head is in hand (a streamed answer's first part is far
        // larger): an answer the walk cannot read closes the session.
        let code = walk
            .error_code()
            .unwrap_or(ResponseError::UnknownServerError.code());
        let (to_client, done) = ctx.fetch_sessions().passing(id, new, code);
        ctx.broker.metrics.fetch_session(session_label(done));
        if to_client != 0 {
            let version = ctx.version;
            frame = frame.map_head(|head| {
                patch_fetch_head(head, version, 6, |_| to_client).unwrap_or_else(|h| h)
            });
        }
    }
    let metrics = ctx.broker.metrics.clone();
    let principal = principal_label(ctx).to_string();
    let finish = move |walk: FetchWalk| {
        let walked = walk.finish();
        if let Some((id, _)) = session {
            let told = walked.as_ref().ok().map(|w| &w.partitions[..]);
            sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .passed(id, told);
        }
        match walked {
            Ok(w) => {
                for read in w.read {
                    metrics.fetched_totals(&read.topic, &principal, read.bytes, read.records);
                }
            }
            Err(e) => tracing::debug!("Fetch answer passed on unread: {e}"),
        }
    };
    if !frame.has_rest() {
        finish(walk);
        return frame;
    }
    // Finished once, with the last bytes.
    let mut walking = Some((walk, finish));
    frame.watch_rest(Box::new(move |bytes, last| {
        if let Some((walk, _)) = &mut walking {
            walk.feed(bytes);
        }
        if let Some((walk, finish)) = walking.take_if(|_| last) {
            finish(walk);
        }
    }));
    frame
}

/// A Fetch answered with a throttle and nothing else (`throttled`): in a
/// session, that answer is the session's.
pub(super) fn fetch_throttled(
    ctx: &RequestContext<'_>,
    body: RequestKind,
    resp: &mut ResponseKind,
) {
    if let (RequestKind::Fetch(mut r), ResponseKind::Fetch(f), true) =
        (body, resp, ctx.version >= 7)
    {
        let max = ctx.broker.config.connections.max_fetch_session_partitions;
        (f.error_code, f.session_id) = ctx.fetch_sessions().throttled(&mut r, max);
    }
}

/// The principal as a metrics label: a user of the credential store (a set
/// the operator bounds), or `other`.
fn principal_label<'a>(ctx: &RequestContext<'a>) -> &'a str {
    let known = ctx.principal.strip_prefix("User:").is_some_and(|u| {
        ctx.broker
            .credentials
            .as_ref()
            .is_some_and(|s| s.fingerprint_of(u).is_some())
    });
    if known {
        ctx.principal
    } else {
        crate::metrics::OTHER_PRINCIPAL
    }
}

/// Bytes and records of the allowed part of a Produce, by topic, from the
/// batch headers. In embedded mode only topics that exist (Produce creates
/// none): a client must not be able to mint label values by naming topics.
pub(super) fn count_produced(ctx: &RequestContext<'_>, body: &RequestKind) {
    let RequestKind::Produce(r) = body else {
        return;
    };
    let embedded = ctx.broker.config.backend == crate::config::Backend::Embedded;
    let principal = principal_label(ctx);
    for t in &r.topic_data {
        if embedded && ctx.broker.logs.topic(&t.name).is_none() {
            continue;
        }
        for p in &t.partition_data {
            if let Some(records) = &p.records {
                ctx.broker.metrics.produced(&t.name, principal, records);
            }
        }
    }
}

/// Bytes and records a Fetch answer carries, by topic. Only answers the
/// edge decoded: in gateway mode an answer passed through undecoded (no
/// refusal to merge, allows not audited) is not counted.
pub(super) fn count_fetched(ctx: &RequestContext<'_>, resp: &ResponseKind) {
    let ResponseKind::Fetch(f) = resp else {
        return;
    };
    let principal = principal_label(ctx);
    for t in &f.responses {
        for p in &t.partitions {
            if let Some(records) = &p.records {
                ctx.broker.metrics.fetched(&t.topic, principal, records);
            }
        }
    }
}

pub fn list_offsets(ctx: &RequestContext<'_>, mut r: ListOffsetsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        ctx.authorize_topic(Operation::Describe, &t.name)
    });
    let refused = refusals::list_offsets(&denied, ResponseError::TopicAuthorizationFailed.code());
    let nothing_left = allowed.is_empty();
    r.topics = allowed;
    refuse_or_forward!(
        ListOffsets,
        ListOffsetsResponse,
        topics,
        refused,
        nothing_left,
        r
    )
}

pub fn delete_records(ctx: &RequestContext<'_>, mut r: DeleteRecordsRequest) -> Plan {
    let (allowed, denied) = split(std::mem::take(&mut r.topics), |t| {
        ctx.authorize_topic(Operation::Delete, &t.name)
    });
    let refused: Vec<DeleteRecordsTopicResult> = denied
        .iter()
        .map(|t| {
            DeleteRecordsTopicResult::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        })
                        .collect(),
                )
        })
        .collect();
    let nothing_left = allowed.is_empty();
    r.topics = allowed;
    refuse_or_forward!(
        DeleteRecords,
        DeleteRecordsResponse,
        topics,
        refused,
        nothing_left,
        r
    )
    .recording(|resp, ctx| {
        let ResponseKind::DeleteRecords(resp) = resp else {
            return;
        };
        for t in &resp.topics {
            for p in t.partitions.iter().filter(|p| p.error_code == errors::NONE) {
                ctx.admin_action(
                    "delete_records",
                    "topic",
                    &t.name,
                    Some(serde_json::json!({ "partition": p.partition_index, "before_offset": p.low_watermark })),
                );
            }
        }
    })
}

/// The code the client got for each topic (the worst of its partitions),
/// for the audit records of this family's decisions.
pub(super) fn codes(resp: &ResponseKind, f: &mut CodeSink<'_>) {
    match resp {
        ResponseKind::Produce(r) => {
            for t in &r.responses {
                f(
                    "topic",
                    &t.name,
                    worst(t.partition_responses.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::Fetch(r) => {
            for t in &r.responses {
                f(
                    "topic",
                    &t.topic,
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::ListOffsets(r) => {
            for t in &r.topics {
                f(
                    "topic",
                    &t.name,
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        ResponseKind::DeleteRecords(r) => {
            for t in &r.topics {
                f(
                    "topic",
                    &t.name,
                    worst(t.partitions.iter().map(|p| p.error_code)),
                );
            }
        }
        _ => {}
    }
}

/// Fetch's request-level code (a refused replica fetch).
pub(super) fn top_code(resp: &ResponseKind) -> Option<i16> {
    match resp {
        ResponseKind::Fetch(r) => Some(r.error_code),
        _ => None,
    }
}
