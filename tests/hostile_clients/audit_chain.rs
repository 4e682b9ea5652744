//! Hostile clients: audit_chain (see main.rs).
