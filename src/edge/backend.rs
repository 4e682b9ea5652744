//! What sits behind the edge: the embedded log engine or an upstream Kafka
//! cluster. The edge has already authorized, audited and stripped the
//! request; a back end only executes what is left.

use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};

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
    /// A large Fetch answer may come back as bytes still arriving
    /// ([`Executed::Encoded`]) even though `needs_answer` is true: the edge
    /// reads what it needs of it as it passes (a fetch session's answer,
    /// `edge::fetch_walk`); a whole one it still wants decoded.
    pub takes_streamed: bool,
    /// The edge needs nothing of the answer while it handles the request
    /// (`needs_answer` is false and no fetch quota is counted from it): a
    /// back end may hand the answer back as [`Executed::Later`], and the
    /// connection goes on with its next request meanwhile.
    pub may_answer_later: bool,
}

/// An answer that comes after the request was handled: `Answer`,
/// `Encoded` (only where `may_answer_later` was true), `Silent` or
/// `Close`; never `Later` again.
pub type Later = Pin<Box<dyn Future<Output = Executed> + Send>>;

/// A back end's answer. Moved once per request: boxing the large variant
/// would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Executed {
    /// No answer at all (Produce with acks=0).
    Silent,
    Answer(ResponseKind),
    /// A size-prefixed response frame, passed through unchanged (only
    /// when `needs_answer` was false, or, still arriving, `takes_streamed`
    /// was true); a large one possibly still arriving.
    Encoded(super::ResponseFrame),
    /// The answer comes later (an acks=all produce waiting for its fsync,
    /// a request forwarded upstream); the connection goes on reading
    /// meanwhile, and answers in request order.
    Later(Later),
    /// The back end cannot answer; the connection is closed.
    Close(String),
}

pub type Execution<'a> = Pin<Box<dyn Future<Output = Executed> + Send + 'a>>;

/// What a back end keeps for one client connection between its requests:
/// the gateway, the upstream connection that the connection's unanswered
/// requests went on, so that the next one follows them there, in order.
/// Weak, so that it holds nothing once those requests are answered.
#[derive(Default)]
pub struct ConnectionSlot(Option<Weak<dyn Any + Send + Sync>>);

impl ConnectionSlot {
    /// What the back end put here, while it is still alive elsewhere.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        self.0.as_ref()?.upgrade()?.downcast().ok()
    }

    pub fn set<T: Any + Send + Sync>(&mut self, value: &Arc<T>) {
        let value: Arc<dyn Any + Send + Sync> = value.clone();
        self.0 = Some(Arc::downgrade(&value));
    }
}

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
