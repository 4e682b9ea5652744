//! Reads a Fetch answer's partition fields from its bytes as they pass,
//! without holding the answer: a large answer the gateway streams to the
//! client is walked chunk by chunk, so that the edge still learns what the
//! client was told (for its fetch session, `fetch_session.rs`) and how
//! many records of which topic it read (for the metrics).
//!
//! The walk is a state machine over small units (the answer's head, a
//! topic's name, a partition's fields, an aborted transaction, a tagged
//! field's header, a record batch's header); a unit split between two
//! chunks is carried over (at most one unit, a few hundred bytes at most
//! but for a topic name), and the records themselves are skipped, never
//! copied. Answers of Fetch v4 to v12 (the edge's range). Nothing in the
//! bytes makes it panic, and what it keeps is bounded by the partitions the
//! request named: a malformed answer, or one naming more partitions, ends
//! the walk with an error.

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// What an answer told the client of one partition: what decides whether
/// the next incremental answer must carry it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Told {
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// The partition came with records.
    pub records: bool,
    /// A preferred read replica or a diverging epoch: the client must act.
    pub redirects: bool,
}

/// The records of one topic an answer carried (`metrics::batch_totals`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicRead {
    pub topic: TopicName,
    pub bytes: u64,
    pub records: u64,
}

/// What a whole walk found.
#[derive(Debug, Default)]
pub struct Walked {
    pub error_code: i16,
    /// Every partition of the answer, in its order.
    pub partitions: Vec<(TopicName, i32, Told)>,
    /// By topic, in the answer's order (a topic named twice counts twice).
    pub read: Vec<TopicRead>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalkError {
    #[error("Fetch answer v{0} not walked (v4 to v12 are)")]
    Version(i16),
    #[error("Fetch answer with more partitions than the {0} asked for")]
    TooManyPartitions(usize),
    #[error("malformed Fetch answer: {0}")]
    Malformed(&'static str),
    #[error("Fetch answer ended before its last field")]
    Truncated,
}

/// A topic name longer than this is taken for a malformed answer (Kafka
/// allows 249 characters).
const MAX_TOPIC_NAME: usize = 32 * 1024;
/// A record batch's header, as far as its record count.
const BATCH_HEADER: usize = 61;

/// Where a tagged-field section sits: what follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TagsOf {
    Aborted,
    Partition,
    Topic,
    Body,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Head,
    Topic,
    Partition,
    Aborted,
    /// The preferred read replica and the records' length.
    PartitionRest,
    /// The partition's record batches, `left` bytes of them.
    Records {
        left: usize,
        counting: bool,
    },
    TagCount(TagsOf),
    Tag {
        of: TagsOf,
        left: u32,
    },
    Done,
    Failed,
}

/// A Fetch answer walked as its bytes pass ([`FetchWalk::feed`]).
pub struct FetchWalk {
    version: i16,
    /// Partitions the answer may hold at most (the request's).
    max_partitions: usize,
    /// Whether [`Walked::partitions`] is wanted (a session's answer).
    keep_partitions: bool,
    partitions_seen: usize,
    topics_seen: usize,
    state: State,
    /// Bytes to pass over before the next unit.
    skip: usize,
    /// A unit begun in an earlier chunk.
    carry: Vec<u8>,
    topics_left: usize,
    parts_left: usize,
    aborted_left: usize,
    topic: TopicName,
    partition: i32,
    told: Told,
    walked: Walked,
    error: Option<WalkError>,
}

/// One unit read from the front of the input: bytes taken, or how many it
/// needs in all.
enum Unit {
    Took(usize),
    Needs(usize),
}

/// A reader over one unit's bytes; `None`: they end too soon.
struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|s| i16::from_be_bytes([s[0], s[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        self.take(8)
            .map(|s| i64::from_be_bytes(s.try_into().unwrap_or([0; 8])))
    }
    /// An unsigned varint; `Some(Err)` when it is longer than 5 bytes.
    fn uvarint(&mut self) -> Option<Result<u32, WalkError>> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = *self.take(1)?.first()?;
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(Ok(v));
            }
        }
        Some(Err(WalkError::Malformed("varint longer than 5 bytes")))
    }
}

