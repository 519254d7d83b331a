//! The Raft node: one thread that owns raft-rs's `RawNode`, the WAL and the snapshot
//! files, and runs the Ready loop (propose -> persist -> apply -> advance).
//!
//! Invariants at this boundary:
//! - An entry is acknowledged (its waiter woken) only after it was fsynced to the WAL and
//!   applied to the state machine, in log order.
//! - Proposals arriving while one fsync runs are batched into the next Ready: one fsync
//!   covers every proposal of a batch (group commit).
//! - A linearizable read is released only when the applied index has reached the read
//!   index Raft confirmed for it.

mod driver;
mod logger;
mod storage;
mod view;

pub use driver::{snapshot_metadata, spawn, DriverConfig, DriverHooks, Durable, RaftError, RaftHandle};
pub use logger::raft_logger;
pub use storage::NodeStorage;
pub use view::RaftView;
