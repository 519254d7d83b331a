//! The etcd-compatible server.

pub mod auth;
pub mod proto;
