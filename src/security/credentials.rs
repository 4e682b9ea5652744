//! SCRAM credential store: a human-readable YAML file holding only salts
//! and derived keys (never passwords), one credential per (user, mechanism)
//! (SCRAM-SHA-256, SCRAM-SHA-512), plus the live, hot-reloaded view the
//! broker authenticates against.
//!
//! Format version 2 keys each user's credentials by mechanism. Version 1,
//! written by earlier Portcullis versions (one SCRAM-SHA-512 credential per
//! user), still loads; the next write turns it into version 2.
//!
//! Writes are atomic (temp file + fsync + rename + directory fsync) so a
//! reader — this process's watcher or another broker — sees either the old
//! or the new file, never a torn one.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::security::scram::{
    Mechanism, ScramCredential, ScramError, MAX_ITERATIONS, MIN_ITERATIONS,
};
use crate::util::atomic_file::write_atomic;
use crate::util::file_lock::FileLock;
use crate::util::hot_reload;

/// Format version written.
pub const FILE_VERSION: u32 = 2;
/// The single-mechanism layout of earlier versions, still read.
const FILE_VERSION_1: u32 = 1;
const HEADER: &str = "# Portcullis credential store: SCRAM keys only, never passwords.\n\
                      # Manage with the admin tooling; the broker reloads this file on change.\n";
const MAX_SALT_LEN: usize = 1024;
const MAX_USER_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read credential file {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot write credential file {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    /// Position and kind only: the file's bytes never appear (the path may
    /// name the wrong file, e.g. a symlink to a private key).
    #[error("credential file {source_name}: {error}")]
    Yaml {
        source_name: String,
        error: Box<crate::security::yaml_error::YamlError>,
    },
    #[error("credential file {source_name}, line {line}: not UTF-8 text")]
    NotUtf8 { source_name: String, line: usize },
    #[error("credential file: {field}: {problem}")]
    InvalidField {
        field: &'static str,
        problem: String,
    },
    #[error("credential file: user {user:?}: {field}: {problem}")]
    InvalidUser {
        user: String,
        field: &'static str,
        problem: String,
    },
    #[error("invalid user name {0:?}: {1}")]
    InvalidUserName(String, &'static str),
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("user {0:?} does not exist")]
    NoSuchUser(String),
    #[error("user {0:?} has no {1} credential")]
    NoSuchCredential(String, Mechanism),
    #[error(transparent)]
    Scram(#[from] ScramError),
}

impl CredentialError {
    /// 1-based line of a YAML syntax/shape error, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            CredentialError::Yaml { error, .. } => error.line,
            CredentialError::NotUtf8 { line, .. } => Some(*line),
            _ => None,
        }
    }
}

pub type Result<T, E = CredentialError> = std::result::Result<T, E>;

// ---- on-disk representation -------------------------------------------------

/// Read first, on its own, to pick the layout to parse the file with.
#[derive(Deserialize)]
struct VersionOnly {
    version: u32,
}

/// Version 2: `users: {NAME: {SCRAM-SHA-256: {...}, SCRAM-SHA-512: {...}}}`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    version: u32,
    server_secret: String,
    #[serde(default)]
    users: BTreeMap<String, BTreeMap<String, CredRepr>>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredRepr {
    iterations: u32,
    salt: String,
    stored_key: String,
    server_key: String,
}

/// Version 1: `users: {NAME: {mechanism: SCRAM-SHA-512, iterations, ...}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileReprV1 {
    #[allow(dead_code)]
    version: u32,
    server_secret: String,
    #[serde(default)]
    users: BTreeMap<String, UserReprV1>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserReprV1 {
    mechanism: String,
    iterations: u32,
    salt: String,
    stored_key: String,
    server_key: String,
}

// ---- in-memory file ---------------------------------------------------------

/// One user's credentials, at most one per mechanism, never empty in a
/// [`CredentialFile`] (a user whose last credential goes is removed).
pub type UserCredentials = BTreeMap<Mechanism, ScramCredential>;

/// Parsed, validated contents of a credential file.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialFile {
    server_secret: [u8; 32],
    users: BTreeMap<String, UserCredentials>,
}

// The server secret and keys are sensitive: show only names.
impl fmt::Debug for CredentialFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialFile")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Default for CredentialFile {
    fn default() -> Self {
        Self::new()
    }
}

impl CredentialFile {
    /// Empty store with a fresh random server secret.
    pub fn new() -> Self {
        let mut server_secret = [0u8; 32];
        OsRng.fill_bytes(&mut server_secret);
        CredentialFile {
            server_secret,
            users: BTreeMap::new(),
        }
    }

