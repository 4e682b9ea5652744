//! SCRAM-SHA-256 and SCRAM-SHA-512 server side (RFC 5802, RFC 7677) with
//! Apache Kafka's conventions: no channel binding, `tokenauth`-style
//! extensions in the client-first message, and iteration counts bounded to
//! 4096..=16384 (Kafka's bounds, the same for both hashes).
//!
//! The two mechanisms differ only in the hash: [`Mechanism`] picks it and
//! every computation below is one generic function instantiated with
//! `sha2::Sha256` or `sha2::Sha512`.
//!
//! Only HMACs and one hash run at login; PBKDF2 runs only when a password is
//! set ([`ScramCredential::from_password`]). Unknown users get a
//! deterministic fake salt and fake keys so the exchange looks (and costs)
//! the same as a wrong password; per mechanism, so a user holding only a
//! SCRAM-SHA-512 credential is, to a SCRAM-SHA-256 client, an unknown user.
//!
//! Nothing here indexes or unwraps untrusted data: every parse path returns
//! `ScramError` instead of panicking.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

/// A SCRAM mechanism: which hash the exchange and the stored keys use.
/// Ordered as Kafka numbers them (`ScramMechanism` 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// SASL mechanism name as Kafka advertises it.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// The mechanism of a SASL name. Exact match, as Kafka's broker does
    /// (`scram-sha-512` is not SCRAM-SHA-512).
    pub fn from_name(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's `ScramMechanism` type byte (DescribeUserScramCredentials,
    /// AlterUserScramCredentials): 1 = SHA-256, 2 = SHA-512.
    pub fn kafka_type(self) -> i8 {
        match self {
            Mechanism::ScramSha256 => 1,
            Mechanism::ScramSha512 => 2,
        }
    }

    pub fn from_kafka_type(t: i8) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.kafka_type() == t)
    }

    /// Output length of the hash: the length of StoredKey, ServerKey,
    /// SaltedPassword and of the client's proof.
    pub fn key_len(self) -> usize {
        match self {
            Mechanism::ScramSha256 => 32,
            Mechanism::ScramSha512 => 64,
        }
    }

    fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => hmac_with::<Hmac<Sha256>>(key, parts),
            Mechanism::ScramSha512 => hmac_with::<Hmac<Sha512>>(key, parts),
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
            Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// SaltedPassword := Hi(password, salt, i), i.e. PBKDF2 with this hash.
    pub fn salt_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.key_len()];
        match self {
            Mechanism::ScramSha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            Mechanism::ScramSha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The default mechanism (the one the gateway logs in upstream with unless
/// told otherwise, and the first one SaslHandshake offers).
pub const DEFAULT_MECHANISM: Mechanism = Mechanism::ScramSha512;
/// Name of [`DEFAULT_MECHANISM`].
pub const MECHANISM: &str = "SCRAM-SHA-512";
/// `sasl.mechanisms` by default: both, SCRAM-SHA-512 offered first.
pub const DEFAULT_ENABLED: [Mechanism; 2] = [Mechanism::ScramSha512, Mechanism::ScramSha256];
/// Kafka's lower bound for SCRAM iterations (both mechanisms).
pub const MIN_ITERATIONS: u32 = 4096;
/// Kafka's upper bound for SCRAM iterations (both mechanisms).
pub const MAX_ITERATIONS: u32 = 16384;
/// Iterations used for new credentials by default, and always for the fake
/// credential of an unknown user.
pub const DEFAULT_ITERATIONS: u32 = 8192;
/// Salt length for new credentials and for fake credentials.
pub const SALT_LEN: usize = 32;

/// Bound on a single SCRAM message. Real messages are a few hundred bytes;
/// this stops a client from making us HMAC megabytes per attempt.
const MAX_MESSAGE_LEN: usize = 4096;

/// Text Kafka sends for every SCRAM failure except an authzid mismatch
/// (Kafka's SaslServerAuthenticator names the mechanism in it).
pub fn invalid_credentials_message(mechanism: Mechanism) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL \
         mechanism {mechanism}"
    )
}
/// Text Kafka sends when the authzid differs from the username.
const KAFKA_AUTHZID_MISMATCH: &str =
    "Authentication failed: Client requested an authorization id that is different from username";

/// Why the proof step failed. Only for server logs and metrics: the client
/// must never learn which one it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    WrongPassword,
    UnknownUser,
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthFailure::WrongPassword => "wrong password",
            AuthFailure::UnknownUser => "unknown user",
        })
    }
}

/// SCRAM failures. `Display` is for server logs; it carries only static
/// descriptions, never message contents, proofs or keys.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM {stage} message: {detail}")]
    Malformed {
        stage: &'static str,
        detail: &'static str,
    },
    #[error("SCRAM nonce in client-final does not match the exchange")]
    NonceMismatch,
    #[error("SCRAM channel binding rejected: {0}")]
    ChannelBinding(&'static str),
    #[error("SCRAM authorization id differs from username")]
    AuthzidMismatch,
    #[error("SCRAM mandatory extension (m=) is not supported")]
    MandatoryExtension,
    #[error("SCRAM authentication failed: {0}")]
    AuthenticationFailed(AuthFailure),
    #[error("SCRAM iteration count {0} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    BadIterations(u32),
    #[error("SCRAM step called in state {0}")]
    InvalidState(&'static str),
}

impl ScramError {
    /// The error text for the Kafka client (SaslAuthenticate error_message).
    /// Mirrors Kafka: only an authzid mismatch gets its own text; everything
    /// else, in particular unknown user vs. wrong password, is identical.
    pub fn client_message(&self, mechanism: Mechanism) -> String {
        match self {
            ScramError::AuthzidMismatch => KAFKA_AUTHZID_MISMATCH.to_string(),
            _ => invalid_credentials_message(mechanism),
        }
    }

    /// Short stable label for logs/metrics; distinguishes unknown user from
    /// wrong password (never send this to the client).
    pub fn reason(&self) -> &'static str {
        match self {
            ScramError::Malformed { .. } => "malformed_message",
            ScramError::NonceMismatch => "nonce_mismatch",
            ScramError::ChannelBinding(_) => "channel_binding",
            ScramError::AuthzidMismatch => "authzid_mismatch",
            ScramError::MandatoryExtension => "mandatory_extension",
            ScramError::AuthenticationFailed(AuthFailure::WrongPassword) => "wrong_password",
            ScramError::AuthenticationFailed(AuthFailure::UnknownUser) => "unknown_user",
            ScramError::BadIterations(_) => "bad_iterations",
            ScramError::InvalidState(_) => "invalid_state",
        }
    }
}

