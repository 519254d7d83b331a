//! The etcd-compatible server.

pub mod lease;
pub mod proto;
