//! Admin subcommands of the `portcullis` binary.

pub mod acl;
pub mod applied;
pub mod audit;
pub mod certs;
pub mod cluster;
pub mod connect;
pub mod group;
pub mod policy;
pub mod quota;
pub mod topic;
pub mod user;
