//! The live rule set: loaded from the ACL file, swapped atomically when the
//! file changes (readers never lock), and edited through the file so the
//! file stays the source of truth.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};

use super::authorizer::AclSet;
use super::file::{AclFile, AclFileError};

/// How a reload went, for logs and the audit trail.
#[derive(Debug, Clone)]
pub enum ReloadEvent {
    Accepted { rules: usize },
    Refused { error: String },
}

type ReloadHook = Box<dyn Fn(&ReloadEvent) + Send + Sync>;

pub struct AclStore {
    path: PathBuf,
    super_users: Vec<String>,
    current: ArcSwap<AclSet>,
    /// Serializes edits (API, CLI-in-process) and reloads.
    edit: Mutex<Option<FileStamp>>,
    hook: Mutex<Option<ReloadHook>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok(),
        len: m.len(),
        inode: m.ino(),
    })
}

impl AclStore {
    pub fn open(path: &Path, super_users: Vec<String>) -> Result<Arc<AclStore>, AclFileError> {
        let file = AclFile::load(path)?;
        let set = AclSet::new(
            file.rules,
            super_users.clone(),
            file.allow_everyone_if_no_acl_found,
        );
        Ok(Arc::new(AclStore {
            path: path.to_path_buf(),
            super_users,
            current: ArcSwap::from_pointee(set),
            edit: Mutex::new(stamp(path)),
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

    /// Re-reads the file if it changed. An invalid file is refused and the
    /// rules in force stay.
    pub fn reload_if_changed(&self, force: bool) -> Option<ReloadEvent> {
        let mut last = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let now = stamp(&self.path);
        if !force && now == *last {
            return None;
        }
        *last = now;
        let empty = std::fs::metadata(&self.path)
            .map(|m| m.len() == 0)
            .unwrap_or(false);
        let ev = match AclFile::load(&self.path) {
            // An editor truncating before writing must not open everything
            // up (or shut everything down) for a moment: an empty file is
            // taken as a write in progress. `rules: []` removes all rules.
            Ok(_) if empty => ReloadEvent::Refused {
                error: format!(
                    "ACL file {} is empty (a write in progress?); write `rules: []` to remove every rule",
                    self.path.display()
                ),
            },
            Ok(file) => ReloadEvent::Accepted {
                rules: self.install(file),
            },
            Err(e) => ReloadEvent::Refused {
                error: e.to_string(),
            },
        };
        drop(last);
        match &ev {
            ReloadEvent::Accepted { rules } => {
                tracing::info!(path = %self.path.display(), rules, "ACL file reloaded")
            }
            ReloadEvent::Refused { error } => {
                tracing::error!(path = %self.path.display(), "ACL file refused, previous rules stay in force: {error}")
            }
        }
        self.emit(&ev);
        Some(ev)
    }

    /// Applies `f` to the file as it is on disk now, validates the result,
    /// writes it atomically and puts it in force.
    pub fn modify<T>(&self, f: impl FnOnce(&mut AclFile) -> T) -> Result<T, AclFileError> {
        let mut last = self.edit.lock().unwrap_or_else(|p| p.into_inner());
        let _file_lock = crate::log::fsutil::FileLock::acquire(&self.path).map_err(|source| {
            AclFileError::Write {
                path: self.path.display().to_string(),
                source,
            }
        })?;
        let mut file = AclFile::load(&self.path)?;
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
        *last = stamp(&self.path);
        let rules = self.install(checked);
        drop(last);
        self.emit(&ReloadEvent::Accepted { rules });
        Ok(out)
    }

    /// Watches the file (notify on its directory, plus a 250 ms poll as a
    /// fallback) so an edit is in force within a second.
    pub fn spawn_watcher(self: &Arc<Self>) -> std::io::Result<AclWatcher> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let notify_tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                if !matches!(ev.kind, notify::EventKind::Access(_)) {
                    let _ = notify_tx.send(());
                }
            }
        })
        .ok();
        if let Some(w) = watcher.as_mut() {
            if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                tracing::warn!("cannot watch {}: {e}; polling only", dir.display());
            }
        }
        let weak = Arc::downgrade(self);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        std::thread::Builder::new()
            .name("acl-watch".into())
            .spawn(move || {
                let _keep = watcher;
                while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = rx.recv_timeout(Duration::from_millis(250));
                    // Let a burst of writes settle: reload once the file has
                    // looked the same for a short moment.
                    let Some(path) = weak.upgrade().map(|s| s.path.clone()) else {
                        return;
                    };
                    let mut seen = stamp(&path);
                    loop {
                        std::thread::sleep(Duration::from_millis(30));
                        while rx.try_recv().is_ok() {}
                        let now = stamp(&path);
                        if now == seen {
                            break;
                        }
                        seen = now;
                    }
                    let Some(store) = weak.upgrade() else { return };
                    store.reload_if_changed(false);
                }
            })?;
        Ok(AclWatcher { stop })
    }
}

/// Stops the watcher thread when dropped.
pub struct AclWatcher {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for AclWatcher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

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
        let store = AclStore::open(&path, vec![]).unwrap();
        let ip = "127.0.0.1".parse().unwrap();
        assert!(store
            .snapshot()
            .allowed("User:a", ip, Operation::Read, ResourceType::Topic, "t"));
        std::fs::write(
            &path,
            "rules:\n  - {allow: User:a, operations: [rread], topic: t}\n",
        )
        .unwrap();
        assert!(matches!(
            store.reload_if_changed(true),
            Some(ReloadEvent::Refused { .. })
        ));
        assert!(store
            .snapshot()
            .allowed("User:a", ip, Operation::Read, ResourceType::Topic, "t"));
        std::fs::write(
            &path,
            "rules:\n  - {allow: User:a, operations: [write], topic: t}\n",
        )
        .unwrap();
        assert!(matches!(
            store.reload_if_changed(true),
            Some(ReloadEvent::Accepted { rules: 1 })
        ));
        assert!(!store
            .snapshot()
            .allowed("User:a", ip, Operation::Read, ResourceType::Topic, "t"));
    }
}
