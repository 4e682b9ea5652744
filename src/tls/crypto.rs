//! The one rustls crypto provider of the broker (and of its TLS clients in
//! the bench and the tests): `ring`, chosen explicitly, so behaviour never
//! depends on which provider another crate installed as the process default.

use std::sync::Arc;

/// The crypto provider used for every rustls object built by the TLS layer.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    // AES-128-GCM with SHA-256 first: as strong as a Kafka deployment
    // needs, and the cheapest per byte and per handshake here (ring hashes
    // SHA-256 with the CPU's SHA extensions, SHA-384 in plain code). The
    // server's order decides (`ignore_client_order`); OpenSSL clients list
    // AES-256 first.
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => 0,
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => 1,
        rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        _ => 3,
    });
    Arc::new(p)
}
