//! After a command rewrote a file the broker hot-reloads (the ACL file, the
//! credential store), tell the operator whether the running broker has put
//! that content in force: it publishes `<file>.applied` with the SHA-256 of
//! what it applied (see `portcullis::util::hot_reload`). A revocation that
//! the broker could not apply (e.g. its fd table is full) is then visible
//! here instead of being assumed.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use clap::Args;

use portcullis::util::hot_reload::{ack_path_for, wait_applied, AckState};

/// Exit status when a broker is running but has not applied the change
/// within `--wait-secs` (the file is written; the broker keeps retrying).
pub const EXIT_NOT_APPLIED: i32 = 3;

#[derive(Args, Clone, Copy)]
pub struct WaitArgs {
    /// After a change, wait this long for the running broker to acknowledge
    /// it (0: do not wait). Exit status 3 if a running broker has not
    /// applied it by then.
    #[arg(long, global = true, default_value_t = 5)]
    pub wait_secs: u64,
}

/// Waits for the acknowledgement of `sha256` and says what it found on
/// stderr. No broker running is a normal case (exit 0); a running broker
/// that has not applied the change ends the process with
/// [`EXIT_NOT_APPLIED`].
pub fn report(file: &Path, sha256: &[u8; 32], wait: WaitArgs) {
    if wait.wait_secs == 0 {
        return;
    }
    let state = wait_applied(file, sha256, Duration::from_secs(wait.wait_secs));
    let mut err = std::io::stderr().lock();
    match state {
        AckState::Applied { generation, pid } => {
            let _ = writeln!(
                err,
                "portcullis: applied by the running broker (generation {generation}, pid {pid})"
            );
        }
        AckState::NoBroker => {
            let _ = writeln!(
                err,
                "portcullis: NOT yet applied by a running broker: no running broker has \
                 acknowledged {} (none running?); a broker puts the file in force when it starts",
                ack_path_for(file).display()
            );
        }
        AckState::Unreadable(e) => {
            let _ = writeln!(
                err,
                "portcullis: NOT known whether a running broker applied it: cannot read {}: {e}",
                ack_path_for(file).display()
            );
        }
        AckState::Pending { generation, pid } => {
            let _ = writeln!(
                err,
                "portcullis: NOT yet applied by a running broker: broker pid {pid} still has \
                 generation {generation} in force after {} s; it retries until the file on disk \
                 is in force (see its log and `portcullis audit tail`)",
                wait.wait_secs
            );
            drop(err);
            let _ = std::io::stdout().flush();
            std::process::exit(EXIT_NOT_APPLIED);
        }
    }
}
