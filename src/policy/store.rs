//! The live policy set: loaded from the policy file and swapped atomically
//! when the file changes (readers never lock), like the ACL store. A broken
//! version is refused (the reload loop reports it, with its line, to the
//! broker's audit) and the last good one stays in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::file::{self, PolicyFileError};
use super::set::PolicySet;
use crate::util::hot_reload::{self, Reloadable, Reloaded, Version};

pub struct PolicyStore {
    path: PathBuf,
    current: ArcSwap<PolicySet>,
    /// The version in force; held by reloads so two never interleave.
    version: Mutex<Version>,
    /// The default path may be absent (no policies); an explicitly
    /// configured one may not (a typo must not silently drop every rule).
    allow_missing: bool,
}

impl PolicyStore {
    /// Loads the file. A missing file is no policies when `allow_missing`,
    /// else an error.
    pub fn open(path: &Path, allow_missing: bool) -> Result<Arc<PolicyStore>, PolicyFileError> {
        let name = path.display().to_string();
        let (set, bytes) = match file::read(path)? {
            Some(b) => (file::parse_bytes(&b, &name)?, b),
            None if allow_missing => (PolicySet::default(), Vec::new()),
            None => return Err(PolicyFileError::Missing { path: name }),
        };
        Ok(Arc::new(PolicyStore {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(set),
            version: Mutex::new(Version {
                sha256: hot_reload::sha256(&bytes),
                generation: 1,
            }),
            allow_missing,
        }))
    }

    /// The store of the config's `policy.file`: missing is allowed only at
    /// the default path.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Arc<PolicyStore>, PolicyFileError> {
        PolicyStore::open(&cfg.policy.file, !cfg.is_explicit("policy.file"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The policies in force, without locking: take one per request.
    pub fn snapshot(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The content in force (its hash) and how many versions came before.
    pub fn version(&self) -> Version {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Version> {
        self.version.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the file and puts it in force if its content differs from the
    /// version in force. An invalid, empty, unreadable or (unless allowed)
    /// missing file is refused and the policies in force stay.
    pub fn reload(&self) -> Result<Reloaded, PolicyFileError> {
        let mut version = self.lock();
        let name = self.path.display().to_string();
        let bytes = match file::read(&self.path)? {
            Some(b) => Some(b),
            None if self.allow_missing => None,
            None => return Err(PolicyFileError::Missing { path: name }),
        };
        let sha256 = hot_reload::sha256(bytes.as_deref().unwrap_or_default());
        if sha256 == version.sha256 {
            return Ok(Reloaded::Unchanged);
        }
        let set = match &bytes {
            // An editor truncating before writing must not drop every
            // policy for a moment; `rules: []` removes them all.
            Some(b) if b.is_empty() => return Err(PolicyFileError::Empty { path: name }),
            Some(b) => file::parse_bytes(b, &name)?,
            None => PolicySet::default(),
        };
        let rules = set.len();
        self.current.store(Arc::new(set));
        *version = Version {
            sha256,
            generation: version.generation + 1,
        };
        let generation = version.generation;
        drop(version);
        tracing::info!(path = %self.path.display(), generation, rules, "policy file reloaded");
        Ok(Reloaded::Applied { entries: rules })
    }

    /// Keeps the policies in force in step with the file (see
    /// [`crate::util::hot_reload`]); failed reloads go to `reporter`.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        reporter: Option<hot_reload::Reporter>,
    ) -> std::io::Result<hot_reload::ReloadHandle> {
        hot_reload::spawn(self, reporter, true)
    }
}

impl Reloadable for PolicyStore {
    type Error = PolicyFileError;
    fn what(&self) -> &'static str {
        "policy file"
    }
    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
    fn ack_path(&self) -> Option<PathBuf> {
        Some(hot_reload::ack_path_for(&self.path))
    }
    fn version(&self) -> Version {
        PolicyStore::version(self)
    }
    fn reload(&self) -> Result<Reloaded, PolicyFileError> {
        PolicyStore::reload(self)
    }
}
