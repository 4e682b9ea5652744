//! The broker's Prometheus metrics: one registry with every metric family,
//! the calls the request path makes to move them, and the collectors that
//! read engine state (partitions, group lag, audit queue, certificate) at
//! scrape time. Served by `ops/`.
//!
//! Cheap on the hot path: label values are `&'static str` from fixed sets,
//! per-API histograms are resolved once per API, and per-topic and
//! per-principal handles are found by `&str` without allocating once they
//! exist. Nothing here is held across an await.

mod collect;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use kafka_protocol::messages::ApiKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub use collect::{Sources, UpstreamSnapshot};

/// The `Content-Type` of what [`Metrics::encode`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The quotas a throttle is charged to (the `quota` label of
/// `portcullis_throttle_*`), as Kafka names them.
pub const QUOTAS: [&str; 5] = [
    "producer_byte_rate",
    "consumer_byte_rate",
    "request_percentage",
    "controller_mutation_rate",
    "connection_creation_rate",
];

/// Principals outside the credential store share this label value.
pub const OTHER_PRINCIPAL: &str = "other";

/// Topics with series of their own; beyond this, traffic is counted under
/// `topic="other"`. In gateway mode the edge cannot tell an existing topic
/// from a name a client made up (that the ACLs allow), and each name would
/// otherwise be a series for the life of the process.
pub const MAX_TOPIC_LABELS: usize = 10_000;

/// The label of topics beyond [`MAX_TOPIC_LABELS`].
pub const OTHER_TOPIC: &str = "other";

#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("cannot encode the metrics: {0}")]
    Encode(#[from] std::fmt::Error),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

/// What a Fetch in a fetch session (KIP-227) did: `new` (a full answer
/// that opened one), `incremental`, `closed` (an answer with an error ended
/// it), `error` (unknown session or wrong epoch).
pub const FETCH_SESSION_KINDS: [&str; 4] = ["new", "incremental", "closed", "error"];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchSessionLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusedLabels {
    listener: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    mechanism: &'static str,
    outcome: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AuthzLabels {
    api: &'static str,
    operation: &'static str,
    resource_type: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    api: &'static str,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PrincipalLabels {
    principal: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    file: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    quota: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    api: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 100 µs to about 18 s, a factor of 3 apart.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 3.0, 12))
}

/// The three latencies of one API, resolved once.
#[derive(Clone)]
pub struct ApiTimers {
    /// Frame read until its handling starts.
    pub queue: Histogram,
    /// Handling: the edge and the back end, until the response is ready.
    pub handle: Histogram,
    /// Frame read until the response is written.
    pub total: Histogram,
}

/// Bytes and records of one topic or principal, one direction.
#[derive(Clone, Default)]
struct Flow {
    bytes: Counter,
    records: Counter,
}

#[derive(Clone, Default)]
struct Flows {
    inbound: Flow,
    outbound: Flow,
}

/// Handles by name, found with a `&str` once they exist: the family's own
/// lookup would need an owned label per call. At most `max` names get
/// handles of their own; later ones share `other`'s.
struct ByName<H> {
    map: RwLock<HashMap<Arc<str>, H>>,
    max: usize,
    other: &'static str,
}

impl<H: Clone> ByName<H> {
    fn new(max: usize, other: &'static str) -> Self {
        ByName {
            map: RwLock::new(HashMap::new()),
            max,
            other,
        }
    }

    fn get(&self, name: &str, make: impl FnOnce(Arc<str>) -> H) -> H {
        if let Some(h) = self.map.read().unwrap_or_else(|p| p.into_inner()).get(name) {
            return h.clone();
        }
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        let name = if map.len() >= self.max && !map.contains_key(name) {
            self.other
        } else {
            name
        };
        let name: Arc<str> = Arc::from(name);
        map.entry(name.clone())
            .or_insert_with(|| make(name))
            .clone()
    }
}

