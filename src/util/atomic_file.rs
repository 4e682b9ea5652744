//! The one way the broker and its CLI replace a file: the new content goes
//! to a temporary file in the same directory, created with its final mode
//! (a key or a credential is never readable by others, not even for a
//! moment), is fsynced, renamed over the target, and the directory is
//! fsynced. A reader (a hot-reload watcher, another broker, a crash
//! recovery) sees the old content or the new, never a torn file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Replaces `path` with `data` (mode `mode`, less the umask) so that a
/// crash leaves either the old or the new content, and the new content
/// survives a crash once this returns.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace(path, data, mode, true)
}

/// [`write_atomic`] without the fsyncs: still never torn for a reader, but
/// a crash may lose the new content (or leave an empty file under the new
/// name on file systems that reorder the rename before the data). Only for
/// files whose reader checks them (a CRC) and can do without them, where
/// an fsync per write would cost more than the file saves.
pub fn write_atomic_unsynced(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    replace(path, data, mode, false)
}

fn replace(path: &Path, data: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    // Hidden, and unique per writer: two threads or processes saving the
    // same file never share (or truncate) each other's temporary file.
    let tmp = dir.join(format!(
        ".{}.tmp.{}.{:016x}",
        name.to_string_lossy(),
        std::process::id(),
        rand::random::<u64>()
    ));
    create(&tmp, data, mode, sync)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    if sync {
        // The rename itself is durable only once the directory is.
        sync_dir(&dir)?;
    }
    Ok(())
}

/// Creates `path` holding `data`, fsynced, failing if it exists
/// (`AlreadyExists`): never clobbers a file, even one created in a race.
/// Not atomic for readers (they may see it half-written); a failed write
/// removes what it created.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    create(path, data, mode, true)
}

fn create(path: &Path, data: &[u8], mode: u32, sync: bool) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        // O_EXCL: a symlink planted under this name is never followed.
        .create_new(true)
        // Set at creation, not chmod'ed later.
        .mode(mode)
        .open(path)?;
    let written = f
        .write_all(data)
        .and_then(|()| if sync { f.sync_all() } else { Ok(()) });
    if written.is_err() {
        drop(f);
        let _ = fs::remove_file(path);
    }
    written
}

/// Makes the directory entries of `dir` (a create, rename or delete in it)
/// durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory `path` is in; `.` for a bare file name.
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn replaces_with_the_given_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        write_atomic_unsynced(&path, b"newer", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"newer");
        assert_eq!(names(dir.path()), vec!["f"]);
    }

    #[test]
    fn a_symlink_target_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        write_atomic(&link, b"mine", 0o600).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_failed_rename_removes_the_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory cannot be replaced by a file.
        let target = dir.path().join("d");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("x"), "").unwrap();
        assert!(write_atomic(&target, b"data", 0o600).is_err());
        assert_eq!(names(dir.path()), vec!["d"]);
    }

    #[test]
    fn write_new_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write_new(&path, b"first", 0o600).unwrap();
        assert_eq!(mode(&path), 0o600);
        let e = write_new(&path, b"second", 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"first");
    }

    #[test]
    fn bare_file_names_live_in_the_current_directory() {
        assert_eq!(parent_dir(Path::new("acls.yaml")), PathBuf::from("."));
        assert_eq!(parent_dir(Path::new("/etc/x")), PathBuf::from("/etc"));
    }
}
