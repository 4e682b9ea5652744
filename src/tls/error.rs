//! The TLS layer's error type, in a file of its own so the submodules
//! (certificates, principal mapping, server configuration) share it without
//! importing `tls/mod.rs`, which imports them.

use std::path::PathBuf;

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
