//! The broker binary carries one TLS stack (rustls) and no Kafka client
//! library (issue #13): librdkafka and OpenSSL serve only the bench crate
//! and the tests. A dependency that brings either back fails here.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// Shared libraries the loader maps for the broker: none of OpenSSL's,
/// none of librdkafka's.
#[test]
fn broker_links_no_openssl_or_librdkafka_dynamically() {
    let out = match Command::new("ldd").arg(BIN).output() {
        Ok(o) => o,
        // Not every system has ldd; the symbol test below still runs.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("ldd not found: dynamic linkage not checked");
            return;
        }
        Err(e) => panic!("ldd {BIN}: {e}"),
    };
    assert!(out.status.success(), "ldd {BIN} failed: {out:?}");
    let libs = String::from_utf8_lossy(&out.stdout);
    for lib in ["libssl", "libcrypto", "librdkafka"] {
        assert!(
            !libs.contains(lib),
            "the broker binary links {lib}:\n{libs}"
        );
    }
}

/// Statically linked code leaves its symbol names in the binary (the debug
/// build keeps them all): no librdkafka function, no OpenSSL entry point.
#[test]
fn broker_contains_no_librdkafka_or_openssl_symbols() {
    let bytes = std::fs::read(BIN).unwrap_or_else(|e| panic!("read {BIN}: {e}"));
    // The regex crate searches at its own optimization level; a hand-written
    // loop in this (unoptimized) test crate would take long on ~200 MB.
    let symbols =
        regex::bytes::Regex::new(r"rd_kafka_[a-z_]+|SSL_CTX_new|OPENSSL_init_ssl").unwrap();
    let found: Vec<String> = symbols
        .find_iter(&bytes)
        .take(5)
        .map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
        .collect();
    assert!(
        found.is_empty(),
        "the broker binary {BIN} contains {found:?}"
    );
}
