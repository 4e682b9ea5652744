//! Malformed, oversized and allocation-bomb frames: each may close its own
//! connection, none may take the broker down or disturb other clients.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{raw_request, scratch, Broker};

/// Request header v1 (non-flexible): key, version, correlation id, client id.
fn header_v1(key: i16, version: i16, corr: i32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&key.to_be_bytes());
    b.extend_from_slice(&version.to_be_bytes());
    b.extend_from_slice(&corr.to_be_bytes());
    b.extend_from_slice(&4i16.to_be_bytes());
    b.extend_from_slice(b"evil");
    b
}

/// Request header v2 (flexible): v1 plus an empty tagged-field section.
fn header_v2(key: i16, version: i16, corr: i32) -> Vec<u8> {
    let mut b = header_v1(key, version, corr);
    b.push(0);
    b
}

fn api_versions_v0(corr: i32) -> Vec<u8> {
    header_v1(18, 0, corr)
}

/// ApiVersions round trip: the connection (and broker) still serve.
fn assert_serves(broker: &Broker) {
    let mut s = broker.connect();
    let resp = raw_request(&mut s, &api_versions_v0(77)).expect("ApiVersions answered");
    assert_eq!(i32::from_be_bytes(resp[0..4].try_into().unwrap()), 77);
    assert_eq!(
        i16::from_be_bytes(resp[4..6].try_into().unwrap()),
        0,
        "no error"
    );
}

/// Sends a frame and expects the broker to close this connection.
fn assert_closed(broker: &Broker, payload: &[u8], what: &str) {
    let mut s = broker.connect();
    let resp = raw_request(&mut s, payload);
    assert!(
        resp.is_none(),
        "{what}: expected the connection to close, got a response"
    );
}

const HUGE_CLASSIC: [u8; 4] = 0x7fff_ffffi32.to_be_bytes();
/// Unsigned varint 0xffffffff: a compact array claiming 2^32 - 2 elements.
const HUGE_COMPACT: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];

fn bombs() -> Vec<(&'static str, Vec<u8>)> {
    let mut v = Vec::new();
    // Metadata v1: topics array (classic).
    let mut m = header_v1(3, 1, 1);
    m.extend_from_slice(&HUGE_CLASSIC);
    v.push(("Metadata v1 classic array", m));
    // Metadata v9: topics compact array.
    let mut m = header_v2(3, 9, 2);
    m.extend_from_slice(&HUGE_COMPACT);
    v.push(("Metadata v9 compact array", m));
    // CreateTopics v2: topics array.
    let mut c = header_v1(19, 2, 3);
    c.extend_from_slice(&HUGE_CLASSIC);
    v.push(("CreateTopics v2 classic array", c));
    // CreateTopics v2: one topic whose configs array is the bomb (nested).
    let mut c = header_v1(19, 2, 4);
    c.extend_from_slice(&1i32.to_be_bytes());
    c.extend_from_slice(&1i16.to_be_bytes());
    c.push(b'x');
    c.extend_from_slice(&1i32.to_be_bytes()); // partitions
    c.extend_from_slice(&1i16.to_be_bytes()); // replication
    c.extend_from_slice(&0i32.to_be_bytes()); // assignments
    c.extend_from_slice(&HUGE_CLASSIC); // configs
    v.push(("CreateTopics v2 nested configs array", c));
    // Produce v9 (flexible): null transactional id, acks, timeout, topics.
    let mut p = header_v2(0, 9, 5);
    p.push(0);
    p.extend_from_slice(&1i16.to_be_bytes());
    p.extend_from_slice(&1000i32.to_be_bytes());
    p.extend_from_slice(&HUGE_COMPACT);
    v.push(("Produce v9 compact array", p));
    // Fetch v4: replica, max wait, min bytes, max bytes, isolation, topics.
    let mut f = header_v1(1, 4, 6);
    for x in [-1i32, 500, 1, 1 << 20] {
        f.extend_from_slice(&x.to_be_bytes());
    }
    f.push(0);
    f.extend_from_slice(&HUGE_CLASSIC);
    v.push(("Fetch v4 classic array", f));
    // ListOffsets v1: replica id, topics.
    let mut l = header_v1(2, 1, 7);
    l.extend_from_slice(&(-1i32).to_be_bytes());
    l.extend_from_slice(&HUGE_CLASSIC);
    v.push(("ListOffsets v1 classic array", l));
    v
}

