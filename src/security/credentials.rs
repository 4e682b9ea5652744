//! SCRAM-SHA-512 credential store: a human-readable YAML file holding only
//! salts and derived keys (never passwords), plus the live, hot-reloaded
//! view the broker authenticates against.
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
    ScramCredential, ScramError, MAX_ITERATIONS, MECHANISM, MIN_ITERATIONS,
};
use crate::util::atomic_file::write_atomic;
use crate::util::file_lock::FileLock;
use crate::util::hot_reload;

/// Only format version understood.
pub const FILE_VERSION: u32 = 1;
const HEADER: &str = "# Portcullis credential store: SCRAM-SHA-512 keys only, never passwords.\n\
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

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRepr {
    version: u32,
    server_secret: String,
    #[serde(default)]
    users: BTreeMap<String, UserRepr>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRepr {
    mechanism: String,
    iterations: u32,
    salt: String,
    stored_key: String,
    server_key: String,
}

// ---- in-memory file ---------------------------------------------------------

/// Parsed, validated contents of a credential file.
#[derive(Clone, PartialEq, Eq)]
pub struct CredentialFile {
    server_secret: [u8; 32],
    users: BTreeMap<String, ScramCredential>,
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
        let repr: FileRepr = serde_yaml_ng::from_str(text).map_err(|e| CredentialError::Yaml {
            source_name: source_name.to_string(),
            error: Box::new(crate::security::yaml_error::YamlError::from_serde(&e)),
        })?;
        if repr.version != FILE_VERSION {
            return Err(CredentialError::InvalidField {
                field: "version",
                problem: format!(
                    "unsupported version {} (expected {FILE_VERSION})",
                    repr.version
                ),
            });
        }
        let server_secret = decode_fixed::<32>(&repr.server_secret).map_err(|problem| {
            CredentialError::InvalidField {
                field: "server_secret",
                problem,
            }
        })?;
        let mut users = BTreeMap::new();
        for (name, u) in repr.users {
            validate_user_name(&name)?;
            let bad = |field, problem: String| CredentialError::InvalidUser {
                user: name.clone(),
                field,
                problem,
            };
            if u.mechanism != MECHANISM {
                return Err(bad("mechanism", format!("only {MECHANISM} is supported")));
            }
            let salt = STANDARD
                .decode(&u.salt)
                .map_err(|_| bad("salt", "not valid base64".into()))?;
            let stored_key = decode_fixed::<64>(&u.stored_key).map_err(|p| bad("stored_key", p))?;
            let server_key = decode_fixed::<64>(&u.server_key).map_err(|p| bad("server_key", p))?;
            let cred = ScramCredential {
                salt,
                stored_key,
                server_key,
                iterations: u.iterations,
            };
            validate_credential(&name, &cred)?;
            users.insert(name, cred);
        }
        Ok(CredentialFile {
            server_secret,
            users,
        })
    }

    /// Serialize to the documented YAML layout, with a header comment.
    pub fn to_yaml_string(&self) -> String {
        let repr = FileRepr {
            version: FILE_VERSION,
            server_secret: STANDARD.encode(self.server_secret),
            users: self
                .users
                .iter()
                .map(|(name, c)| {
                    let u = UserRepr {
                        mechanism: MECHANISM.to_string(),
                        iterations: c.iterations,
                        salt: STANDARD.encode(&c.salt),
                        stored_key: STANDARD.encode(c.stored_key),
                        server_key: STANDARD.encode(c.server_key),
                    };
                    (name.clone(), u)
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

    /// Add a new user (runs PBKDF2). Fails if the user exists.
    pub fn add_user(&mut self, name: &str, password: &str, iterations: u32) -> Result<()> {
        validate_user_name(name)?;
        if self.users.contains_key(name) {
            return Err(CredentialError::UserExists(name.to_string()));
        }
        let cred = ScramCredential::from_password(password, iterations)?;
        self.users.insert(name.to_string(), cred);
        Ok(())
    }

    /// Replace an existing user's password (new salt). Fails if missing.
    pub fn set_password(&mut self, name: &str, password: &str, iterations: u32) -> Result<()> {
        if !self.users.contains_key(name) {
            return Err(CredentialError::NoSuchUser(name.to_string()));
        }
        let cred = ScramCredential::from_password(password, iterations)?;
        self.users.insert(name.to_string(), cred);
        Ok(())
    }

    /// Insert or replace a precomputed credential (e.g. imported from Kafka).
    pub fn upsert_credential(&mut self, name: &str, cred: ScramCredential) -> Result<()> {
        validate_user_name(name)?;
        validate_credential(name, &cred)?;
        self.users.insert(name.to_string(), cred);
        Ok(())
    }

    pub fn remove_user(&mut self, name: &str) -> Result<()> {
        self.users
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| CredentialError::NoSuchUser(name.to_string()))
    }

    /// (name, mechanism, iterations), sorted by name.
    pub fn users(&self) -> Vec<(String, &'static str, u32)> {
        self.users
            .iter()
            .map(|(n, c)| (n.clone(), MECHANISM, c.iterations))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<ScramCredential> {
        self.users.get(name).cloned()
    }

    /// Secret for deriving unknown users' fake salts (`ScramServer::new`).
    pub fn server_secret(&self) -> [u8; 32] {
        self.server_secret
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }
}

fn decode_fixed<const N: usize>(b64: &str) -> std::result::Result<[u8; N], String> {
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| "not valid base64".to_string())?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| format!("must decode to {N} bytes, got {len}"))
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

    /// Credential for `user` from the current snapshot (lock-free).
    pub fn lookup(&self, user: &str) -> Option<ScramCredential> {
        self.current.load().get(user)
    }

    /// Server secret of the current snapshot, for `ScramServer::new`.
    pub fn fake_secret(&self) -> [u8; 32] {
        self.current.load().server_secret()
    }

    /// Fingerprint of `user`'s current key (see
    /// [`ScramCredential::fingerprint`]). A session records it at login;
    /// `None` later means the user was removed, a different value means the
    /// password changed.
    pub fn fingerprint_of(&self, user: &str) -> Option<u64> {
        self.current.load().users.get(user).map(|c| c.fingerprint())
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
                ("alice".to_string(), MECHANISM, IT),
                ("bob,=x".to_string(), MECHANISM, DEFAULT_ITERATIONS)
            ]
        );
        let text = fs::read_to_string(&path).expect("read");
        assert!(text.starts_with("# Portcullis credential store"));
        assert!(text.contains("mechanism: SCRAM-SHA-512"));
        assert!(!text.contains("pw-a"));
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
        text = text.replacen("    mechanism:", "    colour: blue\n    mechanism:", 1);
        let err = CredentialFile::from_yaml_str(&text, "t").expect_err("unknown field");
        let msg = err.to_string();
        assert!(
            msg.contains("unknown key") && msg.contains("`users.alice.colour`"),
            "{msg}"
        );
        assert!(msg.contains("`mechanism`"), "{msg}");
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
        let key = STANDARD.encode(s.get("alice").expect("a").stored_key);
        let cases = [
            (
                good.replacen("iterations: 4096", "iterations: 100", 1),
                "iterations",
            ),
            (good.replacen(&key, "AAAA", 1), "stored_key"),
            (
                good.replacen("mechanism: SCRAM-SHA-512", "mechanism: PLAIN", 1),
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
        let before = f.get("u").expect("u");
        f.set_password("u", "q", IT).expect("set");
        assert_ne!(before.fingerprint(), f.get("u").expect("u").fingerprint());
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
        assert_eq!(store.lookup("alice"), None);
        store
            .modify(|f| f.add_user("alice", "pw", IT))
            .expect("modify");
        let fp = store.fingerprint_of("alice").expect("present");
        assert_eq!(
            CredentialFile::load(&path).expect("load").get("alice"),
            store.lookup("alice")
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
            wait_for(Duration::from_secs(5), || store.lookup("bob").is_some()),
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
        assert!(store.lookup("alice").is_some() && store.lookup("bob").is_some());
        assert!(store.reload().is_err());

        // Fixing the file is picked up again.
        let mut fixed = other.clone();
        fixed.remove_user("alice").expect("rm");
        fixed.save(&path).expect("save");
        assert!(
            wait_for(Duration::from_secs(5), || store.lookup("alice").is_none()),
            "fixed file not reloaded"
        );
        assert!(store.lookup("bob").is_some());
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
        let seen = wait_for(Duration::from_secs(5), || store.lookup("carol").is_some());
        drop(handle);
        assert!(seen, "poll did not pick up the change");
    }
}
