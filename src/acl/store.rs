//! The live rule set: loaded from the ACL file, swapped atomically when the
//! file changes (readers never lock), and edited through the file so the
//! file stays the source of truth.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::authorizer::AclSet;
use super::file::{AclFile, AclFileError};
use crate::util::hot_reload::{self, Reloadable, Reloaded, Version};

/// An edit through [`AclStore::modify`] is in force (reloads from the file
/// are reported by the reload loop instead).
#[derive(Debug, Clone)]
pub enum ReloadEvent {
    Accepted { rules: usize },
}

type ReloadHook = Box<dyn Fn(&ReloadEvent) + Send + Sync>;

pub struct AclStore {
    path: PathBuf,
    super_users: Vec<String>,
    current: ArcSwap<AclSet>,
    /// The version in force. Held by edits (API, CLI-in-process) and
    /// reloads alike, so a reload that read the file before an edit wrote
    /// it cannot put the older content back in force after the edit.
    edit: Mutex<Version>,
    /// A missing file is "no rules" (the CLI, or `acl.allow_missing`);
    /// otherwise it is refused like any invalid version.
    allow_missing: bool,
    hook: Mutex<Option<ReloadHook>>,
}

impl AclStore {
    /// Loads the file. A missing file is an error unless `allow_missing`.
    pub fn open(
        path: &Path,
        super_users: Vec<String>,
        allow_missing: bool,
    ) -> Result<Arc<AclStore>, AclFileError> {
        let name = path.display().to_string();
        let (file, bytes) = match AclFile::read(path)? {
            Some(b) => (AclFile::parse_bytes(&b, &name)?, b),
            None if allow_missing => (AclFile::default(), Vec::new()),
            None => return Err(AclFileError::Missing { path: name }),
        };
        let set = AclSet::new(
            file.rules,
            super_users.clone(),
            file.allow_everyone_if_no_acl_found,
        );
        Ok(Arc::new(AclStore {
            path: path.to_path_buf(),
            super_users,
            current: ArcSwap::from_pointee(set),
            edit: Mutex::new(Version {
                sha256: hot_reload::sha256(&bytes),
                generation: 1,
            }),
            allow_missing,
            hook: Mutex::new(None),
        }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rule set in force, without locking.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<AclSet>> {
        self.current.load()
    }

    /// The content in force (its hash) and how many versions came before.
    pub fn version(&self) -> Version {
        *self.lock()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Version> {
        self.edit.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Called after an edit through [`AclStore::modify`] is in force
    /// (reloads are reported by the reload loop).
    pub fn set_reload_hook(&self, hook: impl Fn(&ReloadEvent) + Send + Sync + 'static) {
        *self.hook.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(hook));
    }

    fn emit(&self, ev: &ReloadEvent) {
        if let Some(h) = self.hook.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            h(ev);
        }
    }

    fn install(&self, file: AclFile) -> usize {
        let n = file.rules.len();
        self.current.store(Arc::new(AclSet::new(
            file.rules,
            self.super_users.clone(),
            file.allow_everyone_if_no_acl_found,
        )));
        n
    }

    /// Reads the file and puts it in force if its content differs from the
    /// version in force. An invalid, empty, unreadable or (unless allowed)
    /// missing file is refused and the rules in force stay.
    pub fn reload(&self) -> Result<Reloaded, AclFileError> {
        let mut version = self.lock();
        let name = self.path.display().to_string();
        let bytes = match AclFile::read(&self.path)? {
            Some(b) => Some(b),
            None if self.allow_missing => None,
            None => return Err(AclFileError::Missing { path: name }),
        };
        let sha256 = hot_reload::sha256(bytes.as_deref().unwrap_or_default());
        if sha256 == version.sha256 {
            return Ok(Reloaded::Unchanged);
        }
        let file = match &bytes {
            // An editor truncating before writing must not open everything
            // up (or shut everything down) for a moment: an empty file is
            // taken as a write in progress. `rules: []` removes all rules.
            Some(b) if b.is_empty() => return Err(AclFileError::Empty { path: name }),
            Some(b) => AclFile::parse_bytes(b, &name)?,
            None => AclFile::default(),
        };
        let rules = self.install(file);
        *version = Version {
            sha256,
            generation: version.generation + 1,
        };
        let generation = version.generation;
        drop(version);
        tracing::info!(path = %self.path.display(), generation, rules, "ACL file reloaded");
        Ok(Reloaded::Applied { entries: rules })
    }

    /// Applies `f` to the file as it is on disk now, validates the result,
    /// writes it atomically and puts it in force.
    pub fn modify<T>(&self, f: impl FnOnce(&mut AclFile) -> T) -> Result<T, AclFileError> {
        let mut version = self.lock();
        let _file_lock =
            crate::util::file_lock::FileLock::acquire(&self.path).map_err(|source| {
                AclFileError::Write {
                    path: self.path.display().to_string(),
                    source,
                }
            })?;
        let mut file = if self.allow_missing {
            AclFile::load_or_default(&self.path)?
        } else {
            AclFile::load(&self.path)?
        };
        let before = (file.rules.clone(), file.allow_everyone_if_no_acl_found);
        let out = f(&mut file);
        if (file.rules.clone(), file.allow_everyone_if_no_acl_found) == before {
            // Nothing to change: leave the file (and its comments) alone.
            return Ok(out);
        }
        // Round-trip through the parser: what we write must load.
        let text = file.render();
        let checked = AclFile::parse(&text, &self.path.display().to_string())?;
        checked.save(&self.path)?;
        let rules = self.install(checked);
        *version = Version {
            sha256: hot_reload::sha256(text.as_bytes()),
            generation: version.generation + 1,
        };
        drop(version);
        self.emit(&ReloadEvent::Accepted { rules });
        Ok(out)
    }

    /// Keeps the rules in force in step with the file (see
    /// [`crate::util::hot_reload`]): an edit is in force within a second, a
    /// failed reload is retried until the file on disk is in force.
    pub fn spawn_watcher(
        self: &Arc<Self>,
        reporter: Option<hot_reload::Reporter>,
    ) -> std::io::Result<hot_reload::ReloadHandle> {
        hot_reload::spawn(self, reporter, true)
    }
}

impl Reloadable for AclStore {
    type Error = AclFileError;
    fn what(&self) -> &'static str {
        "ACL file"
    }
    fn files(&self) -> Vec<PathBuf> {
        vec![self.path.clone()]
    }
    fn ack_path(&self) -> Option<PathBuf> {
        Some(hot_reload::ack_path_for(&self.path))
    }
    fn version(&self) -> Version {
        AclStore::version(self)
    }
    fn reload(&self) -> Result<Reloaded, AclFileError> {
        AclStore::reload(self)
    }
}

/// The default file written on a first start (see `start::start`): no
/// rules, so everyone but the super users is denied.
pub const DEFAULT_FILE: &str = "# Portcullis ACLs (see README: ACLs). One rule per line, e.g.\n\
# rules:\n\
#   - {allow: \"User:alice\", operations: [write], topic: orders}\n\
allow_everyone_if_no_acl_found: false\n\
rules: []\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::model::{Operation, ResourceType};

    #[test]
    fn bad_edit_keeps_last_good_rules_and_good_edit_applies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acls.yaml");
        std::fs::write(
            &path,
            "rules:\n  - {allow: User:a, operations: [read], topic: t}\n",
        )
        .unwrap();
        let store = AclStore::open(&path, vec![], false).unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        assert!(store
            .snapshot()
            .allowed("User:a", ip, Operation::Read, ResourceType::Topic, "t"));
        std::fs::write(
            &path,
            "rules:\n  - {allow: User:a, operations: [rread], topic: t}\n",
        )
        .unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.version().generation, 1);
        assert!(store
            .snapshot()
            .allowed("User:a", ip, Operation::Read, ResourceType::Topic, "t"));
        std::fs::write(
            &path,
            "rules:\n  - {allow: User:a, operations: [write], topic: t}\n",
        )
        .unwrap();
        assert!(matches!(
            store.reload(),
            Ok(Reloaded::Applied { entries: 1 })
        ));
        assert!(matches!(store.reload(), Ok(Reloaded::Unchanged)));
        assert_eq!(store.version().generation, 2);
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(store.reload(), Err(AclFileError::Missing { .. })));
        assert!(!store
            .snapshot()
            .allowed("User:a", ip, Operation::Read, ResourceType::Topic, "t"));
    }
}
