pub mod credentials;
pub mod scram;
pub mod session;
pub mod throttle;
pub mod yaml_error;
