//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC
//! 7677): the gateway's upstream login, `portcullis group`, the bench and
//! the tests all log in with it. SCRAM-SHA-512 unless told otherwise.
//! An explicit two-step state machine without I/O, so blocking and async
//! callers share it: `first` -> `respond(server-first)` ->
//! `verify(server-final)`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

pub use crate::security::scram::Mechanism;

/// Iteration counts a server may ask for; beyond this a hostile upstream
/// could make every login burn seconds of CPU.
const MAX_ITERATIONS: u32 = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramClientError {
    #[error("malformed server message: {0}")]
    Malformed(&'static str),
    #[error("server nonce does not extend ours")]
    NonceMismatch,
    #[error("server asked for {0} iterations")]
    BadIterations(u32),
    #[error("server reported: {0}")]
    ServerError(String),
    #[error("server signature does not verify: not the server that holds our credential")]
    BadServerSignature,
}

/// The client computes its side on its own (not with the server's
/// helpers), generic over the MAC, so that a bug in one cannot hide in both.
fn hmac_with<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <M as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

fn hmac(mechanism: Mechanism, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha256 => hmac_with::<Hmac<Sha256>>(key, parts),
        Mechanism::ScramSha512 => hmac_with::<Hmac<Sha512>>(key, parts),
    }
}

fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha256 => Sha256::digest(data).to_vec(),
        Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
    }
}

/// RFC 5802 saslname: `=` and `,` are escaped.
fn saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The salted password (PBKDF2 output) of the last login, for the salt and
/// iteration count the server announced then. A long-lived client logging
/// in again and again (the bench's connect-rate figure, reconnecting
/// pools) skips PBKDF2 as a client library would; one cache serves one
/// credential only.
#[derive(Default)]
pub struct SaltedPasswordCache(std::sync::Mutex<Option<Salted>>);

/// (mechanism, salt, iterations, SaltedPassword).
type Salted = (Mechanism, Vec<u8>, u32, Vec<u8>);

impl SaltedPasswordCache {
    fn salted(
        &self,
        mechanism: Mechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((m, s, i, salted)) = slot.as_ref() {
            if *m == mechanism && s == salt && *i == iterations {
                return salted.clone();
            }
        }
        let salted = salt_password(mechanism, password, salt, iterations);
        *slot = Some((mechanism, salt.to_vec(), iterations, salted.clone()));
        salted
    }
}

fn salt_password(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
    let mut salted = vec![0u8; mechanism.key_len()];
    match mechanism {
        Mechanism::ScramSha256 => {
            pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted)
        }
        Mechanism::ScramSha512 => {
            pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut salted)
        }
    }
    salted
}

/// What a server-first-message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFirst {
    /// The combined nonce (ours followed by the server's).
    pub nonce: String,
    pub salt: Vec<u8>,
    pub iterations: u32,
}

impl ServerFirst {
    /// Parses server-first-message; `e=` (a server error) is an error.
    pub fn parse(server_first: &[u8]) -> Result<ServerFirst, ScramClientError> {
        let text = std::str::from_utf8(server_first)
            .map_err(|_| ScramClientError::Malformed("server-first is not UTF-8"))?;
        let (mut rn, mut salt, mut iters) = (None, None, None);
        for part in text.split(',') {
            if let Some(v) = part.strip_prefix("r=") {
                rn = Some(v);
            } else if let Some(v) = part.strip_prefix("s=") {
                salt = Some(
                    STANDARD
                        .decode(v)
                        .map_err(|_| ScramClientError::Malformed("salt is not base64"))?,
                );
            } else if let Some(v) = part.strip_prefix("i=") {
                iters = Some(
                    v.parse::<u32>()
                        .map_err(|_| ScramClientError::Malformed("iteration count"))?,
                );
            } else if let Some(v) = part.strip_prefix("e=") {
                return Err(ScramClientError::ServerError(v.to_string()));
            }
        }
        Ok(ServerFirst {
            nonce: rn
                .ok_or(ScramClientError::Malformed("no nonce"))?
                .to_string(),
            salt: salt.ok_or(ScramClientError::Malformed("no salt"))?,
            iterations: iters.ok_or(ScramClientError::Malformed("no iteration count"))?,
        })
    }
}

