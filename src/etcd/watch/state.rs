//! The hub's lock-protected state: streams, their queues and the indexes of
//! synced / unsynced watchers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::watcher::{KeyRange, SyncState, Watcher};
use crate::proto::etcdserverpb::WatchResponse;

/// Identifies one gRPC watch stream inside the hub.
pub(crate) type StreamId = u64;
/// Identifies one watcher: its stream and its watch id.
pub(crate) type WatcherKey = (StreamId, i64);

/// One response waiting in a stream's queue. Its header is filled, and it is
/// fragmented if needed, when the gRPC layer pulls it.
#[derive(Debug)]
pub(crate) struct Outbound {
    /// The response without header.
    pub response: WatchResponse,
    /// Revision for the header.
    pub header_rev: i64,
    /// The watcher asked for fragmentation.
    pub fragment: bool,
    /// Counts against the stream's event-queue capacity.
    pub counted: bool,
    /// Control-message slot, released once the response is pulled.
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Queue accounting shared by the hub and a stream's response side.
#[derive(Debug, Default)]
pub(crate) struct QueueState {
    /// Counted responses queued and not yet pulled.
    pub queued: AtomicUsize,
    /// A watcher of this stream was pushed back to unsynced because the queue was full.
    pub starved: AtomicBool,
}

/// The hub's end of a stream queue.
pub(crate) struct Sink {
    pub tx: mpsc::UnboundedSender<Outbound>,
    pub queue: Arc<QueueState>,
}

/// Why a response could not be queued.
pub(crate) enum PushError {
    /// The stream already holds `capacity` event responses.
    Full,
    /// The response side is gone.
    Closed,
}

impl Sink {
    /// Queues `out`; counted responses are refused once `capacity` are queued.
    pub fn push(&self, out: Outbound, capacity: usize) -> Result<(), PushError> {
        if out.counted {
            if self.queue.queued.load(SeqCst) >= capacity {
                self.queue.starved.store(true, SeqCst);
                return Err(PushError::Full);
            }
            self.queue.queued.fetch_add(1, SeqCst);
        }
        let counted = out.counted;
        self.tx.send(out).map_err(|_| {
            if counted {
                self.queue.queued.fetch_sub(1, SeqCst);
            }
            PushError::Closed
        })
    }
}

/// A stream as the hub sees it.
pub(crate) struct StreamState {
    pub sink: Sink,
    pub watchers: BTreeMap<i64, Watcher>,
    pub next_id: i64,
    /// Watchers of this stream not in the `Synced` state.
    pub unsynced: usize,
    pub deferred_progress: bool,
}

impl StreamState {
    /// Whether the event queue is at capacity.
    pub fn is_full(&self, capacity: usize) -> bool {
        self.sink.queue.queued.load(SeqCst) >= capacity
    }
}

/// Everything guarded by the hub lock.
#[derive(Default)]
pub(crate) struct State {
    pub streams: HashMap<StreamId, StreamState>,
    pub next_stream: StreamId,
    /// Single-key watchers `notify` must look at (synced or tail).
    pub synced_keys: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    /// Range watchers `notify` must look at (synced or tail).
    pub synced_ranges: HashSet<WatcherKey>,
    /// Watchers the catch-up thread must look at (unsynced or tail).
    pub unsynced: BTreeSet<WatcherKey>,
    /// Where the last catch-up pass stopped (round robin).
    pub sync_cursor: Option<WatcherKey>,
}

impl State {
    pub fn watcher(&self, wk: WatcherKey) -> Option<&Watcher> {
        self.streams.get(&wk.0)?.watchers.get(&wk.1)
    }

    pub fn watcher_mut(&mut self, wk: WatcherKey) -> Option<&mut Watcher> {
        self.streams.get_mut(&wk.0)?.watchers.get_mut(&wk.1)
    }

    pub fn index_synced(&mut self, wk: WatcherKey, range: &KeyRange) {
        match range.single_key() {
            Some(k) => {
                self.synced_keys.entry(k.to_vec()).or_default().insert(wk);
            }
            None => {
                self.synced_ranges.insert(wk);
            }
        }
    }

    fn unindex_synced(&mut self, wk: WatcherKey, range: &KeyRange) {
        match range.single_key() {
            Some(k) => {
                if let Some(set) = self.synced_keys.get_mut(k) {
                    set.remove(&wk);
                    if set.is_empty() {
                        self.synced_keys.remove(k);
                    }
                }
            }
            None => {
                self.synced_ranges.remove(&wk);
            }
        }
    }

