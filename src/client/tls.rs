//! The client's rustls configuration: trust one CA bundle, optionally
//! present a client certificate (mTLS).

use std::path::Path;
use std::sync::Arc;

use super::ClientError;

/// A TLS connector trusting the certificates in `ca_file` (PEM), and
/// presenting `client_auth` = (certificate chain, private key) PEM files
/// when given. Messages name the file and never quote it.
pub fn tls_connector(
    ca_file: &Path,
    client_auth: Option<(&Path, &Path)>,
) -> Result<tokio_rustls::TlsConnector, ClientError> {
    let bad = ClientError::Config;
    let pem = read(ca_file, "CA file")?;
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::tls::pem::certs(&pem).map_err(|r| bad(format!("{}: {r}", ca_file.display())))? {
        roots.add(c).map_err(|e| {
            bad(format!(
                "{}: not a usable CA certificate: {e}",
                ca_file.display()
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "{}: no certificate found in PEM file",
            ca_file.display()
        )));
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client_auth {
        Some((cert, key)) => {
            let chain = crate::tls::pem::certs(&read(cert, "certificate file")?)
                .map_err(|r| bad(format!("{}: {r}", cert.display())))?;
            if chain.is_empty() {
                return Err(bad(format!(
                    "{}: no certificate found in PEM file",
                    cert.display()
                )));
            }
            let k = crate::tls::pem::private_key(&read(key, "key file")?)
                .map_err(|r| bad(format!("{}: {r}", key.display())))?
                .ok_or_else(|| {
                    bad(format!(
                        "{}: no private key found in PEM file",
                        key.display()
                    ))
                })?;
            builder
                .with_client_auth_cert(chain, k)
                .map_err(|e| bad(format!("client certificate {}: {e}", cert.display())))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_and_never_quoted() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.crt");
        let e = tls_connector(&missing, None).err().unwrap().to_string();
        assert!(
            e.contains("cannot read CA file") && e.contains("nope.crt"),
            "{e}"
        );

        let empty = dir.path().join("empty.crt");
        std::fs::write(&empty, "just text\n").unwrap();
        let e = tls_connector(&empty, None).err().unwrap().to_string();
        assert!(
            e.contains("no certificate") && e.contains("empty.crt"),
            "{e}"
        );

        let broken = dir.path().join("broken.crt");
        std::fs::write(&broken, "-----BEGIN CERTIFICATE-----\nc2VjcmV0\n").unwrap();
        let e = tls_connector(&broken, None).err().unwrap().to_string();
        assert!(e.contains("broken.crt") && !e.contains("c2VjcmV0"), "{e}");

        crate::tls::init_certs(&dir.path().join("certs"), &[], &[], true).unwrap();
        let ca = dir.path().join("certs/ca.crt");
        assert!(tls_connector(&ca, None).is_ok());
        // A certificate given where the key belongs.
        let e = tls_connector(&ca, Some((&ca, &ca)))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no private key") && e.contains("ca.crt"), "{e}");
    }
}
