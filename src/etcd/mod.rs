//! The etcd-compatible server.

pub mod mvcc;
pub mod proto;
