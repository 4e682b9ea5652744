//! Incremental fetch sessions (KIP-227), kept by the edge for one
//! connection, so that a consumer of many partitions sends and receives
//! only what changed.
//!
//! The back end never sees a session: each Fetch in a session is expanded
//! here to the session's whole partition set and forwarded as a full,
//! sessionless Fetch (to the embedded engine or an upstream Kafka alike),
//! which the edge authorizes as a whole, every time: an ACL revoked in the
//! middle of a session refuses those partitions on the next request, as
//! Kafka re-authorizes a session's partitions. The answer is then cut down
//! to what an incremental answer carries (Kafka's
//! `CachedPartition.maybeUpdateResponseData`).
//!
//! Bounded: one session per connection (a client opening a second one has
//! given up the first; Kafka's Java client keeps one per broker), holding at
//! most `connections.max_fetch_session_partitions` partitions. A full Fetch
//! naming more is answered without a session, as Kafka does when its
//! session cache is full.

use indexmap::IndexMap;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;

use super::fetch_walk::Told;

/// A Fetch outside any session (`session_id` 0).
const INVALID_SESSION_ID: i32 = 0;
/// A full Fetch that asks for a new session.
const INITIAL_EPOCH: i32 = 0;
/// A full Fetch that wants no session (and closes the one it names).
const FINAL_EPOCH: i32 = -1;

/// Sessions one connection keeps: a new one replaces the oldest.
const MAX_SESSIONS: usize = 1;

type Key = (TopicName, i32);

/// What the session remembers of one partition: the client's last fetch
/// parameters, and what the client was last told.
struct Cached {
    request: FetchPartition,
    high_watermark: i64,
    last_stable_offset: i64,
    log_start_offset: i64,
}

impl Cached {
    fn new(request: FetchPartition) -> Cached {
        // -1: never sent, so the first answer always carries the partition.
        Cached {
            request,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
        }
    }

    /// Whether an incremental answer must carry this partition, remembering
    /// what it carries (Kafka's `maybeUpdateResponseData`).
    fn must_respond(&mut self, p: &Told) -> bool {
        let mut must = p.records || p.redirects;
        if self.high_watermark != p.high_watermark {
            self.high_watermark = p.high_watermark;
            must = true;
        }
        if self.last_stable_offset != p.last_stable_offset {
            self.last_stable_offset = p.last_stable_offset;
            must = true;
        }
        if self.log_start_offset != p.log_start_offset {
            self.log_start_offset = p.log_start_offset;
            must = true;
        }
        if p.error_code != 0 {
            // Sent again once the error is gone.
            self.high_watermark = -1;
            must = true;
        }
        must
    }
}

/// What a decoded answer tells the client of one partition.
fn told(p: &PartitionData) -> Told {
    Told {
        error_code: p.error_code,
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
        records: p.records.as_ref().is_some_and(|r| !r.is_empty()),
        redirects: p.preferred_read_replica.0 >= 0 || p.diverging_epoch.epoch >= 0,
    }
}

struct Session {
    id: i32,
    /// The epoch the next request in this session must carry.
    epoch: i32,
    /// In the order they are forwarded; partitions that just returned
    /// records move to the end, so that a size-bounded answer does not
    /// always favour the same ones (as Kafka reorders its sessions).
    partitions: IndexMap<Key, Cached>,
}

impl Session {
    /// What an answer told the client of one partition: whether an
    /// incremental answer must carry it (`None`: not in the session). A
    /// partition that returned records joins `moved`.
    fn tell(&mut self, key: Key, told: &Told, moved: &mut Vec<Key>) -> Option<bool> {
        let must = self.partitions.get_mut(&key)?.must_respond(told);
        if told.records {
            moved.push(key);
        }
        Some(must)
    }

    /// Partitions that just returned records go to the end of the order.
    fn move_to_end(&mut self, moved: Vec<Key>) {
        for key in moved {
            if let Some((k, v)) = self.partitions.shift_remove_entry(&key) {
                self.partitions.insert(k, v);
            }
        }
    }
}

