//! A connection's authentication state machine.
//!
//! On a SASL listener a connection starts unauthenticated and may only send
//! ApiVersions, SaslHandshake and SaslAuthenticate until a SCRAM exchange
//! (SCRAM-SHA-256 or SCRAM-SHA-512, as enabled) succeeds. After that,
//! KIP-368 re-authentication runs the same exchange again, with the same
//! mechanism, and must end with the same principal; once the session
//! lifetime has passed without it, only re-authentication is served.

use kafka_protocol::ResponseError;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;

use super::credentials::CredentialStore;
use super::scram::{Mechanism, ScramError, ScramServer, ScramStep};

pub const ANONYMOUS: &str = "User:ANONYMOUS";

enum Phase {
    /// Not a SASL listener: the principal was fixed when the connection
    /// opened (ANONYMOUS, or the mTLS certificate's).
    Open,
    AwaitingHandshake,
    AwaitingAuthenticate {
        raw: bool,
    },
    Exchanging {
        scram: Box<ScramServer>,
        raw: bool,
    },
    Authenticated,
    /// A failed exchange: the connection is closed after the response.
    Failed,
}

pub struct Session {
    phase: Phase,
    principal: String,
    user: Option<String>,
    reauthenticating: bool,
    /// The mechanism of the last accepted SaslHandshake: the one being
    /// exchanged, and after success the one the session logged in with.
    mechanism: Option<Mechanism>,
    expires_at: Option<Instant>,
    fingerprint: Option<u64>,
    store_generation: u64,
    reauth_ms: u64,
    /// When the current (re-)authentication began, for audit and tests.
    pub authenticated_at: Option<Instant>,
}

/// What the edge does with a request before any handler sees it.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    Allow,
    Close(String),
}

/// Failure of a SASL step: the code for the client, a message that is safe
/// to send, and the real reason for the log. The connection closes after.
#[derive(Debug)]
pub struct SaslFailure {
    pub code: i16,
    pub client_message: String,
    pub reason: String,
    /// Short stable label of `reason`, for aggregating repeated failures.
    pub kind: &'static str,
    pub user: Option<String>,
}

impl SaslFailure {
    fn illegal(what: &str) -> Self {
        SaslFailure {
            code: ResponseError::IllegalSaslState.code(),
            client_message: format!("Unexpected {what} in the current SASL state"),
            reason: format!("{what} in the wrong state"),
            kind: "illegal_state",
            user: None,
        }
    }
}

pub enum AuthStep {
    /// Send these bytes and wait for the next client message.
    Continue(Vec<u8>),
    /// Authenticated: send the final server message.
    Done {
        server_final: Vec<u8>,
        session_lifetime_ms: i64,
    },
}

impl Session {
    pub fn open(principal: String) -> Session {
        Session::new(Phase::Open, principal, 0)
    }

    pub fn sasl(reauth_ms: u64) -> Session {
        Session::new(Phase::AwaitingHandshake, ANONYMOUS.to_string(), reauth_ms)
    }

