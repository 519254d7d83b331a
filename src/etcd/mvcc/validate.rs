//! Request validation done before proposing, with etcd's exact errors
//! (etcd `api/v3rpc/key.go`: `checkRangeRequest`, `checkPutRequest`,
//! `checkDeleteRequest`, `checkTxnRequest`, `checkIntervals`).

use std::collections::HashSet;

use super::error::MvccError;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{request_op, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// Validates a range request: non-empty key, known sort order and target
/// (etcd >= 3.5 rejects unknown values; 3.4 crashes on an unknown target).
pub fn validate_range(req: &RangeRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if SortOrder::try_from(req.sort_order).is_err() || SortTarget::try_from(req.sort_target).is_err() {
        return Err(MvccError::InvalidSortOption);
    }
    Ok(())
}

/// Validates a put: non-empty key, no value with `ignore_value`, no lease with `ignore_lease`.
pub fn validate_put(req: &PutRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(MvccError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(MvccError::LeaseProvided);
    }
    Ok(())
}

/// Validates a delete-range: non-empty key.
pub fn validate_delete_range(req: &DeleteRangeRequest) -> Result<(), MvccError> {
    if req.key.is_empty() {
        return Err(MvccError::EmptyKey);
    }
    Ok(())
}

/// Validates a txn: operation counts (`max_txn_ops` per level, as etcd), every
/// compare and op, then overlapping puts/deletes of the success and failure
/// branches (including nested txns).
pub fn validate_txn(req: &TxnRequest, max_txn_ops: usize) -> Result<(), MvccError> {
    check_txn(req, max_txn_ops as i64)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn(req: &TxnRequest, max_txn_ops: i64) -> Result<(), MvccError> {
    let opc = req.compare.len().max(req.success.len()).max(req.failure.len()) as i64;
    if opc > max_txn_ops {
        return Err(MvccError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(MvccError::EmptyKey);
    }
    for op in req.success.iter().chain(req.failure.iter()) {
        check_op(op, max_txn_ops - opc)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), MvccError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => validate_range(r),
        Some(request_op::Request::RequestPut(p)) => validate_put(p),
        Some(request_op::Request::RequestDeleteRange(d)) => validate_delete_range(d),
        Some(request_op::Request::RequestTxn(t)) => check_txn(t, max_txn_ops),
        None => Err(MvccError::KeyNotFound),
    }
}

/// A deleted interval `[begin, end)` compared bytewise, with an empty `end`
/// meaning +infinity (etcd's `StringAffineInterval`). A point delete `k` is
/// `[k, k + "\0")`. Note: like etcd, a `range_end` of `"\0"` is taken literally
/// here, so a from-key delete does not conflict with anything.
#[derive(Clone)]
struct Interval {
    begin: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn contains(&self, k: &[u8]) -> bool {
        k >= self.begin.as_slice() && self.end.as_deref().is_none_or(|e| k < e)
    }
}

type Puts = HashSet<Vec<u8>>;

fn check_intervals(ops: &[RequestOp]) -> Result<(Puts, Vec<Interval>), MvccError> {
    let mut dels: Vec<Interval> = Vec::new();
    for op in ops {
        if let Some(request_op::Request::RequestDeleteRange(d)) = &op.request {
            let end = if d.range_end.is_empty() {
                let mut e = d.key.clone();
                e.push(0);
                e
            } else {
                d.range_end.clone()
            };
            dels.push(Interval {
                begin: d.key.clone(),
                end: Some(end),
            });
        }
    }
    let hits = |dels: &[Interval], k: &[u8]| dels.iter().any(|i| i.contains(k));
    let mut puts = Puts::new();
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hits(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            // then/else are exclusive: the same key in both branches is fine.
            if (puts.contains(k) && !puts_then.contains(k)) || hits(&dels, k) {
                return Err(MvccError::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if puts.contains(&p.key) || hits(&dels, &p.key) {
            return Err(MvccError::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}
