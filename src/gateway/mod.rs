//! Gateway mode: the same edge (TLS, SASL, ACLs, audit) in front of an
//! existing Kafka-compatible cluster instead of the embedded log engine.
//!
//! Routing is one gateway port per upstream broker: every upstream node
//! gets its own listener (per configured listener, same security), and
//! Metadata, FindCoordinator and DescribeCluster answers name those
//! listeners instead of the upstream brokers. A client's request therefore
//! arrives on the port of the broker it meant (the partition leader, the
//! coordinator), and goes to that broker; the configured listeners are
//! bootstrap addresses that forward to any upstream broker. Kafka clients
//! need no SNI or other cooperation for this, and leadership changes and
//! upstream failures reach them as the usual retriable errors.
//!
//! The upstream's membership is read from its own answers: a broker that
//! joins the cluster gets its gateway listeners the first time a Metadata,
//! FindCoordinator or DescribeCluster answer names it, and from then on is
//! also one of the brokers "any broker" requests may go to, so neither a
//! grown cluster nor a gone bootstrap server needs a gateway restart.

mod pipe;
pub mod pool;
pub mod settings;
mod unavailable;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::BytesMut;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::config::parse_host_port;
use crate::edge::backend::{Allowed, Backend, Executed, Execution};
use crate::edge::{Edge, RequestContext, ResponseFrame};
use crate::server::{listener, BoundListener};
use pipe::{Expect, Reply};

pub use pool::Target;
pub use settings::GatewaySettings;
pub use upstream::UpstreamError;

