//! Catching unsynced watchers up from [`History`](super::History): the
//! "watch-sync" thread (etcd's `syncWatchersLoop` / victim handling).
//!
//! History is only ever read without the hub lock held, so a store may call
//! `notify` while holding locks its `events_since` also takes.

use std::ops::Bound;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::hub::{Inner, WatchHub};
use super::state::{Outbound, State, WatcherKey};
use super::watcher::{event_rev, KeyRange, SyncState};
use crate::proto::{etcdserverpb::WatchResponse, mvccpb};

/// Events read from history per catch-up step (etcd: 1000 revisions).
const SYNC_BATCH_EVENTS: usize = 1000;
/// Watchers handled per catch-up pass (etcd's `maxWatchersPerSync`).
const MAX_WATCHERS_PER_SYNC: usize = 512;
/// Idle period of the catch-up thread when nobody wakes it.
const SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Events a tail-state watcher may buffer before falling back to unsynced.
pub(crate) const MAX_TAIL_EVENTS: usize = 4096;

/// Wake-up signal for the catch-up thread.
#[derive(Default)]
pub(crate) struct Wake {
    flag: Mutex<(bool, bool)>, // (woken, shutdown)
    cv: Condvar,
}

impl Wake {
    /// Makes the thread run a pass now.
    pub fn wake(&self) {
        self.flag.lock().0 = true;
        self.cv.notify_one();
    }

    /// Makes the thread exit.
    pub fn shutdown(&self) {
        self.flag.lock().1 = true;
        self.cv.notify_one();
    }
}

/// The catch-up thread's loop; exits when the hub is dropped.
pub(crate) fn sync_thread(weak: Weak<Inner>, wake: Arc<Wake>) {
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

impl WatchHub {
    /// Runs one catch-up pass over (up to 512) unsynced watchers, round robin.
    /// Returns whether anything moved, i.e. whether another pass should follow at once.
    pub(crate) fn sync_pass(&self) -> bool {
        let candidates: Vec<WatcherKey> = {
            let mut st = self.lock_state();
            let mut picked: Vec<WatcherKey> = match st.sync_cursor {
                Some(c) => st
                    .unsynced
                    .range((Bound::Excluded(c), Bound::Unbounded))
                    .take(MAX_WATCHERS_PER_SYNC)
                    .copied()
                    .collect(),
                None => Vec::new(),
            };
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

    /// Catches one unsynced (or tail) watcher up as far as possible.
    fn sync_one(&self, wk: WatcherKey) -> bool {
        let capacity = self.queue_capacity();
        let n0 = self.announced();
        let (state, min_rev, range, tail_from) = {
            let st = self.lock_state();
            let Some(w) = st.watcher(wk) else {
                return false;
            };
            if w.state == SyncState::Synced {
                return false;
            }
            match st.streams.get(&wk.0) {
                Some(s) if !s.is_full(capacity) => {}
                Some(s) => {
                    // Ask the response side to wake us once it has drained.
                    s.sink.queue.starved.store(true, SeqCst);
                    return false;
                }
                None => return false,
            }
            (w.state, w.min_rev, w.range.clone(), w.tail_from)
        };
        let compact = self.inner.history.compact_revision();
        if min_rev < compact {
            return self.cancel_compacted(wk, min_rev, compact);
        }
        // Every revision <= n0 (or < tail_from) is already in history.
        let upto = if state == SyncState::Tail { tail_from - 1 } else { n0 };
        let read = if min_rev <= upto {
            match self.read_history(min_rev, &range, upto) {
                Ok(r) => Some(r),
                Err(c) => return self.cancel_compacted(wk, min_rev, c),
            }
        } else {
            None
        };

        let mut guard = self.lock_state();
        let st = &mut *guard;
        match st.watcher(wk) {
            Some(w) if w.state == state && w.min_rev == min_rev => {}
            _ => return false,
        }
        let mut through = upto.max(min_rev - 1);
        if let Some((evs, t)) = read {
            let Some(w) = st.watcher(wk) else {
                return false;
            };
            let events: Vec<mvccpb::Event> = evs
                .iter()
                .filter(|e| event_rev(e) >= min_rev && w.wants(e))
                .map(|e| w.prepare(e))
                .collect();
            if push_events(st, wk, events, n0, capacity).is_err() {
                return false;
            }
            through = t;
        }
        if let Some(w) = st.watcher_mut(wk) {
            w.min_rev = w.min_rev.max(through + 1);
        }
        if through < upto {
            return true;
        }
        match state {
            SyncState::Tail => {
                let Some(w) = st.watcher_mut(wk) else {
                    return false;
                };
                let buf = std::mem::take(&mut w.tail_buf);
                let last = buf.last().map(event_rev);
                if let Err(buf) = push_events(st, wk, buf, self.announced(), capacity) {
                    if let Some(w) = st.watcher_mut(wk) {
                        w.tail_buf = buf;
                    }
                    return false;
                }
                if let Some(w) = st.watcher_mut(wk) {
                    w.min_rev = w.min_rev.max(tail_from).max(last.map_or(0, |r| r + 1));
                }
                st.make_synced(wk);
            }
            _ => {
                // Revisions announced since `n0` are in history; those
                // announced later will reach the watcher through `notify`.
                let announced = self.announced();
                if through >= announced {
                    st.make_synced(wk);
                } else {
                    st.start_tail(wk, announced + 1);
                    self.inner.tail_entries.fetch_add(1, SeqCst);
                    return true;
                }
            }
        }
        self.flush_deferred_progress(st, wk.0);
        true
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

    /// Cancels a catching-up watcher whose next revision was compacted away.
    fn cancel_compacted(&self, wk: WatcherKey, min_rev: i64, compact: i64) -> bool {
        let mut guard = self.lock_state();
        let st = &mut *guard;
        match st.watcher(wk) {
            Some(w) if w.state != SyncState::Synced && w.min_rev == min_rev => {}
            _ => return false,
        }
        if st.remove_watcher(wk).is_none() {
            return false;
        }
        self.watcher_removed();
        let resp = WatchResponse {
            watch_id: wk.1,
            canceled: true,
            compact_revision: compact,
            // etcd leaves the reason empty: clients derive the error from compact_revision.
            cancel_reason: String::new(),
            ..Default::default()
        };
        // etcd fills this header with revision 0 (its mvcc response carries none).
        st.push_control(wk.0, resp, 0, None);
        self.flush_deferred_progress(st, wk.0);
        true
    }
}

/// Queues prepared events for `wk` as one response; gives them back if the
/// stream queue is full. An empty list queues nothing.
fn push_events(
    st: &mut State,
    wk: WatcherKey,
    events: Vec<mvccpb::Event>,
    header_rev: i64,
    capacity: usize,
) -> Result<(), Vec<mvccpb::Event>> {
    if events.is_empty() {
        return Ok(());
    }
    let Some(s) = st.streams.get_mut(&wk.0) else {
        return Ok(());
    };
    // Checked first so the events can be handed back: under the hub lock the
    // queue only shrinks, so the push below cannot hit `Full`.
    if s.is_full(capacity) {
        s.sink.queue.starved.store(true, SeqCst);
        return Err(events);
    }
    let Some(w) = s.watchers.get_mut(&wk.1) else {
        return Ok(());
    };
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
    // A closed stream is being torn down by its own task.
    if s.sink.push(out, capacity).is_ok() {
        w.idle_since_tick = false;
    }
    Ok(())
}
