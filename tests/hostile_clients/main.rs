//! Edge hardening: each module plays one kind of hostile client against the
//! real binary and asserts the bound the broker keeps (memory, fds,
//! connections, audit bytes, time to close, attempt rate, reload applied).

#[path = "../common/mod.rs"]
mod common;

mod audit_amplification;
mod audit_chain;
mod connections;
mod log_limits;
mod login_abuse;
mod revocation;
