//! Cross-process serialization of read-modify-write cycles on a file that
//! several processes edit (the broker's API handlers and the CLI both edit
//! the ACL file and the credential store).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// An exclusive advisory lock on `<path>.lock`, held until dropped. The
/// lock is on a file of its own, not on `path`: `path` is replaced by a
/// rename on every save, and a lock on the replaced inode would guard
/// nothing.
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Blocks until the lock is held.
    pub fn acquire(path: &Path) -> std::io::Result<FileLock> {
        let mut name = path.as_os_str().to_owned();
        name.push(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(PathBuf::from(name))?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock { file })
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe {
            libc::flock(self.file.as_raw_fd(), libc::LOCK_UN);
        }
    }
}
