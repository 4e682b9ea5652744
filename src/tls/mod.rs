//! TLS edge of the broker: dev PKI generation, hot-reloadable rustls server
//! configuration, and Kafka-compatible mTLS principal mapping.
//!
//! Everything here uses the `ring` provider explicitly (see [`provider`]) so the
//! behaviour never depends on which crypto provider some other crate installed
//! as the process default.

pub mod certs;
pub mod pem;
pub mod principal;
pub mod server_config;

use std::path::PathBuf;
use std::sync::Arc;

pub use certs::{ensure_dev_certs, init_certs, CertsReport};
pub use principal::{
    first_uri_san, parse_rules_string, subject_distinguished_name, PrincipalMapper, PrincipalSource,
};
pub use server_config::{ClientAuth, TlsAcceptorHandle, TlsSettings, TlsWatcher};

/// The crypto provider used for every rustls object built by this module.
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

/// Every failure of the TLS layer. Messages name the file and the setting
/// involved because they end up in front of an operator at startup/reload.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS setting `{setting}`: file not found: {}", path.display())]
    MissingFile {
        setting: &'static str,
        path: PathBuf,
    },

    #[error("TLS setting `{setting}`: cannot read {}: {source}", path.display())]
    Io {
        setting: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("TLS setting `{setting}`: no certificate found in PEM file {}", path.display())]
    NoCertificate {
        setting: &'static str,
        path: PathBuf,
    },

    #[error("TLS setting `{setting}`: no private key found in PEM file {}", path.display())]
    NoPrivateKey {
        setting: &'static str,
        path: PathBuf,
    },

    #[error("TLS setting `{setting}`: invalid PEM in {}: {reason}", path.display())]
    BadPem {
        setting: &'static str,
        path: PathBuf,
        reason: String,
    },

    #[error(
        "TLS private key {} does not match the certificate {}",
        key.display(),
        cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },

    #[error("TLS certificate {} is invalid: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },

    #[error("TLS certificate {} expired: notAfter={not_after} (now {now})", path.display())]
    CertExpired {
        path: PathBuf,
        not_after: String,
        now: String,
    },

    #[error("TLS certificate {} is not yet valid: notBefore={not_before} (now {now})", path.display())]
    CertNotYetValid {
        path: PathBuf,
        not_before: String,
        now: String,
    },

    #[error("TLS setting `client_ca`: bad client CA {}: {reason}", path.display())]
    BadClientCa { path: PathBuf, reason: String },

    #[error("TLS configuration error: {0}")]
    Config(String),

    #[error("invalid principal mapping rule `{rule}`: {reason}")]
    BadMappingRule { rule: String, reason: String },

    #[error("no principal mapping rule applies to `{name}` (rules: {rules})")]
    NoMatchingRule { name: String, rules: String },

    #[error("client certificate has no URI subjectAltName (principal_from: san_uri)")]
    NoSanUri,

    #[error("cannot parse client certificate: {0}")]
    BadPeerCertificate(String),

    #[error("certificate generation failed: {0}")]
    CertGen(String),

    #[error("dev certificates in {} are incomplete: missing {}", dir.display(), missing.join(", "))]
    PartialDevCerts { dir: PathBuf, missing: Vec<String> },

    #[error("{action} {}: {source}", path.display())]
    Write {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("TLS file watcher: {0}")]
    Watch(String),
}

impl From<rcgen::Error> for TlsError {
    fn from(e: rcgen::Error) -> Self {
        TlsError::CertGen(e.to_string())
    }
}