pub struct Gateway {
    pool: pool::Pool,
    /// The last `/readyz` probe of the upstream and when it ran: probes
    /// closer together than `PROBE_REUSE` share one upstream round trip.
    probed: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
    /// (configured listener index, upstream node) -> advertised host:port.
    routes: Mutex<HashMap<(usize, i32), (String, u16)>>,
    edge: OnceLock<Weak<Edge>>,
    bind_lock: tokio::sync::Mutex<()>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Gateway {
    pub fn new(settings: &GatewaySettings) -> Result<Arc<Gateway>, UpstreamError> {
        Ok(Arc::new(Gateway {
            pool: pool::Pool::new(upstream::Link::new(settings)?),
            probed: tokio::sync::Mutex::new(None),
            routes: Mutex::new(HashMap::new()),
            edge: OnceLock::new(),
            bind_lock: tokio::sync::Mutex::new(()),
            tasks: Mutex::new(Vec::new()),
        }))
    }

    /// Connects the gateway to its broker (for the per-node listeners) and
    /// learns the upstream brokers. An unreachable upstream is not fatal:
    /// discovery happens again with the first client Metadata request.
    pub async fn attach(&self, edge: &Arc<Edge>) {
        let _ = self.edge.set(Arc::downgrade(edge));
        if let Err(e) = self.discover().await {
            tracing::warn!("upstream not reachable yet: {e}");
        }
    }

    /// Whether the upstream answers: a Metadata round trip (which also
    /// learns new brokers), at most once per `PROBE_REUSE` however often
    /// `/readyz` is asked, and within the upstream request timeout.
    pub async fn probe(&self) -> Result<(), String> {
        const PROBE_REUSE: std::time::Duration = std::time::Duration::from_secs(1);
        let mut last = self.probed.lock().await;
        if let Some((at, r)) = &*last {
            if at.elapsed() < PROBE_REUSE {
                return r.clone();
            }
        }
        let timeout = self.pool.link().request_timeout();
        let r = match tokio::time::timeout(timeout, self.discover()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        };
        *last = Some((std::time::Instant::now(), r.clone()));
        r
    }

    /// The pool's state, for the metrics.
    pub fn snapshot(&self) -> crate::metrics::UpstreamSnapshot {
        self.pool.snapshot()
    }

    async fn discover(&self) -> Result<(), UpstreamError> {
        use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
        let lease = self.pool.lease(Target::Any).await?;
        let md: MetadataResponse = lease
            .call(
                ApiKey::Metadata,
                9,
                &MetadataRequest::default().with_topics(Some(vec![])),
                self.pool.link().request_timeout(),
            )
            .await?;
        drop(lease);
        for b in &md.brokers {
            self.learn(b.node_id.0, &b.host, b.port).await;
        }
        tracing::info!(brokers = md.brokers.len(), "upstream cluster discovered");
        Ok(())
    }

    pub fn shutdown(&self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    /// Our version ranges narrowed to what the upstream also speaks, for
    /// the APIs that are forwarded. Before the upstream was ever reached,
    /// ours as they are: clients retry what the upstream then refuses.
    pub fn narrow_versions(&self, ours: Vec<ApiVersion>) -> Vec<ApiVersion> {
        let upstream = self.pool.upstream_versions();
        if upstream.is_empty() {
            return ours;
        }
        ours.into_iter()
            .filter_map(|mut v| {
                let Ok(api) = ApiKey::try_from(v.api_key) else {
                    return None;
                };
                if !crate::edge::forwards(api) {
                    return Some(v);
                }
                let up = upstream.iter().find(|u| u.api_key == v.api_key)?;
                v.min_version = v.min_version.max(up.min_version);
                v.max_version = v.max_version.min(up.max_version);
                (v.min_version <= v.max_version).then_some(v)
            })
            .collect()
    }

    /// Sends what the edge allowed to the upstream broker the client's
    /// listener stands for, and brings back its answer with every broker
    /// address rewritten to ours. Where the edge needs nothing of the
    /// answer, it comes back later: the client's next request is sent
    /// upstream meanwhile, behind this one on the same connection.
    async fn forward(&self, ctx: &RequestContext<'_>, allowed: Allowed) -> Executed {
        let Allowed {
            frame,
            body,
            changed,
            needs_answer,
            takes_streamed,
            may_answer_later,
        } = allowed;
        let acks0 = matches!(&body, RequestKind::Produce(p) if p.acks == 0);
        let rewrites = matches!(
            ctx.api,
            ApiKey::Metadata | ApiKey::FindCoordinator | ApiKey::DescribeCluster
        );
        // The edge needs nothing of the answer: its bytes go to the client.
        let passed_through_as_is = !needs_answer && !rewrites;
        let expect = if acks0 {
            Expect::Nothing
        } else if (passed_through_as_is || takes_streamed) && ctx.api == ApiKey::Fetch {
            // Passed through as bytes: a large one as it arrives.
            Expect::Streamed
        } else {
            Expect::Whole
        };
        let reencoded;
        let request: &[u8] = if changed {
            match encode_request(ctx, &body) {
                Ok(b) => {
                    reencoded = b;
                    &reencoded
                }
                Err(e) => return Executed::Close(format!("cannot re-encode {:?}: {e}", ctx.api)),
            }
        } else {
            &frame
        };
        let target = ctx
            .listener
            .upstream_node
            .map(Target::Node)
            .unwrap_or(Target::Any);
        let timeout = upstream_timeout(&body, self.pool.link().request_timeout());
        let started = std::time::Instant::now();
        let mut sent = self.send(ctx, target, request, expect, timeout).await;
        if let (Target::Node(node), Err(e)) = (target, &sent) {
            if e.before_sending() && any_broker_answers(&body) {
                // The client's broker is down, but any broker answers this
                // (a Kafka client would have asked another one: the dead
                // broker's port refuses it, the gateway's port does not).
                tracing::info!(api = ?ctx.api, node, "upstream node unreachable ({e}); asking any broker");
                sent = self.send(ctx, Target::Any, request, expect, timeout).await;
            }
        }
        let metrics = ctx.broker.metrics.clone();
        let (api, version) = (ctx.api, ctx.version);
        let (lease, pending) = match sent {
            Ok(s) => s,
            Err(e) => {
                metrics.upstream_request(api, false, started.elapsed().as_secs_f64());
                return failed(api, version, target, &body, e);
            }
        };
        let Some(pending) = pending else {
            metrics.upstream_request(api, true, started.elapsed().as_secs_f64());
            return Executed::Silent;
        };
        // The lease is held until the answer came: until then the client's
        // next request follows this one on the same connection.
        let answer = async move {
            let mut answer = lease.answer(pending, timeout).await;
            metrics.upstream_request(api, answer.is_ok(), started.elapsed().as_secs_f64());
            if let Ok(Reply::Streamed(frame)) = &mut answer {
                metrics.upstream_streamed();
                // The rest still arrives on this connection.
                frame.hold_until_complete(Box::new(lease));
            }
            answer
        };
        if may_answer_later && !rewrites {
            return Executed::Later(Box::pin(async move {
                match answer.await {
                    Ok(a) => Executed::Encoded(passed_through(a)),
                    Err(e) => failed(api, version, target, &body, e),
                }
            }));
        }
        let answer = match answer.await {
            Ok(a) => a,
            Err(e) => return failed(api, version, target, &body, e),
        };
        drop(body);
        if passed_through_as_is {
            return Executed::Encoded(passed_through(answer));
        }
        let answer = match answer {
            Reply::Whole(answer) => answer,
            // The edge reads it as it passes.
            Reply::Streamed(frame) if takes_streamed => return Executed::Encoded(frame),
            // Only answers passed through are asked for in parts.
            Reply::Streamed(_) => {
                return Executed::Close(format!("upstream {:?} answer not whole", ctx.api))
            }
        };
        let mut resp = match decode_response(ctx, answer) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(api = ?ctx.api, "undecodable upstream response: {e}");
                return Executed::Close(format!("undecodable upstream {:?} response", ctx.api));
            }
        };
        if rewrites {
            self.rewrite_addresses(ctx.listener, ctx.version, &mut resp)
                .await;
        }
        Executed::Answer(resp)
    }

