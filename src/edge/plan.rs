//! What the edge does with a request that goes to a back end: authorize
//! every resource it names, strip what was denied, and say how to merge
//! the refusals back into the back end's answer. The rules for each API
//! live in the edge's family modules (`data`, `metadata`, `admin`,
//! `groups`, `txn`); this module holds their common shape.

use kafka_protocol::messages::{RequestKind, ResponseKind};

use super::RequestContext;

/// Changes the back end's answer before it goes to the client, with the
/// request's context (to filter what the client may see).
pub type Fixup = Box<dyn FnOnce(&mut ResponseKind, &RequestContext<'_>) + Send>;

/// Appends refusals to an answer.
pub type Merge = Box<dyn FnOnce(&mut ResponseKind) + Send>;

/// How the edge finishes the back end's answer.
pub enum Fix {
    /// Appends the edge's refusals; needs no context, so it also applies to
    /// an answer that comes after the request (acks=all produce).
    Merge(Merge),
    /// Filters or rewrites with the request's context.
    Filter(Fixup),
    /// A Fetch in a session: a decoded answer is cut down to what changed
    /// (`cut`); an answer the back end streams as bytes is read as it
    /// passes instead and goes to the client uncut (`session`: its id, and
    /// whether it is new).
    Session { cut: Fixup, session: (i32, bool) },
}

impl Fix {
    pub fn apply(self, resp: &mut ResponseKind, ctx: &RequestContext<'_>) {
        match self {
            Fix::Merge(f) => f(resp),
            Fix::Filter(f) | Fix::Session { cut: f, .. } => f(resp, ctx),
        }
    }

    /// The context-free part, for an answer that outlives the request.
    pub fn into_merge(self) -> Option<Merge> {
        match self {
            Fix::Merge(f) => Some(f),
            Fix::Filter(_) | Fix::Session { .. } => {
                debug_assert!(false, "a filtering fix on a deferred answer");
                None
            }
        }
    }
}

pub enum Plan {
    /// Answered at the edge; nothing goes upstream. `None`: no response
    /// at all (Produce acks=0).
    Local(Option<ResponseKind>),
    /// Forward. `changed`: the body differs from what the client sent and
    /// must be re-encoded; otherwise the original frame goes as it is.
    Forward {
        body: RequestKind,
        changed: bool,
        fix: Option<Fix>,
    },
}

impl Plan {
    /// Also records, from the back end's answer (before the refusals are
    /// merged in), the admin actions it reports done: the same records in
    /// embedded and gateway mode.
    pub fn recording(
        self,
        record: impl FnOnce(&ResponseKind, &RequestContext<'_>) + Send + 'static,
    ) -> Plan {
        match self {
            Plan::Forward { body, changed, fix } => Plan::Forward {
                body,
                changed,
                fix: Some(Fix::Filter(Box::new(move |resp, ctx| {
                    record(resp, ctx);
                    if let Some(fix) = fix {
                        fix.apply(resp, ctx);
                    }
                }))),
            },
            local => local,
        }
    }

    pub fn unchanged(body: RequestKind) -> Plan {
        Plan::Forward {
            body,
            changed: false,
            fix: None,
        }
    }

    pub fn local(resp: ResponseKind) -> Plan {
        Plan::Local(Some(resp))
    }
}

/// Appends the edge's refusals to a list in the upstream response.
macro_rules! merge_into {
    ($variant:ident, $field:ident, $denied:expr) => {{
        let denied = $denied;
        if denied.is_empty() {
            None
        } else {
            Some(crate::edge::plan::Fix::Merge(Box::new(
                move |r: &mut kafka_protocol::messages::ResponseKind| {
                    if let kafka_protocol::messages::ResponseKind::$variant(x) = r {
                        x.$field.extend(denied);
                    }
                },
            )))
        }
    }};
}
pub(crate) use merge_into;

/// The end of a strip-and-merge policy: when everything was refused the
/// edge answers alone; otherwise what is left is forwarded (re-encoded if
/// anything was stripped, or `also_changed`) and the refusals are merged
/// into the upstream's answer.
macro_rules! refuse_or_forward {
    ($variant:ident, $resp:ty, $field:ident, $refused:expr, $nothing_left:expr, $body:expr) => {
        refuse_or_forward!(
            $variant,
            $resp,
            $field,
            $refused,
            $nothing_left,
            $body,
            false
        )
    };
    ($variant:ident, $resp:ty, $field:ident, $refused:expr, $nothing_left:expr, $body:expr, $also_changed:expr) => {{
        let refused = $refused;
        if $nothing_left && !refused.is_empty() {
            let mut resp = <$resp>::default();
            resp.$field = refused;
            Plan::local(kafka_protocol::messages::ResponseKind::$variant(resp))
        } else {
            Plan::Forward {
                changed: $also_changed || !refused.is_empty(),
                fix: merge_into!($variant, $field, refused),
                body: kafka_protocol::messages::RequestKind::$variant($body),
            }
        }
    }};
}
pub(crate) use refuse_or_forward;

/// Splits `items` into (allowed, denied).
pub(crate) fn split<T>(items: Vec<T>, mut allowed: impl FnMut(&T) -> bool) -> (Vec<T>, Vec<T>) {
    items.into_iter().partition(|t| allowed(t))
}

/// Splits items into those the policies allow and those a blocking rule
/// refuses, with why (for the refusal's message).
pub(crate) fn split_policy<T, R>(
    items: Vec<T>,
    mut check: impl FnMut(&T) -> Option<R>,
) -> (Vec<T>, Vec<(T, R)>) {
    let mut allowed = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for t in items {
        match check(&t) {
            Some(v) => refused.push((t, v)),
            None => allowed.push(t),
        }
    }
    (allowed, refused)
}
