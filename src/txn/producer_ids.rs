//! Producer id allocation. Ids are handed out from blocks whose upper bound
//! is persisted before any id of the block is used, so an id is never
//! reused after a restart or a crash (a crash merely skips the rest of the
//! block).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::log::permissions::FILE_MODE;
use crate::util::atomic_file::write_atomic;

const BLOCK: i64 = 1000;

pub struct ProducerIds {
    path: PathBuf,
    state: Mutex<(i64, i64)>,
}

impl ProducerIds {
    pub fn open(data_dir: &Path) -> std::io::Result<ProducerIds> {
        let path = data_dir.join("producer-id-block");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<i64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        // Everything below the persisted bound may have been handed out.
        Ok(ProducerIds {
            path,
            state: Mutex::new((next, next)),
        })
    }

    pub fn next(&self) -> std::io::Result<i64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.0 >= st.1 {
            let bound = st.1 + BLOCK;
            write_atomic(&self.path, bound.to_string().as_bytes(), FILE_MODE)?;
            st.1 = bound;
        }
        let id = st.0;
        st.0 += 1;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let a = ProducerIds::open(dir.path()).unwrap();
        let first: Vec<i64> = (0..3).map(|_| a.next().unwrap()).collect();
        assert_eq!(first, vec![0, 1, 2]);
        drop(a);
        let b = ProducerIds::open(dir.path()).unwrap();
        assert!(b.next().unwrap() >= 3);
    }
}