    /// Sends one request upstream, on the connection the client
    /// connection's unanswered requests went on if there is one. The
    /// write and the answer share one time limit (see `pipe::Pending`);
    /// getting a connection is bounded on its own (the pool's permit wait,
    /// the connect timeout).
    async fn send(
        &self,
        ctx: &RequestContext<'_>,
        target: Target,
        request: &[u8],
        expect: Expect,
        timeout: std::time::Duration,
    ) -> Result<(Arc<pool::Lease>, Option<pipe::Pending>), UpstreamError> {
        let earlier = ctx.backend_slot().get::<pool::Lease>();
        let (lease, pending) = self
            .pool
            .send(earlier, target, request, expect, timeout)
            .await?;
        ctx.backend_slot().set(&lease);
        Ok((lease, pending))
    }

    /// Every broker address a client sees is a gateway address.
    async fn rewrite_addresses(
        &self,
        listener: &BoundListener,
        version: i16,
        resp: &mut ResponseKind,
    ) {
        match resp {
            ResponseKind::Metadata(m) => {
                for b in &mut m.brokers {
                    let (h, p) = self.route(listener, b.node_id.0, &b.host, b.port).await;
                    (b.host, b.port) = (h, p);
                }
            }
            ResponseKind::DescribeCluster(d) => {
                for b in &mut d.brokers {
                    let (h, p) = self.route(listener, b.broker_id.0, &b.host, b.port).await;
                    (b.host, b.port) = (h, p);
                }
            }
            ResponseKind::FindCoordinator(f) if version < 4 && f.error_code == 0 => {
                let (h, p) = self.route(listener, f.node_id.0, &f.host, f.port).await;
                (f.host, f.port) = (h, p);
            }
            ResponseKind::FindCoordinator(f) if version < 4 => {}
            ResponseKind::FindCoordinator(f) => {
                for c in &mut f.coordinators {
                    if c.error_code == 0 {
                        let (h, p) = self.route(listener, c.node_id.0, &c.host, c.port).await;
                        (c.host, c.port) = (h, p);
                    }
                }
            }
            _ => {}
        }
    }

    /// The gateway address standing for upstream `node` on the client's
    /// listener, binding it on first sight. If that fails the bootstrap
    /// listener is named instead: never the upstream address itself.
    async fn route(
        &self,
        listener: &BoundListener,
        node: i32,
        host: &str,
        port: i32,
    ) -> (StrBytes, i32) {
        self.learn(node, host, port).await;
        let key = (listener.index, node);
        let found = self
            .routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        let (h, p) = match found {
            Some(r) => r,
            None => self.bootstrap_address(listener.index),
        };
        (StrBytes::from_string(h), p as i32)
    }

    fn bootstrap_address(&self, index: usize) -> (String, u16) {
        let edge = self.edge.get().and_then(Weak::upgrade);
        let lc = edge
            .as_ref()
            .and_then(|e| e.broker.config.listeners.get(index).cloned());
        match lc.and_then(|l| {
            parse_host_port(l.advertised_address.as_deref().unwrap_or(&l.address)).ok()
        }) {
            Some(hp) => hp,
            None => ("localhost".into(), 0),
        }
    }

