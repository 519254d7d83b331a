//! The etcd-compatible server.

pub mod config;
pub mod membership;
pub mod proto;
