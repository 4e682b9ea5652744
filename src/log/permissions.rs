//! Who may read the log engine's files: the data directory, every topic and
//! partition directory and every file in them are private to the broker's
//! user (files are written through `util::atomic_file` with [`FILE_MODE`]).

use std::fs;
use std::path::Path;

/// Mode of every file the log engine writes: topic data is as private as
/// the credential store (records are readable by no other local user).
pub const FILE_MODE: u32 = 0o600;
/// Mode of the data directory and every topic and partition directory.
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` (and missing parents) and makes it private.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    // `mode` does not apply to a directory that already existed.
    tighten(dir, DIR_MODE).map(|_| ())
}

/// Clears the group and other bits of `path` beyond `mode`; true if it
/// changed anything. Symlinks are left alone (their target is not ours).
fn tighten(path: &Path, mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(false);
    }
    let cur = meta.permissions().mode() & 0o7777;
    if cur & !mode == 0 {
        return Ok(false);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(cur & mode))?;
    Ok(true)
}

/// Makes a data directory written by an older version private: `root` and
/// every directory below it `DIR_MODE`, every file `FILE_MODE`, down to
/// `depth` levels. Best effort: an entry that cannot be read or changed
/// (another owner's `lost+found`) is counted, not fatal.
pub fn tighten_tree(root: &Path, depth: usize) -> Tightened {
    let mut t = Tightened::default();
    tighten_into(root, depth, &mut t);
    t
}

/// What [`tighten_tree`] did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Tightened {
    pub changed: usize,
    pub failed: usize,
}

fn tighten_into(dir: &Path, depth: usize, t: &mut Tightened) {
    let one = |path: &Path, mode: u32, t: &mut Tightened| match tighten(path, mode) {
        Ok(changed) => t.changed += usize::from(changed),
        Err(_) => t.failed += 1,
    };
    one(dir, DIR_MODE, t);
    if depth == 0 {
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        t.failed += 1;
        return;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else {
            t.failed += 1;
            continue;
        };
        let path = entry.path();
        if ft.is_dir() {
            tighten_into(&path, depth - 1, t);
        } else if ft.is_file() {
            one(&path, FILE_MODE, t);
        }
    }
}