    /// Records where upstream `node` lives and makes sure it has gateway
    /// listeners.
    async fn learn(&self, node: i32, host: &str, port: i32) {
        if node < 0 || !(0..=65535).contains(&port) {
            return;
        }
        self.pool
            .set_node_address(node, join_host_port(host, port as u16));
        if let Err(e) = self.ensure_listeners(node).await {
            tracing::error!(
                node,
                "cannot open a gateway listener for upstream node: {e}"
            );
        }
    }

    async fn ensure_listeners(&self, node: i32) -> std::io::Result<()> {
        let known = |routes: &HashMap<(usize, i32), (String, u16)>| routes.contains_key(&(0, node));
        if known(&self.routes.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        let _one_at_a_time = self.bind_lock.lock().await;
        if known(&self.routes.lock().unwrap_or_else(|p| p.into_inner())) {
            return Ok(());
        }
        let Some(edge) = self.edge.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        let fixed = self.pool.link().settings().broker_ports.get(&node).copied();
        for (index, lc) in edge.broker.config.listeners.iter().enumerate() {
            let mut node_lc = lc.clone();
            let (host, _) = parse_host_port(&lc.address).map_err(std::io::Error::other)?;
            let port = if index == 0 { fixed.unwrap_or(0) } else { 0 };
            node_lc.address = join_host_port(&host, port);
            node_lc.advertised_address = match &lc.advertised_address {
                Some(a) => {
                    let (h, _) = parse_host_port(a).map_err(std::io::Error::other)?;
                    Some(join_host_port(&h, 0))
                }
                None => None,
            };
            let (l, mut info) = listener::bind(&node_lc).await?;
            info.index = index;
            info.upstream_node = Some(node);
            println!(
                "portcullis: gateway node {node} listening {}://{}",
                info.protocol, info.bound
            );
            tracing::info!(node, listener = %info.name, address = %info.bound, "gateway listener for upstream node");
            self.routes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(
                    (index, node),
                    (info.advertised_host.clone(), info.advertised_port),
                );
            let task = listener::spawn_accept_loop(l, Arc::new(info), edge.clone());
            self.tasks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(task);
        }
        Ok(())
    }
}

/// The answer to a request the upstream did not answer: the retriable
/// error a client expects from a broker that lost leadership or a
/// coordinator that went away; where there is none, a closed connection
/// (clients reconnect and refresh metadata).
fn failed(
    api: ApiKey,
    version: i16,
    target: Target,
    body: &RequestKind,
    e: UpstreamError,
) -> Executed {
    tracing::warn!(?api, ?target, "upstream request failed: {e}");
    match unavailable::unavailable(body, version) {
        Some(resp) => Executed::Answer(resp),
        None => Executed::Close(format!("upstream unavailable: {e}")),
    }
}

/// Beyond the wait a request asks the broker for, the answer still has to
/// come back.
const ANSWER_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

/// How long the upstream may take to answer `body`: `request_timeout`, or
/// longer when the request itself asks the broker to wait longer. A
/// JoinGroup is held until every member rejoined, up to the group's
/// rebalance timeout (clients default to five minutes and wait that long
/// plus a little); a Produce waits for its replicas up to its `timeout_ms`;
/// a Fetch up to its `max_wait_ms`.
fn upstream_timeout(
    body: &RequestKind,
    request_timeout: std::time::Duration,
) -> std::time::Duration {
    let asked_ms = match body {
        RequestKind::JoinGroup(r) => r.rebalance_timeout_ms.max(r.session_timeout_ms),
        RequestKind::Produce(r) => r.timeout_ms,
        RequestKind::Fetch(r) => r.max_wait_ms,
        _ => 0,
    };
    match u64::try_from(asked_ms) {
        Ok(ms) if ms > 0 => {
            request_timeout.max(std::time::Duration::from_millis(ms) + ANSWER_SLACK)
        }
        _ => request_timeout,
    }
}

/// Requests whose answer does not depend on the broker asked: the cluster
/// view (Metadata, DescribeCluster), where a coordinator is
/// (FindCoordinator), what every broker forwards to the controller (topic
/// creation, deletion, new partitions), and a producer id for an
/// idempotent producer without a transactional id.
fn any_broker_answers(body: &RequestKind) -> bool {
    match body {
        RequestKind::Metadata(_)
        | RequestKind::DescribeCluster(_)
        | RequestKind::FindCoordinator(_)
        | RequestKind::CreateTopics(_)
        | RequestKind::DeleteTopics(_)
        | RequestKind::CreatePartitions(_) => true,
        RequestKind::InitProducerId(r) => r.transactional_id.is_none(),
        _ => false,
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn encode_request(ctx: &RequestContext<'_>, body: &RequestKind) -> Result<BytesMut, String> {
    let mut buf = BytesMut::with_capacity(256);
    ctx.header
        .encode(&mut buf, ctx.api.request_header_version(ctx.version))
        .and_then(|_| body.encode(&mut buf, ctx.version))
        .map_err(|e| e.to_string())?;
    Ok(buf)
}

/// `answer` is a size-prefixed response frame.
fn decode_response(ctx: &RequestContext<'_>, answer: BytesMut) -> Result<ResponseKind, String> {
    let mut b = answer.freeze().slice(4..);
    ResponseHeader::decode(&mut b, ctx.api.response_header_version(ctx.version))
        .and_then(|_| ResponseKind::decode(ctx.api, &mut b, ctx.version))
        .map_err(|e| e.to_string())
}

impl Backend for Gateway {
    fn execute<'a>(&'a self, ctx: &'a RequestContext<'_>, allowed: Allowed) -> Execution<'a> {
        Box::pin(self.forward(ctx, allowed))
    }

    fn narrow_versions(&self, ours: Vec<ApiVersion>) -> Vec<ApiVersion> {
        Gateway::narrow_versions(self, ours)
    }
}

/// An upstream answer passed through to the client as it is.
fn passed_through(answer: Reply) -> ResponseFrame {
    match answer {
        Reply::Whole(frame) => ResponseFrame::from(frame.freeze()),
        Reply::Streamed(frame) => frame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        FetchRequest, JoinGroupRequest, MetadataRequest, ProduceRequest,
    };
    use std::time::Duration;

    #[test]
    fn requests_that_ask_the_broker_to_wait_get_that_long_upstream() {
        let base = Duration::from_secs(60);
        let join = |rebalance, session| {
            RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_rebalance_timeout_ms(rebalance)
                    .with_session_timeout_ms(session),
            )
        };
        // librdkafka's and the Java client's default: max.poll.interval.ms.
        assert_eq!(
            upstream_timeout(&join(300_000, 45_000), base),
            Duration::from_secs(305)
        );
        // v0 has no rebalance timeout: the session timeout bounds the wait.
        assert_eq!(
            upstream_timeout(&join(-1, 90_000), base),
            Duration::from_secs(95)
        );
        assert_eq!(upstream_timeout(&join(10_000, 10_000), base), base);
        assert_eq!(
            upstream_timeout(
                &RequestKind::Produce(ProduceRequest::default().with_timeout_ms(120_000)),
                base
            ),
            Duration::from_secs(125)
        );
        assert_eq!(
            upstream_timeout(
                &RequestKind::Fetch(FetchRequest::default().with_max_wait_ms(500)),
                base
            ),
            base
        );
        assert_eq!(
            upstream_timeout(&RequestKind::Metadata(MetadataRequest::default()), base),
            base
        );
    }

    #[test]
    fn only_requests_any_broker_answers_go_to_another_broker() {
        use kafka_protocol::messages::{InitProducerIdRequest, TransactionalId};
        assert!(any_broker_answers(&RequestKind::Metadata(
            MetadataRequest::default()
        )));
        // An idempotent producer's: no transactional id.
        assert!(any_broker_answers(&RequestKind::InitProducerId(
            InitProducerIdRequest::default().with_transactional_id(None)
        )));
        assert!(!any_broker_answers(&RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("t"))))
        )));
        assert!(!any_broker_answers(&RequestKind::Produce(
            ProduceRequest::default()
        )));
        assert!(!any_broker_answers(&RequestKind::Fetch(
            FetchRequest::default()
        )));
        assert!(!any_broker_answers(&RequestKind::JoinGroup(
            JoinGroupRequest::default()
        )));
    }
}
