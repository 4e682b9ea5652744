//! Hostile clients: audit_amplification (see main.rs).