    /// Switches a watcher's state, keeping indexes and counters right.
    /// Returns the previous state (None if the watcher does not exist).
    fn transition(&mut self, wk: WatcherKey, to: SyncState) -> Option<SyncState> {
        let s = self.streams.get_mut(&wk.0)?;
        let w = s.watchers.get_mut(&wk.1)?;
        let from = w.state;
        if from == to {
            return Some(from);
        }
        w.state = to;
        if to != SyncState::Tail {
            w.tail_buf = Vec::new();
        }
        let range = w.range.clone();
        let notified = |st: SyncState| st != SyncState::Unsynced;
        let catching_up = |st: SyncState| st != SyncState::Synced;
        match (catching_up(from), catching_up(to)) {
            (false, true) => s.unsynced += 1,
            (true, false) => s.unsynced -= 1,
            _ => {}
        }
        if catching_up(from) != catching_up(to) {
            if catching_up(to) {
                self.unsynced.insert(wk);
            } else {
                self.unsynced.remove(&wk);
            }
        }
        if notified(from) != notified(to) {
            if notified(to) {
                self.index_synced(wk, &range);
            } else {
                self.unindex_synced(wk, &range);
            }
        }
        Some(from)
    }

    /// Moves a watcher to unsynced, to be caught up from `min_rev`.
    pub fn make_unsynced(&mut self, wk: WatcherKey, min_rev: i64) {
        if self.transition(wk, SyncState::Unsynced).is_some() {
            if let Some(w) = self.watcher_mut(wk) {
                w.min_rev = min_rev;
            }
        }
    }

    /// Moves an unsynced watcher to the tail state: `notify` buffers its
    /// events with revision `>= tail_from`.
    pub fn start_tail(&mut self, wk: WatcherKey, tail_from: i64) {
        if let Some(w) = self.watcher_mut(wk) {
            w.tail_from = tail_from;
            w.tail_buf.clear();
        }
        self.transition(wk, SyncState::Tail);
    }

    /// Moves a watcher to synced.
    pub fn make_synced(&mut self, wk: WatcherKey) {
        self.transition(wk, SyncState::Synced);
    }

    /// Adds a new watcher in its initial state (synced or unsynced).
    pub fn insert_watcher(&mut self, sid: StreamId, w: Watcher) {
        let wk = (sid, w.id);
        let range = w.range.clone();
        let state = w.state;
        let Some(s) = self.streams.get_mut(&sid) else {
            return;
        };
        s.watchers.insert(w.id, w);
        match state {
            SyncState::Synced => self.index_synced(wk, &range),
            SyncState::Unsynced | SyncState::Tail => {
                s.unsynced += 1;
                self.unsynced.insert(wk);
                if state == SyncState::Tail {
                    self.index_synced(wk, &range);
                }
            }
        }
    }

    /// Removes a watcher from every index.
    pub fn remove_watcher(&mut self, wk: WatcherKey) -> Option<Watcher> {
        self.transition(wk, SyncState::Synced)?;
        let w = self.streams.get_mut(&wk.0)?.watchers.remove(&wk.1)?;
        self.unindex_synced(wk, &w.range);
        Some(w)
    }

    /// Whether every watcher of the stream is synced.
    pub fn stream_synced(&self, sid: StreamId) -> bool {
        self.streams.get(&sid).is_none_or(|s| s.unsynced == 0)
    }

    /// Marks / clears the stream's deferred progress request; returns the old flag.
    pub fn set_deferred_progress(&mut self, sid: StreamId, on: bool) -> bool {
        match self.streams.get_mut(&sid) {
            Some(s) => std::mem::replace(&mut s.deferred_progress, on),
            None => false,
        }
    }

    /// Queues an empty (progress) response for `watch_id`.
    pub fn push_progress(
        &self,
        sid: StreamId,
        watch_id: i64,
        rev: i64,
        permit: Option<OwnedSemaphorePermit>,
        counted: bool,
        capacity: usize,
    ) {
        if let Some(s) = self.streams.get(&sid) {
            let out = Outbound {
                response: WatchResponse {
                    watch_id,
                    ..Default::default()
                },
                header_rev: rev,
                fragment: false,
                counted,
                permit,
            };
            // Full: skipped like etcd's non-blocking send; closed: stream is going away.
            let _ = s.sink.push(out, capacity);
        }
    }

    /// Queues a control response (never refused for capacity).
    pub fn push_control(
        &self,
        sid: StreamId,
        response: WatchResponse,
        header_rev: i64,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        if let Some(s) = self.streams.get(&sid) {
            let out = Outbound {
                response,
                header_rev,
                fragment: false,
                counted: false,
                permit,
            };
            // A closed stream is being torn down by its own task.
            let _ = s.sink.push(out, usize::MAX);
        }
    }

    /// The stream's watchers, mutably (for progress ticks).
    pub fn stream_watchers_mut(&mut self, sid: StreamId) -> Option<impl Iterator<Item = &mut Watcher>> {
        self.streams.get_mut(&sid).map(|s| s.watchers.values_mut())
    }
}
