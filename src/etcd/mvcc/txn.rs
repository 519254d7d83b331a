//! Writes: put, delete-range and txn, following etcd's applier
//! (`applierV3backend.Put/DeleteRange/Txn`): a txn's compares (including nested
//! ones) are all evaluated against the state before the txn, its puts and ranges
//! are checked against that state before anything is written, and a failing txn
//! leaves the store untouched.

use bytes::Bytes;

use super::error::MvccError;
use super::store::{KeySpan, Store, WriteTxn};
use crate::proto::etcdserverpb::{
    request_op, response_op, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::Event;

/// Which branch each (nested) txn takes, decided before the txn runs.
struct TxnPath {
    succeeded: bool,
    /// Paths of the nested txns of the taken branch, in op order.
    nested: Vec<TxnPath>,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..Default::default()
    })
}

fn branch(req: &TxnRequest, succeeded: bool) -> &[crate::proto::etcdserverpb::RequestOp] {
    if succeeded {
        &req.success
    } else {
        &req.failure
    }
}

impl Store {
    /// Applies a put. Returns the response (no header; `prev_kv` if asked and the
    /// key existed) and the PUT event (with `prev_kv` whenever the key existed).
    ///
    /// Errors: `LeaseNotFound` if `lease != 0` and `lease_exists(lease)` is false;
    /// `KeyNotFound` for `ignore_value`/`ignore_lease` on a missing key.
    pub fn put(
        &mut self,
        req: &PutRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(PutResponse, Vec<Event>), MvccError> {
        if req.lease != 0 && !lease_exists(req.lease) {
            return Err(MvccError::LeaseNotFound);
        }
        let mut txn = self.write_txn();
        let mut resp = apply_put(&mut txn, req)?;
        resp.header = None;
        Ok((resp, txn.commit()))
    }

    /// Applies a delete-range. Returns the response (no header; `prev_kvs` if
    /// asked) and one DELETE event per deleted key (with `prev_kv`). Deleting
    /// nothing creates no revision.
    pub fn delete_range(&mut self, req: &DeleteRangeRequest) -> Result<(DeleteRangeResponse, Vec<Event>), MvccError> {
        let mut txn = self.write_txn();
        let mut resp = apply_delete(&mut txn, req)?;
        resp.header = None;
        Ok((resp, txn.commit()))
    }

    /// Applies a txn. The top-level response has no header; nested responses carry
    /// the headers etcd fills (`revision` for range/put/delete, an empty header for
    /// a nested txn). All-or-nothing: on error nothing is written.
    pub fn txn(
        &mut self,
        req: &TxnRequest,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(TxnResponse, Vec<Event>), MvccError> {
        let rev = self.current_rev;
        let path = self.txn_path(req, rev);
        self.check_puts(req, &path, lease_exists)?;
        self.check_ranges(req, &path)?;
        let mut txn = self.write_txn();
        let mut resp = apply_txn(&mut txn, req, &path)?;
        resp.header = None;
        Ok((resp, txn.commit()))
    }

    fn txn_path(&self, req: &TxnRequest, rev: i64) -> TxnPath {
        let succeeded = req.compare.iter().all(|c| self.compare_holds(c, rev));
        let nested = branch(req, succeeded)
            .iter()
            .filter_map(|op| match &op.request {
                Some(request_op::Request::RequestTxn(t)) => Some(self.txn_path(t, rev)),
                _ => None,
            })
            .collect();
        TxnPath { succeeded, nested }
    }

    /// etcd's `checkPut` over the taken path, against the pre-txn state.
    fn check_puts(
        &self,
        req: &TxnRequest,
        path: &TxnPath,
        lease_exists: &dyn Fn(i64) -> bool,
    ) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in branch(req, path.succeeded) {
            match &op.request {
                Some(request_op::Request::RequestTxn(t)) => {
                    if let Some(p) = nested.next() {
                        self.check_puts(t, p, lease_exists)?;
                    }
                }
                Some(request_op::Request::RequestPut(p)) => {
                    if (p.ignore_value || p.ignore_lease) && self.live(&p.key, self.current_rev).is_none() {
                        return Err(MvccError::KeyNotFound);
                    }
                    if p.lease != 0 && !lease_exists(p.lease) {
                        return Err(MvccError::LeaseNotFound);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// etcd's `checkRange` over the taken path: explicit revisions must be readable.
    fn check_ranges(&self, req: &TxnRequest, path: &TxnPath) -> Result<(), MvccError> {
        let mut nested = path.nested.iter();
        for op in branch(req, path.succeeded) {
            match &op.request {
                Some(request_op::Request::RequestTxn(t)) => {
                    if let Some(p) = nested.next() {
                        self.check_ranges(t, p)?;
                    }
                }
                Some(request_op::Request::RequestRange(r)) => {
                    if r.revision == 0 {
                        continue;
                    }
                    if r.revision > self.current_rev {
                        return Err(MvccError::FutureRevision);
                    }
                    if r.revision < self.compact_rev {
                        return Err(MvccError::Compacted {
                            compact_revision: self.compact_rev,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn live(&self, key: &[u8], rev: i64) -> Option<&super::key_index::Record> {
        self.index.get(key)?.live_at(rev)
    }
}

fn apply_range(txn: &WriteTxn<'_>, req: &RangeRequest) -> Result<ResponseOp, MvccError> {
    let cur = txn.read_rev();
    let mut resp = txn.store.range_at(req, cur)?;
    resp.header = header(cur);
    Ok(ResponseOp {
        response: Some(response_op::Response::ResponseRange(resp)),
    })
}

fn apply_put(txn: &mut WriteTxn<'_>, req: &PutRequest) -> Result<PutResponse, MvccError> {
    let prev = txn.store.live(&req.key, txn.read_rev()).cloned();
    if (req.ignore_value || req.ignore_lease) && prev.is_none() {
        return Err(MvccError::KeyNotFound);
    }
    let value = match (&prev, req.ignore_value) {
        (Some(p), true) => p.value.clone(),
        _ => Bytes::copy_from_slice(&req.value),
    };
    let lease = match (&prev, req.ignore_lease) {
        (Some(p), true) => p.lease,
        _ => req.lease,
    };
    let prev_kv = if req.prev_kv {
        prev.map(|p| p.to_kv(&req.key))
    } else {
        None
    };
    let rev = txn.put(&req.key, value, lease);
    Ok(PutResponse {
        header: header(rev),
        prev_kv,
    })
}

fn apply_delete(txn: &mut WriteTxn<'_>, req: &DeleteRangeRequest) -> Result<DeleteRangeResponse, MvccError> {
    let span = KeySpan::new(&req.key, &req.range_end);
    let mut prev_kvs = Vec::new();
    if req.prev_kv {
        txn.store.for_each_live(&span, txn.read_rev(), |k, r| {
            prev_kvs.push(r.to_kv(k));
            true
        });
    }
    let deleted = txn.delete_range(&span);
    let rev = if txn.has_changes() { txn.begin + 1 } else { txn.begin };
    Ok(DeleteRangeResponse {
        header: header(rev),
        deleted,
        prev_kvs,
    })
}

fn apply_txn(txn: &mut WriteTxn<'_>, req: &TxnRequest, path: &TxnPath) -> Result<TxnResponse, MvccError> {
    let mut nested = path.nested.iter();
    let ops = branch(req, path.succeeded);
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let resp = match &op.request {
            Some(request_op::Request::RequestRange(r)) => apply_range(txn, r)?,
            Some(request_op::Request::RequestPut(p)) => ResponseOp {
                response: Some(response_op::Response::ResponsePut(apply_put(txn, p)?)),
            },
            Some(request_op::Request::RequestDeleteRange(d)) => ResponseOp {
                response: Some(response_op::Response::ResponseDeleteRange(apply_delete(txn, d)?)),
            },
            Some(request_op::Request::RequestTxn(t)) => {
                let Some(p) = nested.next() else {
                    return Err(MvccError::KeyNotFound);
                };
                let mut r = apply_txn(txn, t, p)?;
                r.header = Some(ResponseHeader::default());
                ResponseOp {
                    response: Some(response_op::Response::ResponseTxn(r)),
                }
            }
            None => ResponseOp { response: None },
        };
        responses.push(resp);
    }
    Ok(TxnResponse {
        header: None,
        succeeded: path.succeeded,
        responses,
    })
}
