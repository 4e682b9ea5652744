//! Development PKI: a local CA, a server certificate and mTLS client
//! certificates, generated with rcgen (ECDSA P-256).
//!
//! Layout of `dir`:
//! `ca.crt ca.key server.crt server.key client-<name>.crt client-<name>.key .gitignore`
//!
//! Existing files are never overwritten unless `force` is set, so re-running
//! is safe; an existing CA is reused to sign new server/client certificates so
//! clients that already trust `ca.crt` keep working.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::TlsError;
use crate::util::atomic_file;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVER_CERT: &str = "server.crt";
pub const SERVER_KEY: &str = "server.key";

/// Validity of generated certificates. Dev certs: long enough to be
/// forgotten about, short enough that nobody ships them to production.
const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 825;
/// Backdating tolerates clock skew between the generating host and clients.
const BACKDATE: Duration = Duration::hours(1);

/// URI SAN prefix put into client certificates (for `principal_from: san_uri`).
pub const CLIENT_URI_PREFIX: &str = "spiffe://portcullis/user/";

/// What [`init_certs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertsReport {
    /// Files created or (with `force`) replaced, in write order.
    pub written: Vec<PathBuf>,
    /// Files that already existed and were left untouched.
    pub kept: Vec<PathBuf>,
    /// True when an existing CA signed the new certificates.
    pub reused_ca: bool,
}

/// Paths of `client-<name>.crt` / `client-<name>.key`.
pub fn client_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("client-{name}.crt")),
        dir.join(format!("client-{name}.key")),
    )
}

/// Creates the dev PKI in `dir`. See the module docs for the layout.
pub fn init_certs(
    dir: &Path,
    hosts: &[String],
    client_names: &[String],
    force: bool,
) -> Result<CertsReport, TlsError> {
    // Validate everything before writing anything.
    let mut leaves = vec![(
        Pair::new(dir, SERVER_CERT, SERVER_KEY),
        server_params(hosts)?,
    )];
    for name in client_names {
        validate_client_name(name)?;
        let (crt, key) = client_paths(dir, name);
        leaves.push((Pair { crt, key }, client_params(name)?));
    }
    let needed = leaves
        .iter()
        .map(|(pair, _)| pair.needs_write(force))
        .collect::<Result<Vec<bool>, _>>()?;
    let ca_pair = Pair::new(dir, CA_CERT, CA_KEY);
    let new_ca = ca_pair.needs_write(force)?;

    create_dir(dir)?;
    let mut report = CertsReport::default();
    write_gitignore(dir, &mut report)?;
    // Only touch the CA when something must be signed (or it is missing).
    let ca = if new_ca || needed.contains(&true) {
        Some(ca(&ca_pair, new_ca, force, &mut report)?)
    } else {
        report.reused_ca = true;
        report
            .kept
            .extend([ca_pair.crt.clone(), ca_pair.key.clone()]);
        None
    };
    for ((pair, params), needed) in leaves.into_iter().zip(needed) {
        match (&ca, needed) {
            (Some(ca), true) => issue_leaf(&pair, params, ca, force, &mut report)?,
            _ => report.kept.extend([pair.crt, pair.key]),
        }
    }
    if new_ca && report.kept.contains(&dir.join(SERVER_CERT)) {
        tracing::warn!(
            dir = %dir.display(),
            "generated a new CA but kept the existing server certificate, which it did not sign"
        );
    }
    Ok(report)
}

/// Startup helper for dev mode: creates CA + server pair if none of
/// `ca.crt`, `server.crt`, `server.key` exists; does nothing if all exist;
/// refuses a half-present set rather than silently mixing PKIs.
pub fn ensure_dev_certs(dir: &Path, hosts: &[String]) -> Result<Option<CertsReport>, TlsError> {
    let required = [CA_CERT, SERVER_CERT, SERVER_KEY];
    let missing: Vec<String> = required
        .iter()
        .filter(|f| !dir.join(f).exists())
        .map(|f| f.to_string())
        .collect();
    match missing.len() {
        0 => Ok(None),
        n if n == required.len() => init_certs(dir, hosts, &[], false).map(Some),
        _ => Err(TlsError::PartialDevCerts {
            dir: dir.to_path_buf(),
            missing,
        }),
    }
}

/// A certificate file and its private key, always written together.
struct Pair {
    crt: PathBuf,
    key: PathBuf,
}

