//! rustcd: an etcd-compatible, Raft-replicated key-value store.
//!
//! `etcd` holds the server (Raft, MVCC storage, leases, auth, gRPC services); `controller` holds the
//! Kubernetes operator's API types, CRD generation and membership planner.
//! See `docs/ARCHITECTURE.md` for the map.

pub mod controller;
pub mod etcd;
