//! Hot-reloadable rustls server configuration.
//!
//! [`TlsAcceptorHandle`] keeps the current `ServerConfig` in an `ArcSwap`.
//! Each accepted connection takes a snapshot via [`TlsAcceptorHandle::server_config`],
//! so swapping the config affects only handshakes that start afterwards;
//! established sessions keep the keys they negotiated.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{RootCertStore, ServerConfig};
use serde::Deserialize;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::time::ASN1Time;

use super::principal::{PrincipalMapper, PrincipalSource};
use super::TlsError;
use crate::util::hot_reload::{self, Reloadable, Reloaded, Version};

/// Client certificate policy.
#[derive(Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Never ask for a client certificate.
    #[default]
    None,
    /// Ask; verify it against `client_ca` if sent; allow clients without one.
    Requested,
    /// Require a certificate that chains to `client_ca`.
    Required,
}

fn default_mapping_rules() -> Vec<String> {
    vec!["DEFAULT".to_string()]
}

/// The `tls:` section of the broker config.
#[derive(Deserialize, Clone, Debug)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, end-entity first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// PEM bundle of CAs trusted for client certificates.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Kafka `ssl.principal.mapping.rules`, one rule per element.
    #[serde(default = "default_mapping_rules")]
    pub principal_mapping_rules: Vec<String>,
    #[serde(default)]
    pub principal_from: PrincipalSource,
}

impl TlsSettings {
    /// Server-auth-only settings with default principal mapping.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_auth: ClientAuth::None,
            client_ca: None,
            principal_mapping_rules: default_mapping_rules(),
            principal_from: PrincipalSource::Subject,
        }
    }

    /// Makes relative paths relative to `base` (the config file's directory)
    /// rather than to whatever the process working directory happens to be.
    pub fn resolve_relative(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.cert);
        fix(&mut self.key);
        if let Some(ca) = self.client_ca.as_mut() {
            fix(ca);
        }
    }

    /// The files a reload reads; the watcher watches exactly these.
    fn watched_files(&self) -> Vec<PathBuf> {
        let mut files = vec![self.cert.clone(), self.key.clone()];
        if self.client_auth != ClientAuth::None {
            files.extend(self.client_ca.clone());
        }
        files
    }
}

/// Shared, reloadable TLS acceptor state. Cheap to query per connection.
pub struct TlsAcceptorHandle {
    settings: TlsSettings,
    provider: Arc<CryptoProvider>,
    config: ArcSwap<ServerConfig>,
    mapper: PrincipalMapper,
    /// When the server certificate in force expires (Unix seconds), for the
    /// metrics; `i64::MIN` when the file holds no certificate.
    not_after: std::sync::atomic::AtomicI64,
    /// The files' content in force (one hash over all of them). Held while
    /// a reload reads and builds, so two reloads never interleave.
    in_force: Mutex<Version>,
}

