//! Validation tests; each case was checked against etcd 3.4.23 (gRPC gateway).

use super::*;
use crate::proto::etcdserverpb::{
    request_op::Request, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

fn p(k: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    }
}

fn d(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: false,
        })),
    }
}

fn t(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(txn(success, failure))),
    }
}

fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success,
        failure,
    }
}

fn check(success: Vec<RequestOp>) -> Result<(), MvccError> {
    validate_txn(&txn(success, vec![]), 128)
}

#[test]
fn duplicate_keys_like_etcd() {
    let dup = Err(MvccError::DuplicateKey);
    assert_eq!(check(vec![p("x"), p("x")]), dup);
    assert_eq!(check(vec![p("x"), t(vec![p("x")], vec![])]), dup);
    assert_eq!(check(vec![t(vec![p("x")], vec![p("x")])]), Ok(()));
    assert_eq!(check(vec![t(vec![p("x")], vec![]), t(vec![], vec![p("x")])]), dup);
    assert_eq!(check(vec![d("a", "c"), t(vec![p("b")], vec![])]), dup);
    assert_eq!(check(vec![t(vec![d("a", "c")], vec![]), p("b")]), dup);
    assert_eq!(check(vec![t(vec![d("a", "c")], vec![]), t(vec![p("b")], vec![])]), dup);
    assert_eq!(check(vec![d("a", "c"), d("b", "d")]), Ok(()));
    assert_eq!(check(vec![d("b", ""), p("b")]), dup);
    assert_eq!(check(vec![d("a", "b"), p("b")]), Ok(()));
    // etcd 3.4 takes a "\0" range end literally here: no conflict
    assert_eq!(check(vec![d("x", "\0"), p("y")]), Ok(()));
    // success and failure branches are checked separately
    assert_eq!(validate_txn(&txn(vec![p("x")], vec![p("x")]), 128), Ok(()));
}

#[test]
fn op_counts_and_fields() {
    let many: Vec<RequestOp> = (0..129).map(|i| p(&format!("k{i}"))).collect();
    assert_eq!(check(many.clone()), Err(MvccError::TooManyOps));
    assert_eq!(check(many[..128].to_vec()), Ok(()));
    // nested txns get the remaining budget: 100 outer + 29 nested > 128
    let nested = t((0..29).map(|i| p(&format!("n{i}"))).collect(), vec![]);
    let mut outer: Vec<RequestOp> = (0..99).map(|i| p(&format!("k{i}"))).collect();
    outer.push(nested);
    assert_eq!(check(outer), Err(MvccError::TooManyOps));
    let mut req = txn(vec![], vec![]);
    req.compare.push(Compare::default());
    assert_eq!(validate_txn(&req, 128), Err(MvccError::EmptyKey));
    assert_eq!(check(vec![RequestOp { request: None }]), Err(MvccError::KeyNotFound));
    let bad_put = PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(validate_put(&bad_put), Err(MvccError::ValueProvided));
    let bad_lease = PutRequest {
        key: b"k".to_vec(),
        lease: 5,
        ignore_lease: true,
        ..Default::default()
    };
    assert_eq!(validate_put(&bad_lease), Err(MvccError::LeaseProvided));
    assert_eq!(
        check(vec![RequestOp {
            request: Some(Request::RequestPut(bad_lease))
        }]),
        Err(MvccError::LeaseProvided)
    );
    assert_eq!(validate_put(&PutRequest::default()), Err(MvccError::EmptyKey));
    assert_eq!(
        validate_delete_range(&DeleteRangeRequest::default()),
        Err(MvccError::EmptyKey)
    );
    let mut r = RangeRequest {
        key: b"a".to_vec(),
        ..Default::default()
    };
    assert_eq!(validate_range(&r), Ok(()));
    r.sort_target = 9;
    assert_eq!(validate_range(&r), Err(MvccError::InvalidSortOption));
    r.sort_target = 4;
    r.sort_order = 3;
    assert_eq!(validate_range(&r), Err(MvccError::InvalidSortOption));
    r.key.clear();
    r.sort_order = 0;
    assert_eq!(validate_range(&r), Err(MvccError::EmptyKey));
}
