//! History replay for watchers and consistency hashes.

use super::error::MvccError;
use super::key_index::Record;
use super::store::{KeySpan, Store};
use crate::proto::mvccpb::Event;

impl Store {
    /// Events of keys in `key`/`range_end` (etcd range convention) with mod
    /// revision `>= start_rev`, in revision order, each with `prev_kv` filled when
    /// the previous version is retained and live.
    ///
    /// At most `max` events are returned (0 = unlimited), but a revision is never
    /// split: once `max` is reached the events of the current revision are
    /// completed. Errors with `Compacted` (carrying the compact revision) when
    /// `start_rev < compact_revision()`; as in etcd, replay from exactly the
    /// compact revision is allowed. A `start_rev` above the current revision
    /// yields no events; a negative `start_rev` counts as 0.
    pub fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        max: usize,
    ) -> Result<Vec<Event>, MvccError> {
        let start_rev = start_rev.max(0);
        if start_rev < self.compact_rev {
            return Err(MvccError::Compacted {
                compact_revision: self.compact_rev,
            });
        }
        let span = KeySpan::new(key, range_end);
        let first = self.log.partition_point(|e| e.main < start_rev);
        let mut events = Vec::new();
        let mut last_main = None;
        for entry in self.log.range(first..) {
            if max != 0 && events.len() >= max && last_main != Some(entry.main) {
                break;
            }
            if !span.contains(&entry.key) {
                continue;
            }
            if let Some(ev) = self.event_at(&entry.key, entry.main, entry.sub) {
                last_main = Some(entry.main);
                events.push(ev);
            }
        }
        Ok(events)
    }

    /// etcd's HashKV: a CRC32 over every retained revision `<= rev` (0 = current).
    /// Returns `(hash, compact_revision, hashed_revision)`. Stores with equal
    /// histories and equal compaction points have equal hashes.
    ///
    /// Errors as etcd: `0 < rev <= compact_revision()` -> `Compacted`,
    /// `rev > current_revision()` -> `FutureRevision`.
    pub fn hash_kv(&self, rev: i64) -> Result<(u32, i64, i64), MvccError> {
        if rev > 0 && rev <= self.compact_rev {
            return Err(MvccError::Compacted {
                compact_revision: self.compact_rev,
            });
        }
        if rev > self.current_rev {
            return Err(MvccError::FutureRevision);
        }
        let rev = if rev <= 0 { self.current_rev } else { rev };
        Ok((self.hash_upto(rev), self.compact_rev, rev))
    }

    /// A CRC32 over every retained revision (etcd's `Hash`).
    pub fn hash(&self) -> u32 {
        self.hash_upto(i64::MAX)
    }

    fn hash_upto(&self, rev: i64) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(b"key");
        for (key, hist) in &self.index {
            for rec in hist.records.iter().take_while(|r| r.main <= rev) {
                hash_record(&mut h, key, rec);
            }
        }
        h.finalize()
    }
}

fn hash_record(h: &mut crc32fast::Hasher, key: &[u8], rec: &Record) {
    h.update(&rec.main.to_be_bytes());
    h.update(&rec.sub.to_be_bytes());
    h.update(&[u8::from(rec.tombstone)]);
    h.update(&(key.len() as u64).to_be_bytes());
    h.update(key);
    h.update(&rec.create.to_be_bytes());
    h.update(&rec.version.to_be_bytes());
    h.update(&rec.lease.to_be_bytes());
    h.update(&(rec.value.len() as u64).to_be_bytes());
    h.update(&rec.value);
}