/// Every metric the broker exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    sources: Arc<OnceLock<Sources>>,
    connections_accepted: Family<ListenerLabels, Counter>,
    connections_refused: Family<RefusedLabels, Counter>,
    connections_open: Family<ListenerLabels, Gauge>,
    logins: Family<LoginLabels, Counter>,
    authorizations: Family<AuthzLabels, Counter>,
    request_seconds: HistogramFamily<StageLabels>,
    api_timers: Vec<OnceLock<ApiTimers>>,
    topic_bytes_in: Family<TopicLabels, Counter>,
    topic_records_in: Family<TopicLabels, Counter>,
    topic_bytes_out: Family<TopicLabels, Counter>,
    topic_records_out: Family<TopicLabels, Counter>,
    topics: ByName<Flows>,
    principal_bytes_in: Family<PrincipalLabels, Counter>,
    principal_bytes_out: Family<PrincipalLabels, Counter>,
    principals: ByName<(Counter, Counter)>,
    reloads: Family<ReloadLabels, Counter>,
    throttle_ms: Family<QuotaLabels, Counter>,
    throttled: Family<QuotaLabels, Counter>,
    upstream_seconds: HistogramFamily<UpstreamLabels>,
    upstream_streamed: Counter,
    fetch_sessions: Family<FetchSessionLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("portcullis");
        let connections_accepted = Family::default();
        r.register(
            "connections_accepted",
            "Connections admitted, by listener",
            connections_accepted.clone(),
        );
        let connections_refused = Family::default();
        r.register(
            "connections_refused",
            "Connections refused at accept, by listener and reason",
            connections_refused.clone(),
        );
        let connections_open = Family::default();
        r.register(
            "connections_open",
            "Connections being served, by listener",
            connections_open.clone(),
        );
        let logins = Family::default();
        r.register(
            "logins",
            "SASL login attempts, by mechanism, outcome and failure reason",
            logins.clone(),
        );
        let authorizations = Family::default();
        r.register(
            "authorization_decisions",
            "Authorization decisions, by API, operation, resource type and outcome",
            authorizations.clone(),
        );
        let request_seconds: HistogramFamily<StageLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "request_duration_seconds",
            "Request latency by API and stage: queue (frame read until handling starts), \
             handle, total (until the response is written)",
            request_seconds.clone(),
        );
        let topic_bytes_in = Family::default();
        r.register(
            "topic_bytes_in",
            "Record batch bytes produced, by topic",
            topic_bytes_in.clone(),
        );
        let topic_records_in = Family::default();
        r.register(
            "topic_records_in",
            "Records produced, by topic (from the batch headers)",
            topic_records_in.clone(),
        );
        let topic_bytes_out = Family::default();
        r.register(
            "topic_bytes_out",
            "Record batch bytes fetched, by topic",
            topic_bytes_out.clone(),
        );
        let topic_records_out = Family::default();
        r.register(
            "topic_records_out",
            "Records fetched, by topic (from the batch headers)",
            topic_records_out.clone(),
        );
        let principal_bytes_in = Family::default();
        r.register(
            "principal_bytes_in",
            "Record batch bytes produced, by SCRAM principal in the credential store \
             (others as \"other\")",
            principal_bytes_in.clone(),
        );
        let principal_bytes_out = Family::default();
        r.register(
            "principal_bytes_out",
            "Record batch bytes fetched, by SCRAM principal in the credential store \
             (others as \"other\")",
            principal_bytes_out.clone(),
        );
        let reloads = Family::default();
        r.register(
            "reloads",
            "Reloads of watched files (acl, credentials, tls), by outcome",
            reloads.clone(),
        );
        let throttle_ms = Family::default();
        r.register(
            "throttle_time_ms",
            "Throttle time given to clients, by quota",
            throttle_ms.clone(),
        );
        let throttled = Family::default();
        r.register(
            "throttled_responses",
            "Responses that carried a throttle time, by quota",
            throttled.clone(),
        );
        let upstream_seconds: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(latency_histogram);
        r.register(
            "upstream_request_duration_seconds",
            "Gateway mode: upstream request latency, by API and outcome",
            upstream_seconds.clone(),
        );
        let upstream_streamed = Counter::default();
        r.register(
            "upstream_streamed_answers",
            "Gateway mode: upstream answers passed on to the client as they arrived",
            upstream_streamed.clone(),
        );
        let fetch_sessions = Family::default();
        r.register(
            "fetch_session_requests",
            "Fetches in incremental fetch sessions (KIP-227), by kind: new, incremental, \
             closed, error",
            fetch_sessions.clone(),
        );
        for kind in FETCH_SESSION_KINDS {
            let _ = fetch_sessions.get_or_create(&FetchSessionLabels { kind });
        }
        let sources = Arc::new(OnceLock::new());
        r.register_collector(Box::new(collect::Scrape::new(sources.clone())));
        // Families of a fixed label set start at zero, so a rate is defined
        // from the first scrape.
        for quota in QUOTAS {
            let _ = throttle_ms.get_or_create(&QuotaLabels { quota });
            let _ = throttled.get_or_create(&QuotaLabels { quota });
        }
        Metrics {
            registry: r,
            sources,
            connections_accepted,
            connections_refused,
            connections_open,
            logins,
            authorizations,
            request_seconds,
            api_timers: (0..=api_index_max()).map(|_| OnceLock::new()).collect(),
            topic_bytes_in,
            topic_records_in,
            topic_bytes_out,
            topic_records_out,
            topics: ByName::new(MAX_TOPIC_LABELS, OTHER_TOPIC),
            principal_bytes_in,
            principal_bytes_out,
            // Bounded by the caller: store users or `other`.
            principals: ByName::new(usize::MAX, OTHER_PRINCIPAL),
            reloads,
            throttle_ms,
            throttled,
            upstream_seconds,
            upstream_streamed,
            fetch_sessions,
        }
    }

    /// What the scrape-time collectors read; set once by `start`.
    pub fn attach(&self, sources: Sources) {
        let _ = self.sources.set(sources);
    }

    /// Everything, in the Prometheus text format. Reads every partition of
    /// the log: call it off the runtime's worker threads.
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    pub fn connection_accepted(&self, listener: &str) {
        let l = ListenerLabels {
            listener: listener.to_string(),
        };
        self.connections_accepted.get_or_create(&l).inc();
        self.connections_open.get_or_create(&l).inc();
    }

    pub fn connection_closed(&self, listener: &str) {
        let l = ListenerLabels {
            listener: listener.to_string(),
        };
        self.connections_open.get_or_create(&l).dec();
    }

    /// `reason`: `max_connections`, `max_connections_per_ip`,
    /// `login_throttled`.
    pub fn connection_refused(&self, listener: &str, reason: &'static str) {
        self.connections_refused
            .get_or_create(&RefusedLabels {
                listener: listener.to_string(),
                reason,
            })
            .inc();
    }

    /// One login attempt. `reason` is `none` for a success, else a label
    /// from the fixed set of `SaslFailure::kind` (never a user name).
    pub fn login(&self, mechanism: &'static str, success: bool, reason: &'static str) {
        self.logins
            .get_or_create(&LoginLabels {
                mechanism,
                outcome: if success { "success" } else { "failure" },
                reason: if success { "none" } else { reason },
            })
            .inc();
    }

    pub fn authorization(
        &self,
        api: ApiKey,
        operation: &'static str,
        resource_type: &'static str,
        allowed: bool,
    ) {
        self.authorizations
            .get_or_create(&AuthzLabels {
                api: api_name(api),
                operation,
                resource_type,
                outcome: if allowed { "allow" } else { "deny" },
            })
            .inc();
    }

    /// The latency histograms of the API with key `key`; `None` for a key
    /// no API has (such a frame closes the connection).
    pub fn api_timers(&self, key: i16) -> Option<&ApiTimers> {
        let api = ApiKey::try_from(key).ok()?;
        let slot = self.api_timers.get(usize::try_from(key).ok()?)?;
        Some(slot.get_or_init(|| {
            let api = api_name(api);
            let h = |stage| {
                self.request_seconds
                    .get_or_create_owned(&StageLabels { api, stage })
            };
            ApiTimers {
                queue: h("queue"),
                handle: h("handle"),
                total: h("total"),
            }
        }))
    }

    fn topic(&self, topic: &str) -> Flows {
        self.topics.get(topic, |topic| {
            let l = TopicLabels { topic };
            Flows {
                inbound: Flow {
                    bytes: self.topic_bytes_in.get_or_create_owned(&l),
                    records: self.topic_records_in.get_or_create_owned(&l),
                },
                outbound: Flow {
                    bytes: self.topic_bytes_out.get_or_create_owned(&l),
                    records: self.topic_records_out.get_or_create_owned(&l),
                },
            }
        })
    }

    /// `principal`: its label value, `OTHER_PRINCIPAL` unless the caller
    /// knows it is a user of the credential store (which bounds the set).
    fn principal(&self, principal: &str) -> (Counter, Counter) {
        self.principals.get(principal, |principal| {
            let l = PrincipalLabels { principal };
            (
                self.principal_bytes_in.get_or_create_owned(&l),
                self.principal_bytes_out.get_or_create_owned(&l),
            )
        })
    }

    /// Record batches produced to `topic` (`records`: the record batches'
    /// bytes, as sent).
    pub fn produced(&self, topic: &str, principal: &str, records: &[u8]) {
        let (bytes, count) = batch_totals(records);
        let f = self.topic(topic).inbound;
        f.bytes.inc_by(bytes);
        f.records.inc_by(count);
        self.principal(principal).0.inc_by(bytes);
    }

    /// Record batches fetched from `topic`.
    pub fn fetched(&self, topic: &str, principal: &str, records: &[u8]) {
        let (bytes, count) = batch_totals(records);
        self.fetched_totals(topic, principal, bytes, count);
    }

    /// Records read, as [`batch_totals`] counts them.
    pub fn fetched_totals(&self, topic: &str, principal: &str, bytes: u64, count: u64) {
        if bytes == 0 {
            return;
        }
        let f = self.topic(topic).outbound;
        f.bytes.inc_by(bytes);
        f.records.inc_by(count);
        self.principal(principal).1.inc_by(bytes);
    }

    /// `file`: `acl`, `credentials`, `tls`; `outcome`: `applied`,
    /// `in_sync`, `failed`.
    pub fn reload(&self, file: &'static str, outcome: &'static str) {
        self.reloads
            .get_or_create(&ReloadLabels { file, outcome })
            .inc();
    }

    /// A response that carried `ms` of throttle time for `quota` (one of
    /// [`QUOTAS`]).
    pub fn throttled(&self, quota: &'static str, ms: u64) {
        let l = QuotaLabels { quota };
        self.throttle_ms.get_or_create(&l).inc_by(ms);
        self.throttled.get_or_create(&l).inc();
    }

    /// One Fetch in a fetch session; `kind` is one of
    /// [`FETCH_SESSION_KINDS`].
    pub fn fetch_session(&self, kind: &'static str) {
        self.fetch_sessions
            .get_or_create(&FetchSessionLabels { kind })
            .inc();
    }

    /// One upstream answer passed on as it arrived (gateway mode).
    pub fn upstream_streamed(&self) {
        self.upstream_streamed.inc();
    }

    /// One request forwarded upstream (gateway mode).
    pub fn upstream_request(&self, api: ApiKey, ok: bool, seconds: f64) {
        self.upstream_seconds
            .get_or_create(&UpstreamLabels {
                api: api_name(api),
                outcome: if ok { "ok" } else { "error" },
            })
            .observe(seconds);
    }
}

