//! The gateway sends a client connection's requests upstream as they come,
//! without waiting for each answer before sending the next (as a broker
//! reads them), and hands the answers back in request order.
//!
//! The upstream here is a stand-in broker in this process that answers a
//! connection's Produce requests only once it holds `HOLD` of them: a
//! gateway that waited for each answer before sending the next request
//! would never see one answered. The real gateway binary, a raw client.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::MetadataResponseBroker;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, MetadataResponse, ProduceRequest, ProduceResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use common::{raw_produce, raw_produce_value, scratch, tail, wait_for, Broker};

/// Produce requests the stand-in holds before it answers any.
const HOLD: usize = 4;

/// Generous: the test machine may be small and busy.
const DEADLINE: Duration = Duration::from_secs(60);

const NOT_LEADER_OR_FOLLOWER: i16 = 6;

/// What the stand-in does with a connection's `HOLD` Produce requests.
#[derive(Clone, Copy)]
enum Upstream {
    /// Answers them all, in order.
    Answer,
    /// Closes the first connection that sends them, unanswered; answers
    /// on every later one.
    DropFirst,
}

struct StandIn {
    addr: String,
    /// Connections closed with requests unanswered.
    dropped: Arc<AtomicUsize>,
    /// Produce requests received.
    produces: Arc<AtomicUsize>,
    /// Connections the gateway closed with Produce requests unanswered.
    abandoned: Arc<AtomicUsize>,
}

