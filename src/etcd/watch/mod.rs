//! The watch subsystem: fans MVCC events out to watchers and serves the
//! bidirectional `etcdserverpb.Watch/Watch` gRPC stream with etcd 3.5 semantics.
//!
//! # Pieces
//!
//! * [`WatchHub`] owns every watcher of every stream. The apply loop calls
//!   [`WatchHub::notify`] after each applied write; it never blocks there.
//! * [`WatchService`] is the stream engine (transport-agnostic; `grpc::watch` serves it as
//!   the tonic `Watch` service): one task per stream reads create / cancel / progress
//!   requests and registers watchers in the hub; the response stream drains a per-stream
//!   queue the hub fills.
//! * [`History`] and [`HeaderSource`] are what the hub needs from the rest of
//!   the server (the MVCC store and the cluster / Raft identity).
//!
//! # Wiring
//!
//! ```ignore
//! let hub = WatchHub::new(store.clone(), header_source, Duration::from_secs(600));
//! // apply loop, after each write is visible in `store`, in revision order:
//! hub.notify(revision, &events_with_prev_kv);
//! // after installing a snapshot: hub.restore();
//! let svc = WatchService::new(hub.clone())
//!     .with_max_request_bytes(cfg.max_request_bytes)
//!     // per stream, the permissions of the stream's user:
//!     .with_authorizer(authorizer);
//! let responses = svc.serve_stream(requests);
//! // metrics: hub.stats()
//! ```
//!
//! # Synced and unsynced watchers
//!
//! Like etcd's `watchableStore`, each watcher is in one of these states:
//!
//! * **synced**: it has been offered every matching event up to the last
//!   revision passed to `notify`; `notify` queues new events for it directly.
//! * **unsynced**: it still has to read history from `min_rev` on; `notify`
//!   ignores it. A new watcher with a past `start_revision` starts here, and a
//!   synced watcher whose stream queue is full when `notify` runs is moved
//!   here (etcd's "victim" / slow watcher) with `min_rev` = the revision it
//!   could not take. The "watch-sync" thread reads [`History::events_since`]
//!   for it and queues whole revisions (about 1000 events per response unless
//!   one revision is bigger). A watcher whose `min_rev` falls below the
//!   compaction revision is cancelled with a `compact_revision` response.
//! * **tail**: catch-up reached the revision announced when its read started,
//!   but writes went on meanwhile. The watcher is then indexed for `notify`,
//!   which buffers its events from `tail_from` on, while the sync thread reads
//!   the remaining stretch `[min_rev, tail_from)` from history; once both are
//!   queued it is synced. So catch-up finishes under constant writes, and
//!   history is never read while the hub lock is held: a store may call
//!   `notify` while holding locks its `events_since` takes.
//!
//! # No gaps, no duplicates
//!
//! `min_rev` is the lowest revision not yet offered to a watcher: every
//! matching event below it has been queued exactly once, in revision order,
//! and nothing at or above it has. `notify` skips events below a synced
//! watcher's `min_rev` (and the tail buffer skips those below `tail_from`);
//! catch-up hands over complete revisions only (never splitting one, even when
//! `History` stops inside it) and only revisions already announced to
//! `notify`, so they are known to be in history. State switches happen under
//! the hub lock against the announced revision, so every revision reaches a
//! watcher by exactly one path: history or `notify`. All responses of a
//! stream, control responses included, go through one ordered queue: a
//! `created` response precedes the watcher's events and `canceled` follows
//! them, and a progress response (watch id -1) is only sent once every
//! watcher of the stream is synced, so it never runs ahead of queued events.
//!
//! # Differences from etcd worth knowing
//!
//! * Compaction cancellations carry `cancel_reason` [`ERR_COMPACTED`]; etcd
//!   leaves it empty (clients derive the error from `compact_revision`).
//! * A negative `start_revision` is rejected (created + canceled, watch id -1,
//!   [`ERR_COMPACTED`]) as etcd 3.6 does; etcd 3.4 accepted it.

mod hub;
mod progress;
mod state;
mod stream;
mod sync;
mod watcher;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod grpc_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_stress;

use crate::proto::{etcdserverpb, mvccpb};

pub use hub::{WatchHub, WatchStats, DEFAULT_QUEUE_CAPACITY};
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
    /// previous version existed. `Err(compact_rev)` if `start_rev` is
    /// compacted. etcd lets a watch start *at* the compaction revision, so
    /// ideally only `start_rev < compact_rev` errs; the hub itself cancels
    /// watchers with `min_rev < compact_revision()` and treats any `Err` from
    /// here as compaction too. Called from the sync thread, never under the
    /// hub lock.
    fn events_since(&self, start_rev: i64, key: &[u8], range_end: &[u8], max: usize)
        -> Result<Vec<mvccpb::Event>, i64>;
}

/// Fills response headers (cluster_id, member_id, raft_term, revision).
pub trait HeaderSource: Send + Sync + 'static {
    /// A header carrying `revision`.
    fn header(&self, revision: i64) -> etcdserverpb::ResponseHeader;
}
