//! The watch hub: registry of all watchers and live fan-out (`notify`).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::state::{Outbound, PushError, QueueState, Sink, State, StreamId, StreamState, WatcherKey};
use super::sync::{sync_thread, Wake, MAX_TAIL_EVENTS};
use super::watcher::{event_rev, KeyRange, SyncState, Watcher};
use super::{HeaderSource, History, ERR_COMPACTED, ERR_DUPLICATE_ID, ERR_EMPTY_RANGE};
use crate::proto::{
    etcdserverpb::{WatchCreateRequest, WatchResponse},
    mvccpb,
};

/// Default number of event responses a stream may have queued before its
/// watchers are moved to the unsynced state (etcd's `chanBufLen`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 128;

/// Shared state behind a [`WatchHub`] handle.
pub(crate) struct Inner {
    pub(crate) history: Arc<dyn History>,
    pub(crate) header: Arc<dyn HeaderSource>,
    pub(crate) progress_interval: Duration,
    queue_capacity: AtomicUsize,
    /// Highest revision passed to `notify` (stored before delivery).
    announced: AtomicI64,
    /// Highest revision whose events were fully queued to synced watchers.
    delivered: AtomicI64,
    /// Number of live watchers (fast path of `notify`).
    watchers: AtomicUsize,
    state: Mutex<State>,
    wake: Arc<Wake>,
    sync_started: AtomicBool,
    /// Times a synced watcher fell behind (queue full or tail overflow).
    fell_behind: AtomicU64,
    /// Times a catching-up watcher entered the tail state.
    pub(crate) tail_entries: AtomicU64,
}

/// Counters describing the hub (for metrics and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchStats {
    /// Live watchers.
    pub watchers: usize,
    /// Open watch streams.
    pub streams: usize,
    /// Watchers currently catching up from history.
    pub unsynced: usize,
    /// Times a synced watcher fell behind its stream and went unsynced.
    pub fell_behind: u64,
    /// Times a catching-up watcher entered the tail state.
    pub tail_entries: u64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.shutdown();
    }
}

/// Fans MVCC events out to watchers. Cheap to clone (shared handle).
#[derive(Clone)]
pub struct WatchHub {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchHub")
            .field("announced", &self.inner.announced.load(SeqCst))
            .field("watchers", &self.inner.watchers.load(SeqCst))
            .finish()
    }
}

impl WatchHub {
    /// Creates a hub. `progress_interval` is the period of `progress_notify`
    /// responses (etcd's default is 10 minutes). The hub assumes `history`
    /// already holds everything up to its current revision and that `notify`
    /// will be called for every later revision.
    pub fn new(history: Arc<dyn History>, header: Arc<dyn HeaderSource>, progress_interval: Duration) -> Self {
        let rev = history.current_revision();
        Self {
            inner: Arc::new(Inner {
                history,
                header,
                progress_interval,
                queue_capacity: AtomicUsize::new(DEFAULT_QUEUE_CAPACITY),
                announced: AtomicI64::new(rev),
                delivered: AtomicI64::new(rev),
                watchers: AtomicUsize::new(0),
                state: Mutex::new(State::default()),
                wake: Arc::new(Wake::default()),
                sync_started: AtomicBool::new(false),
                fell_behind: AtomicU64::new(0),
                tail_entries: AtomicU64::new(0),
            }),
        }
    }

    /// Sets how many event responses a stream may have queued before its
    /// watchers fall back to catching up from history (default
    /// [`DEFAULT_QUEUE_CAPACITY`]).
    pub fn set_queue_capacity(&self, capacity: usize) {
        self.inner.queue_capacity.store(capacity.max(1), SeqCst);
    }

    /// Number of live watchers over all streams.
    pub fn watcher_count(&self) -> usize {
        self.inner.watchers.load(SeqCst)
    }

    /// Current counters.
    pub fn stats(&self) -> WatchStats {
        let st = self.inner.state.lock();
        WatchStats {
            watchers: self.watcher_count(),
            streams: st.streams.len(),
            unsynced: st.unsynced.len(),
            fell_behind: self.inner.fell_behind.load(SeqCst),
            tail_entries: self.inner.tail_entries.load(SeqCst),
        }
    }

    /// The last revision whose events have been handed to all synced watchers.
    pub fn notified_revision(&self) -> i64 {
        self.inner.delivered.load(SeqCst)
    }

