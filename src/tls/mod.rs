//! TLS edge of the broker: dev PKI generation, hot-reloadable rustls server
//! configuration, the server side's TLS stream, and Kafka-compatible mTLS
//! principal mapping.
//!
//! Everything here uses the `ring` provider explicitly (see [`provider`]) so the
//! behaviour never depends on which crypto provider some other crate installed
//! as the process default.
//!
//! This file only names the submodules and re-exports their public items;
//! shared items live in files of their own (`error.rs`, `crypto.rs`), so no
//! submodule imports this file and the module has no import circle.

pub mod certs;
pub mod crypto;
pub mod error;
pub mod pem;
pub mod principal;
pub mod server_config;
pub mod stream;

pub use certs::{ensure_dev_certs, init_certs, CertsReport};
pub use crypto::provider;
pub use error::TlsError;
pub use principal::{
    first_uri_san, parse_rules_string, subject_distinguished_name, PrincipalMapper, PrincipalSource,
};
pub use server_config::{ClientAuth, TlsAcceptorHandle, TlsSettings, TlsWatcher};
pub use stream::ServerTlsStream;
