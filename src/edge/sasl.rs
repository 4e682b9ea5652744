//! SaslHandshake and SaslAuthenticate: the SCRAM login (SCRAM-SHA-256 or
//! SCRAM-SHA-512, those `sasl.mechanisms` enables, offered in its order),
//! in both the v0 form (raw tokens after the handshake) and the v1 form
//! (tokens inside SaslAuthenticate requests, with KIP-368 session
//! lifetimes).

use kafka_protocol::ResponseError;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::audit::login_failures::LoginFailureKey;
use crate::audit::{AuditEvent, EventKind};
use crate::broker::Broker;
use crate::security::credentials::CredentialStore;
use crate::security::session::{AuthStep, SaslFailure, Session};
use crate::security::throttle::Attempt;
use crate::server::BoundListener;

use super::Outcome;

fn mechanisms(broker: &Broker) -> Vec<StrBytes> {
    broker
        .config
        .sasl
        .mechanisms
        .iter()
        .map(|m| StrBytes::from_string(m.clone()))
        .collect()
}

/// Returns the response, why the connection must close after it (if it
/// must), and an audit record for a refused login.
pub fn handshake(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    session: &mut Session,
    version: i16,
    req: SaslHandshakeRequest,
) -> (SaslHandshakeResponse, Option<String>, Option<AuditEvent>) {
    let resp = SaslHandshakeResponse::default().with_mechanisms(mechanisms(broker));
    if !session.is_sasl() {
        // A listener without SASL: as Kafka, the request is simply illegal.
        return (
            resp.with_error_code(ResponseError::IllegalSaslState.code()),
            None,
            None,
        );
    }
    match session.handshake(&req.mechanism, version, &broker.config.sasl.mechanisms) {
        Ok(()) => (resp, None, None),
        Err(f) => {
            // The client names the mechanism: only ours become a label.
            let label = crate::security::scram::Mechanism::from_name(&req.mechanism)
                .map_or("other", |m| m.name());
            broker.metrics.login(label, false, f.kind);
            let first = broker.login_failures.note(failure_key(
                broker.credentials.as_deref(),
                peer,
                LoginFailureKey::mechanism_label(&req.mechanism),
                &f,
            ));
            let ev = first.then(|| {
                log_failure(listener, peer, &f);
                let mut ev = auth_event(listener, peer, session, Some(&f));
                ev.mechanism = Some(req.mechanism.to_string());
                ev
            });
            let reason = f.reason.clone();
            (resp.with_error_code(f.code), Some(reason), ev)
        }
    }
}

/// One record per login attempt: success with the principal, or failure
/// with the reason (which the client never sees).
pub fn auth_event(
    listener: &BoundListener,
    peer: SocketAddr,
    session: &Session,
    failure: Option<&SaslFailure>,
) -> AuditEvent {
    let mut ev = AuditEvent::new(EventKind::Authentication).peer(peer, &listener.name);
    ev.mechanism = Some(mechanism_name(session).to_string());
    match failure {
        None => {
            ev.principal = Some(session.principal().to_string());
            ev.user = session
                .principal()
                .strip_prefix("User:")
                .map(str::to_string);
            ev.decision = Some("success".into());
            ev.error_code = Some(0);
        }
        Some(f) => {
            ev.user = f.user.clone();
            ev.decision = Some("failure".into());
            ev.reason = Some(f.reason.clone());
            ev.error_code = Some(f.code);
        }
    }
    ev
}

fn log_failure(listener: &BoundListener, peer: SocketAddr, f: &SaslFailure) {
    tracing::warn!(
        %peer,
        listener = %listener.name,
        user = f.user.as_deref().unwrap_or("-"),
        code = f.code,
        "SASL authentication failed: {}",
        f.reason
    );
}

/// The mechanism the session's handshake picked (a SaslAuthenticate only
/// gets this far after one).
fn mechanism_name(session: &Session) -> &'static str {
    session
        .mechanism()
        .unwrap_or(crate::security::scram::DEFAULT_MECHANISM)
        .name()
}

fn log_success(listener: &BoundListener, peer: SocketAddr, session: &Session) {
    tracing::info!(%peer, listener = %listener.name, principal = session.principal(),
        "SASL/{} authenticated", mechanism_name(session));
}

/// What a refused SaslAuthenticate turns into: the response and an audit
/// record, or a close without an answer when the login throttle refused the
/// attempt before checking it.
pub type Authenticated =
    Result<(SaslAuthenticateResponse, Option<String>, Option<AuditEvent>), String>;

