//! What the connection loop does after a request, and the encoding of a
//! response frame for the version the client asked.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;

use bytes::buf::UninitSlice;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// What the connection loop does after a request.
pub enum Outcome {
    Respond(ResponseFrame),
    /// Produce with acks=0: Kafka sends nothing back.
    Silent,
    /// Protocol violation: Kafka closes the connection.
    Close(String),
    /// Send the answer (e.g. an authentication failure), then close.
    RespondThenClose(ResponseFrame, String),
    /// The answer comes later (acks=all produce waiting for fsync); the
    /// connection goes on reading and keeps responses in request order.
    Deferred(std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>),
}

/// A record set at least this large goes into a Fetch answer's frame as
/// the back end's own buffer rather than a copy. Smaller ones are copied:
/// each shared one ends a part, and over TLS a part ends a record.
const SHARE_MIN: usize = 64 * 1024;

/// An encoded response frame, size prefix included: its bytes in order,
/// in one or more parts. A Fetch answer's large record sets are the back
/// end's reads themselves, so megabytes of records are not copied into the
/// frame before the socket (or the TLS layer) copies them again. A large
/// answer passed through from an upstream broker may come with only its
/// first part in hand and the rest still arriving ([`FrameRest`]), so the
/// client receives it while the gateway does.
///
/// As a [`Buf`] it is the parts in hand; the rest follows them.
#[derive(Debug, Default)]
pub struct ResponseFrame {
    /// None empty.
    parts: VecDeque<Bytes>,
    len: usize,
    rest: Option<FrameRest>,
}

/// The bytes of a frame still arriving: `len` of them, in chunks (an
/// error, or the channel's end before `len`, means they will not come).
pub struct FrameRest {
    pub len: usize,
    pub chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    /// What must live until the rest came (the gateway's upstream
    /// connection, which goes back to its pool only then).
    pub holds: Option<Box<dyn std::any::Any + Send + Sync>>,
    /// Sees each chunk before it is written (`true`: the last one).
    pub watch: Option<RestWatch>,
}

/// Reads a frame's rest as it passes: each chunk, and whether it is the
/// last, before the client receives it.
pub type RestWatch = Box<dyn FnMut(&[u8], bool) + Send + Sync>;

impl FrameRest {
    pub fn new(
        len: usize,
        chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
    ) -> FrameRest {
        FrameRest {
            len,
            chunks,
            holds: None,
            watch: None,
        }
    }

    /// A chunk arrived: shown to the watch (if any) before it is written.
    pub fn arrived(&mut self, chunk: &[u8], last: bool) {
        if let Some(watch) = &mut self.watch {
            watch(chunk, last);
        }
    }
}

impl std::fmt::Debug for FrameRest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameRest").field("len", &self.len).finish()
    }
}

impl ResponseFrame {
    /// A frame whose first bytes are `head`, and the rest still to come.
    pub fn streamed(head: Bytes, rest: FrameRest) -> ResponseFrame {
        let mut f = ResponseFrame::from(head);
        f.rest = Some(rest);
        f
    }

    /// The whole frame's size, the bytes still to come included.
    pub fn frame_len(&self) -> usize {
        self.len + self.rest.as_ref().map_or(0, |r| r.len)
    }

    /// The bytes still to come, once the parts in hand are written.
    pub fn take_rest(&mut self) -> Option<FrameRest> {
        self.rest.take()
    }

    /// Keeps `what` alive until the rest of the frame came.
    pub fn hold_until_complete(&mut self, what: Box<dyn std::any::Any + Send + Sync>) {
        if let Some(rest) = &mut self.rest {
            rest.holds = Some(what);
        }
    }

    /// Has `watch` read the rest of the frame as it passes (if there is
    /// a rest).
    pub fn watch_rest(&mut self, watch: RestWatch) {
        if let Some(rest) = &mut self.rest {
            rest.watch = Some(watch);
        }
    }

    /// Some of the frame is still to come.
    pub fn has_rest(&self) -> bool {
        self.rest.is_some()
    }

    /// The bytes in hand, in order.
    pub fn in_hand(&self) -> impl Iterator<Item = &[u8]> {
        self.parts.iter().map(|p| &p[..])
    }

    /// Rewrites the first part (the frame's header and first fields).
    pub fn map_head(mut self, f: impl FnOnce(Bytes) -> Bytes) -> ResponseFrame {
        if let Some(head) = self.parts.pop_front() {
            self.len -= head.len();
            let head = f(head);
            self.len += head.len();
            if !head.is_empty() {
                self.parts.push_front(head);
            }
        }
        self
    }

    /// Appends a part.
    pub fn push(&mut self, part: Bytes) {
        if !part.is_empty() {
            self.len += part.len();
            self.parts.push_back(part);
        }
    }

    /// How many parts the frame is written in.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }
}