/// What the server keeps per (user, mechanism): salt, iteration count,
/// StoredKey and ServerKey (each `mechanism.key_len()` bytes). Never the
/// password or the SaltedPassword.
#[derive(Clone)]
pub struct ScramCredential {
    pub mechanism: Mechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// Derive a credential with a fresh random 32-byte salt (runs PBKDF2).
    pub fn from_password(
        mechanism: Mechanism,
        password: &str,
        iterations: u32,
    ) -> Result<Self, ScramError> {
        let mut salt = vec![0u8; SALT_LEN];
        OsRng.fill_bytes(&mut salt);
        Self::from_password_with_salt(mechanism, password, &salt, iterations)
    }

    /// Derive a credential with a caller-chosen salt. Useful for importing
    /// and for tests; production code should use [`Self::from_password`].
    pub fn from_password_with_salt(
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        check_iterations(iterations)?;
        let salted = mechanism.salt_password(password.as_bytes(), salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// Builds the stored keys from a SaltedPassword computed elsewhere, as
    /// Kafka's AlterUserScramCredentials sends it (the client runs PBKDF2).
    pub fn from_salted_password(
        mechanism: Mechanism,
        salted: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        check_iterations(iterations)?;
        let client_key = mechanism.hmac(salted, &[b"Client Key"]);
        let server_key = mechanism.hmac(salted, &[b"Server Key"]);
        Ok(ScramCredential {
            mechanism,
            salt: salt.to_vec(),
            stored_key: mechanism.hash(&client_key),
            server_key,
            iterations,
        })
    }

    /// 64-bit fingerprint (first 8 bytes of SHA-512(StoredKey)). Changes when
    /// the password or salt changes; safe to log or compare, reveals nothing
    /// useful about the key.
    pub fn fingerprint(&self) -> u64 {
        let h = Sha512::digest(&self.stored_key);
        let mut b = [0u8; 8];
        b.copy_from_slice(&h[..8]);
        u64::from_be_bytes(b)
    }
}

// Keys are secret: only show harmless metadata.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

// Constant-time on the keys so equality checks never become an oracle.
impl PartialEq for ScramCredential {
    fn eq(&self, other: &Self) -> bool {
        let keys =
            self.stored_key.ct_eq(&other.stored_key) & self.server_key.ct_eq(&other.server_key);
        bool::from(keys)
            && self.mechanism == other.mechanism
            && self.salt == other.salt
            && self.iterations == other.iterations
    }
}
impl Eq for ScramCredential {}

fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(ScramError::BadIterations(iterations))
    }
}

/// One HMAC over `parts`, generic over the MAC (HMAC-SHA-256 or -512).
fn hmac_with<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Deterministic stand-in for an unknown user: stable per (secret, name,
/// mechanism), so repeated probes see the same salt, just like for a real
/// user. The SCRAM-SHA-512 derivation is the one earlier versions used
/// (an upgrade must not change unknown users' salts: a change seen across
/// it would single them out); SCRAM-SHA-256 adds its name, so one name's
/// fake salts differ between the mechanisms as a real user's do. NUL
/// separates name and label; names never contain control characters.
fn fake_credential(secret: &[u8; 32], username: &str, mechanism: Mechanism) -> ScramCredential {
    let label: &[u8] = match mechanism {
        Mechanism::ScramSha512 => b"",
        Mechanism::ScramSha256 => b"\0SCRAM-SHA-256",
    };
    let prf = |parts: &[&[u8]]| hmac_with::<Hmac<Sha512>>(secret, parts);
    let n = username.as_bytes();
    let salt = prf(&[n, label]);
    let mut stored_key = prf(&[n, b"\0portcullis-fake-stored-key", label]);
    let mut server_key = prf(&[n, b"\0portcullis-fake-server-key", label]);
    stored_key.truncate(mechanism.key_len());
    server_key.truncate(mechanism.key_len());
    ScramCredential {
        mechanism,
        salt: salt[..SALT_LEN].to_vec(),
        stored_key,
        server_key,
        iterations: DEFAULT_ITERATIONS,
    }
}

/// Result of a successful `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramStep {
    /// server-first-message to send back.
    Challenge(Vec<u8>),
    /// Exchange complete: send `server_final` (`v=...`) and treat
    /// `username` as authenticated. `extensions` are the client-first
    /// extensions in the order received (e.g. `tokenauth=true`).
    Success {
        server_final: Vec<u8>,
        username: String,
        extensions: Vec<(String, String)>,
    },
}

struct Pending {
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// client nonce + server nonce, as the client must echo it.
    full_nonce: String,
    /// Length of the client's part of `full_nonce`.
    client_nonce_len: usize,
    username: String,
    extensions: Vec<(String, String)>,
    credential: ScramCredential,
    known_user: bool,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<Pending>),
    Done,
    Failed,
}

/// One SCRAM server exchange for one mechanism. Feed each client message to
/// [`ScramServer::step`]; any error moves the exchange to a terminal failed
/// state.
pub struct ScramServer {
    mechanism: Mechanism,
    fake_secret: [u8; 32],
    state: State,
    username: Option<String>,
    /// Fingerprint of the credential the proof was verified against.
    verified: Option<u64>,
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("state", &self.state_name())
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ScramServer {
    /// `fake_secret` is the store's server secret, used to derive fake salts
    /// for unknown users.
    pub fn new(mechanism: Mechanism, fake_secret: [u8; 32]) -> Self {
        ScramServer {
            mechanism,
            fake_secret,
            state: State::AwaitingClientFirst,
            username: None,
            verified: None,
        }
    }

    /// After `Success`: the fingerprint of the credential the proof matched.
    /// A login that straddles a password change or removal is caught by
    /// comparing it with the store's current one.
    pub fn verified_fingerprint(&self) -> Option<u64> {
        self.verified
    }

    /// The username claimed in client-first (decoded). Authenticated only
    /// once `step` has returned `Success`.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// True once the exchange succeeded.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn state_name(&self) -> &'static str {
        match self.state {
            State::AwaitingClientFirst => "awaiting-client-first",
            State::AwaitingClientFinal(_) => "awaiting-client-final",
            State::Done => "done",
            State::Failed => "failed",
        }
    }