pub async fn authenticate(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    session: &mut Session,
    version: i16,
    req: SaslAuthenticateRequest,
) -> Authenticated {
    let mut resp = SaslAuthenticateResponse::default();
    let Some(store) = broker.credentials.as_deref().filter(|_| session.is_sasl()) else {
        resp.error_code = ResponseError::IllegalSaslState.code();
        resp.error_message = Some(StrBytes::from_static_str(
            "SaslAuthenticate on a listener without SASL",
        ));
        return Ok((resp, None, None));
    };
    let Some(mut attempt) = admit(broker, listener, peer, session).await else {
        return Err(THROTTLED_CLOSE.into());
    };
    match session.authenticate(&req.auth_bytes, store, Instant::now()) {
        Ok(AuthStep::Continue(bytes)) => {
            resp.auth_bytes = Bytes::from(bytes);
            Ok((resp, None, None))
        }
        Ok(AuthStep::Done {
            server_final,
            session_lifetime_ms,
        }) => {
            log_success(listener, peer, session);
            broker.metrics.login(mechanism_name(session), true, "none");
            resp.auth_bytes = Bytes::from(server_final);
            if version >= 1 {
                resp.session_lifetime_ms = session_lifetime_ms;
            }
            let ev = auth_event(listener, peer, session, None);
            Ok((resp, None, Some(ev)))
        }
        Err(f) => {
            let ev = refused(broker, listener, peer, session, store, &mut attempt, &f).await;
            resp.error_code = f.code;
            resp.error_message = Some(StrBytes::from_string(f.client_message.clone()));
            Ok((
                resp,
                Some(format!("authentication failed: {}", f.reason)),
                ev,
            ))
        }
    }
}

const THROTTLED_CLOSE: &str = "login throttled: too many failed logins from this address";

/// Asks the login throttle whether this SASL step may run; a refusal is
/// counted in the audit and the connection closes without an answer.
async fn admit<'b>(
    broker: &'b Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    session: &Session,
) -> Option<Attempt<'b>> {
    match broker
        .login_throttle
        .admit(peer.ip(), session.pending_user())
    {
        Ok(a) => Some(a),
        Err(_) => {
            tracing::debug!(%peer, listener = %listener.name, "{THROTTLED_CLOSE}");
            broker
                .metrics
                .login(mechanism_name(session), false, "throttled");
            broker
                .login_failures
                .throttled(&broker.auditor, peer, &listener.name)
                .await;
            None
        }
    }
}

/// A failed SASL step: counts it for the throttle, holds the answer back
/// as long as the throttle says (known and unknown users alike), and
/// returns the failure's own audit record when it is the first of its key
/// this window (repeats are counted into the aggregated record).
async fn refused(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    session: &Session,
    store: &CredentialStore,
    attempt: &mut Attempt<'_>,
    f: &SaslFailure,
) -> Option<AuditEvent> {
    broker.metrics.login(mechanism_name(session), false, f.kind);
    if f.code == ResponseError::SaslAuthenticationFailed.code() {
        let delay = attempt.failed(f.user.as_deref());
        if !delay.is_zero() {
            hold(broker, delay).await;
        }
    }
    let first = broker.login_failures.note(failure_key(
        Some(store),
        peer,
        std::borrow::Cow::Borrowed(mechanism_name(session)),
        f,
    ));
    first.then(|| {
        log_failure(listener, peer, f);
        auth_event(listener, peer, session, Some(f))
    })
}

/// Waits `delay`, or less if the broker is shutting down (a held answer
/// must not hold up the shutdown).
async fn hold(broker: &Broker, delay: std::time::Duration) {
    let mut stopping = broker.shutdown.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = stopping.wait_for(|s| *s) => {}
    }
}

fn failure_key(
    store: Option<&CredentialStore>,
    peer: SocketAddr,
    mechanism: std::borrow::Cow<'static, str>,
    f: &SaslFailure,
) -> LoginFailureKey {
    // Only names the store knows make keys of their own (see
    // audit::login_failures); the answer to the client never depends on it.
    let user = f
        .user
        .as_deref()
        .filter(|u| store.is_some_and(|s| s.fingerprint_of(u).is_some()))
        .map(str::to_string);
    LoginFailureKey {
        address: peer.ip(),
        user,
        mechanism,
        reason: f.kind,
        error_code: Some(f.code),
    }
}

/// A raw SCRAM token after SaslHandshake v0. Kafka answers with a raw
/// size-prefixed token and, on failure, just closes the connection.
pub async fn raw_token(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    session: &mut Session,
    frame: &[u8],
) -> Outcome {
    let Some(store) = broker.credentials.as_deref() else {
        return Outcome::Close("raw SASL token without a credential store".into());
    };
    let Some(mut attempt) = admit(broker, listener, peer, session).await else {
        return Outcome::Close(THROTTLED_CLOSE.into());
    };
    let reply = match session.authenticate(frame, store, Instant::now()) {
        Ok(AuthStep::Continue(bytes)) => bytes,
        Ok(AuthStep::Done { server_final, .. }) => {
            log_success(listener, peer, session);
            broker.metrics.login(mechanism_name(session), true, "none");
            broker
                .auditor
                .submit(auth_event(listener, peer, session, None))
                .await;
            server_final
        }
        Err(f) => {
            if let Some(ev) =
                refused(broker, listener, peer, session, store, &mut attempt, &f).await
            {
                broker.auditor.submit(ev).await;
            }
            return Outcome::Close(format!("authentication failed: {}", f.reason));
        }
    };
    let mut out = BytesMut::with_capacity(4 + reply.len());
    out.put_i32(reply.len() as i32);
    out.extend_from_slice(&reply);
    Outcome::Respond(out.freeze().into())
}