/// A connection's fetch sessions, shared with the walk of an answer still
/// passing to the client.
pub type SharedFetchSessions = std::sync::Arc<std::sync::Mutex<FetchSessions>>;

/// The fetch sessions of one connection.
#[derive(Default)]
pub struct FetchSessions {
    /// Least recently used first.
    sessions: Vec<Session>,
}

/// What to do with one Fetch, decided before authorization.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    /// No session: forwarded as it is, answered with `session_id` 0.
    Sessionless,
    /// In session `id`, the request now naming its partitions (forwarded
    /// full and sessionless). `new`: just opened (a full answer).
    InSession { id: i32, new: bool },
    /// Answered at once with this request-level error, no partitions.
    Error(i16),
    /// The session emptied and closed: an empty answer, no session.
    Empty,
}

/// What [`FetchSessions::finish`] did with an answer, for the metrics.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Finished {
    New,
    Incremental,
    /// The answer carried a request-level error: the session is closed.
    Closed,
}

impl FetchSessions {
    /// Applies the request's session fields (Kafka's
    /// `FetchManager.newContext`) and rewrites `r` into the full,
    /// sessionless Fetch the back end is given.
    pub fn begin(&mut self, r: &mut FetchRequest, max_partitions: usize) -> Begin {
        let (id, epoch) = (r.session_id, r.session_epoch);
        r.session_id = INVALID_SESSION_ID;
        r.session_epoch = FINAL_EPOCH;
        let forgotten = std::mem::take(&mut r.forgotten_topics_data);
        if epoch == INITIAL_EPOCH || epoch == FINAL_EPOCH {
            // A full Fetch closes the session it names.
            if id != INVALID_SESSION_ID {
                self.sessions.retain(|s| s.id != id);
            }
            let count: usize = r.topics.iter().map(|t| t.partitions.len()).sum();
            if epoch == FINAL_EPOCH || count > max_partitions {
                return Begin::Sessionless;
            }
            let mut partitions = IndexMap::with_capacity(count);
            for t in &r.topics {
                for p in &t.partitions {
                    partitions.insert((t.topic.clone(), p.partition), Cached::new(p.clone()));
                }
            }
            if self.sessions.len() >= MAX_SESSIONS {
                self.sessions.remove(0);
            }
            let id = self.new_id();
            self.sessions.push(Session {
                id,
                epoch: next_epoch(INITIAL_EPOCH),
                partitions,
            });
            return Begin::InSession { id, new: true };
        }
        let Some(at) = self.sessions.iter().position(|s| s.id == id) else {
            return Begin::Error(ResponseError::FetchSessionIdNotFound.code());
        };
        if self.sessions[at].epoch != epoch {
            return Begin::Error(ResponseError::InvalidFetchSessionEpoch.code());
        }
        let mut session = self.sessions.remove(at);
        // Kafka's `FetchSession.update`: added and changed partitions
        // first, then the forgotten ones.
        for t in std::mem::take(&mut r.topics) {
            for p in t.partitions {
                match session.partitions.entry((t.topic.clone(), p.partition)) {
                    indexmap::map::Entry::Occupied(mut e) => e.get_mut().request = p,
                    indexmap::map::Entry::Vacant(e) => {
                        e.insert(Cached::new(p));
                    }
                }
            }
        }
        for t in &forgotten {
            for p in &t.partitions {
                session.partitions.shift_remove(&(t.topic.clone(), *p));
            }
        }
        if session.partitions.is_empty() {
            return Begin::Empty;
        }
        if session.partitions.len() > max_partitions {
            // Grown past the bound: dropped; the client starts over with a
            // full Fetch, answered without a session.
            return Begin::Error(ResponseError::FetchSessionIdNotFound.code());
        }
        session.epoch = next_epoch(session.epoch);
        r.topics = expand(&session.partitions);
        self.sessions.push(session);
        Begin::InSession { id, new: false }
    }