    /// Load and validate; a missing file is an error.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_hashed(path).map(|(f, _)| f)
    }

    /// Like [`Self::load`], with the SHA-256 of the bytes it parsed.
    pub fn load_hashed(path: &Path) -> Result<(Self, [u8; 32])> {
        let bytes = fs::read(path).map_err(|source| CredentialError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        warn_if_readable_by_others(path);
        let file = Self::from_yaml_bytes(&bytes, &path.display().to_string())?;
        Ok((file, hot_reload::sha256(&bytes)))
    }

    /// Parses bytes; text that is not UTF-8 is refused with the line where
    /// it stops being text, never shown.
    pub fn from_yaml_bytes(bytes: &[u8], source_name: &str) -> Result<Self> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::from_yaml_str(text, source_name),
            Err(e) => Err(CredentialError::NotUtf8 {
                source_name: source_name.to_string(),
                line: bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1,
            }),
        }
    }

    /// Like [`Self::load`], but a missing file yields an empty store with a
    /// fresh server secret (not written; call `save` to persist it).
    pub fn load_or_init(path: &Path) -> Result<Self> {
        match Self::load(path) {
            Err(CredentialError::Read { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                Ok(Self::new())
            }
            other => other,
        }
    }

    /// Parse and validate YAML text. `source_name` only labels errors.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Self> {
        let yaml_error = |e: serde_yaml_ng::Error| CredentialError::Yaml {
            source_name: source_name.to_string(),
            error: Box::new(crate::security::yaml_error::YamlError::from_serde(&e)),
        };
        // The version picks the layout; a file without one (or not a map)
        // is reported by the full parse below, with its line.
        let version = serde_yaml_ng::from_str::<VersionOnly>(text)
            .map(|v| v.version)
            .unwrap_or(FILE_VERSION);
        let (secret, users) = match version {
            FILE_VERSION => {
                let repr: FileRepr = serde_yaml_ng::from_str(text).map_err(yaml_error)?;
                let mut users = Vec::new();
                for (name, creds) in repr.users {
                    if creds.is_empty() {
                        return Err(CredentialError::InvalidUser {
                            user: name,
                            field: "mechanism",
                            problem: "no credential (SCRAM-SHA-256 or SCRAM-SHA-512)".into(),
                        });
                    }
                    for (mechanism, c) in creds {
                        users.push((name.clone(), mechanism, c));
                    }
                }
                (repr.server_secret, users)
            }
            FILE_VERSION_1 => {
                let repr: FileReprV1 = serde_yaml_ng::from_str(text).map_err(yaml_error)?;
                let users = repr
                    .users
                    .into_iter()
                    .map(|(name, u)| {
                        let c = CredRepr {
                            iterations: u.iterations,
                            salt: u.salt,
                            stored_key: u.stored_key,
                            server_key: u.server_key,
                        };
                        (name, u.mechanism, c)
                    })
                    .collect();
                (repr.server_secret, users)
            }
            other => {
                return Err(CredentialError::InvalidField {
                    field: "version",
                    problem: format!(
                        "unsupported version {other} (expected {FILE_VERSION} or \
                         {FILE_VERSION_1})"
                    ),
                })
            }
        };
        let server_secret =
            decode_fixed(&secret, 32).map_err(|problem| CredentialError::InvalidField {
                field: "server_secret",
                problem,
            })?;
        let server_secret: [u8; 32] = server_secret.try_into().unwrap_or([0u8; 32]);
        let mut file = CredentialFile {
            server_secret,
            users: BTreeMap::new(),
        };
        for (name, mechanism, u) in users {
            validate_user_name(&name)?;
            let bad = |field, problem: String| CredentialError::InvalidUser {
                user: name.clone(),
                field,
                problem,
            };
            // Version 1 files could only hold SCRAM-SHA-512; a SHA-256 entry
            // there was never written by Portcullis, so it is refused too.
            let mechanism = Mechanism::from_name(&mechanism)
                .filter(|m| version == FILE_VERSION || *m == Mechanism::ScramSha512)
                .ok_or_else(|| {
                    bad(
                        "mechanism",
                        format!("`{mechanism}` is not SCRAM-SHA-256 or SCRAM-SHA-512"),
                    )
                })?;
            let salt = STANDARD
                .decode(&u.salt)
                .map_err(|_| bad("salt", "not valid base64".into()))?;
            let len = mechanism.key_len();
            let stored_key = decode_fixed(&u.stored_key, len).map_err(|p| bad("stored_key", p))?;
            let server_key = decode_fixed(&u.server_key, len).map_err(|p| bad("server_key", p))?;
            let cred = ScramCredential {
                mechanism,
                salt,
                stored_key,
                server_key,
                iterations: u.iterations,
            };
            validate_credential(&name, &cred)?;
            file.users.entry(name).or_default().insert(mechanism, cred);
        }
        Ok(file)
    }

    /// Serialize to the documented YAML layout (version 2), with a header
    /// comment.
    pub fn to_yaml_string(&self) -> String {
        let repr = FileRepr {
            version: FILE_VERSION,
            server_secret: STANDARD.encode(self.server_secret),
            users: self
                .users
                .iter()
                .map(|(name, creds)| {
                    let creds = creds
                        .iter()
                        .map(|(m, c)| {
                            let u = CredRepr {
                                iterations: c.iterations,
                                salt: STANDARD.encode(&c.salt),
                                stored_key: STANDARD.encode(&c.stored_key),
                                server_key: STANDARD.encode(&c.server_key),
                            };
                            (m.name().to_string(), u)
                        })
                        .collect();
                    (name.clone(), creds)
                })
                .collect(),
        };
        // Plain strings/ints/maps: serialization cannot fail.
        let body = serde_yaml_ng::to_string(&repr).unwrap_or_default();
        format!("{HEADER}{body}")
    }

    /// Atomically replace `path`: temp file in the same directory created
    /// with mode 0600, write, fsync, rename, fsync the directory.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.save_text(path, &self.to_yaml_string())
    }

    /// [`Self::save`] of text already rendered (the caller hashes it).
    fn save_text(&self, path: &Path, text: &str) -> Result<()> {
        write_atomic(path, text.as_bytes(), 0o600).map_err(|source| CredentialError::Write {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Add a new user with a credential for both mechanisms (runs PBKDF2
    /// twice). Fails if the user exists.
    pub fn add_user(&mut self, name: &str, password: &str, iterations: u32) -> Result<()> {
        self.add_user_for(name, password, iterations, &Mechanism::ALL)
    }

    /// Add a new user with a credential for each mechanism in `mechanisms`
    /// (runs PBKDF2 once per mechanism, each with its own salt). Fails if
    /// the user exists.
    pub fn add_user_for(
        &mut self,
        name: &str,
        password: &str,
        iterations: u32,
        mechanisms: &[Mechanism],
    ) -> Result<()> {
        validate_user_name(name)?;
        if self.users.contains_key(name) {
            return Err(CredentialError::UserExists(name.to_string()));
        }
        let creds = derive(password, iterations, mechanisms)?;
        self.users.insert(name.to_string(), creds);
        Ok(())
    }

    /// New password (new salts) for each mechanism an existing user has.
    /// Fails if the user is missing.
    pub fn set_password(&mut self, name: &str, password: &str, iterations: u32) -> Result<()> {
        self.set_password_for(name, password, iterations, &[])
    }

    /// New password (new salts) for an existing user: for `mechanisms`
    /// (adding those it lacks), or, when empty, for each mechanism the user
    /// has. Fails if the user is missing.
    pub fn set_password_for(
        &mut self,
        name: &str,
        password: &str,
        iterations: u32,
        mechanisms: &[Mechanism],
    ) -> Result<()> {
        let Some(current) = self.users.get_mut(name) else {
            return Err(CredentialError::NoSuchUser(name.to_string()));
        };
        let which: Vec<Mechanism> = if mechanisms.is_empty() {
            current.keys().copied().collect()
        } else {
            mechanisms.to_vec()
        };
        let creds = derive(password, iterations, &which)?;
        current.extend(creds);
        Ok(())
    }

    /// Insert or replace a precomputed credential (e.g. imported from Kafka)
    /// for `name` and the credential's mechanism.
    pub fn upsert_credential(&mut self, name: &str, cred: ScramCredential) -> Result<()> {
        validate_user_name(name)?;
        validate_credential(name, &cred)?;
        self.users
            .entry(name.to_string())
            .or_default()
            .insert(cred.mechanism, cred);
        Ok(())
    }

    /// Removes a user with all of their credentials.
    pub fn remove_user(&mut self, name: &str) -> Result<()> {
        self.users
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| CredentialError::NoSuchUser(name.to_string()))
    }

    /// Removes one mechanism's credential; the user goes with their last one.
    pub fn remove_credential(&mut self, name: &str, mechanism: Mechanism) -> Result<()> {
        let missing = || CredentialError::NoSuchCredential(name.to_string(), mechanism);
        let creds = self.users.get_mut(name).ok_or_else(missing)?;
        creds.remove(&mechanism).ok_or_else(missing)?;
        if creds.is_empty() {
            self.users.remove(name);
        }
        Ok(())
    }

    /// (name, mechanism, iterations), one row per credential, sorted by name
    /// then mechanism.
    pub fn users(&self) -> Vec<(String, &'static str, u32)> {
        self.users
            .iter()
            .flat_map(|(n, creds)| {
                creds
                    .iter()
                    .map(move |(m, c)| (n.clone(), m.name(), c.iterations))
            })
            .collect()
    }

    /// User names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// All credentials of `name` (empty if unknown).
    pub fn credentials_of(&self, name: &str) -> Vec<ScramCredential> {
        self.users
            .get(name)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether `name` has any credential.
    pub fn contains(&self, name: &str) -> bool {
        self.users.contains_key(name)
    }

    pub fn get(&self, name: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.users.get(name)?.get(&mechanism).cloned()
    }

    /// Secret for deriving unknown users' fake salts (`ScramServer::new`).
    pub fn server_secret(&self) -> [u8; 32] {
        self.server_secret
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Number of users (not credentials).
    pub fn len(&self) -> usize {
        self.users.len()
    }
}

/// One credential per mechanism, each with its own random salt (a salt
/// shared by both would tie the two keys to each other for nothing).
fn derive(password: &str, iterations: u32, mechanisms: &[Mechanism]) -> Result<UserCredentials> {
    if mechanisms.is_empty() {
        return Err(CredentialError::InvalidField {
            field: "mechanism",
            problem: "at least one mechanism is needed".into(),
        });
    }
    let mut creds = UserCredentials::new();
    for &m in mechanisms {
        creds.insert(m, ScramCredential::from_password(m, password, iterations)?);
    }
    Ok(creds)
}

fn decode_fixed(b64: &str, n: usize) -> std::result::Result<Vec<u8>, String> {
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| "not valid base64".to_string())?;
    if bytes.len() != n {
        return Err(format!("must decode to {n} bytes, got {}", bytes.len()));
    }
    Ok(bytes)
}

fn validate_user_name(name: &str) -> Result<()> {
    let bad = |why| Err(CredentialError::InvalidUserName(name.to_string(), why));
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_USER_LEN {
        return bad("too long");
    }
    if name.chars().any(char::is_control) {
        return bad("contains control characters");
    }
    Ok(())
}

fn validate_credential(name: &str, c: &ScramCredential) -> Result<()> {
    let bad = |field, problem: String| {
        Err(CredentialError::InvalidUser {
            user: name.to_string(),
            field,
            problem,
        })
    };
    if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&c.iterations) {
        return bad(
            "iterations",
            format!(
                "{} outside {MIN_ITERATIONS}..={MAX_ITERATIONS}",
                c.iterations
            ),
        );
    }
    if c.salt.is_empty() || c.salt.len() > MAX_SALT_LEN {
        return bad("salt", format!("length must be 1..={MAX_SALT_LEN} bytes"));
    }
    Ok(())
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{:o}", meta.permissions().mode() & 0o777),
                "credential file is accessible to group/others; expected 0600"
            );
        }
    }
}