fn api_index_max() -> usize {
    ApiKey::iter().map(|k| k as i16 as usize).max().unwrap_or(0)
}

/// `ApiKey`'s name, made once per API (a bounded set) and kept.
pub fn api_name(api: ApiKey) -> &'static str {
    static NAMES: OnceLock<HashMap<i16, &'static str>> = OnceLock::new();
    NAMES
        .get_or_init(|| {
            ApiKey::iter()
                .map(|k| (k as i16, &*Box::leak(format!("{k:?}").into_boxed_str())))
                .collect()
        })
        .get(&(api as i16))
        .copied()
        .unwrap_or("unknown")
}

/// Bytes and record count of a run of v2 record batches, read from the
/// batch headers (length at 8, record count at 57): no record is parsed.
/// A truncated tail (a fetch may end in a partial batch) counts its bytes
/// only.
pub fn batch_totals(records: &[u8]) -> (u64, u64) {
    const LENGTH_END: usize = 12;
    const COUNT_AT: usize = 57;
    let mut count = 0u64;
    let mut at = 0usize;
    while records.len() - at >= COUNT_AT + 4 {
        let b = &records[at..];
        let len = i32::from_be_bytes([b[8], b[9], b[10], b[11]]);
        let Ok(len) = usize::try_from(len) else { break };
        let end = LENGTH_END + len;
        if b.len() < end || b[16] != 2 {
            break;
        }
        let n = i32::from_be_bytes([b[57], b[58], b[59], b[60]]);
        count += u64::try_from(n).unwrap_or(0);
        at += end;
    }
    (records.len() as u64, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: i32, payload: usize) -> Vec<u8> {
        let mut b = vec![0u8; 61 + payload];
        let len = (b.len() - 12) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        b[16] = 2;
        b[57..61].copy_from_slice(&records.to_be_bytes());
        b
    }

    #[test]
    fn batch_totals_reads_headers_only() {
        let mut all = batch(3, 40);
        all.extend(batch(5, 10));
        assert_eq!(batch_totals(&all), (all.len() as u64, 8));
        // A partial trailing batch counts no records.
        let mut cut = all.clone();
        cut.extend(&batch(7, 100)[..70]);
        assert_eq!(batch_totals(&cut).1, 8);
        assert_eq!(batch_totals(&[]), (0, 0));
    }

    #[test]
    fn topic_labels_are_capped() {
        let names = ByName::new(2, OTHER_TOPIC);
        let make = |n: Arc<str>| n;
        assert_eq!(&*names.get("a", make), "a");
        assert_eq!(&*names.get("b", make), "b");
        assert_eq!(&*names.get("c", make), OTHER_TOPIC);
        assert_eq!(&*names.get("a", make), "a");
        // `other` itself may take one place beyond the cap, no more.
        assert_eq!(&*names.get("d", make), OTHER_TOPIC);
        assert_eq!(names.map.read().unwrap().len(), 3);
    }

    #[test]
    fn encodes_prefixed_names() {
        let m = Metrics::new();
        m.connection_accepted("PLAINTEXT");
        m.login("SCRAM-SHA-512", false, "wrong_password");
        m.authorization(ApiKey::Produce, "write", "topic", false);
        m.throttled("producer_byte_rate", 250);
        m.api_timers(0).unwrap().total.observe(0.01);
        m.produced("t", OTHER_PRINCIPAL, &batch(4, 0));
        let text = m.encode().unwrap();
        for line in [
            "portcullis_connections_accepted_total{listener=\"PLAINTEXT\"} 1",
            "portcullis_logins_total{mechanism=\"SCRAM-SHA-512\",outcome=\"failure\",reason=\"wrong_password\"} 1",
            "portcullis_authorization_decisions_total{api=\"Produce\",operation=\"write\",resource_type=\"topic\",outcome=\"deny\"} 1",
            "portcullis_throttle_time_ms_total{quota=\"producer_byte_rate\"} 250",
            "portcullis_throttled_responses_total{quota=\"consumer_byte_rate\"} 0",
            "portcullis_topic_records_in_total{topic=\"t\"} 4",
            "portcullis_request_duration_seconds_count{api=\"Produce\",stage=\"total\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
    }
}