    /// Process one client message. `lookup` is called once, with the
    /// decoded username, during client-first; it must return the user's
    /// credential for this exchange's mechanism (one of another mechanism
    /// is treated as absent).
    pub fn step(
        &mut self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
    ) -> Result<ScramStep, ScramError> {
        self.step_inner(input, lookup, None)
    }

    fn step_inner(
        &mut self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
        fixed_server_nonce: Option<&str>,
    ) -> Result<ScramStep, ScramError> {
        // Take the state out so that every early return leaves `Failed`.
        let state = std::mem::replace(&mut self.state, State::Failed);
        match state {
            State::AwaitingClientFirst => {
                let (step, pending) = self.client_first(input, lookup, fixed_server_nonce)?;
                self.state = State::AwaitingClientFinal(Box::new(pending));
                Ok(step)
            }
            State::AwaitingClientFinal(pending) => {
                let step = client_final(input, &pending)?;
                self.verified = Some(pending.credential.fingerprint());
                self.state = State::Done;
                Ok(step)
            }
            State::Done => {
                self.state = State::Done;
                Err(ScramError::InvalidState("done"))
            }
            State::Failed => Err(ScramError::InvalidState("failed")),
        }
    }

    fn client_first(
        &mut self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
        fixed_server_nonce: Option<&str>,
    ) -> Result<(ScramStep, Pending), ScramError> {
        let msg = parse_client_first(input)?;
        self.username = Some(msg.username.clone());
        if let Some(authzid) = &msg.authzid {
            if *authzid != msg.username {
                return Err(ScramError::AuthzidMismatch);
            }
        }

        // Always derive the fake credential, then pick: known and unknown
        // users cost the same three HMACs here.
        let fake = fake_credential(&self.fake_secret, &msg.username, self.mechanism);
        let (credential, known_user) = match lookup(&msg.username) {
            Some(real) if real.mechanism == self.mechanism => (real, true),
            _ => (fake, false),
        };

        let server_nonce = match fixed_server_nonce {
            Some(n) => n.to_string(),
            None => {
                let mut raw = [0u8; 32];
                OsRng.fill_bytes(&mut raw);
                // Base64 alphabet is printable and has no ',' — valid nonce chars.
                STANDARD_NO_PAD.encode(raw)
            }
        };
        let full_nonce = format!("{}{}", msg.client_nonce, server_nonce);
        let server_first = format!(
            "r={},s={},i={}",
            full_nonce,
            STANDARD.encode(&credential.salt),
            credential.iterations
        );
        let step = ScramStep::Challenge(server_first.clone().into_bytes());
        Ok((
            step,
            Pending {
                gs2_header: msg.gs2_header.to_string(),
                client_first_bare: msg.bare.to_string(),
                server_first,
                client_nonce_len: msg.client_nonce.len(),
                full_nonce,
                username: msg.username,
                extensions: msg.extensions,
                credential,
                known_user,
            },
        ))
    }
}

#[cfg(test)]
impl ScramServer {
    /// Deterministic server nonce, for known-answer tests only.
    fn step_with_nonce(
        &mut self,
        input: &[u8],
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
        nonce: &str,
    ) -> Result<ScramStep, ScramError> {
        self.step_inner(input, lookup, Some(nonce))
    }
}

fn client_final(input: &[u8], p: &Pending) -> Result<ScramStep, ScramError> {
    const STAGE: &str = "client-final";
    let malformed = |detail| ScramError::Malformed {
        stage: STAGE,
        detail,
    };
    let text = as_message(input, STAGE)?;
    // RFC 5802: proof is always the last attribute.
    let (without_proof, proof_b64) = text.rsplit_once(",p=").ok_or(malformed("missing proof"))?;

    let mut attrs = without_proof.split(',');
    let cbind = attrs
        .next()
        .and_then(|a| a.strip_prefix("c="))
        .ok_or(malformed("missing channel binding"))?;
    let nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(malformed("missing nonce"))?;
    for ext in attrs {
        parse_extension(ext).map_err(|_| malformed("bad extension"))?;
    }

    // We never bind to a channel, so c= must echo our gs2 header verbatim.
    if cbind != STANDARD.encode(&p.gs2_header) {
        return Err(ScramError::ChannelBinding("c= does not match gs2 header"));
    }
    // Some librdkafka builds (2.0.x, e.g. Debian's kcat) send their own nonce
    // again in front of the echoed one. The echo must still contain the
    // exact exchange nonce, and the proof covers what the client sent.
    let echoed = nonce == p.full_nonce
        || nonce
            .strip_prefix(p.full_nonce.get(..p.client_nonce_len).unwrap_or(""))
            .is_some_and(|rest| rest == p.full_nonce);
    if !echoed {
        return Err(ScramError::NonceMismatch);
    }
    let proof = STANDARD
        .decode(proof_b64)
        .map_err(|_| malformed("proof is not base64"))?;
    let cred = &p.credential;
    let mechanism = cred.mechanism;
    if proof.len() != mechanism.key_len() {
        return Err(malformed("proof length is not the hash length"));
    }

    let auth_message = format!(
        "{},{},{}",
        p.client_first_bare, p.server_first, without_proof
    );
    let client_signature = mechanism.hmac(&cred.stored_key, &[auth_message.as_bytes()]);
    let client_key: Vec<u8> = proof
        .iter()
        .zip(client_signature.iter())
        .map(|(a, b)| a ^ b)
        .collect();
    // Computed before the decision so success and failure cost the same.
    let server_signature = mechanism.hmac(&cred.server_key, &[auth_message.as_bytes()]);
    let key_ok = mechanism.hash(&client_key).ct_eq(&cred.stored_key);
    let ok = key_ok & Choice::from(u8::from(p.known_user));

    if bool::from(ok) {
        Ok(ScramStep::Success {
            server_final: format!("v={}", STANDARD.encode(server_signature)).into_bytes(),
            username: p.username.clone(),
            extensions: p.extensions.clone(),
        })
    } else if p.known_user {
        Err(ScramError::AuthenticationFailed(AuthFailure::WrongPassword))
    } else {
        Err(ScramError::AuthenticationFailed(AuthFailure::UnknownUser))
    }
}

struct ClientFirst<'a> {
    gs2_header: &'a str,
    bare: &'a str,
    authzid: Option<String>,
    username: String,
    client_nonce: &'a str,
    extensions: Vec<(String, String)>,
}

fn as_message<'a>(input: &'a [u8], stage: &'static str) -> Result<&'a str, ScramError> {
    if input.len() > MAX_MESSAGE_LEN {
        return Err(ScramError::Malformed {
            stage,
            detail: "message too long",
        });
    }
    std::str::from_utf8(input).map_err(|_| ScramError::Malformed {
        stage,
        detail: "invalid UTF-8",
    })
}

