//! The client side of SCRAM-SHA-512 (RFC 5802): the gateway's upstream
//! login, `portcullis group`, the bench and the tests all log in with it.
//! An explicit two-step state machine without I/O, so blocking and async
//! callers share it: `first` -> `respond(server-first)` ->
//! `verify(server-final)`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

type HmacSha512 = Hmac<Sha512>;

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

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 64] {
    let mut m = <HmacSha512 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
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

/// (salt, iterations, SaltedPassword).
type Salted = (Vec<u8>, u32, [u8; 64]);

impl SaltedPasswordCache {
    fn salted(&self, password: &str, salt: &[u8], iterations: u32) -> [u8; 64] {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((s, i, salted)) = slot.as_ref() {
            if s == salt && *i == iterations {
                return *salted;
            }
        }
        let salted = salt_password(password, salt, iterations);
        *slot = Some((salt.to_vec(), iterations, salted));
        salted
    }
}

fn salt_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut salted = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), salt, iterations, &mut salted);
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
    first_bare: String,
    nonce: String,
    password: String,
}

/// After `respond`: what the server's final message must prove.
pub struct AwaitingFinal {
    server_signature: [u8; 64],
}

impl ScramClient {
    pub fn new(user: &str, password: &str) -> ScramClient {
        let nonce: String = {
            let mut rng = rand::thread_rng();
            (0..32)
                .map(|_| rng.sample(rand::distributions::Alphanumeric) as char)
                .collect()
        };
        ScramClient {
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
        let salted = match cache {
            Some(c) => c.salted(&self.password, &sf.salt, sf.iterations),
            None => salt_password(&self.password, &sf.salt, sf.iterations),
        };
        // `parse` proved the message is UTF-8.
        let text = String::from_utf8_lossy(server_first);
        let client_key = hmac(&salted, &[b"Client Key"]);
        let stored_key: [u8; 64] = Sha512::digest(client_key).into();
        let without_proof = format!("c=biws,r={}", sf.nonce);
        let auth_message = format!("{},{text},{without_proof}", self.first_bare);
        let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature.iter())
            .map(|(a, b)| a ^ b)
            .collect();
        let server_key = hmac(&salted, &[b"Server Key"]);
        let server_signature = hmac(&server_key, &[auth_message.as_bytes()]);
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
        if v.len() == 64 && bool::from(v.ct_eq(&self.server_signature)) {
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
        let cred = ScramCredential::from_password(server_pw, 4096).unwrap();
        let lookup = move |_: &str| Some(cred.clone());
        let mut server = ScramServer::new([7u8; 32]);
        let client = ScramClient::new("svc", client_pw);
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
    }

    #[test]
    fn the_cache_serves_the_same_salt_and_is_replaced_by_a_new_one() {
        let cred = ScramCredential::from_password("pw", 4096).unwrap();
        let lookup = move |_: &str| Some(cred.clone());
        let cache = SaltedPasswordCache::default();
        for _ in 0..2 {
            let mut server = ScramServer::new([7u8; 32]);
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
        let salted = cache.salted("pw", b"other salt", 4096);
        assert_eq!(salted, salt_password("pw", b"other salt", 4096));
        assert_ne!(cache.0.lock().unwrap().as_ref().unwrap().0, first.0);
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