    fn new(phase: Phase, principal: String, reauth_ms: u64) -> Session {
        Session {
            phase,
            principal,
            user: None,
            reauthenticating: false,
            mechanism: None,
            expires_at: None,
            fingerprint: None,
            store_generation: 0,
            reauth_ms,
            authenticated_at: None,
        }
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// The SCRAM mechanism picked by the handshake (under way or logged in).
    pub fn mechanism(&self) -> Option<Mechanism> {
        self.mechanism
    }

    pub fn is_sasl(&self) -> bool {
        !matches!(self.phase, Phase::Open)
    }

    pub fn is_authenticated(&self) -> bool {
        matches!(self.phase, Phase::Open | Phase::Authenticated)
            || (self.reauthenticating && self.user.is_some())
    }

    /// The user name claimed in the SCRAM exchange under way, if any: the
    /// login throttle counts a failure against it before the proof is
    /// checked.
    pub fn pending_user(&self) -> Option<&str> {
        match &self.phase {
            Phase::Exchanging { scram, .. } => scram.username(),
            _ => None,
        }
    }

    /// After a v0 handshake the SCRAM messages travel as raw size-prefixed
    /// tokens instead of SaslAuthenticate requests.
    pub fn expects_raw_token(&self) -> bool {
        matches!(
            self.phase,
            Phase::AwaitingAuthenticate { raw: true } | Phase::Exchanging { raw: true, .. }
        )
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }

    /// Decides whether a request may proceed in the current state.
    pub fn gate(&self, api: ApiKey, now: Instant) -> Gate {
        let sasl_api = matches!(
            api,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        );
        match &self.phase {
            Phase::Open => Gate::Allow,
            Phase::Authenticated if !self.expired(now) => Gate::Allow,
            Phase::Authenticated if sasl_api => Gate::Allow,
            Phase::Authenticated => Gate::Close(format!(
                "session of {} expired; {api:?} refused until re-authentication",
                self.principal
            )),
            _ if sasl_api => Gate::Allow,
            _ => Gate::Close(format!(
                "ResponseError::IllegalSaslState.code(): {api:?} before SASL authentication completed"
            )),
        }
    }

    /// SaslHandshake: picks the mechanism. On a non-SASL listener, or in the
    /// middle of an exchange, the answer is ILLEGAL_SASL_STATE.
    pub fn handshake(
        &mut self,
        mechanism: &str,
        version: i16,
        enabled: &[String],
    ) -> Result<(), SaslFailure> {
        let reauth = match self.phase {
            Phase::AwaitingHandshake => false,
            Phase::Authenticated => true,
            _ => return Err(SaslFailure::illegal("SaslHandshake")),
        };
        let unsupported = |reason: String| SaslFailure {
            code: ResponseError::UnsupportedSaslMechanism.code(),
            client_message: format!(
                "Unsupported SASL mechanism {mechanism}; enabled: {}",
                enabled.join(",")
            ),
            reason,
            kind: "unsupported_mechanism",
            user: None,
        };
        let picked = Mechanism::from_name(mechanism)
            .filter(|m| enabled.iter().any(|e| e == m.name()))
            .ok_or_else(|| unsupported(format!("client asked for mechanism `{mechanism}`")))?;
        // As Kafka: re-authentication keeps the mechanism of the login.
        if reauth && self.mechanism != Some(picked) {
            return Err(unsupported(format!(
                "re-authentication asked for mechanism `{mechanism}`, the session logged in \
                 with another"
            )));
        }
        // KIP-368 re-authentication only exists with SaslAuthenticate (v1).
        if reauth && version == 0 {
            return Err(SaslFailure::illegal("SaslHandshake v0 re-authentication"));
        }
        self.mechanism = Some(picked);
        self.reauthenticating = reauth;
        self.phase = Phase::AwaitingAuthenticate { raw: version == 0 };
        Ok(())
    }

    /// One SCRAM message from the client (SaslAuthenticate or raw token).
    pub fn authenticate(
        &mut self,
        token: &[u8],
        store: &CredentialStore,
        now: Instant,
    ) -> Result<AuthStep, SaslFailure> {
        let phase = std::mem::replace(&mut self.phase, Phase::Failed);
        // Set with the phase by `handshake`; the default is never used.
        let mechanism = self.mechanism.unwrap_or(super::scram::DEFAULT_MECHANISM);
        let lookup = |u: &str| store.lookup(u, mechanism);
        match phase {
            Phase::AwaitingAuthenticate { raw } => {
                let mut scram = Box::new(ScramServer::new(mechanism, store.fake_secret()));
                match scram.step(token, &lookup) {
                    Ok(ScramStep::Challenge(bytes)) => {
                        self.phase = Phase::Exchanging { scram, raw };
                        Ok(AuthStep::Continue(bytes))
                    }
                    Ok(ScramStep::Success { .. }) => {
                        Err(SaslFailure::illegal("SCRAM final message"))
                    }
                    Err(e) => Err(scram_failure(e, &scram)),
                }
            }
            Phase::Exchanging { mut scram, .. } => match scram.step(token, &lookup) {
                Ok(ScramStep::Success {
                    server_final,
                    username,
                    extensions,
                }) => {
                    let verified = scram.verified_fingerprint();
                    let done = Verified {
                        mechanism: scram.mechanism(),
                        username,
                        extensions,
                        fingerprint: verified,
                    };
                    self.complete(server_final, done, store, now)
                }
                Ok(ScramStep::Challenge(_)) => Err(SaslFailure::illegal("SCRAM message")),
                Err(e) => Err(scram_failure(e, &scram)),
            },
            other => {
                self.phase = other;
                let f = SaslFailure::illegal("SaslAuthenticate");
                self.phase = Phase::Failed;
                Err(f)
            }
        }
    }

    fn complete(
        &mut self,
        server_final: Vec<u8>,
        done: Verified,
        store: &CredentialStore,
        now: Instant,
    ) -> Result<AuthStep, SaslFailure> {
        let Verified {
            mechanism,
            username,
            extensions,
            fingerprint: verified,
        } = done;
        let fail = |kind: &'static str, reason: String| SaslFailure {
            code: ResponseError::SaslAuthenticationFailed.code(),
            client_message: super::scram::invalid_credentials_message(mechanism),
            reason,
            kind,
            user: Some(username.clone()),
        };
        // Delegation tokens are not supported: a token login must not pass
        // as a password login of the same name.
        if extensions
            .iter()
            .any(|(k, v)| k == "tokenauth" && v == "true")
        {
            return Err(fail(
                "delegation_token",
                "delegation-token login (tokenauth=true) is not supported".into(),
            ));
        }
        // The proof was checked against the credential read at client-first;
        // if the user was removed or re-keyed since, the login must not stand.
        let current = store.fingerprint_for(&username, mechanism);
        if current.is_none() || current != verified {
            return Err(fail(
                "credentials_changed",
                "credentials changed or removed during the exchange".into(),
            ));
        }
        let principal = format!("User:{username}");
        if self.reauthenticating && self.user.as_deref() != Some(username.as_str()) {
            return Err(SaslFailure {
                client_message: format!(
                    "Cannot change principals during re-authentication from {}: {principal}",
                    self.principal
                ),
                ..fail(
                    "principal_change",
                    "re-authentication tried to change the principal".into(),
                )
            });
        }
        self.fingerprint = current;
        self.store_generation = store.generation();
        self.principal = principal;
        self.user = Some(username);
        self.reauthenticating = false;
        self.authenticated_at = Some(now);
        self.expires_at = (self.reauth_ms > 0).then(|| now + Duration::from_millis(self.reauth_ms));
        self.phase = Phase::Authenticated;
        Ok(AuthStep::Done {
            server_final,
            session_lifetime_ms: self.reauth_ms as i64,
        })
    }

    /// False once the logged-in user was removed or got a new password: the
    /// edge then closes the connection instead of waiting for the session
    /// to expire. Cheap: only looks when the store changed.
    pub fn credentials_still_valid(&mut self, store: &CredentialStore) -> bool {
        let Some(user) = &self.user else {
            return true;
        };
        let generation = store.generation();
        if generation == self.store_generation {
            return true;
        }
        self.store_generation = generation;
        // Only the credential the session logged in with counts: another
        // mechanism's credential of the same user is another key.
        match self.mechanism {
            Some(m) => store.fingerprint_for(user, m) == self.fingerprint,
            None => false,
        }
    }
}

/// What a successful proof established, for `Session::complete`.
struct Verified {
    mechanism: Mechanism,
    username: String,
    extensions: Vec<(String, String)>,
    fingerprint: Option<u64>,
}

fn scram_failure(e: ScramError, scram: &ScramServer) -> SaslFailure {
    SaslFailure {
        code: ResponseError::SaslAuthenticationFailed.code(),
        client_message: e.client_message(scram.mechanism()),
        reason: format!("{} ({e})", e.reason()),
        kind: e.reason(),
        user: scram.username().map(str::to_string),
    }
}