impl std::fmt::Debug for TlsAcceptorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsAcceptorHandle")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptorHandle {
    /// Validates the settings, loads the files and builds the first config.
    pub fn load(settings: &TlsSettings) -> Result<Arc<Self>, TlsError> {
        let provider = super::provider();
        let mapper =
            PrincipalMapper::new(&settings.principal_mapping_rules, settings.principal_from)?;
        let sha256 = hash_files(&settings.watched_files())?;
        let (config, not_after) = build_server_config(settings, &provider)?;
        Ok(Arc::new(Self {
            settings: settings.clone(),
            provider,
            config: ArcSwap::from_pointee(config),
            mapper,
            not_after: std::sync::atomic::AtomicI64::new(not_after.unwrap_or(i64::MIN)),
            in_force: Mutex::new(Version {
                sha256,
                generation: 1,
            }),
        }))
    }

    /// The current config snapshot. Taken once per connection, so each
    /// handshake uses the latest certificate.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.load_full()
    }

    /// When the server certificate in force expires, in Unix seconds.
    pub fn not_after(&self) -> Option<i64> {
        Some(self.not_after.load(std::sync::atomic::Ordering::Relaxed)).filter(|t| *t != i64::MIN)
    }

    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }

    pub fn principal_mapper(&self) -> &PrincipalMapper {
        &self.mapper
    }

    /// The mapped principal name (without `User:`) of a finished handshake,
    /// or `None` if the client sent no certificate.
    pub fn peer_principal(&self, conn: &rustls::CommonState) -> Result<Option<String>, TlsError> {
        self.mapper.map_peer(conn.peer_certificates())
    }

    /// Re-reads cert, key and client CA. On error the previous config stays
    /// in use and the error is returned.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.reload_inner(true).map(|_| ())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Version> {
        self.in_force.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `force`: rebuild even if the content is the content in force.
    fn reload_inner(&self, force: bool) -> Result<Reloaded, TlsError> {
        let mut in_force = self.lock();
        let sha256 = hash_files(&self.settings.watched_files())?;
        if !force && sha256 == in_force.sha256 {
            return Ok(Reloaded::Unchanged);
        }
        let (config, not_after) = build_server_config(&self.settings, &self.provider)?;
        self.config.store(Arc::new(config));
        self.not_after.store(
            not_after.unwrap_or(i64::MIN),
            std::sync::atomic::Ordering::Relaxed,
        );
        *in_force = Version {
            sha256,
            generation: in_force.generation + 1,
        };
        tracing::info!(cert = %self.settings.cert.display(), generation = in_force.generation,
            "TLS configuration reloaded");
        Ok(Reloaded::Applied { entries: 1 })
    }

    /// Keeps the config in step with the cert, key and client CA files (see
    /// [`crate::util::hot_reload`]): notify on their parent directories
    /// (catches atomic renames) plus metadata polling; a failed reload keeps
    /// the previous certificate and is retried until the files on disk are
    /// in force. Runs until the returned [`TlsWatcher`] is dropped.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        reporter: Option<hot_reload::Reporter>,
    ) -> Result<TlsWatcher, TlsError> {
        self.spawn_watcher_with(reporter, true)
    }

    /// `use_notify: false` exercises the polling fallback in tests.
    fn spawn_watcher_with(
        self: &Arc<Self>,
        reporter: Option<hot_reload::Reporter>,
        use_notify: bool,
    ) -> Result<TlsWatcher, TlsError> {
        let handle = hot_reload::spawn(self, reporter, use_notify)
            .map_err(|e| TlsError::Watch(e.to_string()))?;
        Ok(TlsWatcher { _handle: handle })
    }
}

impl Reloadable for TlsAcceptorHandle {
    type Error = TlsError;
    fn what(&self) -> &'static str {
        "TLS files"
    }
    fn files(&self) -> Vec<PathBuf> {
        self.settings.watched_files()
    }
    /// None: certificates often live on read-only mounts (Kubernetes
    /// secrets), and no CLI of ours writes them.
    fn ack_path(&self) -> Option<PathBuf> {
        None
    }
    fn version(&self) -> Version {
        *self.lock()
    }
    fn reload(&self) -> Result<Reloaded, TlsError> {
        self.reload_inner(false)
    }
}

/// One hash over the files a reload reads. An unreadable file counts as
/// empty here: the build that follows reports it with its setting's name
/// (and an unreadable version never equals the one in force).
fn hash_files(files: &[PathBuf]) -> Result<[u8; 32], TlsError> {
    let parts: Vec<Vec<u8>> = files
        .iter()
        .map(|f| fs::read(f).unwrap_or_default())
        .collect();
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    Ok(hot_reload::sha256_of_parts(&refs))
}

/// Keeps the reload loop alive; dropping it stops watching.
pub struct TlsWatcher {
    _handle: hot_reload::ReloadHandle,
}

/// Reads and validates everything, then assembles the rustls config.
fn build_server_config(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<(ServerConfig, Option<i64>), TlsError> {
    // Config consistency first, so the error does not depend on file state.
    let verifier = client_verifier(settings, provider)?;
    let certs = read_certs(&settings.cert, "cert")?;
    let key = read_key(&settings.key, "key")?;
    let not_after = match certs.first() {
        Some(end_entity) => Some(check_validity(end_entity, &settings.cert)?),
        None => None,
    };
    let certified = certified_key(certs, key, settings, provider)?;

    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(format!("TLS protocol versions: {e}")))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    // Kafka clients do not negotiate ALPN, so none is offered.
    let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.ignore_client_order = true;
    Ok((config, not_after))
}