/// Reads a field or says how many bytes the unit needs at least.
macro_rules! field {
    ($c:expr, $read:ident) => {
        match $c.$read() {
            Some(v) => v,
            None => return Ok(Unit::Needs($c.b.len() + 1)),
        }
    };
}

/// A varint field, malformed or not.
macro_rules! varint {
    ($c:expr) => {
        field!($c, uvarint)?
    };
}

/// An array's length (`None`: null) in the version's encoding.
macro_rules! count {
    ($self:expr, $c:expr) => {
        if $self.flexible() {
            (varint!($c) as usize).checked_sub(1)
        } else {
            usize::try_from(field!($c, i32)).ok()
        }
    };
}

impl FetchWalk {
    /// A walk of a Fetch answer of `version` to a request naming
    /// `max_partitions` partitions; `keep_partitions`: what each one told
    /// is wanted (only the records read by topic otherwise).
    pub fn new(version: i16, max_partitions: usize, keep_partitions: bool) -> FetchWalk {
        let mut w = FetchWalk {
            version,
            max_partitions,
            keep_partitions,
            partitions_seen: 0,
            topics_seen: 0,
            state: State::Head,
            skip: 0,
            carry: Vec::new(),
            topics_left: 0,
            parts_left: 0,
            aborted_left: 0,
            topic: TopicName::default(),
            partition: 0,
            told: Told::default(),
            walked: Walked::default(),
            error: None,
        };
        if !(4..=12).contains(&version) {
            w.fail(WalkError::Version(version));
        }
        w
    }

    fn flexible(&self) -> bool {
        self.version >= 12
    }

    /// The answer's top-level error code, once its head has passed.
    pub fn error_code(&self) -> Option<i16> {
        (self.state != State::Head && self.error.is_none()).then_some(self.walked.error_code)
    }