impl Pair {
    fn new(dir: &Path, crt: &str, key: &str) -> Self {
        Self {
            crt: dir.join(crt),
            key: dir.join(key),
        }
    }

    /// Whether this pair must be (re)generated. A half-present pair cannot be
    /// completed without overwriting the other half, so it needs `force`.
    fn needs_write(&self, force: bool) -> Result<bool, TlsError> {
        if force {
            return Ok(true);
        }
        match (self.crt.exists(), self.key.exists()) {
            (true, true) => Ok(false),
            (false, false) => Ok(true),
            (crt, _) => {
                let (present, missing) = if crt {
                    (&self.crt, &self.key)
                } else {
                    (&self.key, &self.crt)
                };
                Err(TlsError::Config(format!(
                    "{} exists but {} is missing; remove it or re-run with force",
                    present.display(),
                    missing.display()
                )))
            }
        }
    }
}

/// The CA used for signing: loaded from disk, or generated.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

fn ca(pair: &Pair, generate: bool, force: bool, report: &mut CertsReport) -> Result<Ca, TlsError> {
    if generate {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        write_pair(pair, &cert, &key, force, report)?;
        return Ok(Ca { cert, key });
    }
    report.reused_ca = true;
    report.kept.extend([pair.crt.clone(), pair.key.clone()]);
    load_ca(pair)
}

/// Rebuilds a signing `Certificate` from the PEM on disk. rcgen keeps the
/// subject and the subject key identifier, so issued certs chain to the
/// original `ca.crt` by name and by authority key identifier.
fn load_ca(pair: &Pair) -> Result<Ca, TlsError> {
    let read = |p: &Path| {
        fs::read_to_string(p).map_err(|source| TlsError::Write {
            action: "cannot read",
            path: p.to_path_buf(),
            source,
        })
    };
    let key = KeyPair::from_pem(&read(&pair.key)?)
        .map_err(|e| TlsError::CertGen(format!("cannot use CA key {}: {e}", pair.key.display())))?;
    let params = CertificateParams::from_ca_cert_pem(&read(&pair.crt)?).map_err(|e| {
        TlsError::BadCertificate {
            path: pair.crt.clone(),
            reason: e.to_string(),
        }
    })?;
    let cert = params.self_signed(&key)?;
    Ok(Ca { cert, key })
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&[
        (DnType::OrganizationName, "Portcullis"),
        (DnType::CommonName, "Portcullis Dev CA"),
    ]);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY_DAYS);
    params
}

fn server_params(hosts: &[String]) -> Result<CertificateParams, TlsError> {
    let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into()];
    for h in hosts.iter().map(|h| h.trim()) {
        if h.is_empty() {
            return Err(TlsError::Config(
                "empty host name for server certificate".into(),
            ));
        }
        if !names.iter().any(|n| n.eq_ignore_ascii_case(h)) {
            names.push(h.to_string());
        }
    }
    let mut params = CertificateParams::default();
    params.subject_alt_names = names
        .iter()
        .map(|n| san_for_host(n))
        .collect::<Result<_, _>>()?;
    let cn = hosts.first().map_or("localhost", |h| h.trim());
    params.distinguished_name = dn(&[
        (DnType::OrganizationName, "Portcullis"),
        (DnType::CommonName, cn),
    ]);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_defaults(&mut params);
    Ok(params)
}

fn san_for_host(host: &str) -> Result<SanType, TlsError> {
    // Accept `[::1]`-style IPv6 literals as users often type them that way.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || {
        TlsError::Config(format!(
            "invalid host name `{host}` for the server certificate"
        ))
    };
    if !is_dns_name(host) {
        return Err(invalid());
    }
    host.try_into().map(SanType::DnsName).map_err(|_| invalid())
}

/// RFC 1123 host name, optionally with a leading `*.` wildcard label.
fn is_dns_name(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    name.len() <= 253 && name.split('.').all(label_ok)
}

fn client_params(name: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(&[(DnType::CommonName, name)]);
    let uri = format!("{CLIENT_URI_PREFIX}{name}");
    let uri = uri
        .try_into()
        .map_err(|e| TlsError::Config(format!("invalid client name `{name}`: {e}")))?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf_defaults(&mut params);
    Ok(params)
}

fn leaf_defaults(params: &mut CertificateParams) {
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // OpenSSL-based clients (librdkafka) use the AKI to find the issuer.
    params.use_authority_key_identifier_extension = true;
    set_validity(params, LEAF_VALIDITY_DAYS);
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(days);
}