impl From<Bytes> for ResponseFrame {
    fn from(b: Bytes) -> Self {
        let mut f = ResponseFrame::default();
        f.push(b);
        f
    }
}

impl Buf for ResponseFrame {
    fn remaining(&self) -> usize {
        self.len
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |p| &p[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.len, "advance past the end of a response frame");
        self.len -= cnt;
        while let Some(front) = self.parts.front_mut() {
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

/// Encodes into a [`ResponseFrame`]: a slice that is one of `shared` (the
/// same address and length) becomes a part of its own, that `Bytes`;
/// everything else is copied into the current part.
struct PartsWriter<'s> {
    shared: &'s [Bytes],
    frame: ResponseFrame,
    current: BytesMut,
    /// The encoder went back (a length written after its content) into a
    /// part already taken: the frame is wrong and must be encoded whole.
    went_back: bool,
    scratch: Vec<u8>,
}

impl PartsWriter<'_> {
    fn take_current(&mut self) {
        let part = self.current.split().freeze();
        self.frame.push(part);
    }

    fn finish(mut self) -> Option<ResponseFrame> {
        self.take_current();
        (!self.went_back).then_some(self.frame)
    }
}

// SAFETY: every method hands the current part's own buffer on unchanged.
unsafe impl BufMut for PartsWriter<'_> {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller's promise is about `chunk_mut`, which is the
        // current part's.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if src.len() >= SHARE_MIN {
            let same = |b: &&Bytes| b.as_ptr() == src.as_ptr() && b.len() == src.len();
            if let Some(b) = self.shared.iter().find(same) {
                self.take_current();
                self.frame.push(b.clone());
                return;
            }
        }
        self.current.put_slice(src);
    }
}

impl ByteBufMut for PartsWriter<'_> {
    fn offset(&self) -> usize {
        self.frame.len + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.frame.len) {
            Some(at) => self.current.resize(at, 0),
            None => self.went_back = true,
        }
    }

    fn range(&mut self, r: Range<usize>) -> &mut [u8] {
        let taken = self.frame.len;
        if r.start >= taken && r.end <= taken + self.current.len() {
            return &mut self.current[r.start - taken..r.end - taken];
        }
        self.went_back = true;
        self.scratch.resize(r.len(), 0);
        &mut self.scratch[..]
    }
}

/// Rewrites one `i32` field in the head of an encoded Fetch answer (size
/// prefix, correlation id, header tags from v12, then the body): the one
/// `after` bytes into the body (0: `throttle_time_ms`; 6: `session_id`,
/// from v7). `Err` (the frame unchanged) when it is not laid out that way.
pub fn patch_fetch_head(
    frame: Bytes,
    version: i16,
    after: usize,
    value: impl FnOnce(i32) -> i32,
) -> Result<Bytes, Bytes> {
    if version < 1 || after > 0 && version < 7 {
        return Err(frame);
    }
    // v12+ responses have header v1: an (empty) tagged-field count.
    let at = if version >= 12 {
        if frame.get(8) != Some(&0) {
            return Err(frame);
        }
        9
    } else {
        8
    } + after;
    if frame.len() < at + 4 {
        return Err(frame);
    }
    let old = i32::from_be_bytes([frame[at], frame[at + 1], frame[at + 2], frame[at + 3]]);
    // The head is usually this frame's own: rewritten in place.
    let mut out = frame
        .try_into_mut()
        .unwrap_or_else(|f| BytesMut::from(&f[..]));
    out[at..at + 4].copy_from_slice(&value(old).to_be_bytes());
    Ok(out.freeze())
}

pub fn encode_response(
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
    let shared: Vec<Bytes> = match resp {
        ResponseKind::Fetch(r) if body_size > 0 => r
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.clone())
            .filter(|records| records.len() >= SHARE_MIN)
            .collect(),
        _ => Vec::new(),
    };
    let encoded = match (resp, header.compute_size(header_version)) {
        (ResponseKind::Fetch(fetch), Ok(header_size)) if !shared.is_empty() => {
            let size = header_size + body_size;
            encode_parts(&header, header_version, fetch, version, &shared, size)
                .transpose()
                // The parts came out wrong: written whole instead, at the
                // cost of the copy.
                .unwrap_or_else(|| encode_whole(&header, header_version, resp, version, body_size))
        }
        _ => encode_whole(&header, header_version, resp, version, body_size),
    };
    match encoded {
        Ok(frame) => Outcome::Respond(frame),
        Err(e) => {
            tracing::error!("cannot encode {api:?} v{version} response: {e}");
            Outcome::Close(format!("internal error encoding {api:?} response"))
        }
    }
}

fn encode_whole(
    header: &ResponseHeader,
    header_version: i16,
    resp: &ResponseKind,
    version: i16,
    body_size: usize,
) -> anyhow::Result<ResponseFrame> {
    let mut buf = BytesMut::with_capacity(256 + body_size);
    buf.put_i32(0);
    header.encode(&mut buf, header_version)?;
    resp.encode(&mut buf, version)?;
    let len = i32::try_from(buf.len() - 4)?;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze().into())
}

