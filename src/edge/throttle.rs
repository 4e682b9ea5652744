//! Quotas at the edge: what a request spends (bytes in, bytes out,
//! handling time), the `throttle_time_ms` its answer carries, and the
//! throttled Fetch answer. The buckets and Kafka's precedence rules are in
//! `quota/`; the connection loop mutes the connection for the throttle.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind};

/// Sets `throttle_time_ms` on any answer that has one (a back end's own
/// throttle, e.g. an upstream's quota, is kept when longer).
pub fn set_on(resp: &mut ResponseKind, ms: u64) {
    let ms = i32::try_from(ms).unwrap_or(i32::MAX);
    macro_rules! set {
        ($($v:ident),*) => {
            match resp {
                $(ResponseKind::$v(r) => r.throttle_time_ms = r.throttle_time_ms.max(ms),)*
                _ => {}
            }
        };
    }
    set!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        OffsetCommit,
        OffsetFetch,
        FindCoordinator,
        JoinGroup,
        Heartbeat,
        LeaveGroup,
        SyncGroup,
        DescribeGroups,
        ListGroups,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
        DescribeAcls,
        CreateAcls,
        DeleteAcls,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        DeleteGroups,
        IncrementalAlterConfigs,
        OffsetDelete,
        DescribeClientQuotas,
        AlterClientQuotas,
        DescribeUserScramCredentials,
        AlterUserScramCredentials,
        DescribeCluster,
        DescribeTransactions,
        ListTransactions,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe
    );
}

/// The bytes a Fetch answer carries to the client (its records; the rest
/// is a few bytes per partition).
pub fn fetch_bytes(resp: &ResponseKind) -> usize {
    match resp {
        ResponseKind::Fetch(f) => f
            .responses
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.records.as_ref().map_or(0, Bytes::len))
            .sum(),
        _ => 0,
    }
}

/// Kafka's answer to a Fetch from a client already over its byte rate: no
/// data, only the throttle time (the client fetches again after it).
pub fn throttled_fetch(ms: u64) -> ResponseKind {
    let mut r = FetchResponse::default();
    r.throttle_time_ms = i32::try_from(ms).unwrap_or(i32::MAX);
    ResponseKind::Fetch(r)
}

/// Writes `throttle_time_ms` into an encoded Fetch answer passed through
/// from a back end (size prefix, correlation id, header tags from v12,
/// then the throttle). `None` when the frame is not laid out that way.
pub fn patch_encoded_fetch(frame: Bytes, version: i16, ms: u64) -> Result<Bytes, Bytes> {
    let ms = i32::try_from(ms).unwrap_or(i32::MAX);
    super::response::patch_fetch_head(frame, version, 0, |old| ms.max(old))
}

/// Whether a request's answer is counted against `consumer_byte_rate`.
pub fn is_fetch(api: ApiKey) -> bool {
    api == ApiKey::Fetch
}

/// A future that adds up the time spent inside its polls: the time a
/// request occupies a thread, not the time it waits (a long poll, an
/// upstream, an fsync). Kafka's `request_percentage` counts the former.
pub struct Busy<F> {
    inner: Pin<Box<F>>,
    pub spent: Duration,
}

impl<F: Future> Busy<F> {
    pub fn new(inner: F) -> Busy<F> {
        Busy {
            inner: Box::pin(inner),
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Busy<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let start = Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.spent += start.elapsed();
        match polled {
            Poll::Ready(v) => Poll::Ready((v, self.spent)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patches_the_throttle_of_an_encoded_fetch() {
        for version in [4i16, 12, 16] {
            let mut resp = FetchResponse::default();
            resp.throttle_time_ms = 3;
            let crate::edge::Outcome::Respond(mut frame) =
                crate::edge::encode_response(ApiKey::Fetch, version, 7, &ResponseKind::Fetch(resp))
            else {
                panic!("not encoded");
            };
            let len = bytes::Buf::remaining(&frame);
            let frame = bytes::Buf::copy_to_bytes(&mut frame, len);
            let patched = patch_encoded_fetch(frame, version, 1500).unwrap();
            let mut body = patched.slice(4..);
            use kafka_protocol::protocol::Decodable;
            let _ = kafka_protocol::messages::ResponseHeader::decode(
                &mut body,
                ApiKey::Fetch.response_header_version(version),
            )
            .unwrap();
            let back = FetchResponse::decode(&mut body, version).unwrap();
            assert_eq!(back.throttle_time_ms, 1500, "v{version}");
        }
        assert!(patch_encoded_fetch(Bytes::from_static(b"\0\0"), 4, 5).is_err());
    }
}
