//! Hostile clients: connections (see main.rs).