/// The frame in parts, `shared` among them, with the size prefix from
/// `size` (the header's and body's computed sizes); `None` if what was
/// written does not match it.
fn encode_parts(
    header: &ResponseHeader,
    header_version: i16,
    resp: &FetchResponse,
    version: i16,
    shared: &[Bytes],
    size: usize,
) -> anyhow::Result<Option<ResponseFrame>> {
    let shared_len: usize = shared.iter().map(Bytes::len).sum();
    let mut w = PartsWriter {
        shared,
        frame: ResponseFrame::default(),
        // Every copied part is split off this one allocation.
        current: BytesMut::with_capacity(4 + size.saturating_sub(shared_len)),
        went_back: false,
        scratch: Vec::new(),
    };
    w.put_i32(i32::try_from(size)?);
    header.encode(&mut w, header_version)?;
    resp.encode(&mut w, version)?;
    Ok(w.finish().filter(|f| f.len == 4 + size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::protocol::StrBytes;

    fn fetch_with(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_high_watermark(1000)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
            .with_topic(TopicName(StrBytes::from_static_str("t")))
            .with_topic_id(uuid::Uuid::from_u128(7))
            .with_partitions(partitions)])
    }

    fn whole(frame: &mut ResponseFrame) -> Bytes {
        frame.copy_to_bytes(frame.remaining())
    }

    #[test]
    fn large_record_sets_are_shared_not_copied() {
        let big = |n: usize, b: u8| Bytes::from(vec![b; n]);
        let records = [big(SHARE_MIN, 1), big(100, 2), big(3 * SHARE_MIN + 5, 3)];
        let resp = ResponseKind::Fetch(fetch_with(&records));
        for version in [4i16, 11, 12, 13, 16] {
            let Outcome::Respond(mut frame) = encode_response(ApiKey::Fetch, version, 9, &resp)
            else {
                panic!("v{version}: not encoded");
            };
            // The two large sets are parts of their own, at the back
            // end's addresses; the small one was copied.
            let shared: Vec<*const u8> = frame
                .parts
                .iter()
                .filter(|p| p.len() >= SHARE_MIN)
                .map(|p| p.as_ptr())
                .collect();
            assert_eq!(
                shared,
                [records[0].as_ptr(), records[2].as_ptr()],
                "v{version}"
            );
            // Flexible versions end with tagged fields after the last set.
            let tail = usize::from(version >= 12);
            assert_eq!(frame.parts(), 4 + tail, "v{version}");
            let bytes = whole(&mut frame);
            let expected = encode_whole(
                &ResponseHeader::default().with_correlation_id(9),
                ApiKey::Fetch.response_header_version(version),
                &resp,
                version,
                0,
            )
            .map(|mut f| whole(&mut f))
            .unwrap();
            assert_eq!(bytes, expected, "v{version}");
            let size = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(size, bytes.len() - 4, "v{version}");
        }
    }

    #[test]
    fn small_answers_stay_one_part() {
        let resp = ResponseKind::Fetch(fetch_with(&[Bytes::from(vec![1u8; SHARE_MIN - 1])]));
        let Outcome::Respond(frame) = encode_response(ApiKey::Fetch, 12, 1, &resp) else {
            panic!("not encoded");
        };
        assert_eq!(frame.parts(), 1);
    }

    #[test]
    fn going_back_into_a_taken_part_is_refused() {
        let shared = [Bytes::from(vec![5u8; SHARE_MIN])];
        let mut w = PartsWriter {
            shared: &shared,
            frame: ResponseFrame::default(),
            current: BytesMut::new(),
            went_back: false,
            scratch: Vec::new(),
        };
        w.put_i32(1);
        w.put_slice(&shared[0]);
        w.put_u8(2);
        assert_eq!(w.offset(), 4 + SHARE_MIN + 1);
        // Within the current part: fine.
        w.range(4 + SHARE_MIN..4 + SHARE_MIN + 1)[0] = 3;
        assert!(!w.went_back);
        // Into the shared part: the parts are no longer right.
        w.range(0..4)[0] = 9;
        assert!(w.finish().is_none());
    }

    #[test]
    fn a_frame_advances_across_parts() {
        let mut f = ResponseFrame::from(Bytes::from_static(b"abc"));
        f.push(Bytes::new());
        f.push(Bytes::from_static(b"defg"));
        assert_eq!((f.parts(), f.remaining()), (2, 7));
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(f.chunks_vectored(&mut slices), 2);
        f.advance(4);
        assert_eq!((f.chunk(), f.remaining()), (&b"efg"[..], 3));
        f.advance(3);
        assert_eq!((f.parts(), f.chunk()), (0, &b""[..]));
    }
}
