//! Per-key revision history.
//!
//! A key's history is a vector of [`Record`]s in increasing `(main, sub)` revision
//! order. A tombstone record ends a generation; the records after it start a new
//! generation (create revision and version restart). The key is live at revision
//! `r` iff the last record with `main <= r` exists and is not a tombstone.

use bytes::Bytes;

use crate::proto::mvccpb::KeyValue;

/// Bytes of metadata accounted per stored revision in size estimates
/// (revision key, create/mod revision, version, lease, framing).
pub(crate) const RECORD_OVERHEAD: i64 = 48;

/// One stored revision of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// Main revision of the write.
    pub main: i64,
    /// Sub revision (index of the write inside its transaction).
    pub sub: i64,
    /// Create revision of the generation (0 for a tombstone).
    pub create: i64,
    /// Version within the generation (0 for a tombstone).
    pub version: i64,
    /// Lease attached to the key (0 for none / tombstone).
    pub lease: i64,
    /// The value (empty for a tombstone).
    pub value: Bytes,
    /// Whether this record is a deletion.
    pub tombstone: bool,
}

impl Record {
    /// Estimated logical size of this record stored under a key of `key_len` bytes.
    pub fn size(&self, key_len: usize) -> i64 {
        key_len as i64 + self.value.len() as i64 + RECORD_OVERHEAD
    }

    /// The etcd `KeyValue` for this record. For a tombstone it carries only the
    /// key and the mod revision (as etcd's delete events do).
    pub fn to_kv(&self, key: &[u8]) -> KeyValue {
        if self.tombstone {
            KeyValue {
                key: key.to_vec(),
                mod_revision: self.main,
                ..Default::default()
            }
        } else {
            KeyValue {
                key: key.to_vec(),
                create_revision: self.create,
                mod_revision: self.main,
                version: self.version,
                value: self.value.to_vec(),
                lease: self.lease,
            }
        }
    }
}

/// All retained revisions of one key, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct KeyHistory {
    /// Records in increasing `(main, sub)` order.
    pub records: Vec<Record>,
}

impl KeyHistory {
    /// Index of the last record with `main <= rev`.
    pub fn index_at(&self, rev: i64) -> Option<usize> {
        let last = self.records.last()?;
        if last.main <= rev {
            return Some(self.records.len() - 1);
        }
        let n = self.records.partition_point(|r| r.main <= rev);
        n.checked_sub(1)
    }

    /// The live (non-tombstone) record visible at `rev`, if any.
    pub fn live_at(&self, rev: i64) -> Option<&Record> {
        let idx = self.index_at(rev)?;
        let rec = &self.records[idx];
        (!rec.tombstone).then_some(rec)
    }

    /// Index of the record with exactly this revision.
    pub fn find(&self, main: i64, sub: i64) -> Option<usize> {
        self.records
            .binary_search_by(|r| (r.main, r.sub).cmp(&(main, sub)))
            .ok()
    }

    /// The live record just before index `idx` (the `prev_kv` of record `idx`).
    pub fn prev_live(&self, idx: usize) -> Option<&Record> {
        let prev = self.records.get(idx.checked_sub(1)?)?;
        (!prev.tombstone).then_some(prev)
    }

    /// Compacts this history at revision `at`: drops every record superseded at
    /// `at` (all records before the last one with `main <= at`), and that last
    /// one too if it is a tombstone older than `at`. A tombstone at exactly `at`
    /// is kept so that history replay from the compact revision still sees it.
    /// Returns the bytes freed (records dropped sized with `key_len`).
    pub fn compact(&mut self, at: i64, key_len: usize) -> i64 {
        let Some(idx) = self.index_at(at) else {
            return 0;
        };
        let rec = &self.records[idx];
        let drop_to = if rec.tombstone && rec.main < at { idx + 1 } else { idx };
        self.records.drain(..drop_to).map(|r| r.size(key_len)).sum()
    }
}
