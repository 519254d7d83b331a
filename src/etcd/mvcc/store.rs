//! The [`Store`]: index, revision log, revision counters, write transactions,
//! compaction and size accounting.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;

use bytes::Bytes;

use super::error::MvccError;
use super::key_index::{KeyHistory, Record};
use crate::proto::mvccpb::{event::EventType, Event};

/// One entry of the revision log: which key was written at `(main, sub)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEntry {
    pub main: i64,
    pub sub: i64,
    pub key: Bytes,
}

/// An in-memory multi-version key-value store with etcd's MVCC semantics.
///
/// See the module documentation for the data structure and its invariants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// Every key with at least one retained record, in key order.
    pub(crate) index: BTreeMap<Bytes, KeyHistory>,
    /// Writes with `main >= max(compact_rev, 0)` in revision order.
    pub(crate) log: VecDeque<LogEntry>,
    pub(crate) current_rev: i64,
    pub(crate) compact_rev: i64,
    pub(crate) size_in_use: i64,
    pub(crate) size_total: i64,
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a key range starts and ends, decoded from etcd's `key`/`range_end` pair.
pub(crate) enum KeySpan<'a> {
    /// `range_end` empty: exactly one key.
    Single(&'a [u8]),
    /// Half-open range; `None` end means "to the end of the keyspace".
    Range(&'a [u8], Option<&'a [u8]>),
}

impl<'a> KeySpan<'a> {
    /// Decodes etcd's convention: empty end = single key, `"\0"` = from key on.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::Single(key),
            [0] => KeySpan::Range(key, None),
            end => KeySpan::Range(key, Some(end)),
        }
    }

    /// Whether `k` falls in this span.
    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeySpan::Single(key) => k == key,
            KeySpan::Range(start, end) => k >= start && end.is_none_or(|e| k < e),
        }
    }
}

impl Store {
    /// A fresh store: current revision 1, never compacted (compact revision -1, as etcd).
    pub fn new() -> Self {
        Store {
            index: BTreeMap::new(),
            log: VecDeque::new(),
            current_rev: 1,
            compact_rev: -1,
            size_in_use: 0,
            size_total: 0,
        }
    }

    /// The revision of the last write (1 for a fresh store).
    pub fn current_revision(&self) -> i64 {
        self.current_rev
    }

    /// The revision of the last compaction, or -1 if never compacted (as etcd reports).
    pub fn compact_revision(&self) -> i64 {
        self.compact_rev
    }

    /// Number of keys live at the current revision.
    pub fn key_count(&self) -> usize {
        let rev = self.current_rev;
        self.index.values().filter(|h| h.live_at(rev).is_some()).count()
    }

    /// Every live key that is attached to a lease, with its lease (used to rebuild the
    /// lessor's key sets after loading a snapshot).
    pub fn live_keys_with_lease(&self) -> Vec<(Vec<u8>, i64)> {
        let rev = self.current_rev;
        self.index
            .iter()
            .filter_map(|(k, h)| h.live_at(rev).filter(|r| r.lease != 0).map(|r| (k.to_vec(), r.lease)))
            .collect()
    }

    /// Calls `f` for every key of `span` that is live at `rev`, in key order.
    /// Stops early when `f` returns `false`.
    pub(crate) fn for_each_live<'s>(
        &'s self,
        span: &KeySpan<'_>,
        rev: i64,
        mut f: impl FnMut(&'s Bytes, &'s Record) -> bool,
    ) {
        match *span {
            KeySpan::Single(key) => {
                if let Some((k, h)) = self.index.get_key_value(key) {
                    if let Some(rec) = h.live_at(rev) {
                        f(k, rec);
                    }
                }
            }
            KeySpan::Range(start, end) => {
                if end.is_some_and(|e| e <= start) {
                    return;
                }
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                let iter = self.index.range::<[u8], _>((Bound::Included(start), upper));
                for (k, h) in iter {
                    if let Some(rec) = h.live_at(rev) {
                        if !f(k, rec) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Starts a write transaction at the current revision.
    pub(crate) fn write_txn(&mut self) -> WriteTxn<'_> {
        let begin = self.current_rev;
        let log_len = self.log.len();
        WriteTxn {
            store: self,
            begin,
            log_len,
            changes: Vec::new(),
        }
    }

    /// Deletes exactly these keys (those that are live) in one revision, in key
    /// order; used when a lease is revoked or expires. Returns the delete events
    /// (with `prev_kv`); no revision is created if none of the keys is live.
    pub fn delete_keys(&mut self, keys: &[Vec<u8>]) -> Vec<Event> {
        let mut sorted: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut txn = self.write_txn();
        for key in sorted {
            txn.delete_range(&KeySpan::Single(key));
        }
        txn.commit()
    }

    /// Compacts the history at `rev`: afterwards reads below `rev` fail with
    /// [`MvccError::Compacted`], each live key keeps its latest revision `<= rev`,
    /// and keys deleted before `rev` disappear entirely.
    ///
    /// Errors as etcd: `rev <= compact_revision()` -> `Compacted`,
    /// `rev > current_revision()` -> `FutureRevision`.
    pub fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compact_rev {
            return Err(MvccError::Compacted {
                compact_revision: self.compact_rev,
            });
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRevision);
        }
        // Only keys written since the previous compaction can have records to drop.
        let mut keys: Vec<Bytes> = self
            .log
            .iter()
            .take_while(|e| e.main <= rev)
            .map(|e| e.key.clone())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            if let Some(h) = self.index.get_mut(&key) {
                self.size_in_use -= h.compact(rev, key.len());
                if h.records.is_empty() {
                    self.index.remove(&key);
                }
            }
        }
        while self.log.front().is_some_and(|e| e.main < rev) {
            self.log.pop_front();
        }
        self.compact_rev = rev;
        Ok(())
    }

    /// Estimated logical size in bytes: `(total, in_use)`. `in_use` is the sum of
    /// key + value + metadata bytes of every retained revision; `total` is the
    /// high-water mark of `in_use` since the last [`Store::defragment`] (space
    /// freed by compaction stays allocated until defragmentation, as in etcd).
    pub fn size_bytes(&self) -> (i64, i64) {
        (self.size_total, self.size_in_use)
    }

    /// Releases the space freed by compaction (`total` becomes `in_use`).
    pub fn defragment(&mut self) {
        for h in self.index.values_mut() {
            h.records.shrink_to_fit();
        }
        self.log.shrink_to_fit();
        self.size_total = self.size_in_use;
    }

    fn add_size(&mut self, n: i64) {
        self.size_in_use += n;
        self.size_total = self.size_total.max(self.size_in_use);
    }
}

