//! Watcher state and key-range matching.

use crate::proto::{etcdserverpb::watch_create_request::FilterType, mvccpb};

/// The key range a watcher observes, normalised the way etcd's gRPC layer does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key.
    Single(Vec<u8>),
    /// Every key `>= start`.
    FromKey(Vec<u8>),
    /// Keys in `[start, end)`.
    Range(Vec<u8>, Vec<u8>),
}

impl KeyRange {
    /// Builds a range from a request's `key` / `range_end`.
    ///
    /// As in etcd, an empty `key` means `"\0"` (the smallest key), an empty
    /// `range_end` watches a single key and `range_end == "\0"` watches every
    /// key `>= key`. Returns `None` for an empty range (`key >= range_end`).
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Option<Self> {
        let key = if key.is_empty() { vec![0] } else { key.to_vec() };
        match range_end {
            [] => Some(Self::Single(key)),
            [0] => Some(Self::FromKey(key)),
            end if key.as_slice() < end => Some(Self::Range(key, end.to_vec())),
            _ => None,
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Self::Single(k) => k.as_slice() == key,
            Self::FromKey(start) => key >= start.as_slice(),
            Self::Range(start, end) => key >= start.as_slice() && key < end.as_slice(),
        }
    }

    /// The `(key, range_end)` pair in `History::events_since` form.
    pub fn as_history_args(&self) -> (&[u8], &[u8]) {
        match self {
            Self::Single(k) => (k, &[]),
            Self::FromKey(k) => (k, &[0]),
            Self::Range(k, e) => (k, e),
        }
    }

    /// The single key, if this range watches exactly one key.
    pub fn single_key(&self) -> Option<&[u8]> {
        match self {
            Self::Single(k) => Some(k),
            _ => None,
        }
    }
}

/// Whether a watcher is fed by `notify` or catching up from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncState {
    /// Up to date with the last notified revision; `notify` queues its events.
    Synced,
    /// Has to read history from `min_rev`; `notify` ignores it.
    Unsynced,
    /// Reading the last stretch `[min_rev, tail_from)` from history while
    /// `notify` buffers its events from `tail_from` on in `tail_buf`; becomes
    /// synced once both are queued. This lets catch-up finish under constant
    /// writes without ever reading history while holding the hub lock.
    Tail,
}

/// One watcher of one stream.
#[derive(Debug)]
pub(crate) struct Watcher {
    /// The client-visible watch id (unique within its stream).
    pub id: i64,
    /// The observed keys.
    pub range: KeyRange,
    /// Lowest revision not yet offered to this watcher.
    pub min_rev: i64,
    /// Synced or unsynced.
    pub state: SyncState,
    /// Drop PUT events.
    pub no_put: bool,
    /// Drop DELETE events.
    pub no_delete: bool,
    /// Keep `prev_kv` on events.
    pub prev_kv: bool,
    /// Split large responses (`fragment: true` in the create request).
    pub fragment: bool,
    /// Periodic progress notifications requested.
    pub progress_notify: bool,
    /// No events were queued since the last progress tick (etcd's `progress[id]`).
    pub idle_since_tick: bool,
    /// In the `Tail` state: first revision `notify` buffers.
    pub tail_from: i64,
    /// In the `Tail` state: prepared events buffered by `notify`.
    pub tail_buf: Vec<mvccpb::Event>,
}

impl Watcher {
    /// Reads the filter list of a create request.
    pub fn filters_from(filters: &[i32]) -> (bool, bool) {
        let mut no_put = false;
        let mut no_delete = false;
        for f in filters {
            match FilterType::try_from(*f) {
                Ok(FilterType::Noput) => no_put = true,
                Ok(FilterType::Nodelete) => no_delete = true,
                Err(_) => {}
            }
        }
        (no_put, no_delete)
    }

    /// Whether this watcher wants `ev` (range and filters; not revision).
    pub fn wants(&self, ev: &mvccpb::Event) -> bool {
        let Some(kv) = ev.kv.as_ref() else {
            return false;
        };
        if !self.range.contains(&kv.key) {
            return false;
        }
        let is_delete = ev.r#type == mvccpb::event::EventType::Delete as i32;
        !(is_delete && self.no_delete || !is_delete && self.no_put)
    }

    /// A copy of `ev` as this watcher must see it (prev_kv stripped if not asked for).
    pub fn prepare(&self, ev: &mvccpb::Event) -> mvccpb::Event {
        if self.prev_kv {
            ev.clone()
        } else {
            mvccpb::Event {
                r#type: ev.r#type,
                kv: ev.kv.clone(),
                prev_kv: None,
            }
        }
    }
}

/// The revision of an event (its kv's `mod_revision`; 0 if it has no kv).
pub(crate) fn event_rev(ev: &mvccpb::Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_etcd_rules() {
        assert_eq!(KeyRange::from_request(b"a", b""), Some(KeyRange::Single(b"a".to_vec())));
        assert_eq!(KeyRange::from_request(b"", b"\0"), Some(KeyRange::FromKey(vec![0])));
        assert_eq!(KeyRange::from_request(b"b", b"a"), None);
        assert_eq!(KeyRange::from_request(b"a", b"a"), None);
        let r = KeyRange::from_request(b"foo", b"fop").unwrap();
        assert!(r.contains(b"foo"));
        assert!(r.contains(b"foo/bar"));
        assert!(!r.contains(b"fop"));
        assert!(!r.contains(b"fo"));
        let all = KeyRange::from_request(b"k", b"\0").unwrap();
        assert!(all.contains(b"zzz"));
        assert!(!all.contains(b"a"));
        assert_eq!(all.as_history_args(), (&b"k"[..], &b"\0"[..]));
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// `contains` agrees with the plain etcd definition of a range.
        #[test]
        fn contains_matches_definition(
            key in proptest::collection::vec(0u8..4, 0..4),
            end in proptest::collection::vec(0u8..4, 0..4),
            probe in proptest::collection::vec(0u8..4, 0..5),
        ) {
            let k = if key.is_empty() { vec![0] } else { key.clone() };
            let expected = match end.as_slice() {
                [] => Some(probe == k),
                [0] => Some(probe >= k),
                e if k.as_slice() < e => Some(probe >= k && probe.as_slice() < e),
                _ => None,
            };
            let got = KeyRange::from_request(&key, &end).map(|r| r.contains(&probe));
            prop_assert_eq!(got, expected);
        }
    }
}