    /// Delivers the events of one applied revision to synced watchers.
    ///
    /// Call after every applied write, in revision order, from one thread at a
    /// time, once `History` already returns these events (`events` carry
    /// `prev_kv`; it is stripped for watchers that did not ask for it). Never
    /// blocks on clients or on `History`: a watcher whose stream queue is full
    /// is moved to the unsynced state and caught up from `History` later. With
    /// no watchers this is a couple of atomic operations.
    pub fn notify(&self, revision: i64, events: &[mvccpb::Event]) {
        let inner = &self.inner;
        inner.announced.fetch_max(revision, SeqCst);
        if inner.watchers.load(SeqCst) == 0 || events.is_empty() {
            inner.delivered.fetch_max(revision, SeqCst);
            return;
        }
        let capacity = inner.queue_capacity.load(SeqCst);
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        let mut batches: HashMap<WatcherKey, Vec<mvccpb::Event>> = HashMap::new();
        let mut tails: Vec<(WatcherKey, mvccpb::Event)> = Vec::new();
        for ev in events {
            let Some(kv) = ev.kv.as_ref() else { continue };
            let keyed = st.synced_keys.get(&kv.key).into_iter().flatten();
            for wk in keyed.chain(st.synced_ranges.iter()) {
                let Some(w) = st.watcher(*wk) else { continue };
                if !w.wants(ev) {
                    continue;
                }
                match w.state {
                    SyncState::Synced if event_rev(ev) >= w.min_rev => {
                        batches.entry(*wk).or_default().push(w.prepare(ev));
                    }
                    SyncState::Tail if event_rev(ev) >= w.tail_from => {
                        tails.push((*wk, w.prepare(ev)));
                    }
                    _ => {}
                }
            }
        }
        let mut overflow = Vec::new();
        for (wk, ev) in tails {
            if let Some(w) = st.watcher_mut(wk) {
                w.tail_buf.push(ev);
                if w.tail_buf.len() > MAX_TAIL_EVENTS {
                    overflow.push((wk, w.min_rev));
                }
            }
        }
        let mut dead = Vec::new();
        let mut slow = Vec::new();
        for (wk, evs) in batches {
            let Some(s) = st.streams.get_mut(&wk.0) else {
                continue;
            };
            let Some(w) = s.watchers.get_mut(&wk.1) else {
                continue;
            };
            let out = Outbound {
                response: WatchResponse {
                    watch_id: w.id,
                    events: evs,
                    ..Default::default()
                },
                header_rev: revision,
                fragment: w.fragment,
                counted: true,
                permit: None,
            };
            match s.sink.push(out, capacity) {
                Ok(()) => {
                    w.min_rev = revision + 1;
                    w.idle_since_tick = false;
                }
                Err(PushError::Full) => slow.push((wk, revision)),
                Err(PushError::Closed) => dead.push(wk.0),
            }
        }
        let wake = !slow.is_empty() || !overflow.is_empty();
        let behind = u64::try_from(slow.len() + overflow.len()).unwrap_or(u64::MAX);
        inner.fell_behind.fetch_add(behind, SeqCst);
        for (wk, min_rev) in slow.into_iter().chain(overflow) {
            st.make_unsynced(wk, min_rev);
        }
        for sid in dead {
            self.drop_stream_locked(st, sid);
        }
        inner.delivered.fetch_max(revision, SeqCst);
        drop(guard);
        if wake {
            inner.wake.wake();
        }
    }

    /// Call after the store was replaced wholesale (e.g. a Raft snapshot was
    /// installed) and `History` now answers for a new current revision: every
    /// synced watcher is moved to unsynced and caught up from history from the
    /// revision after the last one it was notified of (or cancelled with
    /// `compact_revision` if that is gone), like etcd's `watchableStore.Restore`.
    pub fn restore(&self) {
        let inner = &self.inner;
        let rev = inner.history.current_revision();
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        let delivered = inner.delivered.load(SeqCst);
        let keys: Vec<(WatcherKey, i64)> = st
            .streams
            .iter()
            .flat_map(|(sid, s)| {
                s.watchers
                    .values()
                    .filter(|w| w.state != SyncState::Unsynced)
                    .map(move |w| ((*sid, w.id), w.min_rev))
            })
            .collect();
        for (wk, min_rev) in keys {
            let resume = match st.watcher(wk).map(|w| w.state) {
                Some(SyncState::Tail) => min_rev,
                _ => min_rev.max(delivered + 1),
            };
            st.make_unsynced(wk, resume);
        }
        inner.announced.store(rev, SeqCst);
        inner.delivered.store(rev, SeqCst);
        drop(guard);
        inner.wake.wake();
    }

    /// Registers a new stream; returns its id, the receiving end of its queue,
    /// a sender (to detect the receiver going away) and the queue accounting.
    pub(crate) fn open_stream(
        &self,
    ) -> (
        StreamId,
        mpsc::UnboundedReceiver<Outbound>,
        mpsc::UnboundedSender<Outbound>,
        Arc<QueueState>,
    ) {
        self.ensure_sync_thread();
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(QueueState::default());
        let mut st = self.inner.state.lock();
        st.next_stream += 1;
        let sid = st.next_stream;
        st.streams.insert(
            sid,
            StreamState {
                sink: Sink {
                    tx: tx.clone(),
                    queue: queue.clone(),
                },
                watchers: BTreeMap::new(),
                next_id: 0,
                unsynced: 0,
                deferred_progress: false,
            },
        );
        (sid, rx, tx, queue)
    }

