//! Progress notifications: periodic `progress_notify` responses for idle
//! synced watchers and explicit `WatchProgressRequest`s.

use tokio::sync::OwnedSemaphorePermit;

use super::hub::WatchHub;
use super::state::{State, StreamId};
use super::watcher::SyncState;

/// The watch id of a progress response that speaks for the whole stream.
pub const STREAM_PROGRESS_WATCH_ID: i64 = -1;

impl WatchHub {
    /// Handles a `WatchProgressRequest`: answers with watch id -1 and the
    /// last notified revision once every watcher of the stream is synced (at
    /// once if they already are), as etcd 3.5's `RequestProgressAll` does; a
    /// progress revision must never run ahead of events still to be delivered.
    pub(crate) fn request_progress(&self, sid: StreamId, permit: Option<OwnedSemaphorePermit>) {
        let mut st = self.lock_state();
        if st.stream_synced(sid) {
            let rev = self.delivered();
            st.push_progress(sid, STREAM_PROGRESS_WATCH_ID, rev, permit, false, usize::MAX);
        } else {
            st.set_deferred_progress(sid, true);
        }
    }

    /// Sends a deferred stream progress response if the stream is now synced.
    pub(crate) fn flush_deferred_progress(&self, st: &mut State, sid: StreamId) {
        if st.stream_synced(sid) && st.set_deferred_progress(sid, false) {
            let rev = self.delivered();
            st.push_progress(sid, STREAM_PROGRESS_WATCH_ID, rev, None, false, usize::MAX);
        }
    }

    /// One tick of the stream's progress timer: every synced `progress_notify`
    /// watcher that got no events since the previous tick receives an empty
    /// response with its id and the last notified revision (skipped if the
    /// stream's queue is full, like etcd's non-blocking send).
    pub(crate) fn progress_tick(&self, sid: StreamId) {
        let capacity = self.queue_capacity();
        let mut st = self.lock_state();
        let rev = self.delivered();
        let mut due = Vec::new();
        if let Some(ws) = st.stream_watchers_mut(sid) {
            for w in ws.filter(|w| w.progress_notify) {
                if w.idle_since_tick && w.state == SyncState::Synced {
                    due.push(w.id);
                }
                w.idle_since_tick = true;
            }
        }
        for id in due {
            st.push_progress(sid, id, rev, None, true, capacity);
        }
    }
}
