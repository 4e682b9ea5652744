//! Replacing sealed segments with their cleaned version, crash-safely.
//!
//! The steps, as Kafka's (`.cleaned`, `.swap`, delete, rename):
//!
//! 1. the cleaned data is written and fsynced as `<base>.cleaned`;
//! 2. it is renamed `<base>-<end>.swap` and the directory fsynced: from here
//!    on the swap wins. `end` is the first offset after the replaced
//!    segments, so recovery knows which ones it replaces;
//! 3. the replaced segments' files are deleted;
//! 4. the swap is renamed `<base>.log`.
//!
//! On start ([`recover`]): a `.cleaned` file is deleted (the old segments
//! are intact); a `.swap` file finishes steps 3 and 4. A crash anywhere
//! therefore leaves the old segments or the new one, never both and never
//! neither. The cleaned data holds the same offsets as the old, minus what
//! cleaning removes, so a consumer sees no record twice.

use std::path::{Path, PathBuf};

use super::super::segment::log_path;
use super::super::LogError;
use crate::util::atomic_file::sync_dir;

pub fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.cleaned"))
}

pub fn swap_path(dir: &Path, base: i64, end: i64) -> PathBuf {
    dir.join(format!("{base:020}-{end:020}.swap"))
}

fn parse_swap(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(".swap")?;
    let (a, b) = stem.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Deletes a segment's data and index files.
pub fn delete_segment_files(dir: &Path, base: i64) -> std::io::Result<()> {
    for ext in ["log", "index", "timeindex"] {
        match std::fs::remove_file(dir.join(format!("{base:020}.{ext}"))) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Finishes or undoes a clean interrupted by a crash. Runs before the
/// partition's segments are listed.
pub fn recover(dir: &Path) -> Result<usize, LogError> {
    let io = |e| LogError::io(dir, e);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        names.push(
            entry
                .map_err(io)?
                .file_name()
                .to_string_lossy()
                .into_owned(),
        );
    }
    let mut finished = 0;
    for name in &names {
        if name.ends_with(".cleaned") {
            std::fs::remove_file(dir.join(name)).map_err(io)?;
        }
    }
    for name in &names {
        let Some((base, end)) = parse_swap(name) else {
            continue;
        };
        for old in &names {
            let Some(b) = old.strip_suffix(".log").and_then(|s| s.parse::<i64>().ok()) else {
                continue;
            };
            if (base..end).contains(&b) {
                delete_segment_files(dir, b).map_err(io)?;
            }
        }
        // Index files of a base whose log went in an earlier attempt.
        delete_segment_files(dir, base).map_err(io)?;
        std::fs::rename(dir.join(name), log_path(dir, base)).map_err(io)?;
        finished += 1;
    }
    if finished > 0 || names.iter().any(|n| n.ends_with(".cleaned")) {
        sync_dir(dir).map_err(io)?;
    }
    Ok(finished)
}

/// Where a test or an operator's experiment stops the cleaner: the steps
/// of a swap, by name.
pub const STEPS: &[&str] = &[
    "cleaned-written",
    "swap-committed",
    "old-partly-deleted",
    "old-deleted",
    "swapped",
];

/// A crash injected at `step`: with `PORTCULLIS_CLEANER_CRASH_AT=<step>`
/// in its environment the broker aborts there, as kill -9 would stop it
/// (the crash-recovery tests use it). Unit tests stop with an error
/// instead, through [`set_test_fault`].
pub fn fault(step: &str) -> Result<(), LogError> {
    debug_assert!(STEPS.contains(&step));
    if std::env::var("PORTCULLIS_CLEANER_CRASH_AT").is_ok_and(|s| s == step) {
        tracing::error!(step, "PORTCULLIS_CLEANER_CRASH_AT: aborting the process");
        std::process::abort();
    }
    #[cfg(test)]
    if test_fault::hit(step) {
        return Err(LogError::io(
            Path::new(step),
            std::io::Error::other("injected crash"),
        ));
    }
    Ok(())
}

#[cfg(test)]
pub use test_fault::set as set_test_fault;

#[cfg(test)]
mod test_fault {
    use std::cell::RefCell;

    thread_local! {
        static AT: RefCell<Option<&'static str>> = const { RefCell::new(None) };
    }

    /// Makes the next [`super::fault`] at `step` on this thread fail.
    pub fn set(step: Option<&'static str>) {
        AT.with(|a| *a.borrow_mut() = step);
    }

    pub fn hit(step: &str) -> bool {
        AT.with(|a| {
            let mut a = a.borrow_mut();
            if a.is_some_and(|s| s == step) {
                *a = None;
                true
            } else {
                false
            }
        })
    }
}
