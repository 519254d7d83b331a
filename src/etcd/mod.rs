//! The etcd-compatible server.

pub mod proto;
