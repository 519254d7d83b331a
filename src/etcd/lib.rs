//! The etcd-compatible server. See `docs/ARCHITECTURE.md` for how a request flows
//! from `grpc` through `server` and `raft_node` into `apply` (MVCC, leases, auth) and
//! back out to `watch`.

pub mod apply;
pub mod auth;
pub mod authority;
pub mod backup;
pub mod backup_agent;
pub mod config;
pub mod grpc;
pub mod lease;
pub mod listen;
pub mod membership;
pub mod metrics;
pub mod mvcc;
pub mod peer;
pub use rustcd_proto as proto;
pub mod raft_node;
pub mod run;
pub mod server;
pub mod storage;
pub mod tls;
pub mod watch;
