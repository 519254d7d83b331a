//! A fake MVCC history for tests: an event log with revisions, prev_kv and compaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::{HeaderSource, History, KeyRange, WatchHub};
use crate::proto::{
    etcdserverpb::ResponseHeader,
    mvccpb::{event::EventType, Event, KeyValue},
};

/// Mutations of one revision.
pub enum Op<'a> {
    Put(&'a [u8], &'a [u8]),
    Del(&'a [u8]),
}

#[derive(Default)]
struct Inner {
    rev: i64,
    compact: i64,
    log: Vec<Event>,
    live: BTreeMap<Vec<u8>, KeyValue>,
    /// Number of `events_since` calls (to check batching).
    reads: usize,
}

/// In-memory history; `apply` writes a revision and returns its events.
#[derive(Default)]
pub struct FakeHistory {
    inner: Mutex<Inner>,
    /// Sleep (µs) at the start of each `events_since`, to widen race windows.
    read_delay_us: std::sync::atomic::AtomicU64,
    /// A "store lock" held by `write` across apply + `notify` and by
    /// `events_since`, like a store notifying under its own write lock: the
    /// hub deadlocks on it if it ever reads history under the hub lock.
    store: Mutex<()>,
}

impl FakeHistory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Applies one revision (a txn of `ops`) and returns its events.
    pub fn apply(&self, ops: &[Op<'_>]) -> (i64, Vec<Event>) {
        let mut g = self.inner.lock();
        g.rev += 1;
        let rev = g.rev;
        let mut evs = Vec::new();
        for op in ops {
            match op {
                Op::Put(k, v) => {
                    let prev = g.live.get(*k).cloned();
                    let kv = KeyValue {
                        key: k.to_vec(),
                        value: v.to_vec(),
                        create_revision: prev.as_ref().map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.as_ref().map_or(1, |p| p.version + 1),
                        lease: 0,
                    };
                    g.live.insert(k.to_vec(), kv.clone());
                    evs.push(Event {
                        r#type: EventType::Put as i32,
                        kv: Some(kv),
                        prev_kv: prev,
                    });
                }
                Op::Del(k) => {
                    if let Some(prev) = g.live.remove(*k) {
                        evs.push(Event {
                            r#type: EventType::Delete as i32,
                            kv: Some(KeyValue {
                                key: k.to_vec(),
                                mod_revision: rev,
                                ..Default::default()
                            }),
                            prev_kv: Some(prev),
                        });
                    }
                }
            }
        }
        g.log.extend(evs.iter().cloned());
        (rev, evs)
    }

    /// Applies and notifies `hub`, as the server's apply loop would.
    pub fn write(&self, hub: &WatchHub, ops: &[Op<'_>]) -> i64 {
        let _store = self.store.lock();
        let (rev, evs) = self.apply(ops);
        hub.notify(rev, &evs);
        rev
    }

    /// Puts one key and notifies.
    pub fn put(&self, hub: &WatchHub, k: &str, v: &str) -> i64 {
        self.write(hub, &[Op::Put(k.as_bytes(), v.as_bytes())])
    }

    /// Drops history below `rev`.
    pub fn compact(&self, rev: i64) {
        let mut g = self.inner.lock();
        g.compact = rev;
        g.log.retain(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= rev));
    }

    pub fn set_read_delay(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.read_delay_us.store(us, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn reads(&self) -> usize {
        self.inner.lock().reads
    }
}

impl History for FakeHistory {
    fn current_revision(&self) -> i64 {
        self.inner.lock().rev
    }

    fn compact_revision(&self) -> i64 {
        self.inner.lock().compact
    }

    fn events_since(&self, start_rev: i64, key: &[u8], range_end: &[u8], max: usize) -> Result<Vec<Event>, i64> {
        let delay = self.read_delay_us.load(std::sync::atomic::Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        let _store = self.store.lock();
        let mut g = self.inner.lock();
        g.reads += 1;
        if start_rev < g.compact {
            return Err(g.compact);
        }
        let range = KeyRange::from_request(key, range_end).ok_or(0)?;
        Ok(g.log
            .iter()
            .filter(|e| {
                e.kv.as_ref()
                    .is_some_and(|kv| kv.mod_revision >= start_rev && range.contains(&kv.key))
            })
            .take(max)
            .cloned()
            .collect())
    }
}

/// Headers with fixed ids.
pub struct FakeHeader;

pub const CLUSTER_ID: u64 = 0xc1;
pub const MEMBER_ID: u64 = 0xa1;

impl HeaderSource for FakeHeader {
    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: CLUSTER_ID,
            member_id: MEMBER_ID,
            revision,
            raft_term: 3,
        }
    }
}
