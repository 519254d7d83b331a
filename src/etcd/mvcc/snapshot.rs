//! Conversion to and from `rustcdpb::MvccSnapshot`.

use bytes::Bytes;

use super::error::MvccError;
use super::key_index::Record;
use super::store::{LogEntry, Store};
use crate::proto::mvccpb::KeyValue;
use crate::proto::rustcdpb::{MvccSnapshot, RevisionRecord};

impl Store {
    /// Every retained revision in `(main, sub)` order plus the revision counters.
    /// `consistent_index` is left 0 (the caller owns it).
    pub fn to_snapshot(&self) -> MvccSnapshot {
        let mut all: Vec<(&Bytes, &Record)> = self
            .index
            .iter()
            .flat_map(|(k, h)| h.records.iter().map(move |r| (k, r)))
            .collect();
        all.sort_unstable_by_key(|(_, r)| (r.main, r.sub));
        let records = all
            .into_iter()
            .map(|(k, r)| RevisionRecord {
                main: r.main,
                sub: r.sub,
                kv: Some(r.to_kv(k)),
                tombstone: r.tombstone,
            })
            .collect();
        MvccSnapshot {
            current_revision: self.current_rev,
            compact_revision: self.compact_rev,
            records,
            consistent_index: 0,
        }
    }

    /// Rebuilds a store from [`Store::to_snapshot`] output. Fails on records out of
    /// revision order, revisions above the current revision, missing key-values
    /// or empty keys.
    pub fn from_snapshot(s: &MvccSnapshot) -> Result<Store, MvccError> {
        let bad = |m: &str| Err(MvccError::InvalidSnapshot(m.to_string()));
        if s.current_revision < 1 {
            return bad("current revision below 1");
        }
        if s.compact_revision > s.current_revision || s.compact_revision < -1 {
            return bad("compact revision out of range");
        }
        let mut store = Store::new();
        store.current_rev = s.current_revision;
        store.compact_rev = s.compact_revision;
        let mut last = (0i64, -1i64);
        for rr in &s.records {
            if (rr.main, rr.sub) <= last || rr.sub < 0 {
                return bad("records not in increasing revision order");
            }
            if rr.main > s.current_revision {
                return bad("record above current revision");
            }
            last = (rr.main, rr.sub);
            let Some(kv) = rr.kv.as_ref() else {
                return bad("record without key-value");
            };
            if kv.key.is_empty() {
                return bad("record with empty key");
            }
            let rec = record_from_kv(rr, kv);
            let key = match store.index.get_key_value(kv.key.as_slice()) {
                Some((k, _)) => k.clone(),
                None => Bytes::copy_from_slice(&kv.key),
            };
            store.size_in_use += rec.size(key.len());
            if rr.main >= s.compact_revision {
                store.log.push_back(LogEntry {
                    main: rr.main,
                    sub: rr.sub,
                    key: key.clone(),
                });
            }
            store.index.entry(key).or_default().records.push(rec);
        }
        store.size_total = store.size_in_use;
        Ok(store)
    }
}

fn record_from_kv(rr: &RevisionRecord, kv: &KeyValue) -> Record {
    if rr.tombstone {
        Record {
            main: rr.main,
            sub: rr.sub,
            create: 0,
            version: 0,
            lease: 0,
            value: Bytes::new(),
            tombstone: true,
        }
    } else {
        Record {
            main: rr.main,
            sub: rr.sub,
            create: kv.create_revision,
            version: kv.version,
            lease: kv.lease,
            value: Bytes::copy_from_slice(&kv.value),
            tombstone: false,
        }
    }
}
