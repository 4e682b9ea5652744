//! What the connection loop does after a request, and the encoding of a
//! response frame for the version the client asked.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

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