/// A write transaction: writes go straight into the index at revision
/// `begin + 1` (reads through the txn see them); [`WriteTxn::commit`] publishes
/// the revision, and dropping the txn without committing undoes every write.
pub(crate) struct WriteTxn<'a> {
    pub store: &'a mut Store,
    pub begin: i64,
    log_len: usize,
    /// Keys written so far, in sub-revision order.
    changes: Vec<Bytes>,
}

impl WriteTxn<'_> {
    /// Revision reads inside this txn observe (etcd: `begin + 1` once something changed).
    pub fn read_rev(&self) -> i64 {
        if self.changes.is_empty() {
            self.begin
        } else {
            self.begin + 1
        }
    }

    /// Whether this txn has written anything.
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Puts `key = value` with `lease`; returns the new revision.
    pub fn put(&mut self, key: &[u8], value: Bytes, lease: i64) -> i64 {
        let main = self.begin + 1;
        let read_rev = self.read_rev();
        let sub = self.changes.len() as i64;
        let store = &mut *self.store;
        let key_bytes = match store.index.get_key_value(key) {
            Some((k, _)) => k.clone(),
            None => Bytes::copy_from_slice(key),
        };
        let hist = store.index.entry(key_bytes.clone()).or_default();
        let (create, version) = match hist.live_at(read_rev) {
            Some(prev) => (prev.create, prev.version + 1),
            None => (main, 1),
        };
        let rec = Record {
            main,
            sub,
            create,
            version,
            lease,
            value,
            tombstone: false,
        };
        let size = rec.size(key.len());
        hist.records.push(rec);
        store.add_size(size);
        store.log.push_back(LogEntry {
            main,
            sub,
            key: key_bytes.clone(),
        });
        self.changes.push(key_bytes);
        main
    }

    /// Deletes every key of `span` live at [`WriteTxn::read_rev`]; returns how many.
    pub fn delete_range(&mut self, span: &KeySpan<'_>) -> i64 {
        let rev = self.read_rev();
        let mut keys = Vec::new();
        self.store.for_each_live(span, rev, |k, _| {
            keys.push(k.clone());
            true
        });
        let main = self.begin + 1;
        for key in &keys {
            let sub = self.changes.len() as i64;
            let rec = Record {
                main,
                sub,
                create: 0,
                version: 0,
                lease: 0,
                value: Bytes::new(),
                tombstone: true,
            };
            let size = rec.size(key.len());
            if let Some(h) = self.store.index.get_mut(key) {
                h.records.push(rec);
            }
            self.store.add_size(size);
            self.store.log.push_back(LogEntry {
                main,
                sub,
                key: key.clone(),
            });
            self.changes.push(key.clone());
        }
        keys.len() as i64
    }

    /// Publishes the writes as revision `begin + 1` (if any) and returns their
    /// events, each with `prev_kv` when a previous live version existed.
    pub fn commit(mut self) -> Vec<Event> {
        let changes = std::mem::take(&mut self.changes);
        if changes.is_empty() {
            return Vec::new();
        }
        self.log_len = self.store.log.len();
        let main = self.begin + 1;
        self.store.current_rev = main;
        let mut events = Vec::with_capacity(changes.len());
        for (sub, key) in changes.iter().enumerate() {
            if let Some(ev) = self.store.event_at(key, main, sub as i64) {
                events.push(ev);
            }
        }
        events
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        // Roll back uncommitted writes (commit() empties `changes`).
        while let Some(key) = self.changes.pop() {
            let mut freed = 0;
            let mut now_empty = false;
            if let Some(h) = self.store.index.get_mut(&key) {
                if let Some(rec) = h.records.pop() {
                    freed = rec.size(key.len());
                }
                now_empty = h.records.is_empty();
            }
            if now_empty {
                self.store.index.remove(&key);
            }
            self.store.size_in_use -= freed;
        }
        self.store.log.truncate(self.log_len);
    }
}

impl Store {
    /// The event for the write of `key` at `(main, sub)`, with `prev_kv` filled
    /// when the previous retained record of the key is live.
    pub(crate) fn event_at(&self, key: &[u8], main: i64, sub: i64) -> Option<Event> {
        let h = self.index.get(key)?;
        let idx = h.find(main, sub)?;
        let rec = &h.records[idx];
        let kind = if rec.tombstone {
            EventType::Delete
        } else {
            EventType::Put
        };
        Some(Event {
            r#type: kind as i32,
            kv: Some(rec.to_kv(key)),
            prev_kv: h.prev_live(idx).map(|p| p.to_kv(key)),
        })
    }
}