#[test]
fn allocation_bombs_do_not_kill_the_broker() {
    let dir = scratch("bombs");
    let mut broker = Broker::start(dir.path(), "");
    // A bystander connection opened before the attack keeps working after it.
    let mut bystander = broker.connect();
    assert!(raw_request(&mut bystander, &api_versions_v0(1)).is_some());
    for round in 0..2 {
        for (what, frame) in bombs() {
            assert_closed(&broker, &frame, what);
            assert!(broker.is_running(), "broker died on {what} (round {round})");
            assert_serves(&broker);
        }
    }
    assert!(raw_request(&mut bystander, &api_versions_v0(2)).is_some());
    assert!(broker.is_running());
}

#[test]
fn malformed_and_oversized_frames_close_only_their_connection() {
    let dir = scratch("malformed");
    let mut broker = Broker::start(dir.path(), "max_request_size: 65536\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("too short for a header", vec![0, 18]),
        ("unknown API key", header_v1(999, 0, 1)),
        ("unsupported Metadata version", header_v1(3, 99, 1)),
        ("truncated Metadata body", {
            let mut m = header_v1(3, 1, 1);
            m.extend_from_slice(&3i32.to_be_bytes());
            m.extend_from_slice(&5i16.to_be_bytes());
            m
        }),
        ("bad client id length", {
            let mut b = Vec::new();
            b.extend_from_slice(&18i16.to_be_bytes());
            b.extend_from_slice(&0i16.to_be_bytes());
            b.extend_from_slice(&1i32.to_be_bytes());
            b.extend_from_slice(&30000i16.to_be_bytes());
            b
        }),
    ];
    for (what, frame) in &cases {
        assert_closed(&broker, frame, what);
        assert_serves(&broker);
    }
    // Oversized: the size prefix alone is refused, before any body is read.
    let mut s = broker.connect();
    s.write_all(&(10 * 1024 * 1024i32).to_be_bytes()).unwrap();
    let mut buf = [0u8; 1];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "oversized frame closes");
    // Negative size.
    let mut s = broker.connect();
    s.write_all(&(-1i32).to_be_bytes()).unwrap();
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0, "negative size closes");
    // Random garbage in many shapes.
    let mut seed = 42u64;
    for _ in 0..200 {
        let len = (seed % 64) as usize + 8;
        let mut frame = Vec::with_capacity(len);
        for _ in 0..len {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            frame.push((seed >> 33) as u8);
        }
        let mut s = broker.connect();
        let _ = raw_request(&mut s, &frame);
    }
    // A slow client that never finishes its frame does not block others.
    let mut slow = TcpStream::connect(&broker.bootstrap).unwrap();
    slow.write_all(&100i32.to_be_bytes()).unwrap();
    slow.write_all(&[0, 18]).unwrap();
    assert_serves(&broker);
    assert!(broker.is_running());
    drop(slow);
    std::thread::sleep(Duration::from_millis(10));
    assert_serves(&broker);
}

#[test]
fn unsupported_api_versions_version_gets_a_v0_answer() {
    // KIP-511: a client newer than the broker learns the supported range.
    let dir = scratch("kip511");
    let broker = Broker::start(dir.path(), "");
    let mut s = broker.connect();
    let resp = raw_request(&mut s, &header_v2(18, 99, 5)).expect("v0 response");
    assert_eq!(i32::from_be_bytes(resp[0..4].try_into().unwrap()), 5);
    assert_eq!(
        i16::from_be_bytes(resp[4..6].try_into().unwrap()),
        35,
        "UNSUPPORTED_VERSION"
    );
    let n = i32::from_be_bytes(resp[6..10].try_into().unwrap());
    assert!(n >= 10, "api list present ({n} entries)");
    let mut found_api_versions = false;
    for i in 0..n as usize {
        let at = 10 + i * 6;
        let key = i16::from_be_bytes(resp[at..at + 2].try_into().unwrap());
        let max = i16::from_be_bytes(resp[at + 4..at + 6].try_into().unwrap());
        if key == 18 {
            found_api_versions = true;
            assert_eq!(max, 4);
        }
    }
    assert!(found_api_versions);
}
