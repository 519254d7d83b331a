//! rustcd: an etcd-compatible, Raft-replicated key-value store.
//!
//! `etcd` holds the server (Raft, MVCC storage, leases, auth, gRPC services).
//! See `docs/ARCHITECTURE.md` for the map.

pub mod etcd;
