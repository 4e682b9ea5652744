//! Admin subcommands of the `portcullis` binary.

pub mod certs;
pub mod user;
