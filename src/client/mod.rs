//! Our Kafka client: one connection over TCP or rustls TLS, requests and
//! responses encoded with kafka-protocol under the connection's own
//! correlation ids, and a SCRAM-SHA-512 login. The gateway's upstream
//! connections, `portcullis group`, the bench and the tests use it, so the
//! broker needs no Kafka client library (and no second TLS stack).
//!
//! What it is not: a producer or consumer. Batching, retries, metadata
//! refresh and partition leadership belong to whoever calls it.

mod conn;
pub mod scram;
mod tls;

pub use conn::{
    encode_request, fill_between, fill_to, read_frame, response_size, Connection, Connector,
    Stream, MAX_RESPONSE,
};
pub use scram::{SaltedPasswordCache, ScramClient, ScramClientError};
pub use tls::tls_connector;

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    // `error`, not `source`: the message already says it, and a source
    // would print it twice in an error chain (`{:#}`, as the CLI prints).
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: String, error: std::io::Error },
    #[error("TLS to {addr}: {error}")]
    Tls { addr: String, error: std::io::Error },
    /// TLS files, server names: what the caller configured.
    #[error("{0}")]
    Config(String),
    #[error("connection: {0}")]
    Io(std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("response of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("answered correlation id {got}, expected {want}")]
    Correlation { want: i32, got: i32 },
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("SASL login as {user} failed: {reason}")]
    Login { user: String, reason: String },
    #[error("SCRAM: {0}")]
    Scram(ScramClientError),
}

// By hand rather than `#[from]`, which would also make the inner error the
// `source` and print it twice in an error chain.
impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> ClientError {
        ClientError::Io(e)
    }
}

impl From<ScramClientError> for ClientError {
    fn from(e: ScramClientError) -> ClientError {
        ClientError::Scram(e)
    }
}