    /// Turns the back end's answer (with the edge's refusals) into the
    /// session's answer: a new session's lists every partition; an
    /// incremental one only those with something to say.
    pub fn finish(&mut self, id: i32, new: bool, resp: &mut FetchResponse) -> Finished {
        let done;
        (resp.session_id, done) = self.passing(id, new, resp.error_code);
        let Some(session) = self.sessions.iter_mut().find(|s| s.id == id) else {
            return done;
        };
        let mut moved: Vec<Key> = Vec::new();
        for t in &mut resp.responses {
            t.partitions.retain(|p| {
                // Not asked for: a client would take it for a broken answer.
                session
                    .tell((t.topic.clone(), p.partition_index), &told(p), &mut moved)
                    .is_some_and(|must| new || must)
            });
        }
        if !new {
            resp.responses.retain(|t| !t.partitions.is_empty());
        }
        session.move_to_end(moved);
        done
    }

    /// An answer's head, for a decoded answer ([`FetchSessions::finish`])
    /// and one passed to the client as bytes, uncut (`fetch_walk`; every
    /// partition is in it, which an incremental answer may carry) alike:
    /// an error closes the session. Returns the session id the answer must
    /// carry.
    pub fn passing(&mut self, id: i32, new: bool, error_code: i16) -> (i32, Finished) {
        let Some(at) = self.sessions.iter().position(|s| s.id == id) else {
            return (INVALID_SESSION_ID, Finished::Closed);
        };
        if error_code != 0 {
            self.sessions.remove(at);
            return (INVALID_SESSION_ID, Finished::Closed);
        }
        (
            id,
            if new {
                Finished::New
            } else {
                Finished::Incremental
            },
        )
    }

    /// What an answer passed as bytes told the client, read from it as it
    /// passed (before its last byte was written: the client's next Fetch
    /// in the session finds it). `None`: the answer could not be read, so
    /// nothing told is trusted and the next answer carries every
    /// partition.
    pub fn passed(&mut self, id: i32, told: Option<&[(TopicName, i32, Told)]>) {
        let Some(session) = self.sessions.iter_mut().find(|s| s.id == id) else {
            return;
        };
        let Some(told) = told else {
            for cached in session.partitions.values_mut() {
                cached.high_watermark = -1;
            }
            return;
        };
        let mut moved: Vec<Key> = Vec::new();
        for (topic, partition, told) in told {
            if session
                .tell((topic.clone(), *partition), told, &mut moved)
                .is_none()
            {
                // The upstream answered a partition not asked for; the
                // client sees it (a Java client then starts a new session).
                tracing::debug!(
                    topic = topic.as_str(),
                    partition,
                    "Fetch answer names a partition outside the session"
                );
            }
        }
        session.move_to_end(moved);
    }

    /// A Fetch answered, before any back end sees it, with a throttle and
    /// no data (a consumer over its byte rate): its session changes apply
    /// and its epoch is spent as Kafka's throttled answers do, so the
    /// client stays in its session. Returns the answer's (error code,
    /// session id).
    pub fn throttled(&mut self, r: &mut FetchRequest, max_partitions: usize) -> (i16, i32) {
        match self.begin(r, max_partitions) {
            Begin::InSession { id, new: false } => (0, id),
            // Kafka opens a session only with a full answer.
            Begin::InSession { id, new: true } => {
                self.sessions.retain(|s| s.id != id);
                (0, INVALID_SESSION_ID)
            }
            Begin::Error(code) => (code, INVALID_SESSION_ID),
            Begin::Sessionless | Begin::Empty => (0, INVALID_SESSION_ID),
        }
    }

    /// A session id no session of this connection has, never 0.
    fn new_id(&self) -> i32 {
        loop {
            let id = rand::random::<i32>() & i32::MAX;
            if id != INVALID_SESSION_ID && self.sessions.iter().all(|s| s.id != id) {
                return id;
            }
        }
    }
}

/// Kafka's `FetchMetadata.nextEpoch`: wraps to 1, never to 0 or -1.
fn next_epoch(epoch: i32) -> i32 {
    if epoch == i32::MAX {
        1
    } else {
        epoch + 1
    }
}

