//! What sits behind the edge: the embedded log engine or an upstream Kafka
//! cluster. The edge has already authorized, audited and stripped the
//! request; a back end only executes what is left.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::RequestContext;

/// The part of a request the edge allowed.
pub struct Allowed {
    /// The client's frame as it arrived (without the size prefix).
    pub frame: Bytes,
    pub body: RequestKind,
    /// The body differs from `frame` (refused parts were stripped): a back
    /// end that sends bytes on must re-encode it.
    pub changed: bool,
    /// The edge needs the decoded answer (to merge refusals, filter what
    /// the client may see, or record the outcome of allowed decisions). A
    /// back end that has the answer as bytes may pass them through when
    /// this is false.
    pub needs_answer: bool,
}

pub type Later = Pin<Box<dyn Future<Output = ResponseKind> + Send>>;

/// A back end's answer. Moved once per request: boxing the large variant
/// would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Executed {
    /// No answer at all (Produce with acks=0).
    Silent,
    Answer(ResponseKind),
    /// A complete, size-prefixed response frame, passed through unchanged
    /// (only when `needs_answer` was false).
    Encoded(Bytes),
    /// The answer comes later (acks=all produce waiting for fsync); the
    /// connection goes on reading meanwhile.
    Later(Later),
    /// The back end cannot answer; the connection is closed.
    Close(String),
}

pub type Execution<'a> = Pin<Box<dyn Future<Output = Executed> + Send + 'a>>;

/// What a back end knows of a topic id.
pub enum Lookup {
    Found(String),
    /// No topic has this id.
    Absent,
    /// The back end cannot tell.
    Unknown,
}

pub trait Backend: Send + Sync {
    fn execute<'a>(&'a self, ctx: &'a RequestContext<'_>, allowed: Allowed) -> Execution<'a>;

    /// The name of the topic with this id, so that a request naming topics
    /// by id is authorized by name before it runs.
    fn topic_name(&self, ctx: &RequestContext<'_>, id: uuid::Uuid) -> Lookup {
        let _ = (ctx, id);
        Lookup::Unknown
    }

    /// The API versions the edge offers, narrowed to what the back end
    /// also speaks.
    fn narrow_versions(&self, ours: Vec<ApiVersion>) -> Vec<ApiVersion> {
        ours
    }
}
