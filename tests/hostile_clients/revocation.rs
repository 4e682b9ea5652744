//! Hostile clients: revocation (see main.rs).
