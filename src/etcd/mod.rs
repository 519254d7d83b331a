//! The etcd-compatible server.

pub mod proto;
pub mod watch;
