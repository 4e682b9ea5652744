//! Whether a Kafka listener is up: one blocking Metadata request over plain
//! TCP. Shared by the bench (waiting for Apache Kafka to start) and the
//! root package's test harness (`tests/common/kafka.rs`, which includes this
//! file by path, since a test of the broker crate cannot depend on this
//! crate).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// How many brokers the PLAINTEXT listener `addr` lists in its metadata;
/// `None` while it does not answer.
pub fn metadata_brokers(addr: &str) -> Option<usize> {
    const VERSION: i16 = 12;
    let api = ApiKey::Metadata;
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(VERSION)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("portcullis-probe")));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header
        .encode(&mut buf, api.request_header_version(VERSION))
        .ok()?;
    MetadataRequest::default()
        .with_topics(Some(Vec::new()))
        .encode(&mut buf, VERSION)
        .ok()?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    s.write_all(&buf).ok()?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
    s.read_exact(&mut body).ok()?;
    let mut body = Bytes::from(body);
    ResponseHeader::decode(&mut body, api.response_header_version(VERSION)).ok()?;
    let resp = MetadataResponse::decode(&mut body, VERSION).ok()?;
    Some(resp.brokers.len())
}