fn parse_client_first(input: &[u8]) -> Result<ClientFirst<'_>, ScramError> {
    const STAGE: &str = "client-first";
    let malformed = |detail| ScramError::Malformed {
        stage: STAGE,
        detail,
    };
    let text = as_message(input, STAGE)?;

    // gs2-header = cbind-flag "," [authzid] ","
    let (flag, rest) = text
        .split_once(',')
        .ok_or(malformed("missing gs2 header"))?;
    match flag {
        // "y": client supports binding but thinks we don't — fine, we don't.
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(ScramError::ChannelBinding("channel binding not supported"))
        }
        _ => return Err(malformed("bad gs2 channel binding flag")),
    }
    let (authz_part, bare) = rest
        .split_once(',')
        .ok_or(malformed("missing gs2 header"))?;
    let authzid = if authz_part.is_empty() {
        None
    } else {
        let raw = authz_part
            .strip_prefix("a=")
            .ok_or(malformed("bad gs2 authzid"))?;
        Some(decode_saslname(raw).map_err(|_| malformed("bad authzid encoding"))?)
    };
    let gs2_len = text.len() - bare.len();
    let gs2_header = text.get(..gs2_len).ok_or(malformed("missing gs2 header"))?;

    let mut attrs = bare.split(',');
    let first = attrs.next().unwrap_or_default();
    if first.starts_with("m=") {
        return Err(ScramError::MandatoryExtension);
    }
    let raw_user = first
        .strip_prefix("n=")
        .ok_or(malformed("missing username"))?;
    let username = decode_saslname(raw_user).map_err(|_| malformed("bad username encoding"))?;
    let client_nonce = attrs
        .next()
        .and_then(|a| a.strip_prefix("r="))
        .ok_or(malformed("missing nonce"))?;
    if client_nonce.is_empty() || !client_nonce.bytes().all(is_nonce_char) {
        return Err(malformed("bad nonce characters"));
    }

    let mut extensions: Vec<(String, String)> = Vec::new();
    for ext in attrs {
        let (k, v) = parse_extension(ext).map_err(|e| match e {
            ExtError::Mandatory => ScramError::MandatoryExtension,
            ExtError::Bad => malformed("bad extension"),
        })?;
        if extensions.iter().any(|(seen, _)| seen == k) {
            return Err(malformed("duplicate extension"));
        }
        extensions.push((k.to_string(), v.to_string()));
    }

    Ok(ClientFirst {
        gs2_header,
        bare,
        authzid,
        username,
        client_nonce,
        extensions,
    })
}

/// Decoded username from a client-first message, for audit logs of failed
/// attempts. `None` if the message does not parse.
pub fn parse_client_first_username(input: &[u8]) -> Option<String> {
    parse_client_first(input).ok().map(|m| m.username)
}

/// RFC 5802 printable: %x21-2B / %x2D-7E (visible ASCII except ',').
fn is_nonce_char(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

enum ExtError {
    Mandatory,
    Bad,
}

/// Kafka's extension grammar: ALPHA+ "=" 1*(%x01-7F except '=' and ',').
/// We additionally refuse control characters.
fn parse_extension(attr: &str) -> Result<(&str, &str), ExtError> {
    let (k, v) = attr.split_once('=').ok_or(ExtError::Bad)?;
    if k == "m" {
        return Err(ExtError::Mandatory);
    }
    let key_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphabetic());
    let val_ok = !v.is_empty() && v.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'=');
    if key_ok && val_ok {
        Ok((k, v))
    } else {
        Err(ExtError::Bad)
    }
}

/// RFC 5802 saslname: `=2C` is ',', `=3D` is '='; any other '=' is invalid.
/// Control characters and empty names are refused.
fn decode_saslname(raw: &str) -> Result<String, ()> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '=' => match (chars.next(), chars.next()) {
                (Some('2'), Some('C')) => out.push(','),
                (Some('3'), Some('D')) => out.push('='),
                _ => return Err(()),
            },
            ',' => return Err(()),
            c if c.is_control() => return Err(()),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        Err(())
    } else {
        Ok(out)
    }
}

