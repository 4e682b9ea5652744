//! The bottom layer: file and time helpers every other layer may use.
//!
//! - [`atomic_file`]: the one atomic file writer (temp file with the final
//!   mode, fsync, rename, directory fsync).
//! - [`file_lock`]: cross-process locks for read-modify-write edits.
//! - [`hot_reload`]: the one hot-reload loop (notify watch of the files'
//!   directories, metadata polling as fallback, retry with backoff until
//!   the content on disk is in force, `<file>.applied` acknowledgements),
//!   used by the ACL file, the credential store and the TLS files.
//! - [`read_ready`]: waiting until a stream can be read, so that idle
//!   connections hold no read buffer.
//! - [`time`]: timestamps as the broker writes them.
//!
//! Nothing here imports anything else from the crate (`crate::`), so the
//! log engine, security, ACL, TLS and audit can all build on it without an
//! import circle; `scripts/import_graph.py` checks the crate for circles.

pub mod atomic_file;
pub mod file_lock;
pub mod hot_reload;
pub mod read_ready;
pub mod time;