    /// Removes a stream and all its watchers.
    pub(crate) fn close_stream(&self, sid: StreamId) {
        let mut st = self.inner.state.lock();
        self.drop_stream_locked(&mut st, sid);
    }

    fn drop_stream_locked(&self, st: &mut State, sid: StreamId) {
        let ids: Vec<i64> = match st.streams.get(&sid) {
            Some(s) => s.watchers.keys().copied().collect(),
            None => return,
        };
        for id in ids {
            if st.remove_watcher((sid, id)).is_some() {
                self.watcher_removed();
            }
        }
        st.streams.remove(&sid);
    }

    /// Sends a `created` + `canceled` response for a rejected create request.
    pub(crate) fn reject_create(
        &self,
        sid: StreamId,
        watch_id: i64,
        reason: String,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        let st = self.inner.state.lock();
        let resp = WatchResponse {
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        st.push_control(sid, resp, self.announced(), permit);
    }

    /// Handles a (permitted) create request: registers the watcher and queues
    /// the `created` response ahead of any of its events.
    pub(crate) fn create(&self, sid: StreamId, req: &WatchCreateRequest, permit: Option<OwnedSemaphorePermit>) {
        let inner = &self.inner;
        if req.start_revision < 0 {
            return self.reject_create(sid, -1, ERR_COMPACTED.to_string(), permit);
        }
        let Some(range) = KeyRange::from_request(&req.key, &req.range_end) else {
            return self.reject_create(sid, -1, ERR_EMPTY_RANGE.to_string(), permit);
        };
        // Count first so a concurrent `notify` cannot take its no-watcher fast
        // path after we read `announced` below.
        inner.watchers.fetch_add(1, SeqCst);
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        let rev = self.announced();
        let Some(s) = st.streams.get_mut(&sid) else {
            self.watcher_removed();
            return;
        };
        let id = if req.watch_id != 0 {
            if s.watchers.contains_key(&req.watch_id) {
                self.watcher_removed();
                drop(guard);
                return self.reject_create(sid, -1, ERR_DUPLICATE_ID.to_string(), permit);
            }
            req.watch_id
        } else {
            while s.watchers.contains_key(&s.next_id) {
                s.next_id += 1;
            }
            let id = s.next_id;
            s.next_id += 1;
            id
        };
        // As etcd: 0 or a future revision => synced from max(now + 1, start).
        let synced = req.start_revision == 0 || req.start_revision > rev;
        let (no_put, no_delete) = Watcher::filters_from(&req.filters);
        let w = Watcher {
            id,
            range,
            min_rev: if synced {
                req.start_revision.max(rev + 1)
            } else {
                req.start_revision
            },
            state: if synced { SyncState::Synced } else { SyncState::Unsynced },
            no_put,
            no_delete,
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            idle_since_tick: true,
            tail_from: 0,
            tail_buf: Vec::new(),
        };
        st.insert_watcher(sid, w);
        let resp = WatchResponse {
            watch_id: id,
            created: true,
            ..Default::default()
        };
        st.push_control(sid, resp, rev, permit);
        drop(guard);
        if !synced {
            inner.wake.wake();
        }
    }

    /// Cancels a watcher; queues `canceled: true` if it existed (etcd sends
    /// nothing for an unknown id).
    pub(crate) fn cancel(&self, sid: StreamId, watch_id: i64, permit: Option<OwnedSemaphorePermit>) {
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        if st.remove_watcher((sid, watch_id)).is_none() {
            return;
        }
        self.watcher_removed();
        let resp = WatchResponse {
            watch_id,
            canceled: true,
            ..Default::default()
        };
        st.push_control(sid, resp, self.announced(), permit);
        self.flush_deferred_progress(st, sid);
    }

    fn ensure_sync_thread(&self) {
        if self.inner.sync_started.swap(true, SeqCst) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let wake = self.inner.wake.clone();
        let spawned = std::thread::Builder::new()
            .name("watch-sync".into())
            .spawn(move || sync_thread(weak, wake));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the watch catch-up thread");
            self.inner.sync_started.store(false, SeqCst);
        }
    }

    /// Wakes the catch-up thread (after a stream queue drained).
    pub(crate) fn wake_sync(&self) {
        self.inner.wake.wake();
    }

    pub(crate) fn watcher_removed(&self) {
        self.inner.watchers.fetch_sub(1, SeqCst);
    }

    pub(crate) fn announced(&self) -> i64 {
        self.inner.announced.load(SeqCst)
    }

    pub(crate) fn delivered(&self) -> i64 {
        self.inner.delivered.load(SeqCst)
    }

    pub(crate) fn queue_capacity(&self) -> usize {
        self.inner.queue_capacity.load(SeqCst)
    }

    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock()
    }
}
