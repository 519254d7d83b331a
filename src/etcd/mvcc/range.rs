//! Range reads: revision checks, key iteration, filters, sorting and limits,
//! following etcd's `applierV3backend.Range` (fetch, filter, sort, then limit).

use std::cmp::Ordering;

use bytes::Bytes;

use super::error::MvccError;
use super::key_index::Record;
use super::store::{KeySpan, Store};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{RangeRequest, RangeResponse};

impl Store {
    /// Serves a range request at `req.revision` (0 or negative = current).
    ///
    /// The response has no header. `count` is the number of keys in the range at
    /// that revision before the min/max revision filters (as etcd), `more` is set
    /// when `limit` truncated the (filtered, sorted) result.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.range_at(req, self.current_rev)
    }

    /// Range with `cur` as the read view's current revision (a write txn reads at
    /// its own pending revision).
    pub(crate) fn range_at(&self, req: &RangeRequest, cur: i64) -> Result<RangeResponse, MvccError> {
        let rev = req.revision;
        if rev > cur {
            return Err(MvccError::FutureRevision);
        }
        let rev = if rev <= 0 { cur } else { rev };
        if rev < self.compact_rev {
            return Err(MvccError::Compacted {
                compact_revision: self.compact_rev,
            });
        }
        let span = KeySpan::new(&req.key, &req.range_end);
        let plain = req.min_mod_revision == 0
            && req.max_mod_revision == 0
            && req.min_create_revision == 0
            && req.max_create_revision == 0
            && needs_no_sort(req.sort_order, req.sort_target);
        // Without filters or sorting only the first `limit` entries are materialised;
        // the rest are only counted.
        let keep = if req.count_only {
            0
        } else if plain && req.limit > 0 {
            usize::try_from(req.limit).unwrap_or(usize::MAX)
        } else {
            usize::MAX
        };
        let mut found: Vec<(&Bytes, &Record)> = Vec::new();
        let mut total = 0usize;
        self.for_each_live(&span, rev, |k, r| {
            if found.len() < keep {
                found.push((k, r));
            }
            total += 1;
            true
        });
        if req.count_only {
            return Ok(RangeResponse {
                count: total as i64,
                ..Default::default()
            });
        }
        let count = total as i64;

        if req.max_mod_revision != 0 {
            found.retain(|(_, r)| r.main <= req.max_mod_revision);
        }
        if req.min_mod_revision != 0 {
            found.retain(|(_, r)| r.main >= req.min_mod_revision);
        }
        if req.max_create_revision != 0 {
            found.retain(|(_, r)| r.create <= req.max_create_revision);
        }
        if req.min_create_revision != 0 {
            found.retain(|(_, r)| r.create >= req.min_create_revision);
        }

        sort_found(&mut found, req.sort_order, req.sort_target);

        let mut more = false;
        if req.limit > 0 && found.len() as i64 > req.limit {
            found.truncate(req.limit as usize);
            more = true;
        }
        if plain && req.limit > 0 && total as i64 > req.limit {
            more = true;
        }
        let kvs = found
            .into_iter()
            .map(|(k, r)| {
                let mut kv = r.to_kv(k);
                if req.keys_only {
                    kv.value = Vec::new();
                }
                kv
            })
            .collect();
        Ok(RangeResponse {
            header: None,
            kvs,
            more,
            count,
        })
    }
}

/// Whether the result stays in key order (no sort requested).
fn needs_no_sort(order: i32, target: i32) -> bool {
    let target = SortTarget::try_from(target).unwrap_or(SortTarget::Key);
    let order = SortOrder::try_from(order).unwrap_or(SortOrder::None);
    target == SortTarget::Key && order != SortOrder::Descend
}

/// Sorts as etcd: with order NONE and a target other than KEY, ascending is used;
/// KEY order is the natural iteration order. Ties keep key order (stable sort).
fn sort_found(found: &mut [(&Bytes, &Record)], order: i32, target: i32) {
    let target = SortTarget::try_from(target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(order).unwrap_or(SortOrder::None);
    if order == SortOrder::None && target != SortTarget::Key {
        order = SortOrder::Ascend;
    }
    if order == SortOrder::None {
        return;
    }
    let cmp = |a: &(&Bytes, &Record), b: &(&Bytes, &Record)| -> Ordering {
        match target {
            SortTarget::Key => a.0.cmp(b.0),
            SortTarget::Version => a.1.version.cmp(&b.1.version),
            SortTarget::Create => a.1.create.cmp(&b.1.create),
            SortTarget::Mod => a.1.main.cmp(&b.1.main),
            SortTarget::Value => a.1.value.cmp(&b.1.value),
        }
    };
    match order {
        SortOrder::Descend => found.sort_by(|a, b| cmp(b, a)),
        _ => {
            if target != SortTarget::Key {
                found.sort_by(cmp);
            }
        }
    }
}