pub struct ScramClient {
    mechanism: Mechanism,
    first_bare: String,
    nonce: String,
    password: String,
}

/// After `respond`: what the server's final message must prove.
pub struct AwaitingFinal {
    server_signature: Vec<u8>,
}

impl ScramClient {
    /// A SCRAM-SHA-512 login.
    pub fn new(user: &str, password: &str) -> ScramClient {
        Self::with_mechanism(Mechanism::ScramSha512, user, password)
    }

    pub fn with_mechanism(mechanism: Mechanism, user: &str, password: &str) -> ScramClient {
        let nonce: String = {
            let mut rng = rand::thread_rng();
            (0..32)
                .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
                .collect()
        };
        ScramClient {
            mechanism,
            first_bare: format!("n={},r={nonce}", saslname(user)),
            nonce,
            password: password.to_string(),
        }
    }

    /// client-first-message.
    pub fn first(&self) -> Vec<u8> {
        format!("n,,{}", self.first_bare).into_bytes()
    }

    /// client-final-message for the server-first-message.
    pub fn respond(
        self,
        server_first: &[u8],
    ) -> Result<(Vec<u8>, AwaitingFinal), ScramClientError> {
        self.respond_cached(server_first, None)
    }

    /// `respond`, taking the salted password from `cache` when the server
    /// announced the same salt and iteration count as last time.
    pub fn respond_cached(
        self,
        server_first: &[u8],
        cache: Option<&SaltedPasswordCache>,
    ) -> Result<(Vec<u8>, AwaitingFinal), ScramClientError> {
        let sf = ServerFirst::parse(server_first)?;
        if !sf.nonce.starts_with(&self.nonce) || sf.nonce.len() == self.nonce.len() {
            return Err(ScramClientError::NonceMismatch);
        }
        if !(1..=MAX_ITERATIONS).contains(&sf.iterations) {
            return Err(ScramClientError::BadIterations(sf.iterations));
        }
        let m = self.mechanism;
        let salted = match cache {
            Some(c) => c.salted(m, &self.password, &sf.salt, sf.iterations),
            None => salt_password(m, &self.password, &sf.salt, sf.iterations),
        };
        // `parse` proved the message is UTF-8.
        let text = String::from_utf8_lossy(server_first);
        let client_key = hmac(m, &salted, &[b"Client Key"]);
        let stored_key = hash(m, &client_key);
        let without_proof = format!("c=biws,r={}", sf.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = hmac(m, &stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(m, &salted, &[b"Server Key"]);
        let server_signature = hmac(m, &server_key, &[auth_message.as_bytes()]);
        let msg = format!("{without_proof},p={}", STANDARD.encode(proof));
        Ok((msg.into_bytes(), AwaitingFinal { server_signature }))
    }
}

impl AwaitingFinal {
    /// Checks server-final-message: the server proves it knows our key.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramClientError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| ScramClientError::Malformed("server-final is not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(ScramClientError::ServerError(e.to_string()));
        }
        let v = text
            .split(',')
            .find_map(|p| p.strip_prefix("v="))
            .ok_or(ScramClientError::Malformed("no server signature"))?;
        let v = STANDARD
            .decode(v)
            .map_err(|_| ScramClientError::Malformed("server signature is not base64"))?;
        if v.len() == self.server_signature.len() && bool::from(v.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(ScramClientError::BadServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::{ScramCredential, ScramServer, ScramStep};

    fn run(client_pw: &str, server_pw: &str) -> Result<(), String> {
        run_with(Mechanism::ScramSha512, client_pw, server_pw)
    }

    fn run_with(m: Mechanism, client_pw: &str, server_pw: &str) -> Result<(), String> {
        let cred = ScramCredential::from_password(m, server_pw, 4096).unwrap();
        let lookup = move |_: &str| Some(cred.clone());
        let mut server = ScramServer::new(m, [7u8; 32]);
        let client = ScramClient::with_mechanism(m, "svc", client_pw);
        let Ok(ScramStep::Challenge(server_first)) = server.step(&client.first(), &lookup) else {
            return Err("no server-first".into());
        };
        let (fin, awaiting) = client.respond(&server_first).map_err(|e| e.to_string())?;
        match server.step(&fin, &lookup) {
            Ok(ScramStep::Success { server_final, .. }) => {
                awaiting.verify(&server_final).map_err(|e| e.to_string())
            }
            Ok(_) => Err("unexpected step".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn logs_in_against_our_server_and_verifies_it() {
        assert_eq!(run("pw", "pw"), Ok(()));
        assert!(run("wrong", "pw").is_err());
        assert_eq!(run_with(Mechanism::ScramSha256, "pw", "pw"), Ok(()));
        assert!(run_with(Mechanism::ScramSha256, "wrong", "pw").is_err());
    }

    #[test]
    fn a_client_of_one_mechanism_fails_against_the_other() {
        let cred = ScramCredential::from_password(Mechanism::ScramSha512, "pw", 4096).unwrap();
        let lookup = move |_: &str| Some(cred.clone());
        let mut server = ScramServer::new(Mechanism::ScramSha256, [7u8; 32]);
        let client = ScramClient::with_mechanism(Mechanism::ScramSha256, "svc", "pw");
        let Ok(ScramStep::Challenge(sf)) = server.step(&client.first(), &lookup) else {
            panic!("no server-first");
        };
        let (fin, _) = client.respond(&sf).unwrap();
        assert!(server.step(&fin, &lookup).is_err());
    }

    #[test]
    fn the_cache_serves_the_same_salt_and_is_replaced_by_a_new_one() {
        let cred = ScramCredential::from_password(Mechanism::ScramSha512, "pw", 4096).unwrap();
        let lookup = move |_: &str| Some(cred.clone());
        let cache = SaltedPasswordCache::default();
        for _ in 0..2 {
            let mut server = ScramServer::new(Mechanism::ScramSha512, [7u8; 32]);
            let client = ScramClient::new("svc", "pw");
            let Ok(ScramStep::Challenge(sf)) = server.step(&client.first(), &lookup) else {
                panic!("no server-first");
            };
            let (fin, awaiting) = client.respond_cached(&sf, Some(&cache)).unwrap();
            let Ok(ScramStep::Success { server_final, .. }) = server.step(&fin, &lookup) else {
                panic!("cached login refused");
            };
            awaiting.verify(&server_final).unwrap();
        }
        let first = cache.0.lock().unwrap().clone().unwrap();
        // Another salt: derived afresh, not the stale entry.
        let m = Mechanism::ScramSha512;
        let salted = cache.salted(m, "pw", b"other salt", 4096);
        assert_eq!(salted, salt_password(m, "pw", b"other salt", 4096));
        assert_ne!(cache.0.lock().unwrap().as_ref().unwrap().1, first.1);
        // Same salt, other mechanism: not the SHA-512 entry either.
        let sha256 = cache.salted(Mechanism::ScramSha256, "pw", b"other salt", 4096);
        assert_eq!(sha256.len(), 32);
    }

    #[test]
    fn refuses_a_foreign_nonce_and_silly_iterations() {
        let c = ScramClient::new("svc", "pw");
        assert_eq!(
            c.respond(b"r=other,s=AAAA,i=4096").err(),
            Some(ScramClientError::NonceMismatch)
        );
        let c = ScramClient::new("svc", "pw");
        let nonce = c.nonce.clone();
        let msg = format!("r={nonce}x,s=AAAA,i=100000000");
        assert_eq!(
            c.respond(msg.as_bytes()).err(),
            Some(ScramClientError::BadIterations(100_000_000))
        );
        let c = ScramClient::new("svc", "pw");
        assert!(c.respond(b"\xff\xfe").is_err());
    }

    #[test]
    fn refuses_a_server_that_does_not_know_the_key() {
        let c = ScramClient::new("svc", "pw");
        let nonce = c.nonce.clone();
        let msg = format!("r={nonce}srv,s=QUJDRA==,i=4096");
        let (_, awaiting) = c.respond(msg.as_bytes()).unwrap();
        let forged = format!("v={}", STANDARD.encode([0u8; 64]));
        assert_eq!(
            awaiting.verify(forged.as_bytes()).err(),
            Some(ScramClientError::BadServerSignature)
        );
    }
}
