//! PEM files read one way everywhere: the server's certificate and key,
//! the client CA, and the CA and client certificate the Kafka client
//! (gateway upstream, `portcullis group`) trusts or presents. Parsing is
//! rustls-pki-types' own; what this adds is failure reasons that never
//! quote the file (its `Display` shows a malformed line's bytes, and a key
//! file's bytes must not reach a log or a terminal).

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a PEM file did not parse, in words that name no byte of it.
pub fn reason(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a PEM section has no matching END line".to_string()
        }
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".to_string(),
        pem::Error::Base64Decode(_) => "a PEM section's body is not valid base64".to_string(),
        pem::Error::SectionTooLarge => "a PEM section is larger than 256 MB".to_string(),
        pem::Error::Io(io) => format!("read error: {io}"),
        pem::Error::NoItemsFound => "no PEM item of the expected kind".to_string(),
        // The enum is non-exhaustive; a future variant may carry file bytes.
        _ => "not a valid PEM file".to_string(),
    }
}

/// Every certificate in `pem`, in file order (other sections are skipped).
/// An empty list is not an error here: callers say what was missing.
pub fn certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| reason(&e))
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in `pem`, `None` when
/// the file holds none.
pub fn private_key(pem: &[u8]) -> Result<Option<PrivateKeyDer<'static>>, String> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(k) => Ok(Some(k)),
        Err(pem::Error::NoItemsFound) => Ok(None),
        Err(e) => Err(reason(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LWtleS1ieXRlcw";

    #[test]
    fn reasons_never_quote_the_file() {
        let cases: [(&str, String); 3] = [
            (
                "unterminated",
                format!("-----BEGIN PRIVATE KEY-----\n{SECRET}\n"),
            ),
            (
                "bad base64",
                format!("-----BEGIN PRIVATE KEY-----\n{SECRET}!!\n-----END PRIVATE KEY-----\n"),
            ),
            (
                "bad begin line",
                format!("-----BEGIN {SECRET}\n-----END PRIVATE KEY-----\n"),
            ),
        ];
        for (what, text) in cases {
            let e = private_key(text.as_bytes()).expect_err(what);
            assert!(!e.contains(SECRET) && !e.contains("99, 50"), "{what}: {e}");
            let e = certs(text.as_bytes());
            if let Err(e) = e {
                assert!(!e.contains(SECRET), "{what}: {e}");
            }
        }
    }

    #[test]
    fn no_key_is_none_and_garbage_is_no_items() {
        assert!(matches!(private_key(b"hello"), Ok(None)));
        assert!(certs(b"hello").unwrap().is_empty());
    }
}
