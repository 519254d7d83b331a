//! The watch subsystem: fans MVCC events out to watchers and serves the
//! bidirectional `etcdserverpb.Watch/Watch` gRPC stream with etcd 3.5 semantics.
//!
//! # Pieces
//!
//! * [`WatchHub`] owns every watcher of every stream. The apply loop calls
//!   [`WatchHub::notify`] after each applied write; the hub never blocks it.
//! * [`WatchService`] implements the tonic `Watch` trait: one task per gRPC
//!   stream reads create / cancel / progress requests and registers watchers in
//!   the hub; the response stream drains a per-stream queue the hub fills.
//! * [`History`] and [`HeaderSource`] are what the hub needs from the rest of
//!   the server (the MVCC store and the Raft/cluster identity).
//!
//! # Synced and unsynced watchers
//!
//! Like etcd's `watchableStore`, each watcher is in exactly one of two states:
//!
//! * **synced**: it has been sent (or filtered out) every matching event up to
//!   the last revision passed to `notify`; `notify` delivers new events to it
//!   directly by pushing a response onto its stream's queue.
//! * **unsynced**: it still has to read history from `min_rev` onwards. A new
//!   watcher with a past `start_revision` starts here, and a synced watcher
//!   whose stream queue is full when `notify` runs is moved here (etcd's
//!   "victim" state) with `min_rev` set to the revision it could not take.
//!   A background thread ("watch-sync") reads [`History::events_since`] for
//!   unsynced watchers, pushes whole revisions (at most ~1000 events per
//!   response unless one revision is larger) and moves a watcher back to synced
//!   once it has caught up with the last notified revision. A watcher whose
//!   `min_rev` falls below the compaction revision is cancelled with a
//!   `compact_revision` response.
//!
//! # No gaps, no duplicates
//!
//! Every watcher carries `min_rev`, the lowest revision it has not yet been
//! offered. The invariant is: all matching events with revision `< min_rev`
//! are queued exactly once, in revision order, and nothing with revision
//! `>= min_rev` is. `notify` skips events below a watcher's `min_rev` and
//! advances it; catch-up only hands over complete revisions (it never splits a
//! revision, even when `History` stops in the middle of one) and only revisions
//! `<=` the last notified revision, read while the watcher is unsynced (so
//! `notify` does not touch it). The switch back to synced happens under the
//! hub lock and only when catch-up has reached the notified revision, so the
//! next `notify` continues exactly where history left off. All responses of a
//! stream, control responses included, go through a single ordered queue,
//! which is why a `created` response always precedes the watcher's events and
//! a `canceled` response always follows them.

mod hub;
mod progress;
mod stream;
mod watcher;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod tests;

use crate::etcd::proto::{etcdserverpb, mvccpb};

pub use hub::WatchHub;
pub use stream::{Authorizer, WatchResponseStream, WatchService, DEFAULT_MAX_REQUEST_BYTES, GRPC_OVERHEAD_BYTES};
pub use watcher::KeyRange;

/// The `cancel_reason` etcd clients show for a watcher whose revision was compacted.
pub const ERR_COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
/// The `cancel_reason` for a create request reusing a live watch id on the same stream.
pub const ERR_DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// The `cancel_reason` for a create request whose `key >= range_end`.
pub const ERR_EMPTY_RANGE: &str = "mvcc: watcher range is empty";

/// What the watch subsystem needs from the MVCC store.
pub trait History: Send + Sync + 'static {
    /// The store's current (latest applied) revision.
    fn current_revision(&self) -> i64;
    /// The revision the store was last compacted at (0 if never).
    fn compact_revision(&self) -> i64;
    /// Events with `mod_revision >= start_rev` on `[key, range_end)` (etcd range
    /// rules: empty `range_end` = single key, `"\0"` = all keys `>= key`), in
    /// revision order, at most `max` of them (the cut may fall inside a
    /// revision; the hub handles continuation), each carrying `prev_kv` when a
    /// previous version existed. `Err(compact_rev)` if `start_rev` is compacted.
    fn events_since(&self, start_rev: i64, key: &[u8], range_end: &[u8], max: usize)
        -> Result<Vec<mvccpb::Event>, i64>;
}

/// Fills response headers (cluster_id, member_id, raft_term, revision).
pub trait HeaderSource: Send + Sync + 'static {
    /// A header carrying `revision`.
    fn header(&self, revision: i64) -> etcdserverpb::ResponseHeader;
}