fn dn(entries: &[(DnType, &str)]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for (ty, value) in entries {
        dn.push(ty.clone(), *value);
    }
    dn
}

/// Client names end up in file names, a DN and a URI: keep them boring.
fn validate_client_name(name: &str) -> Result<(), TlsError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(TlsError::Config(format!(
            "invalid client name `{name}`: use 1-64 characters from [A-Za-z0-9._-], not starting with `.`"
        )))
    }
}

/// Signs a new leaf with a fresh key (so the serial, derived from the key,
/// changes on every issuance) and writes it.
fn issue_leaf(
    pair: &Pair,
    params: CertificateParams,
    ca: &Ca,
    force: bool,
    report: &mut CertsReport,
) -> Result<(), TlsError> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca.cert, &ca.key)?;
    write_pair(pair, &cert, &key, force, report)
}

/// Key first: a watcher reloading between the two writes then sees a
/// mismatched pair, fails, keeps the old config, and retries on the next event.
fn write_pair(
    pair: &Pair,
    cert: &Certificate,
    key: &KeyPair,
    force: bool,
    report: &mut CertsReport,
) -> Result<(), TlsError> {
    write_file(&pair.key, key.serialize_pem().as_bytes(), 0o600, force)?;
    report.written.push(pair.key.clone());
    write_file(&pair.crt, cert.pem().as_bytes(), 0o644, force)?;
    report.written.push(pair.crt.clone());
    Ok(())
}

fn write_gitignore(dir: &Path, report: &mut CertsReport) -> Result<(), TlsError> {
    let path = dir.join(".gitignore");
    let existing = match fs::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(TlsError::Write {
                action: "cannot read",
                path,
                source,
            })
        }
    };
    match existing {
        Some(s) if s.lines().any(|l| l.trim() == "*.key") => {
            report.kept.push(path);
            Ok(())
        }
        Some(mut s) => {
            // Someone else's .gitignore: append rather than replace.
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str("*.key\n");
            write_file(&path, s.as_bytes(), 0o644, true)?;
            report.written.push(path);
            Ok(())
        }
        None => {
            write_file(&path, b"*.key\n", 0o644, false)?;
            report.written.push(path);
            Ok(())
        }
    }
}

