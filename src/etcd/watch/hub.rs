//! The watch hub: registry of all watchers, live fan-out (`notify`) and the
//! catch-up ("watch-sync") thread for unsynced watchers.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::watcher::{event_rev, KeyRange, SyncState, Watcher};
use super::{HeaderSource, History, ERR_COMPACTED, ERR_DUPLICATE_ID, ERR_EMPTY_RANGE};
use crate::etcd::proto::{
    etcdserverpb::{WatchCreateRequest, WatchResponse},
    mvccpb,
};

/// Identifies one gRPC watch stream inside the hub.
pub(crate) type StreamId = u64;
/// Identifies one watcher: its stream and its watch id.
pub(crate) type WatcherKey = (StreamId, i64);

/// Default number of event responses a stream may have queued before its
/// watchers are moved to the unsynced state (etcd's `chanBufLen`).
pub const DEFAULT_QUEUE_CAPACITY: usize = 128;
/// Events read from history per catch-up step (etcd: 1000 revisions).
const SYNC_BATCH_EVENTS: usize = 1000;
/// Watchers handled per catch-up pass (etcd's `maxWatchersPerSync`).
const MAX_WATCHERS_PER_SYNC: usize = 512;
/// Idle period of the catch-up thread when nobody wakes it.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Largest revision gap the catch-up thread reads while holding the hub lock.
const MAX_LOCKED_TAIL_REVS: i64 = 64;

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

/// A stream as the hub sees it.
struct StreamState {
    sink: Sink,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    unsynced: usize,
    deferred_progress: bool,
}

/// The hub's end of a stream queue.
struct Sink {
    tx: mpsc::UnboundedSender<Outbound>,
    queue: Arc<QueueState>,
}

enum PushError {
    Full,
    Closed,
}

