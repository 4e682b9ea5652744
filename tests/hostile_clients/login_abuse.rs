//! Hostile clients: login_abuse (see main.rs).