/// RFC 5802 saslname encoding (the inverse of `decode_saslname`).
pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: [u8; 32] = [7u8; 32];

    const SHA256: Mechanism = Mechanism::ScramSha256;
    const SHA512: Mechanism = Mechanism::ScramSha512;

    fn cred(password: &str) -> ScramCredential {
        cred_for(SHA512, password)
    }

    /// Memoized: PBKDF2 dominates test time otherwise (the proptests run
    /// hundreds of exchanges).
    fn cred_for(mechanism: Mechanism, password: &str) -> ScramCredential {
        type Key = (Mechanism, String);
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<Key, ScramCredential>> =
                Default::default();
        }
        CACHE.with(|c| {
            c.borrow_mut()
                .entry((mechanism, password.to_string()))
                .or_insert_with(|| {
                    ScramCredential::from_password_with_salt(
                        mechanism,
                        password,
                        b"fixed-test-salt-0123456789abcdef",
                        4096,
                    )
                    .expect("valid iterations")
                })
                .clone()
        })
    }

    /// Minimal SCRAM client for either hash, written against the RFC rather
    /// than reusing server helpers (PBKDF2 done by hand with one HMAC block).
    struct TestClient {
        mechanism: Mechanism,
        gs2: String,
        bare: String,
        nonce: String,
    }

    fn hmac_t(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn one<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = <M as KeyInit>::new_from_slice(key).expect("any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        match mechanism {
            SHA256 => one::<Hmac<Sha256>>(key, data),
            SHA512 => one::<Hmac<Sha512>>(key, data),
        }
    }

    fn hash_t(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
        match mechanism {
            SHA256 => Sha256::digest(data).to_vec(),
            SHA512 => Sha512::digest(data).to_vec(),
        }
    }

    /// PBKDF2-HMAC-SHA(256|512) with dkLen = hLen (single block), per RFC 8018.
    fn pbkdf2_by_hand(
        mechanism: Mechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        type Key = (Mechanism, Vec<u8>, Vec<u8>, u32);
        thread_local! {
            static CACHE: std::cell::RefCell<std::collections::HashMap<Key, Vec<u8>>> =
                Default::default();
        }
        let key = (mechanism, password.to_vec(), salt.to_vec(), iterations);
        if let Some(hit) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
            return hit;
        }
        let out = pbkdf2_uncached(mechanism, password, salt, iterations);
        CACHE.with(|c| c.borrow_mut().insert(key, out.clone()));
        out
    }

    fn pbkdf2_uncached(
        mechanism: Mechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        let mut s = salt.to_vec();
        s.extend_from_slice(&1u32.to_be_bytes());
        let mut u = hmac_t(mechanism, password, &s);
        let mut acc = u.clone();
        for _ in 1..iterations {
            u = hmac_t(mechanism, password, &u);
            acc.iter_mut().zip(&u).for_each(|(a, b)| *a ^= b);
        }
        acc
    }

    impl TestClient {
        fn new(gs2: &str, user: &str, nonce: &str, exts: &str) -> Self {
            Self::with(SHA512, gs2, user, nonce, exts)
        }
        fn with(mechanism: Mechanism, gs2: &str, user: &str, nonce: &str, exts: &str) -> Self {
            TestClient {
                mechanism,
                gs2: gs2.to_string(),
                bare: format!("n={},r={}{}", encode_saslname(user), nonce, exts),
                nonce: nonce.to_string(),
            }
        }
        fn first(&self) -> Vec<u8> {
            format!("{}{}", self.gs2, self.bare).into_bytes()
        }
        /// Returns (client-final, expected server-final).
        fn finish(&self, server_first: &[u8], password: &str) -> (Vec<u8>, Vec<u8>) {
            let sf = std::str::from_utf8(server_first).expect("utf8");
            let mut r = "";
            let mut s = "";
            let mut i = 0u32;
            for a in sf.split(',') {
                if let Some(v) = a.strip_prefix("r=") {
                    r = v;
                } else if let Some(v) = a.strip_prefix("s=") {
                    s = v;
                } else if let Some(v) = a.strip_prefix("i=") {
                    i = v.parse().expect("iterations");
                }
            }
            assert!(r.starts_with(&self.nonce));
            let salt = STANDARD.decode(s).expect("salt b64");
            let m = self.mechanism;
            let salted = pbkdf2_by_hand(m, password.as_bytes(), &salt, i);
            let client_key = hmac_t(m, &salted, b"Client Key");
            let stored_key = hash_t(m, &client_key);
            let without_proof = format!("c={},r={}", STANDARD.encode(&self.gs2), r);
            let auth = format!("{},{},{}", self.bare, sf, without_proof);
            let sig = hmac_t(m, &stored_key, auth.as_bytes());
            let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
            let server_key = hmac_t(m, &salted, b"Server Key");
            let v = hmac_t(m, &server_key, auth.as_bytes());
            (
                format!("{},p={}", without_proof, STANDARD.encode(proof)).into_bytes(),
                format!("v={}", STANDARD.encode(v)).into_bytes(),
            )
        }
    }

    fn lookup_alice(pw: &'static str) -> impl Fn(&str) -> Option<ScramCredential> {
        let c = cred(pw);
        move |u: &str| (u == "alice").then(|| c.clone())
    }

    fn challenge(step: ScramStep) -> Vec<u8> {
        match step {
            ScramStep::Challenge(c) => c,
            other => panic!("expected challenge, got {other:?}"),
        }
    }

    /// Runs a whole exchange; returns (server-first, result of final step).
    fn run(
        client: &TestClient,
        password: &str,
        lookup: &dyn Fn(&str) -> Option<ScramCredential>,
    ) -> (Vec<u8>, Result<ScramStep, ScramError>, Vec<u8>) {
        let mut server = ScramServer::new(client.mechanism, SECRET);
        let sf = challenge(
            server
                .step(&client.first(), lookup)
                .expect("client-first ok"),
        );
        let (cf, expected_v) = client.finish(&sf, password);
        (sf, server.step(&cf, lookup), expected_v)
    }

    #[test]
    fn pbkdf2_known_vectors() {
        // Published PBKDF2-HMAC-SHA512 vectors (P="password", S="salt").
        let c1 = "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252\
                  c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce";
        let c4096 = "d197b1b33db0143e018b12f3d1d1479e6cdebdcc97c5c0f87f6902e072f457b5\
                     143f30602641b3d55cd335988cb36b84376060ecd532e039b742a239434af2d5";
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(hex(&pbkdf2_by_hand(SHA512, b"password", b"salt", 1)), c1);
        let mut out = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<Sha512>(b"password", b"salt", 4096, &mut out);
        assert_eq!(hex(&out), c4096);
        assert_eq!(
            hex(&pbkdf2_by_hand(SHA512, b"password", b"salt", 4096)),
            c4096
        );
    }

    #[test]
    fn fixed_vector_exchange() {
        // Known answer computed independently (Python hashlib/hmac) for
        // user "user", password "pencil", salt "QSXCR+Q6sek8bf92" (b64),
        // 4096 iterations, client nonce "rOprNGfwEbeRWgbNEkqO", server
        // nonce "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0" (RFC 7677's inputs).
        let salt = STANDARD.decode("QSXCR+Q6sek8bf92").expect("b64");
        let c =
            ScramCredential::from_password_with_salt(SHA512, "pencil", &salt, 4096).expect("ok");
        let lookup = move |u: &str| (u == "user").then(|| c.clone());
        let mut server = ScramServer::new(SHA512, SECRET);
        let sf = challenge(
            server
                .step_with_nonce(
                    b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                    &lookup,
                    "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                )
                .expect("first"),
        );
        assert_eq!(
            sf,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=QSXCR+Q6sek8bf92,i=4096"
        );
        let cf = format!(
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p={}",
            PY_PROOF
        );
        match server.step(cf.as_bytes(), &lookup).expect("final") {
            ScramStep::Success {
                server_final,
                username,
                ..
            } => {
                assert_eq!(username, "user");
                assert_eq!(server_final, format!("v={PY_SERVER_SIG}").into_bytes());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// RFC 7677 section 3's SCRAM-SHA-256 exchange, byte for byte (user
    /// "user", password "pencil").
    #[test]
    fn rfc7677_sha256_vector() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("b64");
        let c =
            ScramCredential::from_password_with_salt(SHA256, "pencil", &salt, 4096).expect("ok");
        let lookup = move |u: &str| (u == "user").then(|| c.clone());
        let mut server = ScramServer::new(SHA256, SECRET);
        let sf = challenge(
            server
                .step_with_nonce(
                    b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                    &lookup,
                    "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                )
                .expect("first"),
        );
        assert_eq!(
            sf,
            b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let cf = b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                   p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
        match server.step(cf, &lookup).expect("final") {
            ScramStep::Success {
                server_final,
                username,
                ..
            } => {
                assert_eq!(username, "user");
                assert_eq!(
                    server_final,
                    b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        // Our own test client agrees with the RFC too.
        let client = TestClient::with(SHA256, "n,,", "user", "rOprNGfwEbeRWgbNEkqO", "");
        let (cf2, v) = client.finish(&sf, "pencil");
        assert_eq!(cf2, cf.to_vec());
        assert_eq!(
            v,
            b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec()
        );
    }

    #[test]
    fn sha256_exchange_and_wrong_password() {
        let c = cred_for(SHA256, "pw");
        let lookup = move |u: &str| (u == "alice").then(|| c.clone());
        let client = TestClient::with(SHA256, "n,,", "alice", "abcdef", "");
        let (_, res, v) = run(&client, "pw", &lookup);
        assert!(
            matches!(res, Ok(ScramStep::Success { ref server_final, .. }) if *server_final == v)
        );
        let (_, res, _) = run(&client, "nope", &lookup);
        let err = res.expect_err("wrong password");
        assert_eq!(err.reason(), "wrong_password");
        assert!(err
            .client_message(SHA256)
            .ends_with("SASL mechanism SCRAM-SHA-256"));
    }

    /// A user holding only a SCRAM-SHA-512 credential is, to a SCRAM-SHA-256
    /// exchange, an unknown user: same answer shape, same failure; and one
    /// name's fake salts differ between the mechanisms, as a real user's do.
    #[test]
    fn other_mechanisms_credential_is_an_unknown_user() {
        // The store returns a SHA-512 credential whatever is asked: the
        // server must not use it for SHA-256.
        let only512 = ScramCredential::from_password(SHA512, "pw", DEFAULT_ITERATIONS).expect("c");
        let real256 = ScramCredential::from_password(SHA256, "pw", DEFAULT_ITERATIONS).expect("c");
        let lookup = move |u: &str| match u {
            "alice" => Some(only512.clone()),
            "bob" => Some(real256.clone()),
            _ => None,
        };
        let shape = |sf: &[u8]| {
            let s = std::str::from_utf8(sf).expect("utf8").to_string();
            let parts: Vec<String> = s.split(',').map(str::to_string).collect();
            let salt = STANDARD.decode(&parts[1][2..]).expect("b64");
            (parts[0].len(), salt.len(), parts[2].clone())
        };
        let mut outcomes = Vec::new();
        for user in ["alice", "bob", "mallory"] {
            let client = TestClient::with(SHA256, "n,,", user, "abcdef", "");
            let (sf, res, _) = run(&client, "wrong", &lookup);
            let err = res.expect_err("refused");
            outcomes.push((shape(&sf), err.client_message(SHA256)));
            let expected = if user == "bob" {
                "wrong_password"
            } else {
                "unknown_user"
            };
            assert_eq!(err.reason(), expected, "{user}");
        }
        assert!(outcomes.windows(2).all(|w| w[0] == w[1]), "{outcomes:?}");
        // alice's right password does not open SHA-256 either.
        let client = TestClient::with(SHA256, "n,,", "alice", "abcdef", "");
        let (_, res, _) = run(&client, "pw", &lookup);
        assert_eq!(res.expect_err("refused").reason(), "unknown_user");

        let none = |_: &str| None;
        let salt = |m: Mechanism| {
            let mut s = ScramServer::new(m, SECRET);
            let sf = challenge(s.step(b"n,,n=ghost,r=xyz", &none).expect("ok"));
            String::from_utf8(sf)
                .expect("utf8")
                .split(',')
                .nth(1)
                .map(str::to_string)
        };
        assert_ne!(salt(SHA256), salt(SHA512));
        assert_eq!(salt(SHA256), salt(SHA256));
        // SHA-512's fake salt is the one earlier versions derived.
        let old = hmac_t(SHA512, &SECRET, b"ghost");
        assert_eq!(
            salt(SHA512),
            Some(format!("s={}", STANDARD.encode(&old[..SALT_LEN])))
        );
    }

    #[test]
    fn mechanism_names_and_types() {
        for m in Mechanism::ALL {
            assert_eq!(Mechanism::from_name(m.name()), Some(m));
            assert_eq!(Mechanism::from_kafka_type(m.kafka_type()), Some(m));
        }
        assert_eq!(Mechanism::from_kafka_type(1), Some(SHA256));
        assert_eq!(Mechanism::from_kafka_type(2), Some(SHA512));
        assert_eq!(Mechanism::from_kafka_type(0), None);
        assert_eq!(Mechanism::from_name("scram-sha-256"), None);
        assert_eq!(Mechanism::from_name("PLAIN"), None);
    }

    // Filled from an independent Python computation; see fixed_vector_exchange.
    const PY_PROOF: &str =
        "EAykbhDbSIdK2NH1gxa6hYeuy//F2vYHhDoID4icsfM4En7tcnA3Z8d4tGEJYtryn0rPgJfK/+/jQRZPhFOnvg==";
    const PY_SERVER_SIG: &str =
        "yax/LDlXoMn1o/AvseJ8T8lP13ZwLqloWBF+Ha+KqzvGcg205ZoJQDqxr01QXLIFNyiqDLEITr05WbdTDPpW6w==";

    #[test]
    fn full_exchange_succeeds() {
        let lookup = lookup_alice("s3cret");
        let client = TestClient::new("n,,", "alice", "fyko+d2lbbFgONRv9qkxdawL", "");
        let (_, res, expected_v) = run(&client, "s3cret", &lookup);
        match res.expect("success") {
            ScramStep::Success {
                server_final,
                username,
                extensions,
            } => {
                assert_eq!(server_final, expected_v);
                assert_eq!(username, "alice");
                assert!(extensions.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn from_password_matches_independent_derivation() {
        for m in Mechanism::ALL {
            let c = ScramCredential::from_password(m, "pw", DEFAULT_ITERATIONS).expect("ok");
            assert_eq!(c.salt.len(), SALT_LEN);
            let salted = pbkdf2_by_hand(m, b"pw", &c.salt, DEFAULT_ITERATIONS);
            let ck = hmac_t(m, &salted, b"Client Key");
            assert_eq!(c.stored_key, hash_t(m, &ck));
            assert_eq!(c.server_key, hmac_t(m, &salted, b"Server Key"));
            assert_eq!(c.stored_key.len(), m.key_len());
            let other = ScramCredential::from_password(m, "pw", DEFAULT_ITERATIONS).expect("ok");
            assert_ne!(c.salt, other.salt, "salt must be random");
        }
    }

    #[test]
    fn iterations_bounds() {
        for m in Mechanism::ALL {
            for bad in [0, 1, MIN_ITERATIONS - 1, MAX_ITERATIONS + 1, u32::MAX] {
                assert_eq!(
                    ScramCredential::from_password(m, "x", bad).err(),
                    Some(ScramError::BadIterations(bad))
                );
            }
            assert!(ScramCredential::from_password(m, "x", MIN_ITERATIONS).is_ok());
        }
    }

    #[test]
    fn debug_hides_keys() {
        let c = cred("pw");
        let d = format!("{c:?}");
        assert!(!d.contains("stored_key") && !d.contains("server_key"));
        let s = format!("{:?}", ScramServer::new(SHA512, SECRET));
        assert!(!s.contains('7'), "secret bytes leaked: {s}");
    }

    #[test]
    fn wrong_password_fails() {
        let lookup = lookup_alice("right");
        let client = TestClient::new("n,,", "alice", "abcdef", "");
        let (_, res, _) = run(&client, "wrong", &lookup);
        let err = res.expect_err("must fail");
        assert_eq!(
            err,
            ScramError::AuthenticationFailed(AuthFailure::WrongPassword)
        );
        assert_eq!(err.reason(), "wrong_password");
    }

    #[test]
    fn unknown_user_looks_like_wrong_password() {
        // A real user with the default parameters, so the shapes must match.
        let real = ScramCredential::from_password(SHA512, "right", DEFAULT_ITERATIONS).expect("ok");
        let lookup = move |u: &str| (u == "alice").then(|| real.clone());
        let known = TestClient::new("n,,", "alice", "abcdef", "");
        let unknown = TestClient::new("n,,", "mallory", "abcdef", "");
        let (sf_known, err_known, _) = run(&known, "wrong", &lookup);
        let (sf_unknown, err_unknown, _) = run(&unknown, "whatever", &lookup);
        let (err_known, err_unknown) = (err_known.expect_err("k"), err_unknown.expect_err("u"));
        assert_eq!(
            err_known.client_message(SHA512),
            err_unknown.client_message(SHA512)
        );
        assert_eq!(
            err_known.client_message(SHA512),
            "Authentication failed during authentication due to invalid credentials with SASL \
             mechanism SCRAM-SHA-512"
        );
        assert_eq!(err_unknown.reason(), "unknown_user");

        // Same shape: nonce length, salt length, iteration count.
        let shape = |sf: &[u8]| {
            let s = std::str::from_utf8(sf).expect("utf8").to_string();
            let parts: Vec<String> = s.split(',').map(str::to_string).collect();
            let salt = STANDARD.decode(&parts[1][2..]).expect("b64");
            (parts[0].len(), salt.len(), parts[2].clone())
        };
        assert_eq!(shape(&sf_known).0, shape(&sf_unknown).0);
        assert_eq!(shape(&sf_unknown).1, SALT_LEN);
        assert_eq!(shape(&sf_unknown).2, format!("i={DEFAULT_ITERATIONS}"));
        assert_eq!(shape(&sf_known), shape(&sf_unknown));
    }

    #[test]
    fn unknown_user_salt_is_stable() {
        let none = |_: &str| None;
        let salt_of = |secret: [u8; 32]| {
            let mut s = ScramServer::new(SHA512, secret);
            let sf = challenge(s.step(b"n,,n=ghost,r=xyz", &none).expect("ok"));
            String::from_utf8(sf)
                .expect("utf8")
                .split(',')
                .nth(1)
                .map(str::to_string)
        };
        assert_eq!(salt_of(SECRET), salt_of(SECRET));
        assert_ne!(salt_of(SECRET), salt_of([8u8; 32]));
    }

    #[test]
    fn nonce_tampering_fails() {
        let lookup = lookup_alice("pw");
        let client = TestClient::new("n,,", "alice", "abcdef", "");
        let mut server = ScramServer::new(SHA512, SECRET);
        let sf = challenge(server.step(&client.first(), &lookup).expect("first"));
        let (cf, _) = client.finish(&sf, "pw");
        let tampered = String::from_utf8(cf)
            .expect("utf8")
            .replacen(",r=abcdef", ",r=abcdeg", 1);
        assert_eq!(
            server.step(tampered.as_bytes(), &lookup),
            Err(ScramError::NonceMismatch)
        );
        // Failed is terminal.
        assert_eq!(
            server.step(b"anything", &lookup),
            Err(ScramError::InvalidState("failed"))
        );
    }

    #[test]
    fn channel_binding_must_match_gs2_header() {
        let lookup = lookup_alice("pw");
        let client = TestClient::new("n,,", "alice", "abcdef", "");
        let mut server = ScramServer::new(SHA512, SECRET);
        let sf = challenge(server.step(&client.first(), &lookup).expect("first"));
        let (cf, _) = client.finish(&sf, "pw");
        let bad = String::from_utf8(cf)
            .expect("utf8")
            .replacen("c=biws", "c=eSws", 1);
        assert!(matches!(
            server.step(bad.as_bytes(), &lookup),
            Err(ScramError::ChannelBinding(_))
        ));
    }

    #[test]
    fn y_flag_and_matching_authzid_accepted() {
        let lookup = lookup_alice("pw");
        for gs2 in ["y,,", "n,a=alice,", "y,a=alice,"] {
            let client = TestClient::new(gs2, "alice", "abcdef", "");
            let (_, res, v) = run(&client, "pw", &lookup);
            match res {
                Ok(ScramStep::Success { server_final, .. }) => assert_eq!(server_final, v),
                other => panic!("{gs2}: {other:?}"),
            }
        }
    }

    #[test]
    fn saslname_escapes_in_user_and_authzid() {
        let c = cred("pw");
        let lookup = move |u: &str| (u == "a,b=c").then(|| c.clone());
        let client = TestClient::new("n,a=a=2Cb=3Dc,", "a,b=c", "abcdef", "");
        let (_, res, _) = run(&client, "pw", &lookup);
        assert!(matches!(res, Ok(ScramStep::Success { ref username, .. }) if username == "a,b=c"));
    }

    #[test]
    fn rejected_client_first_messages() {
        let lookup = lookup_alice("pw");
        let cases: &[(&[u8], &str)] = &[
            (b"p=tls-unique,,n=alice,r=abc", "channel_binding"),
            (b"n,a=bob,n=alice,r=abc", "authzid_mismatch"),
            (b"n,,m=foo,n=alice,r=abc", "mandatory_extension"),
            (b"n,,n=alice,r=abc,m=foo", "mandatory_extension"),
            (b"n,,n=,r=abc", "malformed_message"),
            (b"n,,n=al=2Xice,r=abc", "malformed_message"),
            (b"n,,n=al=ice,r=abc", "malformed_message"),
            (b"n,,n=al\x01ice,r=abc", "malformed_message"),
            (b"n,,n=\xff\xfe,r=abc", "malformed_message"),
            (b"n,,n=alice,r=ab\x7fc", "malformed_message"),
            (b"n,,n=alice,r=ab c", "malformed_message"),
            (b"n,,n=alice,r=", "malformed_message"),
            (b"n,,n=alice", "malformed_message"),
            (b"n,,r=abc,n=alice", "malformed_message"),
            (b"x,,n=alice,r=abc", "malformed_message"),
            (b"n,b=x,n=alice,r=abc", "malformed_message"),
            (b"n,,n=alice,r=abc,", "malformed_message"),
            (b"n,,n=alice,r=abc,k=v,k=w", "malformed_message"),
            (b"n,,n=alice,r=abc,1k=v", "malformed_message"),
            (b"", "malformed_message"),
        ];
        for (input, reason) in cases {
            let mut s = ScramServer::new(SHA512, SECRET);
            let err = s.step(input, &lookup).expect_err("must reject");
            assert_eq!(
                err.reason(),
                *reason,
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let mut s = ScramServer::new(SHA512, SECRET);
        let err = s.step(b"n,a=bob,n=alice,r=abc", &lookup).expect_err("x");
        assert_eq!(err.client_message(SHA512), KAFKA_AUTHZID_MISMATCH);
    }

    #[test]
    fn extensions_preserved_and_signed() {
        let lookup = lookup_alice("pw");
        let client = TestClient::new("n,,", "alice", "abcdef", ",tokenauth=true,zeta=1");
        let (_, res, v) = run(&client, "pw", &lookup);
        match res.expect("ok") {
            ScramStep::Success {
                server_final,
                extensions,
                ..
            } => {
                assert_eq!(server_final, v);
                assert_eq!(
                    extensions,
                    vec![
                        ("tokenauth".to_string(), "true".to_string()),
                        ("zeta".to_string(), "1".to_string())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn step_after_success_is_invalid() {
        let lookup = lookup_alice("pw");
        let client = TestClient::new("n,,", "alice", "abcdef", "");
        let mut server = ScramServer::new(SHA512, SECRET);
        let sf = challenge(server.step(&client.first(), &lookup).expect("first"));
        let (cf, _) = client.finish(&sf, "pw");
        assert!(server.step(&cf, &lookup).is_ok());
        assert!(server.is_complete());
        assert_eq!(
            server.step(&cf, &lookup),
            Err(ScramError::InvalidState("done"))
        );
        assert!(server.is_complete());
    }

    #[test]
    fn bad_proof_encodings() {
        let lookup = lookup_alice("pw");
        for proof in ["", "!!!", "AAAA", "biws,p=AAAA"] {
            let mut server = ScramServer::new(SHA512, SECRET);
            let sf = challenge(server.step(b"n,,n=alice,r=abc", &lookup).expect("first"));
            let r = std::str::from_utf8(&sf)
                .expect("u")
                .split(',')
                .next()
                .expect("r")
                .to_string();
            let cf = format!("c=biws,{r},p={proof}");
            assert_eq!(
                server.step(cf.as_bytes(), &lookup).map_err(|e| e.reason()),
                Err("malformed_message")
            );
        }
    }

    #[test]
    fn username_helper() {
        assert_eq!(
            parse_client_first_username(b"n,,n=a=2Cb,r=xyz").as_deref(),
            Some("a,b")
        );
        assert_eq!(parse_client_first_username(b"garbage"), None);
    }

    #[test]
    fn fingerprint_tracks_key() {
        assert_eq!(cred("a").fingerprint(), cred("a").fingerprint());
        assert_ne!(cred("a").fingerprint(), cred("b").fingerprint());
    }

    fn mutate(mut msg: Vec<u8>, ops: &[(u8, usize, u8)]) -> Vec<u8> {
        for &(op, pos, byte) in ops {
            let len = msg.len();
            match op % 4 {
                0 if len > 0 => msg[pos % len] = byte,
                1 => msg.insert(pos % (len + 1), byte),
                2 if len > 0 => {
                    msg.remove(pos % len);
                }
                3 if len > 0 => msg.truncate(pos % len),
                _ => {}
            }
        }
        msg
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn step_never_panics_on_random_bytes(
            a in proptest::collection::vec(any::<u8>(), 0..200),
            b in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let lookup = |_: &str| Some(cred("pw"));
            let mut s = ScramServer::new(SHA512, SECRET);
            let _ = s.step(&a, &lookup);
            let _ = s.step(&b, &lookup);
            let _ = s.step(&b, &lookup);
            let _ = parse_client_first_username(&a);
        }

        #[test]
        fn step_never_panics_on_mutated_messages(
            ops1 in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..6),
            ops2 in proptest::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 0..6),
            exts in "(,[a-z]{1,5}=[ -~]{0,4}){0,2}",
        ) {
            let c = cred("pw");
            let lookup = move |u: &str| (u == "alice").then(|| c.clone());
            let client = TestClient::new("n,,", "alice", "abcdef", &exts);
            let mut s = ScramServer::new(SHA512, SECRET);
            let first = mutate(client.first(), &ops1);
            if let Ok(ScramStep::Challenge(sf)) = s.step(&first, &lookup) {
                // Only a syntactically valid server-first can drive the client.
                if first == client.first() {
                    let (cf, _) = client.finish(&sf, "pw");
                    let cf2 = mutate(cf.clone(), &ops2);
                    let res = s.step(&cf2, &lookup);
                    // An untouched exchange must succeed; a mutated one must not
                    // succeed unless the mutation was a no-op.
                    if cf2 == cf {
                        let ok = matches!(res, Ok(ScramStep::Success { .. }));
                        prop_assert!(ok);
                    } else {
                        prop_assert!(res.is_err());
                    }
                } else {
                    let _ = s.step(&mutate(b"c=biws,r=abcdef,p=AAAA".to_vec(), &ops2), &lookup);
                }
            }
        }
    }
}