    /// The next bytes of the response frame (from its size prefix on), in
    /// order.
    pub fn feed(&mut self, mut input: &[u8]) {
        while !input.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(input.len());
                self.skip -= n;
                input = &input[n..];
                continue;
            }
            if let State::Records { left, counting } = self.state {
                if left == 0 {
                    self.records_done();
                    continue;
                }
                if !counting || left < BATCH_HEADER {
                    // A partial last batch (a Fetch may end in one) or
                    // batches not counted further: passed over.
                    self.skip = left;
                    self.state = State::Records { left: 0, counting };
                    continue;
                }
            }
            match self.state {
                State::Done => return self.fail(WalkError::Malformed("bytes after the answer")),
                State::Failed => return,
                _ => {}
            }
            if self.carry.is_empty() {
                match self.unit(input) {
                    Ok(Unit::Took(n)) => input = &input[n..],
                    Ok(Unit::Needs(_)) => {
                        self.carry.extend_from_slice(input);
                        return;
                    }
                    Err(e) => return self.fail(e),
                }
            } else {
                // Complete the unit begun before, with as many new bytes as
                // it said it needs (retries bounded by the unit's size).
                let had = self.carry.len();
                let mut buf = std::mem::take(&mut self.carry);
                let mut took_new = 0;
                loop {
                    match self.unit(&buf) {
                        Ok(Unit::Took(n)) => {
                            // The unit ended inside the new bytes (it needed
                            // more than the carry): the rest is the input's.
                            let used_new = n.saturating_sub(had);
                            input = &input[used_new..];
                            break;
                        }
                        Ok(Unit::Needs(total)) => {
                            if total <= buf.len() {
                                return self.fail(WalkError::Malformed("a unit made no progress"));
                            }
                            let more = (total - buf.len()).min(input.len() - took_new);
                            if more == 0 {
                                self.carry = buf;
                                return;
                            }
                            buf.extend_from_slice(&input[took_new..took_new + more]);
                            took_new += more;
                        }
                        Err(e) => return self.fail(e),
                    }
                }
            }
        }
    }

    /// The walk's findings, once the frame's last byte was fed.
    pub fn finish(mut self) -> Result<Walked, WalkError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if self.skip == 0 {
            if let State::Records { left: 0, .. } = self.state {
                // The last partition's records ended the frame.
                self.records_done();
            }
        }
        if self.state != State::Done || self.skip > 0 || !self.carry.is_empty() {
            return Err(WalkError::Truncated);
        }
        Ok(self.walked)
    }

    fn fail(&mut self, e: WalkError) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        self.state = State::Failed;
        self.carry = Vec::new();
        self.skip = 0;
    }

    /// Reads the unit the state is at from the front of `b`.
    fn unit(&mut self, b: &[u8]) -> Result<Unit, WalkError> {
        let mut c = Cursor { b, at: 0 };
        let flexible = self.flexible();
        match self.state {
            State::Head => {
                let _size = field!(c, i32);
                let _corr = field!(c, i32);
                if flexible && varint!(c) != 0 {
                    return Err(WalkError::Malformed("tagged fields in a response header"));
                }
                let _throttle = field!(c, i32);
                if self.version >= 7 {
                    self.walked.error_code = field!(c, i16);
                    let _session = field!(c, i32);
                }
                self.topics_left = count!(self, c).unwrap_or(0);
                self.next_topic();
            }
            State::Topic => {
                let len = if flexible {
                    (varint!(c) as usize)
                        .checked_sub(1)
                        .ok_or(WalkError::Malformed("null topic name"))?
                } else {
                    usize::try_from(field!(c, i16))
                        .map_err(|_| WalkError::Malformed("null topic name"))?
                };
                if len > MAX_TOPIC_NAME {
                    return Err(WalkError::Malformed("topic name too long"));
                }
                let name = match c.take(len) {
                    Some(n) => n,
                    None => return Ok(Unit::Needs(c.at + len)),
                };
                let name = std::str::from_utf8(name)
                    .map_err(|_| WalkError::Malformed("topic name not UTF-8"))?;
                let parts = count!(self, c);
                // A topic names at least one partition of the request's.
                self.topics_seen += 1;
                if self.topics_seen > self.max_partitions.max(1) {
                    return Err(WalkError::TooManyPartitions(self.max_partitions));
                }
                if self
                    .walked
                    .read
                    .last()
                    .is_none_or(|r| r.topic.as_str() != name)
                {
                    self.walked.read.push(TopicRead {
                        topic: TopicName(StrBytes::from_string(name.to_string())),
                        ..TopicRead::default()
                    });
                }
                if let Some(read) = self.walked.read.last() {
                    self.topic = read.topic.clone();
                }
                self.parts_left = parts.unwrap_or(0);
                self.next_partition();
            }
            State::Partition => {
                if self.partitions_seen >= self.max_partitions {
                    return Err(WalkError::TooManyPartitions(self.max_partitions));
                }
                self.partition = field!(c, i32);
                let told = Told {
                    error_code: field!(c, i16),
                    high_watermark: field!(c, i64),
                    last_stable_offset: field!(c, i64),
                    log_start_offset: if self.version >= 5 {
                        field!(c, i64)
                    } else {
                        -1
                    },
                    records: false,
                    redirects: false,
                };
                let aborted = count!(self, c);
                self.partitions_seen += 1;
                self.told = told;
                self.aborted_left = aborted.unwrap_or(0);
                self.next_aborted();
            }
            State::Aborted => {
                let _producer_id = field!(c, i64);
                let _first_offset = field!(c, i64);
                self.state = if flexible {
                    State::TagCount(TagsOf::Aborted)
                } else {
                    self.next_aborted_state()
                };
            }
            State::PartitionRest => {
                if self.version >= 11 && field!(c, i32) >= 0 {
                    self.told.redirects = true;
                }
                let len = if flexible {
                    (varint!(c) as usize).saturating_sub(1)
                } else {
                    usize::try_from(field!(c, i32)).unwrap_or(0)
                };
                self.told.records = len > 0;
                if let Some(read) = self.walked.read.last_mut() {
                    read.bytes += len as u64;
                }
                self.state = State::Records {
                    left: len,
                    counting: true,
                };
            }
            State::Records { left, .. } => {
                let h = field!(c, take_batch_header);
                let length = i32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                let whole = usize::try_from(length).ok().map(|l| l + 12);
                match whole {
                    Some(whole) if h[16] == 2 && whole >= BATCH_HEADER && whole <= left => {
                        let n = i32::from_be_bytes([h[57], h[58], h[59], h[60]]);
                        if let Some(read) = self.walked.read.last_mut() {
                            read.records += u64::try_from(n).unwrap_or(0);
                        }
                        self.skip = whole - BATCH_HEADER;
                        self.state = State::Records {
                            left: left - whole,
                            counting: true,
                        };
                    }
                    // Not a batch this walk can count (or a partial one):
                    // the rest is passed over uncounted, as
                    // `batch_totals` does.
                    _ => {
                        self.skip = left - BATCH_HEADER;
                        self.state = State::Records {
                            left: 0,
                            counting: false,
                        };
                    }
                }
            }
            State::TagCount(of) => {
                let n = varint!(c);
                self.state = State::Tag { of, left: n };
                if n == 0 {
                    self.tags_done(of);
                }
            }
            State::Tag { of, left } => {
                let tag = varint!(c);
                let size = varint!(c) as usize;
                if of == TagsOf::Partition && tag == 0 && size >= 4 {
                    // The diverging epoch: its epoch comes first.
                    if field!(c, i32) >= 0 {
                        self.told.redirects = true;
                    }
                    self.skip = size - 4;
                } else {
                    self.skip = size;
                }
                self.state = State::Tag { of, left: left - 1 };
                if left == 1 {
                    self.tags_done(of);
                }
            }
            State::Done | State::Failed => return Ok(Unit::Took(0)),
        }
        Ok(Unit::Took(c.at))
    }

    fn next_topic(&mut self) {
        if self.topics_left == 0 {
            self.state = if self.flexible() {
                State::TagCount(TagsOf::Body)
            } else {
                State::Done
            };
        } else {
            self.topics_left -= 1;
            self.state = State::Topic;
        }
    }

    fn next_partition(&mut self) {
        if self.parts_left == 0 {
            if self.flexible() {
                self.state = State::TagCount(TagsOf::Topic);
            } else {
                self.next_topic();
            }
        } else {
            self.parts_left -= 1;
            self.state = State::Partition;
        }
    }

    fn next_aborted_state(&mut self) -> State {
        if self.aborted_left == 0 {
            State::PartitionRest
        } else {
            self.aborted_left -= 1;
            State::Aborted
        }
    }

    fn next_aborted(&mut self) {
        self.state = self.next_aborted_state();
    }

    fn records_done(&mut self) {
        if self.flexible() {
            self.state = State::TagCount(TagsOf::Partition);
        } else {
            self.partition_done();
        }
    }

    fn partition_done(&mut self) {
        let told = std::mem::take(&mut self.told);
        if self.keep_partitions {
            self.walked
                .partitions
                .push((self.topic.clone(), self.partition, told));
        }
        self.next_partition();
    }

    fn tags_done(&mut self, of: TagsOf) {
        match of {
            TagsOf::Aborted => self.next_aborted(),
            TagsOf::Partition => self.partition_done(),
            TagsOf::Topic => self.next_topic(),
            TagsOf::Body => self.state = State::Done,
        }
    }
}