fn read_file(path: &Path, setting: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => TlsError::MissingFile {
            setting,
            path: path.to_path_buf(),
        },
        _ => TlsError::Io {
            setting,
            path: path.to_path_buf(),
            source,
        },
    })
}

fn parse_pem_certs(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(path, setting)?;
    super::pem::certs(&pem).map_err(|reason| TlsError::BadPem {
        setting,
        path: path.to_path_buf(),
        reason,
    })
}

/// Non-empty chain, end-entity first.
fn read_certs(
    path: &Path,
    setting: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = parse_pem_certs(path, setting)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            setting,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path, setting: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read_file(path, setting)?;
    let bad_pem = |reason: String| TlsError::BadPem {
        setting,
        path: path.to_path_buf(),
        reason,
    };
    super::pem::private_key(&pem)
        .map_err(bad_pem)?
        .ok_or_else(|| TlsError::NoPrivateKey {
            setting,
            path: path.to_path_buf(),
        })
}

/// Rejects an expired or not-yet-valid server certificate up front: rustls
/// would happily serve it and every client would fail with a vaguer error.
/// Returns when it expires (Unix seconds).
fn check_validity(cert: &CertificateDer<'_>, path: &Path) -> Result<i64, TlsError> {
    let (_, parsed) = X509Certificate::from_der(cert).map_err(|e| TlsError::BadCertificate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let now = ASN1Time::now();
    let validity = parsed.validity();
    if now.timestamp() > validity.not_after.timestamp() {
        return Err(TlsError::CertExpired {
            path: path.to_path_buf(),
            not_after: validity.not_after.to_string(),
            now: now.to_string(),
        });
    }
    if now.timestamp() < validity.not_before.timestamp() {
        return Err(TlsError::CertNotYetValid {
            path: path.to_path_buf(),
            not_before: validity.not_before.to_string(),
            now: now.to_string(),
        });
    }
    Ok(validity.not_after.timestamp())
}

/// `CertifiedKey::from_der` parses the key with the ring provider and
/// compares its public key with the certificate's SPKI.
fn certified_key(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    settings: &TlsSettings,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    CertifiedKey::from_der(certs, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch {
            cert: settings.cert.clone(),
            key: settings.key.clone(),
        },
        other => TlsError::BadPem {
            setting: "key",
            path: settings.key.clone(),
            reason: format!("unusable private key: {other}"),
        },
    })
}

fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    if settings.client_auth == ClientAuth::None {
        if settings.client_ca.is_some() {
            tracing::warn!("tls.client_ca is set but client_auth is none; it is ignored");
        }
        return Ok(None);
    }
    let Some(path) = settings.client_ca.as_deref() else {
        return Err(TlsError::Config(format!(
            "client_auth: {} requires client_ca (PEM file of CAs that sign client certificates)",
            match settings.client_auth {
                ClientAuth::Requested => "requested",
                _ => "required",
            }
        )));
    };
    let roots = client_roots(path)?;
    let mut builder = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    if settings.client_auth == ClientAuth::Requested {
        builder = builder.allow_unauthenticated();
    }
    let verifier = builder.build().map_err(|e| TlsError::BadClientCa {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Some(verifier))
}