// ---- live store -------------------------------------------------------------

/// The broker's live view of the credential file. Lookups are lock-free
/// (`ArcSwap`); reloads and modifications replace the whole snapshot.
pub struct CredentialStore {
    path: PathBuf,
    current: ArcSwap<CredentialFile>,
    /// Serializes modify/reload so a slow reload can't swap in a snapshot
    /// older than one a concurrent modify just wrote. Holds the SHA-256 of
    /// the content in force.
    write_lock: Mutex<[u8; 32]>,
    /// Bumped on every snapshot change; lets callers and tests observe reloads.
    generation: AtomicU64,
    /// Failed reloads (invalid or unreadable file); for metrics and tests.
    reload_failures: AtomicU64,
}

impl fmt::Debug for CredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialStore")
            .field("path", &self.path)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl CredentialStore {
    /// Open an existing, valid credential file.
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let (file, sha256) = CredentialFile::load_hashed(&path)?;
        Ok(Arc::new(Self::with_file(path, file, sha256)))
    }

    /// Open, creating (and saving) an empty store if the file is missing.
    /// Persisting matters: a secret regenerated on each start would change
    /// unknown users' fake salts across restarts and reveal them.
    pub fn open_or_init(path: impl AsRef<Path>) -> Result<Arc<Self>> {
        let path = path.as_ref().to_path_buf();
        let (file, sha256) = match CredentialFile::load_hashed(&path) {
            Err(CredentialError::Read { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                let f = CredentialFile::new();
                let text = f.to_yaml_string();
                f.save_text(&path, &text)?;
                (f, hot_reload::sha256(text.as_bytes()))
            }
            other => other?,
        };
        Ok(Arc::new(Self::with_file(path, file, sha256)))
    }

    fn with_file(path: PathBuf, file: CredentialFile, sha256: [u8; 32]) -> Self {
        CredentialStore {
            path,
            current: ArcSwap::from_pointee(file),
            write_lock: Mutex::new(sha256),
            generation: AtomicU64::new(1),
            reload_failures: AtomicU64::new(0),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `user`'s credential for `mechanism` from the current snapshot
    /// (lock-free).
    pub fn lookup(&self, user: &str, mechanism: Mechanism) -> Option<ScramCredential> {
        self.current.load().get(user, mechanism)
    }

    /// Server secret of the current snapshot, for `ScramServer::new`.
    pub fn fake_secret(&self) -> [u8; 32] {
        self.current.load().server_secret()
    }

    /// Fingerprint of all of `user`'s current keys together (see
    /// [`ScramCredential::fingerprint`]): `None` means no such user, a
    /// different value that a credential was added, changed or removed.
    pub fn fingerprint_of(&self, user: &str) -> Option<u64> {
        let snapshot = self.current.load();
        let creds = snapshot.users.get(user)?;
        // Each fingerprint rotated by its mechanism's position, so that
        // keys swapped between mechanisms still change the whole.
        Some(creds.values().fold(0u64, |acc, c| {
            acc ^ c
                .fingerprint()
                .rotate_left(u32::from(c.mechanism.kafka_type().unsigned_abs()))
        }))
    }

    /// Fingerprint of `user`'s key for `mechanism`. A session records the
    /// one it logged in with; `None` later means the credential was
    /// removed, a different value means the password changed.
    pub fn fingerprint_for(&self, user: &str, mechanism: Mechanism) -> Option<u64> {
        self.current
            .load()
            .users
            .get(user)?
            .get(&mechanism)
            .map(ScramCredential::fingerprint)
    }

    /// Whole current snapshot (cheap `Arc` clone).
    pub fn snapshot(&self) -> Arc<CredentialFile> {
        self.current.load_full()
    }

    /// The content in force (its hash) and its generation.
    pub fn version(&self) -> hot_reload::Version {
        let sha256 = *self.lock();
        hot_reload::Version {
            sha256,
            generation: self.generation(),
        }
    }

    /// Number of snapshot changes since open, plus one.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Number of reloads that failed and kept the previous snapshot.
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Re-read the file. `Ok(true)` if its contents differed and were
    /// swapped in; on error the current snapshot is kept.
    pub fn reload(&self) -> Result<bool> {
        let mut in_force = self.lock();
        let (file, sha256) = CredentialFile::load_hashed(&self.path).inspect_err(|_| {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        if sha256 == *in_force {
            return Ok(false);
        }
        *in_force = sha256;
        if **self.current.load() == file {
            // Same users and keys, other bytes (comments, layout): in force
            // already; the new hash is acknowledged as it is.
            return Ok(false);
        }
        self.swap(file);
        drop(in_force);
        tracing::info!(path = %self.path.display(), generation = self.generation(),
            users = self.snapshot().len(), "credential file reloaded");
        Ok(true)
    }

    /// Read-modify-write of the file: `f` runs on the current on-disk
    /// contents; if it succeeds the result is saved atomically and becomes
    /// the live snapshot. Concurrent calls are serialized.
    pub fn modify<T>(&self, f: impl FnOnce(&mut CredentialFile) -> Result<T>) -> Result<T> {
        let mut in_force = self.lock();
        // Other processes (the CLI, a second broker command) edit the same
        // file: serialize load-modify-save across processes too.
        let _file_lock =
            FileLock::acquire(&self.path).map_err(|source| CredentialError::Write {
                path: self.path.clone(),
                source,
            })?;
        let mut file = CredentialFile::load(&self.path)?;
        let out = f(&mut file)?;
        let text = file.to_yaml_string();
        file.save_text(&self.path, &text)?;
        *in_force = hot_reload::sha256(text.as_bytes());
        self.swap(file);
        Ok(out)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, [u8; 32]> {
        // The guarded hash is replaced whole: a panic elsewhere can't tear it.
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn swap(&self, file: CredentialFile) {
        self.current.store(Arc::new(file));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Keeps the snapshot in step with the file (see
    /// [`crate::util::hot_reload`]): `notify` on the parent directory plus a
    /// metadata poll; a broken or unreadable new file is logged, the last
    /// good snapshot stays, and the reload is retried until the file on disk
    /// is in force. Stops when the handle is dropped.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        reporter: Option<hot_reload::Reporter>,
    ) -> io::Result<hot_reload::ReloadHandle> {
        hot_reload::spawn(self, reporter, true)
    }
}

impl hot_reload::Reloadable for CredentialStore {
    type Error = CredentialError;
    fn what(&self) -> &'static str {
        "credential file"
    }
    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
    fn ack_path(&self) -> Option<PathBuf> {
        Some(hot_reload::ack_path_for(&self.path))
    }
    fn version(&self) -> hot_reload::Version {
        CredentialStore::version(self)
    }
    fn reload(&self) -> Result<hot_reload::Reloaded> {
        let before = self.generation();
        CredentialStore::reload(self)?;
        Ok(match self.generation() == before {
            true => hot_reload::Reloaded::Unchanged,
            false => hot_reload::Reloaded::Applied {
                entries: self.snapshot().len(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::scram::DEFAULT_ITERATIONS;

    const SHA256: Mechanism = Mechanism::ScramSha256;
    const SHA512: Mechanism = Mechanism::ScramSha512;
    use std::time::{Duration, Instant};

    const IT: u32 = MIN_ITERATIONS; // keep PBKDF2 cheap in tests

    fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        while start.elapsed() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cond()
    }

    fn sample() -> CredentialFile {
        let mut f = CredentialFile::new();
        f.add_user("alice", "pw-a", IT).expect("add");
        f.add_user("bob,=x", "pw-b", DEFAULT_ITERATIONS)
            .expect("add");
        f
    }

    #[test]
    fn round_trip_save_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("creds.yaml");
        let f = sample();
        f.save(&path).expect("save");
        let g = CredentialFile::load(&path).expect("load");
        assert_eq!(f, g);
        assert_eq!(g.server_secret(), f.server_secret());
        assert_eq!(
            g.users(),
            vec![
                ("alice".to_string(), "SCRAM-SHA-256", IT),
                ("alice".to_string(), "SCRAM-SHA-512", IT),
                ("bob,=x".to_string(), "SCRAM-SHA-256", DEFAULT_ITERATIONS),
                ("bob,=x".to_string(), "SCRAM-SHA-512", DEFAULT_ITERATIONS),
            ]
        );
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# Portcullis credential store"));
        assert!(text.contains("version: 2"), "{text}");
        assert!(text.contains("SCRAM-SHA-512:") && text.contains("SCRAM-SHA-256:"));
        assert!(!text.contains("pw-a"));
        // Each mechanism has its own salt.
        let (a256, a512) = (
            g.get("alice", SHA256).expect("256"),
            g.get("alice", SHA512).expect("512"),
        );
        assert_ne!(a256.salt, a512.salt);
        assert_eq!((a256.stored_key.len(), a512.stored_key.len()), (32, 64));
    }

    #[test]
    fn saved_file_is_0600_and_no_temp_left() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("creds.yaml");
        sample().save(&path).expect("save");
        sample().save(&path).expect("save again (replace)");
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("creds.yaml")]);
    }

    #[test]
    fn load_missing_vs_load_or_init() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("missing.yaml");
        assert!(matches!(
            CredentialFile::load(&path),
            Err(CredentialError::Read { .. })
        ));
        let f = CredentialFile::load_or_init(&path).expect("init");
        assert!(f.is_empty());
        assert!(!path.exists(), "load_or_init must not write");
        let a = CredentialFile::new().server_secret();
        assert_ne!(a, f.server_secret(), "secret must be random");
    }

    #[test]
    fn yaml_error_names_line() {
        let text = "version: 1\nserver_secret: AAAA\nusers:\n  alice: [unclosed\n";
        let err = CredentialFile::from_yaml_str(text, "t").expect_err("bad yaml");
        assert!(err.line().is_some(), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn unknown_field_rejected_with_line() {
        let mut text = sample().to_yaml_string();
        text = text.replacen(
            "      iterations:",
            "      colour: blue\n      iterations:",
            1,
        );
        let err = CredentialFile::from_yaml_str(&text, "t").expect_err("unknown field");
        let msg = err.to_string();
        assert!(
            // The mechanism key is no lowercase key path, so the path is
            // left out (yaml_error repeats only names shaped like ours).
            msg.contains("unknown key `colour`"),
            "{msg}"
        );
        assert!(msg.contains("`iterations`"), "{msg}");
        let expected_line = text
            .lines()
            .position(|l| l.contains("colour"))
            .expect("present")
            + 1;
        assert_eq!(err.line(), Some(expected_line), "{msg}");

        let top = sample().to_yaml_string() + "extra: 1\n";
        assert!(CredentialFile::from_yaml_str(&top, "t").is_err());
    }

    #[test]
    fn validation_names_user_and_field() {
        let s = sample();
        let good = s.to_yaml_string();
        let key = STANDARD.encode(s.get("alice", SHA512).expect("a").stored_key);
        let key256 = STANDARD.encode(s.get("alice", SHA256).expect("a").stored_key);
        let cases = [
            (
                good.replacen("iterations: 4096", "iterations: 100", 1),
                "iterations",
            ),
            (good.replacen(&key, "AAAA", 1), "stored_key"),
            // A SHA-512-sized key under SCRAM-SHA-256.
            (good.replacen(&key256, &key, 1), "stored_key"),
            (
                good.replacen("    SCRAM-SHA-512:", "    PLAIN:", 1),
                "mechanism",
            ),
        ];
        for (text, field) in cases {
            assert_ne!(text, good, "{field}: replacement did not apply");
            match CredentialFile::from_yaml_str(&text, "t") {
                Err(CredentialError::InvalidUser {
                    user, field: got, ..
                }) => {
                    assert_eq!(got, field);
                    assert_eq!(user, "alice");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        let no_credential = "version: 2\nserver_secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nusers:\n  alice: {}\n";
        assert!(matches!(
            CredentialFile::from_yaml_str(no_credential, "t"),
            Err(CredentialError::InvalidUser {
                field: "mechanism",
                ..
            })
        ));
        assert!(matches!(
            CredentialFile::from_yaml_str(&good.replacen("version: 2", "version: 3", 1), "t"),
            Err(CredentialError::InvalidField {
                field: "version",
                ..
            })
        ));
        let empty_name = "version: 1\nserver_secret: AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nusers:\n  \"\":\n    mechanism: SCRAM-SHA-512\n    iterations: 4096\n    salt: AA==\n    stored_key: AA==\n    server_key: AA==\n";
        assert!(matches!(
            CredentialFile::from_yaml_str(empty_name, "t"),
            Err(CredentialError::InvalidUserName(..))
        ));
        let bad_secret = good.replacen("server_secret: ", "server_secret: AAAA", 1);
        assert!(matches!(
            CredentialFile::from_yaml_str(&bad_secret, "t"),
            Err(CredentialError::InvalidField {
                field: "server_secret",
                ..
            })
        ));
    }

    #[test]
    fn user_management() {
        let mut f = CredentialFile::new();
        f.add_user("u", "p", IT).expect("add");
        assert!(matches!(
            f.add_user("u", "p", IT),
            Err(CredentialError::UserExists(_))
        ));
        assert!(matches!(
            f.set_password("nobody", "p", IT),
            Err(CredentialError::NoSuchUser(_))
        ));
        let before = f.get("u", SHA512).expect("u");
        let before256 = f.get("u", SHA256).expect("u");
        f.set_password("u", "q", IT).expect("set");
        assert_ne!(
            before.fingerprint(),
            f.get("u", SHA512).expect("u").fingerprint()
        );
        assert_ne!(
            before256.fingerprint(),
            f.get("u", SHA256).expect("u").fingerprint()
        );
        assert!(matches!(
            f.add_user("x\ny", "p", IT),
            Err(CredentialError::InvalidUserName(..))
        ));
        assert!(matches!(
            f.add_user("", "p", IT),
            Err(CredentialError::InvalidUserName(..))
        ));
        assert!(matches!(
            f.add_user("v", "p", 1),
            Err(CredentialError::Scram(ScramError::BadIterations(1)))
        ));
        let mut c = before.clone();
        c.iterations = 99;
        assert!(f.upsert_credential("w", c).is_err());
        f.upsert_credential("w", before).expect("upsert");
        f.remove_user("u").expect("remove");
        assert!(matches!(
            f.remove_user("u"),
            Err(CredentialError::NoSuchUser(_))
        ));
        assert_eq!(f.len(), 1);
        assert!(!format!("{f:?}").contains(&STANDARD.encode(f.server_secret())));
    }

    #[test]
    fn store_modify_and_fingerprint() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.yaml");
        let store = CredentialStore::open_or_init(&path).expect("init");
        assert!(path.exists());
        assert_eq!(store.lookup("alice", SHA512), None);
        store
            .modify(|f| f.add_user("alice", "pw", IT))
            .expect("modify");
        let fp = store.fingerprint_of("alice").expect("present");
        assert_eq!(
            CredentialFile::load(&path)
                .expect("load")
                .get("alice", SHA512),
            store.lookup("alice", SHA512)
        );
        // A failing closure changes nothing.
        let gen = store.generation();
        assert!(store.modify(|f| f.add_user("alice", "x", IT)).is_err());
        assert_eq!(store.generation(), gen);
        store
            .modify(|f| f.set_password("alice", "new", IT))
            .expect("set");
        assert_ne!(store.fingerprint_of("alice"), Some(fp));
        store.modify(|f| f.remove_user("alice")).expect("rm");
        assert_eq!(store.fingerprint_of("alice"), None);
        assert!(!store.reload().expect("reload"), "nothing changed on disk");
    }

    #[test]
    fn open_requires_existing_file() {
        let dir = tempfile::tempdir().expect("tmp");
        assert!(CredentialStore::open(dir.path().join("nope.yaml")).is_err());
    }

    #[test]
    fn hot_reload_and_invalid_file_keeps_last_good() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.yaml");
        let mut f = CredentialFile::new();
        f.add_user("alice", "pw", IT).expect("add");
        f.save(&path).expect("save");
        let store = CredentialStore::open(&path).expect("open");
        let _watch = store.spawn_watcher(None).expect("watch");

        // Another "process" writes a new version.
        let mut other = CredentialFile::load(&path).expect("load");
        other.add_user("bob", "pw", IT).expect("add");
        other.save(&path).expect("save");
        assert!(
            wait_for(Duration::from_secs(5), || store
                .lookup("bob", SHA512)
                .is_some()),
            "reload not observed"
        );

        // A broken write: the last good snapshot must survive.
        let gen = store.generation();
        fs::write(&path, "version: 1\nusers: [\n").expect("write garbage");
        assert!(
            wait_for(Duration::from_secs(5), || store.reload_failures() > 0),
            "watcher never saw the broken file"
        );
        assert_eq!(
            store.generation(),
            gen,
            "invalid file must not be swapped in"
        );
        assert!(store.lookup("alice", SHA512).is_some() && store.lookup("bob", SHA512).is_some());
        assert!(store.reload().is_err());

        // Fixing the file is picked up again.
        let mut fixed = other.clone();
        fixed.remove_user("alice").expect("rm");
        fixed.save(&path).expect("save");
        assert!(
            wait_for(Duration::from_secs(5), || store
                .fingerprint_of("alice")
                .is_none()),
            "fixed file not reloaded"
        );
        assert!(store.lookup("bob", SHA256).is_some());
    }

    #[test]
    fn poll_fallback_without_notify_events() {
        // Drive the loop directly with no notify sender: only polling remains.
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("c.yaml");
        CredentialFile::new().save(&path).expect("save");
        let store = CredentialStore::open(&path).expect("open");
        let handle = hot_reload::spawn(&store, None, false).expect("spawn");
        let mut f = CredentialFile::load(&path).expect("load");
        f.add_user("carol", "pw", IT).expect("add");
        f.save(&path).expect("save");
        let seen = wait_for(Duration::from_secs(5), || {
            store.lookup("carol", SHA256).is_some()
        });
        drop(handle);
        assert!(seen, "poll did not pick up the change");
    }

    /// A store written by the previous version (format 1, one SCRAM-SHA-512
    /// credential per user) loads as it is, its keys still log in, and the
    /// next write keeps them under version 2.
    #[test]
    fn version_1_file_still_loads() {
        let salt = b"fixed-salt-for-v1-compat-test-00";
        let c = ScramCredential::from_password_with_salt(SHA512, "pw", salt, IT).expect("cred");
        let v1 = format!(
            "# Portcullis credential store: SCRAM-SHA-512 keys only, never passwords.\n\
             version: 1\nserver_secret: {secret}\nusers:\n  alice:\n    mechanism: SCRAM-SHA-512\n    \
             iterations: {IT}\n    salt: {salt}\n    stored_key: {stored}\n    server_key: {server}\n",
            secret = STANDARD.encode([5u8; 32]),
            salt = STANDARD.encode(salt),
            stored = STANDARD.encode(&c.stored_key),
            server = STANDARD.encode(&c.server_key),
        );
        let f = CredentialFile::from_yaml_str(&v1, "v1").expect("v1 loads");
        assert_eq!(f.server_secret(), [5u8; 32]);
        assert_eq!(f.get("alice", SHA512), Some(c.clone()));
        assert_eq!(f.get("alice", SHA256), None);
        assert_eq!(f.users(), vec![("alice".to_string(), "SCRAM-SHA-512", IT)]);
        let again = CredentialFile::from_yaml_str(&f.to_yaml_string(), "v2").expect("v2");
        assert_eq!(again, f);
        // Version 1 never held SCRAM-SHA-256; such an entry is not ours.
        let odd = v1.replace("mechanism: SCRAM-SHA-512", "mechanism: SCRAM-SHA-256");
        assert!(matches!(
            CredentialFile::from_yaml_str(&odd, "t"),
            Err(CredentialError::InvalidUser {
                field: "mechanism",
                ..
            })
        ));
        // Version 1's unknown keys are still reported with their path.
        let err = CredentialFile::from_yaml_str(
            &v1.replace("    salt:", "    colour: x\n    salt:"),
            "t",
        )
        .expect_err("unknown key");
        assert!(err.to_string().contains("`users.alice.colour`"), "{err}");
    }

    #[test]
    fn credentials_per_mechanism() {
        let mut f = CredentialFile::new();
        f.add_user_for("only512", "pw", IT, &[SHA512]).expect("add");
        assert!(f.get("only512", SHA256).is_none());
        assert!(f.add_user_for("none", "pw", IT, &[]).is_err());
        // passwd without a mechanism re-keys what the user has, no more.
        f.set_password("only512", "pw2", IT).expect("passwd");
        assert!(f.get("only512", SHA256).is_none());
        // With one, it adds it.
        f.set_password_for("only512", "pw2", IT, &[SHA256])
            .expect("passwd 256");
        assert!(f.get("only512", SHA256).is_some());
        // A 256 upsert for a new user creates the user with that one only.
        let c = ScramCredential::from_password(SHA256, "x", IT).expect("c");
        f.upsert_credential("new", c.clone()).expect("upsert");
        assert_eq!(f.credentials_of("new"), vec![c]);
        // Removing the last credential removes the user.
        assert!(matches!(
            f.remove_credential("new", SHA512),
            Err(CredentialError::NoSuchCredential(_, SHA512))
        ));
        f.remove_credential("new", SHA256).expect("rm");
        assert!(f.credentials_of("new").is_empty());
        assert_eq!(f.names().collect::<Vec<_>>(), vec!["only512"]);
        f.remove_credential("only512", SHA256).expect("rm");
        assert_eq!(f.len(), 1);

        // Store fingerprints: per mechanism for sessions, of all for audit.
        let dir = tempfile::tempdir().expect("tmp");
        let store = CredentialStore::open_or_init(dir.path().join("c.yaml")).expect("init");
        store.modify(|g| g.add_user("a", "pw", IT)).expect("add");
        let (all, fp512) = (
            store.fingerprint_of("a"),
            store.fingerprint_for("a", SHA512),
        );
        store
            .modify(|g| g.set_password_for("a", "new", IT, &[SHA256]))
            .expect("passwd");
        assert_eq!(
            store.fingerprint_for("a", SHA512),
            fp512,
            "SHA-512 key untouched"
        );
        assert_ne!(store.fingerprint_of("a"), all, "the user's keys changed");
    }
}