impl Cursor<'_> {
    fn take_batch_header(&mut self) -> Option<&[u8]> {
        self.take(BATCH_HEADER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, Bytes, BytesMut};
    use kafka_protocol::messages::fetch_response::{
        AbortedTransaction, EpochEndOffset, FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
    };
    use kafka_protocol::messages::{BrokerId, FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Encodable;

    fn name(s: &str) -> TopicName {
        TopicName(StrBytes::from_string(s.to_string()))
    }

    /// Record batches of `counts` records each, `payload` bytes of body.
    fn batches(counts: &[i32], payload: usize) -> Bytes {
        let mut all = BytesMut::new();
        for &n in counts {
            let mut b = vec![0u8; BATCH_HEADER + payload];
            let len = (b.len() - 12) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[16] = 2;
            b[57..61].copy_from_slice(&n.to_be_bytes());
            all.extend_from_slice(&b);
        }
        all.freeze()
    }

    fn answer(version: i16) -> FetchResponse {
        answer_of(version, 2000)
    }

    /// Five partitions of two topics: records (whole batches, a partial
    /// last one, empty), aborted transactions, an error, a preferred
    /// replica, a diverging epoch, tags at every level of v12; record
    /// payloads about `payload` bytes.
    fn answer_of(version: i16, payload: usize) -> FetchResponse {
        let p = |i: i32, hw: i64, records: Option<Bytes>| {
            PartitionData::default()
                .with_partition_index(i)
                .with_high_watermark(hw)
                .with_last_stable_offset(hw - 1)
                .with_log_start_offset(3)
                .with_records(records)
        };
        let mut cut = batches(&[4, 9], payload / 4).to_vec();
        cut.extend_from_slice(&batches(&[7], payload / 8 + 20)[..70]);
        let mut diverging = p(2, 7, None);
        if version >= 12 {
            diverging.diverging_epoch = EpochEndOffset::default().with_epoch(3).with_end_offset(5);
            diverging.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(4))
                .with_leader_epoch(8);
        }
        let mut topics = vec![
            FetchableTopicResponse::default()
                .with_topic(name("orders"))
                .with_partitions(vec![
                    p(0, 100, Some(batches(&[5, 6, 7], payload))),
                    p(1, 50, None).with_aborted_transactions(Some(vec![
                        AbortedTransaction::default()
                            .with_producer_id(kafka_protocol::messages::ProducerId(9))
                            .with_first_offset(1);
                        3
                    ])),
                    diverging,
                ]),
            FetchableTopicResponse::default()
                .with_topic(name("t".repeat(200).as_str()))
                .with_partitions(vec![
                    p(0, 1, Some(Bytes::from(cut))),
                    p(5, 2, Some(Bytes::new())).with_error_code(6),
                ]),
        ];
        if version >= 11 {
            topics[1].partitions[0].preferred_read_replica = BrokerId(2);
        }
        let mut resp = FetchResponse::default()
            .with_throttle_time_ms(12)
            .with_error_code(0)
            .with_session_id(0);
        if version >= 12 {
            // Tags a later Kafka may add, at the topic and the body level.
            topics[0]
                .unknown_tagged_fields
                .insert(500, Bytes::from_static(b"topic tag"));
            resp.unknown_tagged_fields
                .insert(600, Bytes::from_static(b"body"));
            resp.unknown_tagged_fields
                .insert(601, Bytes::from_static(b""));
        }
        resp.with_responses(topics)
    }

    fn frame(version: i16, resp: &FetchResponse) -> Vec<u8> {
        let mut body = BytesMut::new();
        let header_version =
            kafka_protocol::messages::ApiKey::Fetch.response_header_version(version);
        ResponseHeader::default()
            .with_correlation_id(77)
            .encode(&mut body, header_version)
            .unwrap();
        resp.encode(&mut body, version).unwrap();
        let mut f = Vec::new();
        f.put_i32(body.len() as i32);
        f.extend_from_slice(&body);
        f
    }

    /// What a decoded answer says, as the walk should find it.
    fn expected(version: i16, resp: &FetchResponse) -> Walked {
        let mut w = Walked {
            error_code: resp.error_code,
            ..Walked::default()
        };
        for t in &resp.responses {
            let mut read = TopicRead {
                topic: t.topic.clone(),
                ..TopicRead::default()
            };
            for p in &t.partitions {
                let records = p.records.clone().unwrap_or_default();
                let (bytes, count) = crate::metrics::batch_totals(&records);
                read.bytes += bytes;
                read.records += count;
                w.partitions.push((
                    t.topic.clone(),
                    p.partition_index,
                    Told {
                        error_code: p.error_code,
                        high_watermark: p.high_watermark,
                        last_stable_offset: p.last_stable_offset,
                        log_start_offset: if version >= 5 { p.log_start_offset } else { -1 },
                        records: !records.is_empty(),
                        redirects: p.preferred_read_replica.0 >= 0 || p.diverging_epoch.epoch >= 0,
                    },
                ));
            }
            w.read.push(read);
        }
        w
    }

    fn walk(bytes: &[u8], piece: usize, version: i16) -> Result<Walked, WalkError> {
        walk_at_most(bytes, piece, version, 100)
    }

    fn walk_at_most(
        bytes: &[u8],
        piece: usize,
        version: i16,
        partitions: usize,
    ) -> Result<Walked, WalkError> {
        let mut w = FetchWalk::new(version, partitions, true);
        for chunk in bytes.chunks(piece) {
            w.feed(chunk);
        }
        w.finish()
    }

    #[test]
    fn walks_every_version_in_any_pieces() {
        for version in 4..=12 {
            let resp = answer(version);
            let bytes = frame(version, &resp);
            let want = expected(version, &resp);
            for piece in [1, 2, 3, 7, 61, 100, 4096, bytes.len()] {
                let got = walk(&bytes, piece, version)
                    .unwrap_or_else(|e| panic!("v{version} in {piece}-byte pieces: {e}"));
                assert_eq!(got.error_code, want.error_code);
                assert_eq!(got.partitions, want.partitions, "v{version}, {piece}");
                assert_eq!(got.read, want.read, "v{version}, {piece}");
            }
            // The counts are the batches whole: 18 and 13 records.
            assert_eq!(want.read[0].records, 18);
            assert_eq!(want.read[1].records, 13);
        }
    }

    #[test]
    fn the_head_is_known_first() {
        let resp = answer(12).with_error_code(71);
        let bytes = frame(12, &resp);
        let mut w = FetchWalk::new(12, 100, true);
        w.feed(&bytes[..10]);
        assert_eq!(w.error_code(), None);
        w.feed(&bytes[10..30]);
        assert_eq!(w.error_code(), Some(71));
    }

    #[test]
    fn cut_or_padded_answers_are_errors() {
        for version in [4, 7, 12] {
            let bytes = frame(version, &answer(version));
            for cut in [0, 5, 20, bytes.len() / 2, bytes.len() - 1] {
                assert_eq!(
                    walk(&bytes[..cut], 3, version).unwrap_err(),
                    WalkError::Truncated,
                    "v{version} cut at {cut}"
                );
            }
            let mut padded = bytes.clone();
            padded.push(0);
            assert!(matches!(
                walk(&padded, 1000, version),
                Err(WalkError::Malformed(_))
            ));
        }
        assert_eq!(walk(&[0; 8], 8, 3).unwrap_err(), WalkError::Version(3));
    }

    #[test]
    fn no_more_partitions_than_asked_for() {
        let bytes = frame(12, &answer(12));
        assert_eq!(
            walk_at_most(&bytes, 100, 12, 5).unwrap().partitions.len(),
            5
        );
        assert_eq!(
            walk_at_most(&bytes, 100, 12, 4).unwrap_err(),
            WalkError::TooManyPartitions(4)
        );
        // Without a session only the records read are kept.
        let mut w = FetchWalk::new(12, 5, false);
        w.feed(&bytes);
        let got = w.finish().unwrap();
        assert!(got.partitions.is_empty());
        assert_eq!(got.read, expected(12, &answer(12)).read);
    }

    #[test]
    fn garbage_never_panics() {
        // Small records: most bytes are the answer's structure.
        let bytes = frame(12, &answer_of(12, 40));
        assert!(walk(&bytes, 7, 12).is_ok());
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut b = bytes.clone();
            for _ in 0..3 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = (seed as usize) % b.len();
                b[at] = (seed >> 32) as u8;
            }
            let _ = walk(&b, 1 + (seed as usize % 300), 12);
        }
    }

    /// Counts and lengths far beyond the bytes that came are only bytes
    /// never seen: nothing is allocated for them.
    #[test]
    fn huge_counts_and_lengths_are_not_trusted() {
        // v7: size, correlation id, throttle, error, session, then the
        // topic count.
        let head = |topics: i32| {
            let mut b = Vec::new();
            for v in [0i32, 77, 0] {
                b.extend_from_slice(&v.to_be_bytes());
            }
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&0i32.to_be_bytes());
            b.extend_from_slice(&topics.to_be_bytes());
            b
        };
        let topic = |b: &mut Vec<u8>, partitions: i32| {
            b.extend_from_slice(&1i16.to_be_bytes());
            b.push(b'a');
            b.extend_from_slice(&partitions.to_be_bytes());
        };
        let mut many = head(i32::MAX);
        for _ in 0..200 {
            topic(&mut many, 0);
        }
        assert_eq!(
            walk(&many, 9, 7).unwrap_err(),
            WalkError::TooManyPartitions(100)
        );
        let mut long = head(1);
        topic(&mut long, 1);
        long.extend_from_slice(&0i32.to_be_bytes()); // partition index
        long.extend_from_slice(&0i16.to_be_bytes()); // error code
        for v in [10i64, 9, 0] {
            long.extend_from_slice(&v.to_be_bytes()); // hw, lso, log start
        }
        long.extend_from_slice(&(-1i32).to_be_bytes()); // no aborted
        long.extend_from_slice(&i32::MAX.to_be_bytes()); // records length
        long.extend_from_slice(&[0; 1000]);
        assert_eq!(walk(&long, 64, 7).unwrap_err(), WalkError::Truncated);
    }
}