/// The session's partitions as a request's topic list, consecutive
/// partitions of one topic under one entry.
fn expand(partitions: &IndexMap<Key, Cached>) -> Vec<FetchTopic> {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, _), cached) in partitions {
        match topics.last_mut() {
            Some(t) if t.topic == *topic => t.partitions.push(cached.request.clone()),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(topic.clone())
                    .with_partitions(vec![cached.request.clone()]),
            ),
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_request::ForgottenTopic;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::protocol::StrBytes;

    fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    fn request(id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
        let mut r = FetchRequest::default()
            .with_session_id(id)
            .with_session_epoch(epoch);
        for (t, p, offset) in parts {
            r.topics
                .push(FetchTopic::default().with_topic(name(t)).with_partitions(
                    vec![FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(*offset)],
                ));
        }
        r
    }

    fn answer(parts: &[(&str, i32, i64, bool)]) -> FetchResponse {
        let mut resp = FetchResponse::default();
        for (t, p, hw, records) in parts {
            resp.responses.push(
                FetchableTopicResponse::default()
                    .with_topic(name(t))
                    .with_partitions(vec![PartitionData::default()
                        .with_partition_index(*p)
                        .with_high_watermark(*hw)
                        .with_records(records.then(|| bytes::Bytes::from_static(b"x")))]),
            );
        }
        resp
    }

    fn shown(resp: &FetchResponse) -> Vec<(String, i32)> {
        resp.responses
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.to_string(), p.partition_index))
            })
            .collect()
    }

    #[test]
    fn a_session_answers_only_what_changed() {
        let mut s = FetchSessions::default();
        let mut r = request(0, 0, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)]);
        let Begin::InSession { id, new: true } = s.begin(&mut r, 10) else {
            panic!("no session");
        };
        assert_eq!((r.session_id, r.session_epoch), (0, -1));
        let mut resp = answer(&[("a", 0, 5, true), ("a", 1, 0, false), ("b", 0, 0, false)]);
        assert_eq!(s.finish(id, true, &mut resp), Finished::New);
        assert_eq!(resp.session_id, id);
        assert_eq!(shown(&resp).len(), 3);

        // Nothing new: an empty answer, the whole set forwarded.
        let mut r = request(id, 1, &[]);
        assert_eq!(s.begin(&mut r, 10), Begin::InSession { id, new: false });
        assert_eq!(
            r.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
            3
        );
        let mut resp = answer(&[("a", 1, 0, false), ("b", 0, 0, false), ("a", 0, 5, false)]);
        s.finish(id, false, &mut resp);
        assert!(shown(&resp).is_empty());

        // One partition moves on, another is forgotten.
        let mut r = request(id, 2, &[("a", 0, 5)]);
        r.forgotten_topics_data.push(
            ForgottenTopic::default()
                .with_topic(name("b"))
                .with_partitions(vec![0]),
        );
        s.begin(&mut r, 10);
        assert_eq!(
            r.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
            2
        );
        let mut resp = answer(&[("a", 1, 3, false), ("a", 0, 5, false)]);
        s.finish(id, false, &mut resp);
        assert_eq!(shown(&resp), vec![("a".to_string(), 1)]);
    }

    fn told(hw: i64, records: bool) -> Told {
        Told {
            high_watermark: hw,
            // As a decoded answer's defaults.
            last_stable_offset: -1,
            log_start_offset: -1,
            records,
            ..Told::default()
        }
    }

    /// What an answer passed uncut told the client counts as told: the
    /// next cut answer leaves out what it already said; one that could not
    /// be read makes the next answer carry everything.
    #[test]
    fn answers_passed_uncut_count_as_told() {
        let mut s = FetchSessions::default();
        let mut r = request(0, 0, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 0)]);
        let Begin::InSession { id, new: true } = s.begin(&mut r, 10) else {
            panic!("no session");
        };
        assert_eq!(s.passing(id, true, 0), (id, Finished::New));
        s.passed(
            id,
            Some(&[
                (name("a"), 0, told(5, true)),
                (name("a"), 1, told(0, false)),
                (name("b"), 0, told(0, false)),
            ]),
        );
        // a-0 returned records: it goes to the end of the next request.
        let mut r = request(id, 1, &[]);
        s.begin(&mut r, 10);
        let order: Vec<(String, i32)> = r
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (t.topic.to_string(), p.partition))
            })
            .collect();
        assert_eq!(
            order,
            vec![("a".into(), 1), ("b".into(), 0), ("a".into(), 0)]
        );
        let mut resp = answer(&[("a", 1, 0, false), ("b", 0, 0, false), ("a", 0, 5, false)]);
        assert_eq!(s.finish(id, false, &mut resp), Finished::Incremental);
        assert!(shown(&resp).is_empty(), "{:?}", shown(&resp));

        // An answer that could not be read: the next one shows all.
        let mut r = request(id, 2, &[]);
        s.begin(&mut r, 10);
        assert_eq!(s.passing(id, false, 0), (id, Finished::Incremental));
        s.passed(id, None);
        let mut r = request(id, 3, &[]);
        s.begin(&mut r, 10);
        let mut resp = answer(&[("a", 1, 0, false), ("b", 0, 0, false), ("a", 0, 5, false)]);
        s.finish(id, false, &mut resp);
        assert_eq!(shown(&resp).len(), 3);

        // A partition's error is told again once it is gone; a partition
        // outside the session changes nothing.
        let mut r = request(id, 4, &[]);
        s.begin(&mut r, 10);
        let mut failed = told(5, false);
        failed.error_code = 6;
        s.passed(
            id,
            Some(&[(name("a"), 0, failed), (name("zz"), 9, told(1, true))]),
        );
        let mut r = request(id, 5, &[]);
        s.begin(&mut r, 10);
        assert_eq!(
            r.topics.iter().map(|t| t.partitions.len()).sum::<usize>(),
            3
        );
        let mut resp = answer(&[("a", 1, 0, false), ("b", 0, 0, false), ("a", 0, 5, false)]);
        s.finish(id, false, &mut resp);
        assert_eq!(shown(&resp), vec![("a".to_string(), 0)]);

        // An error in the answer's head closes the session.
        let mut r = request(id, 6, &[]);
        s.begin(&mut r, 10);
        assert_eq!(s.passing(id, false, 71), (0, Finished::Closed));
        assert_eq!(
            s.begin(&mut request(id, 7, &[]), 10),
            Begin::Error(ResponseError::FetchSessionIdNotFound.code())
        );
    }

    #[test]
    fn wrong_epochs_and_unknown_ids_are_refused() {
        let mut s = FetchSessions::default();
        let mut r = request(0, 0, &[("a", 0, 0)]);
        let Begin::InSession { id, .. } = s.begin(&mut r, 10) else {
            panic!("no session");
        };
        assert_eq!(
            s.begin(&mut request(id, 5, &[]), 10),
            Begin::Error(ResponseError::InvalidFetchSessionEpoch.code())
        );
        assert_eq!(
            s.begin(&mut request(id ^ 1, 1, &[]), 10),
            Begin::Error(ResponseError::FetchSessionIdNotFound.code())
        );
        // Closing it: later requests in it are unknown.
        assert_eq!(s.begin(&mut request(id, -1, &[]), 10), Begin::Sessionless);
        assert_eq!(
            s.begin(&mut request(id, 1, &[]), 10),
            Begin::Error(ResponseError::FetchSessionIdNotFound.code())
        );
    }

    #[test]
    fn bounds_hold() {
        let mut s = FetchSessions::default();
        let many: Vec<(&str, i32, i64)> = (0..11).map(|p| ("a", p, 0)).collect();
        assert_eq!(s.begin(&mut request(0, 0, &many), 10), Begin::Sessionless);
        let Begin::InSession { id: first, .. } = s.begin(&mut request(0, 0, &many[..2]), 10) else {
            panic!("no session");
        };
        let Begin::InSession { id: second, .. } = s.begin(&mut request(0, 0, &many[..2]), 10)
        else {
            panic!("no session");
        };
        assert_ne!(first, second);
        assert_eq!(s.sessions.len(), MAX_SESSIONS);
        // Growing past the bound drops the session.
        assert_eq!(
            s.begin(&mut request(second, 1, &many[2..]), 10),
            Begin::Error(ResponseError::FetchSessionIdNotFound.code())
        );
        assert!(s.sessions.is_empty());
    }
}