/// The stand-in broker: answers ApiVersions and Metadata (naming itself
/// as node 0) at once, Produce only by `HOLD`.
fn stand_in(mode: Upstream) -> StandIn {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = Arc::new(AtomicUsize::new(0));
    let produces = Arc::new(AtomicUsize::new(0));
    let abandoned = Arc::new(AtomicUsize::new(0));
    let counters = (dropped.clone(), produces.clone(), abandoned.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            let (dropped, produces, abandoned) = counters.clone();
            std::thread::spawn(move || {
                if serve(conn, addr.port(), mode, &dropped, &produces) > 0 {
                    abandoned.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    StandIn {
        addr: addr.to_string(),
        dropped,
        produces,
        abandoned,
    }
}

fn serve(
    mut conn: TcpStream,
    port: u16,
    mode: Upstream,
    dropped: &AtomicUsize,
    produces: &AtomicUsize,
) -> usize {
    // Returns, once the gateway closed the connection, how many Produce
    // requests it left unanswered there.
    let mut held: Vec<(i32, i16, ProduceRequest)> = Vec::new();
    loop {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            return held.len();
        }
        let mut frame = vec![0u8; i32::from_be_bytes(len) as usize];
        if conn.read_exact(&mut frame).is_err() {
            return held.len();
        }
        let mut buf = bytes::Bytes::from(frame);
        let (key, version) = (
            i16::from_be_bytes([buf[0], buf[1]]),
            i16::from_be_bytes([buf[2], buf[3]]),
        );
        let api = ApiKey::try_from(key).unwrap();
        let header = RequestHeader::decode(&mut buf, api.request_header_version(version)).unwrap();
        let corr = header.correlation_id;
        match api {
            ApiKey::ApiVersions => {
                let range = |api: ApiKey, min, max| {
                    ApiVersion::default()
                        .with_api_key(api as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                };
                let resp = ApiVersionsResponse::default().with_api_keys(vec![
                    range(ApiKey::Produce, 3, 9),
                    range(ApiKey::Metadata, 0, 12),
                    range(ApiKey::ApiVersions, 0, 3),
                ]);
                // ApiVersions answers with header v0 whatever its version.
                answer(&mut conn, corr, 0, version, &resp);
            }
            ApiKey::Metadata => {
                let resp = MetadataResponse::default()
                    .with_cluster_id(Some(StrBytes::from_static_str("stand-in")))
                    .with_controller_id(BrokerId(0))
                    .with_brokers(vec![MetadataResponseBroker::default()
                        .with_node_id(BrokerId(0))
                        .with_host(StrBytes::from_static_str("127.0.0.1"))
                        .with_port(port as i32)]);
                answer(&mut conn, corr, 1, version, &resp);
            }
            ApiKey::Produce => {
                let req = ProduceRequest::decode(&mut buf, version).unwrap();
                assert!(!buf.has_remaining());
                produces.fetch_add(1, Ordering::SeqCst);
                held.push((corr, version, req));
                if held.len() < HOLD {
                    continue;
                }
                if matches!(mode, Upstream::DropFirst)
                    && dropped.fetch_add(1, Ordering::SeqCst) == 0
                {
                    return 0;
                }
                for (i, (corr, version, req)) in held.drain(..).enumerate() {
                    let topics = req
                        .topic_data
                        .iter()
                        .map(|t| {
                            TopicProduceResponse::default()
                                .with_name(t.name.clone())
                                .with_partition_responses(
                                    t.partition_data
                                        .iter()
                                        .map(|p| {
                                            PartitionProduceResponse::default()
                                                .with_index(p.index)
                                                .with_base_offset(i as i64)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    let resp = ProduceResponse::default().with_responses(topics);
                    answer(
                        &mut conn,
                        corr,
                        ApiKey::Produce.response_header_version(version),
                        version,
                        &resp,
                    );
                }
            }
            other => panic!("the stand-in was not asked for {other:?}"),
        }
    }
}

fn answer(
    conn: &mut TcpStream,
    corr: i32,
    header_version: i16,
    version: i16,
    body: &impl Encodable,
) {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut buf, header_version)
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    let _ = conn.write_all(&frame);
}

/// A gateway with a PLAINTEXT listener in front of `upstream`; `extra`
/// is more of the broker's own settings.
fn gateway(
    name: &str,
    upstream: &str,
    request_timeout_ms: u64,
    extra: &str,
) -> (Broker, tempfile::TempDir) {
    let dir = scratch(name);
    let yaml = format!(
        "backend: gateway\ngateway:\n  bootstrap_servers: [\"{upstream}\"]\n  security_protocol: PLAINTEXT\n  request_timeout_ms: {request_timeout_ms}\n{extra}"
    );
    let gw = Broker::start_listeners(dir.path(), &["PLAINTEXT"], &yaml);
    (gw, dir)
}

/// Writes `HOLD` Produce requests back to back (correlation ids from
/// `first`), then reads their answers: (correlation id, error code of the
/// one partition, base offset) each, in the order they came.
fn produce_pipelined(gw: &Broker, s: &mut TcpStream, first: i32) -> Vec<(i32, i16, i64)> {
    let mut out = Vec::new();
    for corr in first..first + HOLD as i32 {
        let payload = raw_produce("piped", corr);
        out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    s.write_all(&out).unwrap();
    (0..HOLD)
        .map(|_| {
            let mut len = [0u8; 4];
            s.read_exact(&mut len).unwrap_or_else(|e| {
                panic!(
                    "no answer from the gateway: {e}; its log:\n{}",
                    tail(&gw.log(), 40)
                )
            });
            let mut body = vec![0u8; i32::from_be_bytes(len) as usize];
            s.read_exact(&mut body).unwrap();
            let mut b = bytes::Bytes::from(body);
            // raw_produce sends v7: response header v0.
            let h = ResponseHeader::decode(&mut b, 0).unwrap();
            let r = ProduceResponse::decode(&mut b, 7).unwrap();
            let p = &r.responses[0].partition_responses[0];
            (h.correlation_id, p.error_code, p.base_offset)
        })
        .collect()
}

fn client(gw: &Broker) -> TcpStream {
    let s = TcpStream::connect(gw.addr("PLAINTEXT")).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

#[test]
fn a_connections_requests_are_pipelined_upstream_and_answered_in_order() {
    let upstream = stand_in(Upstream::Answer);
    let (gw, _dir) = gateway("gw-pipelined", &upstream.addr, 30_000, "");
    let mut s = client(&gw);
    let got = produce_pipelined(&gw, &mut s, 1);
    let want: Vec<(i32, i16, i64)> = (0..HOLD).map(|i| (1 + i as i32, 0, i as i64)).collect();
    assert_eq!(got, want);
    // And again on the same connection: nothing was left behind.
    let got = produce_pipelined(&gw, &mut s, 101);
    let want: Vec<(i32, i16, i64)> = (0..HOLD).map(|i| (101 + i as i32, 0, i as i64)).collect();
    assert_eq!(got, want);
}

/// An upstream connection that dies with requests in flight: each of them
/// gets the retriable error a client expects from a broker that lost
/// leadership, in order, and the client's connection carries on (its next
/// requests go on a new upstream connection).
#[test]
fn requests_in_flight_on_a_dead_upstream_connection_get_retriable_errors_in_order() {
    let upstream = stand_in(Upstream::DropFirst);
    let (gw, _dir) = gateway("gw-pipe-dropped", &upstream.addr, 30_000, "");
    let mut s = client(&gw);
    let got = produce_pipelined(&gw, &mut s, 1);
    let codes: Vec<(i32, i16)> = got.iter().map(|(c, e, _)| (*c, *e)).collect();
    let want: Vec<(i32, i16)> = (0..HOLD)
        .map(|i| (1 + i as i32, NOT_LEADER_OR_FOLLOWER))
        .collect();
    assert_eq!(codes, want);
    assert_eq!(upstream.dropped.load(Ordering::SeqCst), 1);
    let got = produce_pipelined(&gw, &mut s, 11);
    let want: Vec<(i32, i16, i64)> = (0..HOLD).map(|i| (11 + i as i32, 0, i as i64)).collect();
    assert_eq!(got, want);
}

/// A client cannot make the gateway hold more than about one largest
/// request of frames waiting for upstream answers: with `max_request_size`
/// 64 KiB and 40 KB requests, the second one still unanswered stops the
/// gateway reading that connection, so the stand-in (which answers only
/// by four) gets two and no more.
#[test]
fn frames_waiting_for_upstream_answers_are_bounded_per_connection() {
    let upstream = stand_in(Upstream::Answer);
    let (gw, _dir) = gateway(
        "gw-pipe-bounded",
        &upstream.addr,
        30_000,
        "max_request_size: 65536\n",
    );
    let mut s = client(&gw);
    let value = vec![7u8; 40_000];
    let mut out = Vec::new();
    for corr in 1..=HOLD as i32 {
        let payload = raw_produce_value("piped", corr, &value);
        out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    s.write_all(&out).unwrap();
    let produces = || upstream.produces.load(Ordering::SeqCst);
    wait_for("two requests at the stand-in", DEADLINE, || {
        (produces() >= 2).then_some(())
    });
    // Nothing more comes while those two wait (on a busy machine too:
    // the gateway does not read the connection at all meanwhile).
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(produces(), 2);
}

/// A client that goes away with requests unanswered takes their upstream
/// connection with it (closed, as a broker sees a client go away), instead
/// of leaving it held, with its pool permit, until the upstream answers or
/// the requests time out (two minutes here).
#[test]
fn a_client_gone_with_requests_in_flight_closes_their_upstream_connection() {
    let upstream = stand_in(Upstream::Answer);
    let (gw, _dir) = gateway("gw-pipe-gone", &upstream.addr, 120_000, "");
    let mut s = client(&gw);
    let mut out = Vec::new();
    for corr in 1..=2 {
        let payload = raw_produce("piped", corr);
        out.extend_from_slice(&(payload.len() as i32).to_be_bytes());
        out.extend_from_slice(&payload);
    }
    s.write_all(&out).unwrap();
    wait_for("two requests at the stand-in", DEADLINE, || {
        (upstream.produces.load(Ordering::SeqCst) >= 2).then_some(())
    });
    assert_eq!(upstream.abandoned.load(Ordering::SeqCst), 0);
    drop(s);
    wait_for(
        "the upstream connection with the two requests closed",
        DEADLINE,
        || (upstream.abandoned.load(Ordering::SeqCst) == 1).then_some(()),
    );
}