fn client_roots(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let bad = |reason: String| TlsError::BadClientCa {
        path: path.to_path_buf(),
        reason,
    };
    let certs = parse_pem_certs(path, "client_ca").map_err(|e| match e {
        TlsError::BadPem { reason, .. } => bad(reason),
        other => other,
    })?;
    if certs.is_empty() {
        return Err(bad("no certificate found in PEM file".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    Ok(Arc::new(roots))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::{client_paths, init_certs, CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY};
    use std::future::Future;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio_rustls::client::TlsStream;

    type Outcome = Result<Option<String>, String>;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Every async test gets a hard deadline instead of hanging CI.
    async fn within<F: Future>(fut: F) -> F::Output {
        tokio::time::timeout(Duration::from_secs(60), fut)
            .await
            .expect("test timed out")
    }

    fn pki(dir: &Path) {
        init_certs(dir, &[], &names(&["alice"]), false).unwrap();
    }

    fn settings(dir: &Path, auth: ClientAuth) -> TlsSettings {
        let mut s = TlsSettings::new(dir.join(SERVER_CERT), dir.join(SERVER_KEY));
        s.client_auth = auth;
        if auth != ClientAuth::None {
            s.client_ca = Some(dir.join(CA_CERT));
        }
        s
    }

    fn client_config(
        ca: &Path,
        client_pki: Option<(&Path, &str)>,
        version: &'static rustls::SupportedProtocolVersion,
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = RootCertStore::empty();
        for c in read_certs(ca, "test").unwrap() {
            roots.add(c).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots);
        let config = match client_pki {
            None => builder.with_no_client_auth(),
            Some((dir, name)) => {
                let (crt, key) = client_paths(dir, name);
                let chain = read_certs(&crt, "test").unwrap();
                builder
                    .with_client_auth_cert(chain, read_key(&key, "test").unwrap())
                    .unwrap()
            }
        };
        Arc::new(config)
    }

    /// Accept loop using a fresh acceptor per connection (as the broker
    /// will); reports each handshake's mapped principal, then echoes.
    async fn spawn_server(
        handle: Arc<TlsAcceptorHandle>,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Outcome>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (handle, tx) = (handle.clone(), tx.clone());
                tokio::spawn(async move {
                    match crate::tls::ServerTlsStream::accept(tcp, handle.server_config()).await {
                        Err(e) => {
                            let _ = tx.send(Err(e.to_string()));
                        }
                        Ok(mut tls) => {
                            let principal = handle.peer_principal(tls.state());
                            let _ = tx.send(principal.map_err(|e| e.to_string()));
                            let mut buf = [0u8; 1024];
                            while let Ok(n @ 1..) = tls.read(&mut buf).await {
                                if tls.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        (addr, rx)
    }

    async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
    ) -> io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
    }

    async fn echo(stream: &mut TlsStream<TcpStream>, msg: &[u8]) -> io::Result<()> {
        stream.write_all(msg).await?;
        let mut back = vec![0u8; msg.len()];
        stream.read_exact(&mut back).await?;
        assert_eq!(back, msg);
        Ok(())
    }

    fn serial_of(der: &[u8]) -> Vec<u8> {
        let (_, cert) = X509Certificate::from_der(der).unwrap();
        cert.raw_serial().to_vec()
    }

    fn peer_serial(stream: &TlsStream<TcpStream>) -> Vec<u8> {
        let certs = stream.get_ref().1.peer_certificates().unwrap();
        serial_of(&certs[0])
    }

    fn file_serial(path: &Path) -> Vec<u8> {
        serial_of(&read_certs(path, "test").unwrap()[0])
    }

    #[tokio::test]
    async fn handshake_tls13_and_tls12() {
        within(async {
            let tmp = tempfile::tempdir().unwrap();
            pki(tmp.path());
            let handle = TlsAcceptorHandle::load(&settings(tmp.path(), ClientAuth::None)).unwrap();
            let (addr, mut outcomes) = spawn_server(handle).await;
            let ca = tmp.path().join(CA_CERT);
            for (version, expected) in [
                (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
                (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
            ] {
                let mut s = connect(addr, client_config(&ca, None, version))
                    .await
                    .unwrap();
                assert_eq!(s.get_ref().1.protocol_version(), Some(expected));
                assert_eq!(s.get_ref().1.alpn_protocol(), None);
                echo(&mut s, b"ping").await.unwrap();
                assert_eq!(outcomes.recv().await.unwrap(), Ok(None));
            }
        })
        .await;
    }

    #[tokio::test]
    async fn client_auth_required() {
        within(async {
            let tmp = tempfile::tempdir().unwrap();
            pki(tmp.path());
            let ca = tmp.path().join(CA_CERT);
            let mut s = settings(tmp.path(), ClientAuth::Required);
            s.principal_mapping_rules = names(&["RULE:^CN=([^,]+)(,.*)?$/$1/"]);
            let (addr, mut outcomes) = spawn_server(TlsAcceptorHandle::load(&s).unwrap()).await;

            for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
                // No certificate: with TLS 1.3 the client-side handshake may
                // finish before the server's verdict, so check the data path too.
                let cfg = client_config(&ca, None, version);
                if let Ok(mut stream) = connect(addr, cfg).await {
                    assert!(echo(&mut stream, b"x").await.is_err());
                }
                let outcome = outcomes.recv().await.unwrap();
                assert!(outcome.is_err(), "{version:?}: {outcome:?}");
            }

            // A certificate from an unrelated CA is rejected as well.
            let other = tempfile::tempdir().unwrap();
            pki(other.path());
            let cfg = client_config(&ca, Some((other.path(), "alice")), &rustls::version::TLS13);
            if let Ok(mut stream) = connect(addr, cfg).await {
                assert!(echo(&mut stream, b"x").await.is_err());
            }
            assert!(outcomes.recv().await.unwrap().is_err());

            let cfg = client_config(&ca, Some((tmp.path(), "alice")), &rustls::version::TLS13);
            let mut stream = connect(addr, cfg).await.unwrap();
            echo(&mut stream, b"hello").await.unwrap();
            assert_eq!(outcomes.recv().await.unwrap(), Ok(Some("alice".into())));

            // Same client certificate, principal taken from the SPIFFE URI SAN.
            let mut s = settings(tmp.path(), ClientAuth::Required);
            s.principal_from = PrincipalSource::SanUri;
            s.principal_mapping_rules = names(&[r"RULE:^spiffe:\/\/portcullis\/user\/(.*)$/$1/"]);
            let (addr, mut outcomes) = spawn_server(TlsAcceptorHandle::load(&s).unwrap()).await;
            let cfg = client_config(&ca, Some((tmp.path(), "alice")), &rustls::version::TLS12);
            let mut stream = connect(addr, cfg).await.unwrap();
            echo(&mut stream, b"hello").await.unwrap();
            assert_eq!(outcomes.recv().await.unwrap(), Ok(Some("alice".into())));
        })
        .await;
    }

    #[tokio::test]
    async fn client_auth_requested_allows_anonymous() {
        within(async {
            let tmp = tempfile::tempdir().unwrap();
            pki(tmp.path());
            let ca = tmp.path().join(CA_CERT);
            let handle =
                TlsAcceptorHandle::load(&settings(tmp.path(), ClientAuth::Requested)).unwrap();
            let (addr, mut outcomes) = spawn_server(handle).await;

            let mut s = connect(addr, client_config(&ca, None, &rustls::version::TLS13))
                .await
                .unwrap();
            echo(&mut s, b"anon").await.unwrap();
            assert_eq!(outcomes.recv().await.unwrap(), Ok(None));

            let cfg = client_config(&ca, Some((tmp.path(), "alice")), &rustls::version::TLS13);
            let mut s = connect(addr, cfg).await.unwrap();
            echo(&mut s, b"alice").await.unwrap();
            // DEFAULT rule: the full DN.
            assert_eq!(outcomes.recv().await.unwrap(), Ok(Some("CN=alice".into())));
        })
        .await;
    }

    #[test]
    fn client_auth_needs_client_ca() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        for auth in [ClientAuth::Requested, ClientAuth::Required] {
            let mut s = settings(tmp.path(), auth);
            s.client_ca = None;
            let err = TlsAcceptorHandle::load(&s).unwrap_err();
            assert!(matches!(err, TlsError::Config(_)), "{err}");
            assert!(err.to_string().contains("client_ca"), "{err}");
        }
    }

    #[test]
    fn bad_client_ca() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        let mut s = settings(tmp.path(), ClientAuth::Required);
        let bogus = tmp.path().join("bogus-ca.pem");
        for content in [
            "not pem at all".as_bytes().to_vec(),
            fs::read(tmp.path().join(CA_KEY)).unwrap(),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
        ] {
            fs::write(&bogus, content).unwrap();
            s.client_ca = Some(bogus.clone());
            let err = TlsAcceptorHandle::load(&s).unwrap_err();
            assert!(matches!(err, TlsError::BadClientCa { .. }), "{err}");
            assert!(err.to_string().contains("bogus-ca.pem"), "{err}");
        }
        s.client_ca = Some(tmp.path().join("nope.pem"));
        let err = TlsAcceptorHandle::load(&s).unwrap_err().to_string();
        assert!(
            err.contains("client_ca") && err.contains("nope.pem"),
            "{err}"
        );
    }

    #[test]
    fn key_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        let mut s = settings(tmp.path(), ClientAuth::None);
        s.key = client_paths(tmp.path(), "alice").1;
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("client-alice.key") && msg.contains("server.crt"),
            "{msg}"
        );
    }

    #[test]
    fn missing_file_names_path_and_setting() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        let mut s = settings(tmp.path(), ClientAuth::None);
        s.cert = tmp.path().join("does-not-exist.crt");
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        assert!(matches!(
            err,
            TlsError::MissingFile {
                setting: "cert",
                ..
            }
        ));
        assert!(err.to_string().contains("does-not-exist.crt"), "{err}");

        let mut s = settings(tmp.path(), ClientAuth::None);
        s.key = tmp.path().join("gone.key");
        let err = TlsAcceptorHandle::load(&s).unwrap_err().to_string();
        assert!(err.contains("`key`") && err.contains("gone.key"), "{err}");
    }

    #[test]
    fn pem_without_cert_or_key() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        // Swapped files: the cert file holds only a key and vice versa.
        let mut s = settings(tmp.path(), ClientAuth::None);
        s.cert = tmp.path().join(SERVER_KEY);
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        let mut s = settings(tmp.path(), ClientAuth::None);
        s.key = tmp.path().join(SERVER_CERT);
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err}");
        assert!(err.to_string().contains("no private key"), "{err}");
    }

    fn write_self_signed(
        dir: &Path,
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> TlsSettings {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key).unwrap();
        let (crt_path, key_path) = (dir.join("t.crt"), dir.join("t.key"));
        fs::write(&crt_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        TlsSettings::new(crt_path, key_path)
    }

    #[test]
    fn expired_and_not_yet_valid_certs_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let day = time::Duration::days(1);
        let s = write_self_signed(tmp.path(), now - day * 30, now - day);
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, TlsError::CertExpired { .. }), "{msg}");
        assert!(
            msg.contains("expired") && msg.contains("notAfter="),
            "{msg}"
        );
        assert!(msg.contains(&(now - day).year().to_string()), "{msg}");

        let s = write_self_signed(tmp.path(), now + day, now + day * 30);
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        assert!(matches!(err, TlsError::CertNotYetValid { .. }), "{err}");
    }

    #[test]
    fn bad_mapping_rule_fails_load() {
        let tmp = tempfile::tempdir().unwrap();
        pki(tmp.path());
        let mut s = settings(tmp.path(), ClientAuth::Required);
        s.principal_mapping_rules = names(&["RULE:^CN=(.*$/$1/"]);
        let err = TlsAcceptorHandle::load(&s).unwrap_err();
        assert!(matches!(err, TlsError::BadMappingRule { .. }), "{err}");
    }

    #[test]
    fn settings_deserialize_and_resolve() {
        let yaml = "cert: certs/server.crt\nkey: /abs/server.key\nclient_auth: required\n\
                    client_ca: certs/ca.crt\nprincipal_from: san_uri\n";
        let mut s: TlsSettings = serde_yaml_ng::from_str(yaml).unwrap();
        assert_eq!(s.client_auth, ClientAuth::Required);
        assert_eq!(s.principal_from, PrincipalSource::SanUri);
        assert_eq!(s.principal_mapping_rules, vec!["DEFAULT".to_string()]);
        s.resolve_relative(Path::new("/etc/portcullis"));
        assert_eq!(s.cert, Path::new("/etc/portcullis/certs/server.crt"));
        assert_eq!(s.key, Path::new("/abs/server.key"));
        assert_eq!(
            s.client_ca.as_deref(),
            Some(Path::new("/etc/portcullis/certs/ca.crt"))
        );

        let s: TlsSettings = serde_yaml_ng::from_str("cert: a\nkey: b\n").unwrap();
        assert_eq!(s.client_auth, ClientAuth::None);
        assert!(serde_yaml_ng::from_str::<TlsSettings>("cert: a\nkey: b\nbogus: 1\n").is_err());
        assert!(
            serde_yaml_ng::from_str::<TlsSettings>("cert: a\nkey: b\nclient_auth: Required\n")
                .is_err()
        );
    }

    /// New certificate material for `dir`, signed by the same CA, written in
    /// a sibling directory so it can be renamed into place atomically.
    fn rotated_pair(dir: &Path, staging: &Path) -> (PathBuf, PathBuf) {
        fs::create_dir_all(staging).unwrap();
        for f in [CA_CERT, CA_KEY] {
            fs::copy(dir.join(f), staging.join(f)).unwrap();
        }
        init_certs(staging, &[], &[], false).unwrap();
        (staging.join(SERVER_CERT), staging.join(SERVER_KEY))
    }

    /// Connects until the server presents `serial` or the deadline passes.
    async fn wait_for_serial(addr: SocketAddr, cfg: Arc<rustls::ClientConfig>, serial: &[u8]) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = connect(addr, cfg.clone()).await.unwrap();
            if peer_serial(&s) == serial {
                return;
            }
            assert!(Instant::now() < deadline, "new certificate never served");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn watcher_reloads_rotated_cert_and_keeps_open_connections() {
        rotation_test(true).await;
    }

    #[tokio::test]
    async fn polling_fallback_reloads_rotated_cert() {
        rotation_test(false).await;
    }

    async fn rotation_test(use_notify: bool) {
        within(async {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("certs");
            pki(&dir);
            let handle = TlsAcceptorHandle::load(&settings(&dir, ClientAuth::None)).unwrap();
            let _watcher = handle.spawn_watcher_with(None, use_notify).unwrap();
            let (addr, _outcomes) = spawn_server(handle.clone()).await;
            let cfg = client_config(&dir.join(CA_CERT), None, &rustls::version::TLS13);

            let mut old_conn = connect(addr, cfg.clone()).await.unwrap();
            echo(&mut old_conn, b"before").await.unwrap();
            let old_serial = peer_serial(&old_conn);
            assert_eq!(old_serial, file_serial(&dir.join(SERVER_CERT)));

            let (crt, key) = rotated_pair(&dir, &tmp.path().join("staging"));
            let new_serial = file_serial(&crt);
            assert_ne!(new_serial, old_serial);
            fs::rename(&key, dir.join(SERVER_KEY)).unwrap();
            fs::rename(&crt, dir.join(SERVER_CERT)).unwrap();

            wait_for_serial(addr, cfg, &new_serial).await;
            // The session negotiated before the rotation is unaffected.
            echo(&mut old_conn, b"after rotation").await.unwrap();
            assert_eq!(peer_serial(&old_conn), old_serial);
        })
        .await;
    }

    #[tokio::test]
    async fn failed_reload_keeps_previous_config() {
        within(async {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("certs");
            pki(&dir);
            let handle = TlsAcceptorHandle::load(&settings(&dir, ClientAuth::None)).unwrap();
            let (addr, _outcomes) = spawn_server(handle.clone()).await;
            let cfg = client_config(&dir.join(CA_CERT), None, &rustls::version::TLS12);
            let old_serial = file_serial(&dir.join(SERVER_CERT));
            let (crt, key) = rotated_pair(&dir, &tmp.path().join("staging"));

            // Half a rotation: new key, old cert -> mismatch, old config stays.
            fs::rename(&key, dir.join(SERVER_KEY)).unwrap();
            let err = handle.reload().unwrap_err();
            assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err}");
            let s = connect(addr, cfg.clone()).await.unwrap();
            assert_eq!(peer_serial(&s), old_serial);

            fs::rename(&crt, dir.join(SERVER_CERT)).unwrap();
            handle.reload().unwrap();
            let s = connect(addr, cfg).await.unwrap();
            assert_ne!(peer_serial(&s), old_serial);
        })
        .await;
    }

    #[test]
    fn a_failed_reload_is_retried_until_the_files_are_in_force() {
        // No runtime needed: the loop runs on its own thread.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        pki(&dir);
        let handle = TlsAcceptorHandle::load(&settings(&dir, ClientAuth::None)).unwrap();
        let _watcher = handle.spawn_watcher(None).unwrap();
        let old_serial = file_serial(&dir.join(SERVER_CERT));
        let (crt, key) = rotated_pair(&dir, &tmp.path().join("staging"));
        // Half a rotation: refused, the old certificate stays, and the loop
        // keeps retrying without a further change event...
        fs::rename(&key, dir.join(SERVER_KEY)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
        assert_eq!(handle.version().generation, 1);
        // ...so completing it is picked up.
        fs::rename(&crt, dir.join(SERVER_CERT)).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while handle.version().generation == 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "rotation never applied"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_ne!(file_serial(&dir.join(SERVER_CERT)), old_serial);
    }
}