fn create_dir(dir: &Path) -> Result<(), TlsError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| TlsError::Write {
        action: "cannot create directory",
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes `data` with `mode` set at creation (no window where a key is
/// world-readable). Without `overwrite` the create is exclusive, so an
/// existing file is never clobbered even in a race. With `overwrite` the
/// file is replaced atomically, so readers (the reload watcher) never see a
/// half-written file.
fn write_file(path: &Path, data: &[u8], mode: u32, overwrite: bool) -> Result<(), TlsError> {
    let (action, result) = if overwrite {
        (
            "cannot replace",
            atomic_file::write_atomic(path, data, mode),
        )
    } else {
        ("cannot create", atomic_file::write_new(path, data, mode))
    };
    result.map_err(|source| TlsError::Write {
        action,
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn read_der(path: &Path) -> Vec<u8> {
        let pem = fs::read(path).unwrap();
        crate::tls::pem::certs(&pem).unwrap().remove(0).to_vec()
    }

    fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>, std::time::SystemTime)> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let p = e.unwrap().path();
                let m = fs::metadata(&p).unwrap().modified().unwrap();
                (p.clone(), fs::read(&p).unwrap(), m)
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_creates_files_with_private_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("certs");
        let report =
            init_certs(&dir, &names(&["broker.example"]), &names(&["alice"]), false).unwrap();
        assert!(!report.reused_ca);
        for f in [
            ".gitignore",
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
            "client-alice.crt",
            "client-alice.key",
        ] {
            assert!(report.written.contains(&dir.join(f)), "{f} not reported");
            assert!(dir.join(f).is_file(), "{f} missing");
        }
        for key in ["ca.key", "server.key", "client-alice.key"] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        }
        assert_eq!(
            fs::read_to_string(dir.join(".gitignore")).unwrap(),
            "*.key\n"
        );
    }

    #[test]
    fn rerun_without_force_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init_certs(dir, &[], &names(&["alice"]), false).unwrap();
        let before = snapshot(dir);
        let report = init_certs(dir, &[], &names(&["alice"]), false).unwrap();
        assert!(report.written.is_empty(), "{report:?}");
        assert!(report.reused_ca);
        assert_eq!(before, snapshot(dir));
    }

    #[test]
    fn force_regenerates_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init_certs(dir, &[], &[], false).unwrap();
        let ca_before = fs::read(dir.join(CA_CERT)).unwrap();
        let report = init_certs(dir, &[], &[], true).unwrap();
        assert!(report.written.contains(&dir.join(CA_CERT)));
        assert_ne!(ca_before, fs::read(dir.join(CA_CERT)).unwrap());
        assert_eq!(mode(&dir.join(SERVER_KEY)), 0o600);
        // No temp files left behind.
        let stray = fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp")
            })
            .count();
        assert_eq!(stray, 0);
    }

    #[test]
    fn existing_ca_signs_new_client() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init_certs(dir, &[], &[], false).unwrap();
        let ca_pem = fs::read(dir.join(CA_CERT)).unwrap();
        let report = init_certs(dir, &[], &names(&["bob"]), false).unwrap();
        assert!(report.reused_ca);
        assert_eq!(ca_pem, fs::read(dir.join(CA_CERT)).unwrap());
        assert_eq!(
            report.written,
            vec![dir.join("client-bob.key"), dir.join("client-bob.crt")]
        );

        let ca_der = read_der(&dir.join(CA_CERT));
        let client_der = read_der(&dir.join("client-bob.crt"));
        let (_, ca) = X509Certificate::from_der(&ca_der).unwrap();
        let (_, client) = X509Certificate::from_der(&client_der).unwrap();
        assert_eq!(client.issuer().as_raw(), ca.subject().as_raw());
        let ski = ca
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .unwrap();
        let aki = client
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    a.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .unwrap();
        assert_eq!(ski, aki);
        let uri = crate::tls::first_uri_san(&client_der).unwrap();
        assert_eq!(uri.as_deref(), Some("spiffe://portcullis/user/bob"));
        assert_eq!(
            crate::tls::subject_distinguished_name(&client_der).unwrap(),
            "CN=bob"
        );
    }

    #[test]
    fn server_cert_has_expected_sans() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init_certs(
            dir,
            &names(&["kafka.example", "10.1.2.3", "[::1]"]),
            &[],
            false,
        )
        .unwrap();
        let der = read_der(&dir.join(SERVER_CERT));
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let san = cert.subject_alternative_name().unwrap().unwrap();
        let mut dns = vec![];
        let mut ips = vec![];
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => dns.push(d.to_string()),
                GeneralName::IPAddress(b) => ips.push(b.to_vec()),
                _ => {}
            }
        }
        assert_eq!(dns, vec!["localhost", "kafka.example"]);
        assert!(ips.contains(&vec![127, 0, 0, 1]));
        assert!(ips.contains(&vec![10, 1, 2, 3]));
        assert!(ips.iter().any(|ip| ip.len() == 16));
    }

    #[test]
    fn partial_pair_and_bad_names_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        init_certs(dir, &[], &[], false).unwrap();
        fs::remove_file(dir.join(SERVER_KEY)).unwrap();
        let err = init_certs(dir, &[], &[], false).unwrap_err().to_string();
        assert!(err.contains("server.key"), "{err}");
        assert!(init_certs(dir, &[], &names(&["../evil"]), true).is_err());
        assert!(init_certs(dir, &[], &names(&[""]), true).is_err());
        assert!(init_certs(dir, &names(&["bad host!"]), &[], true).is_err());
        assert!(init_certs(dir, &names(&["a..b"]), &[], true).is_err());
        assert!(init_certs(dir, &names(&["*.kafka.example"]), &[], true).is_ok());
    }

    #[test]
    fn gitignore_is_appended_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join(".gitignore"), "target").unwrap();
        init_certs(dir, &[], &[], false).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(".gitignore")).unwrap(),
            "target\n*.key\n"
        );
    }

    #[test]
    fn ensure_dev_certs_creates_once_and_detects_partial() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("dev");
        let report = ensure_dev_certs(&dir, &[]).unwrap().expect("created");
        assert!(report.written.contains(&dir.join(SERVER_CERT)));
        assert!(ensure_dev_certs(&dir, &[]).unwrap().is_none());
        fs::remove_file(dir.join(SERVER_KEY)).unwrap();
        let err = ensure_dev_certs(&dir, &[]).unwrap_err();
        assert!(matches!(err, TlsError::PartialDevCerts { .. }));
        assert!(err.to_string().contains("server.key"), "{err}");
    }
}
