//! Hostile clients: log_limits (see main.rs).
