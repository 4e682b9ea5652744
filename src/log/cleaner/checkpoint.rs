//! What the cleaner remembers per partition, in `cleaner-checkpoint.json`
//! in the partition's directory (Kafka keeps the first dirty offsets in
//! `cleaner-offset-checkpoint`): where the dirty part starts, when it last
//! cleaned, and the earliest delete horizon still pending, so a pass comes
//! when tombstones are due even if nothing new is written.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::super::permissions::FILE_MODE;
use crate::util::atomic_file::write_atomic;

pub const FILE: &str = "cleaner-checkpoint.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Checkpoint {
    /// Offsets below this were cleaned by the last pass.
    pub first_dirty_offset: i64,
    /// Wall-clock ms of the last pass that finished; 0: never.
    pub last_clean_ms: i64,
    pub passes: u64,
    /// The earliest delete horizon of a tombstone or marker kept.
    pub next_horizon_ms: Option<i64>,
    /// Bytes of the cleaned segments before and after the last pass.
    pub last_bytes_before: u64,
    pub last_bytes_after: u64,
    /// How long the last pass took.
    pub last_pass_ms: u64,
}

/// The stored checkpoint; the default (everything dirty) when there is
/// none or it does not parse: cleaning again is always safe.
pub fn load(dir: &Path) -> Checkpoint {
    std::fs::read(dir.join(FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn store(dir: &Path, c: &Checkpoint) -> std::io::Result<()> {
    let data = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    write_atomic(&dir.join(FILE), &data, FILE_MODE)
}
