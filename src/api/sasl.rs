//! SaslHandshake and SaslAuthenticate: the SCRAM-SHA-512 login, in both the
//! v0 form (raw tokens after the handshake) and the v1 form (tokens inside
//! SaslAuthenticate requests, with KIP-368 session lifetimes).

use std::net::SocketAddr;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::audit::{AuditEvent, EventKind};
use crate::broker::Broker;
use crate::security::session::{AuthStep, SaslFailure, Session, ILLEGAL_SASL_STATE};
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
        return (resp.with_error_code(ILLEGAL_SASL_STATE), None, None);
    }
    match session.handshake(&req.mechanism, version, &broker.config.sasl.mechanisms) {
        Ok(()) => (resp, None, None),
        Err(f) => {
            log_failure(listener, peer, &f);
            let mut ev = auth_event(listener, peer, session, Some(&f));
            ev.mechanism = Some(req.mechanism.to_string());
            let reason = f.reason.clone();
            (resp.with_error_code(f.code), Some(reason), Some(ev))
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
    ev.mechanism = Some(crate::security::scram::MECHANISM.to_string());
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

fn log_success(listener: &BoundListener, peer: SocketAddr, session: &Session) {
    tracing::info!(%peer, listener = %listener.name, principal = session.principal(), "SASL/SCRAM-SHA-512 authenticated");
}

pub fn authenticate(
    broker: &Broker,
    listener: &BoundListener,
    peer: SocketAddr,
    session: &mut Session,
    version: i16,
    req: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, Option<String>, Option<AuditEvent>) {
    let mut resp = SaslAuthenticateResponse::default();
    let Some(store) = broker.credentials.as_deref().filter(|_| session.is_sasl()) else {
        resp.error_code = ILLEGAL_SASL_STATE;
        resp.error_message = Some(StrBytes::from_static_str(
            "SaslAuthenticate on a listener without SASL",
        ));
        return (resp, None, None);
    };
    match session.authenticate(&req.auth_bytes, store, Instant::now()) {
        Ok(AuthStep::Continue(bytes)) => {
            resp.auth_bytes = Bytes::from(bytes);
            (resp, None, None)
        }
        Ok(AuthStep::Done {
            server_final,
            session_lifetime_ms,
        }) => {
            log_success(listener, peer, session);
            resp.auth_bytes = Bytes::from(server_final);
            if version >= 1 {
                resp.session_lifetime_ms = session_lifetime_ms;
            }
            let ev = auth_event(listener, peer, session, None);
            (resp, None, Some(ev))
        }
        Err(f) => {
            log_failure(listener, peer, &f);
            resp.error_code = f.code;
            resp.error_message = Some(StrBytes::from_string(f.client_message.clone()));
            let ev = auth_event(listener, peer, session, Some(&f));
            (
                resp,
                Some(format!("authentication failed: {}", f.reason)),
                Some(ev),
            )
        }
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
    let reply = match session.authenticate(frame, store, Instant::now()) {
        Ok(AuthStep::Continue(bytes)) => bytes,
        Ok(AuthStep::Done { server_final, .. }) => {
            log_success(listener, peer, session);
            broker
                .auditor
                .submit(auth_event(listener, peer, session, None))
                .await;
            server_final
        }
        Err(f) => {
            log_failure(listener, peer, &f);
            broker
                .auditor
                .submit(auth_event(listener, peer, session, Some(&f)))
                .await;
            return Outcome::Close(format!("authentication failed: {}", f.reason));
        }
    };
    let mut out = BytesMut::with_capacity(4 + reply.len());
    out.put_i32(reply.len() as i32);
    out.extend_from_slice(&reply);
    Outcome::Respond(out.freeze())
}