impl Sink {
    fn push(&self, out: Outbound, capacity: usize) -> Result<(), PushError> {
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

impl StreamState {
    fn push(&self, out: Outbound, capacity: usize) -> Result<(), PushError> {
        self.sink.push(out, capacity)
    }

    fn is_full(&self, capacity: usize) -> bool {
        self.sink.queue.queued.load(SeqCst) >= capacity
    }
}

/// Everything guarded by the hub lock.
#[derive(Default)]
pub(crate) struct State {
    streams: HashMap<StreamId, StreamState>,
    next_stream: StreamId,
    synced_keys: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    synced_ranges: HashSet<WatcherKey>,
    unsynced: BTreeSet<WatcherKey>,
    sync_cursor: Option<WatcherKey>,
}

impl State {
    fn watcher(&self, wk: WatcherKey) -> Option<&Watcher> {
        self.streams.get(&wk.0)?.watchers.get(&wk.1)
    }

    fn watcher_mut(&mut self, wk: WatcherKey) -> Option<&mut Watcher> {
        self.streams.get_mut(&wk.0)?.watchers.get_mut(&wk.1)
    }

    fn index_synced(&mut self, wk: WatcherKey, range: &KeyRange) {
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

    /// Moves a synced watcher to unsynced, to be caught up from `min_rev`.
    fn make_unsynced(&mut self, wk: WatcherKey, min_rev: i64) {
        let Some(s) = self.streams.get_mut(&wk.0) else {
            return;
        };
        let Some(w) = s.watchers.get_mut(&wk.1) else {
            return;
        };
        if w.state == SyncState::Unsynced {
            return;
        }
        w.state = SyncState::Unsynced;
        w.min_rev = min_rev;
        s.unsynced += 1;
        let range = w.range.clone();
        self.unindex_synced(wk, &range);
        self.unsynced.insert(wk);
    }

    /// Moves an unsynced watcher to synced.
    fn make_synced(&mut self, wk: WatcherKey) {
        let Some(s) = self.streams.get_mut(&wk.0) else {
            return;
        };
        let Some(w) = s.watchers.get_mut(&wk.1) else {
            return;
        };
        if w.state == SyncState::Synced {
            return;
        }
        w.state = SyncState::Synced;
        s.unsynced -= 1;
        let range = w.range.clone();
        self.unsynced.remove(&wk);
        self.index_synced(wk, &range);
    }

    /// Removes a watcher from every index.
    fn remove_watcher(&mut self, wk: WatcherKey) -> Option<Watcher> {
        let s = self.streams.get_mut(&wk.0)?;
        let w = s.watchers.remove(&wk.1)?;
        match w.state {
            SyncState::Synced => self.unindex_synced(wk, &w.range),
            SyncState::Unsynced => {
                s.unsynced -= 1;
                self.unsynced.remove(&wk);
            }
        }
        Some(w)
    }
}

/// Wake-up signal for the catch-up thread.
#[derive(Default)]
struct Wake {
    flag: Mutex<(bool, bool)>, // (woken, shutdown)
    cv: Condvar,
}

impl Wake {
    fn wake(&self) {
        self.flag.lock().0 = true;
        self.cv.notify_one();
    }
}

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
    pub(crate) state: Mutex<State>,
    wake: Arc<Wake>,
    sync_started: AtomicBool,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.wake.flag.lock().1 = true;
        self.wake.cv.notify_one();
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
            }),
        }
    }

    /// Sets how many event responses a stream may have queued before its
    /// watchers fall back to catching up from history (affects new streams and
    /// later sends; default [`DEFAULT_QUEUE_CAPACITY`]).
    pub fn set_queue_capacity(&self, capacity: usize) {
        self.inner.queue_capacity.store(capacity.max(1), SeqCst);
    }

    /// Number of live watchers over all streams.
    pub fn watcher_count(&self) -> usize {
        self.inner.watchers.load(SeqCst)
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
    /// blocks on clients: a watcher whose stream queue is full is moved to the
    /// unsynced state and caught up from `History`. With no watchers this is
    /// two atomic operations.
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
        for ev in events {
            let Some(kv) = ev.kv.as_ref() else { continue };
            let keyed = st.synced_keys.get(&kv.key).into_iter().flatten();
            for wk in keyed.chain(st.synced_ranges.iter()) {
                let Some(w) = st.streams.get(&wk.0).and_then(|s| s.watchers.get(&wk.1)) else {
                    continue;
                };
                if event_rev(ev) >= w.min_rev && w.wants(ev) {
                    batches.entry(*wk).or_default().push(w.prepare(ev));
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
                Err(PushError::Full) => slow.push(wk),
                Err(PushError::Closed) => dead.push(wk.0),
            }
        }
        let slow_empty = slow.is_empty();
        for wk in slow {
            st.make_unsynced(wk, revision);
        }
        for sid in dead {
            self.drop_stream_locked(st, sid);
        }
        let any_slow = !slow_empty;
        inner.delivered.fetch_max(revision, SeqCst);
        drop(guard);
        if any_slow {
            inner.wake.wake();
        }
    }

    /// Registers a new stream; returns its id and the receiving end of its queue.
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
                self.inner.watchers.fetch_sub(1, SeqCst);
            }
        }
        st.streams.remove(&sid);
    }

    /// Queues a control response (never counted against the event capacity).
    fn push_control(
        st: &State,
        sid: StreamId,
        response: WatchResponse,
        header_rev: i64,
        permit: Option<OwnedSemaphorePermit>,
    ) {
        if let Some(s) = st.streams.get(&sid) {
            let out = Outbound {
                response,
                header_rev,
                fragment: false,
                counted: false,
                permit,
            };
            // A closed stream is being torn down by its own task.
            let _ = s.push(out, usize::MAX);
        }
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
        let rev = self.inner.announced.load(SeqCst);
        let resp = WatchResponse {
            watch_id,
            created: true,
            canceled: true,
            cancel_reason: reason,
            ..Default::default()
        };
        Self::push_control(&st, sid, resp, rev, permit);
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
        let rev = inner.announced.load(SeqCst);
        let Some(s) = st.streams.get_mut(&sid) else {
            inner.watchers.fetch_sub(1, SeqCst);
            return;
        };
        let id = if req.watch_id != 0 {
            if s.watchers.contains_key(&req.watch_id) {
                inner.watchers.fetch_sub(1, SeqCst);
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
        let synced = req.start_revision == 0 || req.start_revision > rev;
        let min_rev = if synced {
            req.start_revision.max(rev + 1)
        } else {
            req.start_revision
        };
        let (no_put, no_delete) = Watcher::filters_from(&req.filters);
        let w = Watcher {
            id,
            range: range.clone(),
            min_rev,
            state: if synced { SyncState::Synced } else { SyncState::Unsynced },
            no_put,
            no_delete,
            prev_kv: req.prev_kv,
            fragment: req.fragment,
            progress_notify: req.progress_notify,
            idle_since_tick: true,
        };
        s.watchers.insert(id, w);
        if synced {
            st.index_synced((sid, id), &range);
        } else {
            s.unsynced += 1;
            st.unsynced.insert((sid, id));
        }
        let resp = WatchResponse {
            watch_id: id,
            created: true,
            ..Default::default()
        };
        Self::push_control(st, sid, resp, rev, permit);
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
        self.inner.watchers.fetch_sub(1, SeqCst);
        let rev = self.inner.announced.load(SeqCst);
        let resp = WatchResponse {
            watch_id,
            canceled: true,
            ..Default::default()
        };
        Self::push_control(st, sid, resp, rev, permit);
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

    pub(crate) fn delivered(&self) -> i64 {
        self.inner.delivered.load(SeqCst)
    }

    pub(crate) fn queue_capacity(&self) -> usize {
        self.inner.queue_capacity.load(SeqCst)
    }

    /// Runs one catch-up pass over (up to 512) unsynced watchers. Returns
    /// whether anything moved, i.e. whether another pass should follow at once.
    pub(crate) fn sync_pass(&self) -> bool {
        let candidates: Vec<WatcherKey> = {
            let mut st = self.inner.state.lock();
            let after: Vec<WatcherKey> = match st.sync_cursor {
                Some(c) => st
                    .unsynced
                    .range((std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded))
                    .take(MAX_WATCHERS_PER_SYNC)
                    .copied()
                    .collect(),
                None => Vec::new(),
            };
            let mut picked = after;
            if picked.len() < MAX_WATCHERS_PER_SYNC {
                let more = MAX_WATCHERS_PER_SYNC - picked.len();
                let first: Vec<WatcherKey> = st
                    .unsynced
                    .iter()
                    .take(more)
                    .filter(|wk| !picked.contains(wk))
                    .copied()
                    .collect();
                picked.extend(first);
            }
            st.sync_cursor = picked.last().copied();
            picked
        };
        let mut progressed = false;
        for wk in candidates {
            progressed |= self.sync_one(wk);
        }
        progressed
    }

    /// Catches one unsynced watcher up as far as possible.
    fn sync_one(&self, wk: WatcherKey) -> bool {
        let inner = &self.inner;
        let capacity = inner.queue_capacity.load(SeqCst);
        let n0 = inner.announced.load(SeqCst);
        let (min_rev, range) = {
            let st = inner.state.lock();
            let Some(w) = st.watcher(wk) else {
                return false;
            };
            let full = st.streams.get(&wk.0).is_none_or(|s| s.is_full(capacity));
            if w.state != SyncState::Unsynced || full {
                return false;
            }
            (w.min_rev, w.range.clone())
        };
        let compact = inner.history.compact_revision();
        if min_rev < compact {
            return self.cancel_compacted(wk, min_rev, compact);
        }
        let read = if min_rev <= n0 {
            match self.read_history(min_rev, &range, n0) {
                Ok(r) => Some(r),
                Err(c) => return self.cancel_compacted(wk, min_rev, c),
            }
        } else {
            None
        };
        let mut guard = inner.state.lock();
        let st = &mut *guard;
        match st.watcher(wk) {
            Some(w) if w.state == SyncState::Unsynced && w.min_rev == min_rev => {}
            _ => return false,
        }
        let mut through = n0;
        if let Some((evs, t)) = read {
            if !self.deliver_catch_up(st, wk, &evs, n0, capacity) {
                return false;
            }
            through = t;
        }
        if let Some(w) = st.watcher_mut(wk) {
            w.min_rev = w.min_rev.max(through + 1);
        }
        if through < n0 {
            return true;
        }
        // Caught up with `n0`; the tail written since is read under the lock
        // when short, so no `notify` can slip between the read and the switch.
        let n = inner.announced.load(SeqCst);
        if n > n0 {
            if n - n0 > MAX_LOCKED_TAIL_REVS {
                return true;
            }
            let (evs, t) = match self.read_history(n0 + 1, &range, n) {
                Ok(r) => r,
                Err(c) => {
                    drop(guard);
                    return self.cancel_compacted(wk, n0 + 1, c);
                }
            };
            if !self.deliver_catch_up(st, wk, &evs, n, capacity) {
                return true;
            }
            if let Some(w) = st.watcher_mut(wk) {
                w.min_rev = w.min_rev.max(t + 1);
            }
            if t < n {
                return true;
            }
        }
        st.make_synced(wk);
        self.flush_deferred_progress(st, wk.0);
        true
    }

    /// Queues catch-up events (filtered) for `wk`; false if the queue is full.
    fn deliver_catch_up(
        &self,
        st: &mut State,
        wk: WatcherKey,
        evs: &[mvccpb::Event],
        header_rev: i64,
        capacity: usize,
    ) -> bool {
        let Some(s) = st.streams.get_mut(&wk.0) else {
            return false;
        };
        let Some(w) = s.watchers.get_mut(&wk.1) else {
            return false;
        };
        let events: Vec<mvccpb::Event> = evs
            .iter()
            .filter(|e| event_rev(e) >= w.min_rev && w.wants(e))
            .map(|e| w.prepare(e))
            .collect();
        if events.is_empty() {
            return true;
        }
        let out = Outbound {
            response: WatchResponse {
                watch_id: w.id,
                events,
                ..Default::default()
            },
            header_rev,
            fragment: w.fragment,
            counted: true,
            permit: None,
        };
        match s.sink.push(out, capacity) {
            Ok(()) => {
                w.idle_since_tick = false;
                true
            }
            Err(_) => false,
        }
    }

    /// Reads complete revisions in `[min_rev, upto]`; returns the events and
    /// the last revision fully covered.
    fn read_history(&self, min_rev: i64, range: &KeyRange, upto: i64) -> Result<(Vec<mvccpb::Event>, i64), i64> {
        let (key, end) = range.as_history_args();
        let mut max = SYNC_BATCH_EVENTS;
        loop {
            let mut evs = self.inner.history.events_since(min_rev, key, end, max)?;
            let truncated = evs.len() >= max;
            if let Some(pos) = evs.iter().position(|e| event_rev(e) > upto) {
                evs.truncate(pos);
                return Ok((evs, upto));
            }
            if !truncated {
                return Ok((evs, upto));
            }
            let (Some(first), Some(last)) = (evs.first(), evs.last()) else {
                return Ok((evs, upto));
            };
            let (first, last) = (event_rev(first), event_rev(last));
            if first == last {
                // One revision bigger than the batch: read it whole.
                max = max.saturating_mul(2);
                continue;
            }
            let cut = evs.iter().position(|e| event_rev(e) == last).unwrap_or(evs.len());
            evs.truncate(cut);
            return Ok((evs, last - 1));
        }
    }

    /// Cancels an unsynced watcher whose next revision was compacted away.
    fn cancel_compacted(&self, wk: WatcherKey, min_rev: i64, compact: i64) -> bool {
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        match st.watcher(wk) {
            Some(w) if w.state == SyncState::Unsynced && w.min_rev == min_rev => {}
            _ => return false,
        }
        if st.remove_watcher(wk).is_none() {
            return false;
        }
        self.inner.watchers.fetch_sub(1, SeqCst);
        let resp = WatchResponse {
            watch_id: wk.1,
            canceled: true,
            compact_revision: compact,
            cancel_reason: ERR_COMPACTED.to_string(),
            ..Default::default()
        };
        // etcd fills this header with revision 0 (the mvcc response carries none).
        Self::push_control(st, wk.0, resp, 0, None);
        self.flush_deferred_progress(st, wk.0);
        true
    }

    pub(crate) fn lock_state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.inner.state.lock()
    }
}

/// Accessors used by progress handling.
impl State {
    /// Whether every watcher of the stream is synced.
    pub(crate) fn stream_synced(&self, sid: StreamId) -> bool {
        self.streams.get(&sid).is_none_or(|s| s.unsynced == 0)
    }

    /// Marks / clears the stream's deferred progress request.
    pub(crate) fn set_deferred_progress(&mut self, sid: StreamId, on: bool) -> bool {
        match self.streams.get_mut(&sid) {
            Some(s) => std::mem::replace(&mut s.deferred_progress, on),
            None => false,
        }
    }

    /// Queues a progress response (skipped when the queue is full).
    pub(crate) fn push_progress(
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
            let _ = s.push(out, capacity);
        }
    }

    /// The stream's watchers, mutably (for progress ticks).
    pub(crate) fn stream_watchers_mut(&mut self, sid: StreamId) -> Option<impl Iterator<Item = &mut Watcher>> {
        self.streams.get_mut(&sid).map(|s| s.watchers.values_mut())
    }
}

fn sync_thread(weak: Weak<Inner>, wake: Arc<Wake>) {
    loop {
        let progressed = match weak.upgrade() {
            Some(inner) => WatchHub { inner }.sync_pass(),
            None => return,
        };
        let mut flag = wake.flag.lock();
        if flag.1 {
            return;
        }
        if !progressed && !flag.0 {
            wake.cv.wait_for(&mut flag, SYNC_INTERVAL);
        }
        if flag.1 {
            return;
        }
        flag.0 = false;
    }
}
