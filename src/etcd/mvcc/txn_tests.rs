//! Txn unit tests; expected values checked against etcd 3.4.23.

use super::tests::{cmp, no_lease, op_put, op_range, put, rreq};
use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest,
};
use crate::proto::mvccpb::event::EventType;

#[test]
fn txn_compares_and_nested_headers() {
    let mut s = Store::new();
    put(&mut s, "a", "1"); // 2
    let nested = TxnRequest {
        compare: vec![cmp(
            "n",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Version(0),
        )],
        success: vec![op_range("n")],
        failure: vec![],
    };
    let req = TxnRequest {
        compare: vec![cmp(
            "a",
            CompareTarget::Value,
            CompareResult::Equal,
            TargetUnion::Value(b"1".to_vec()),
        )],
        success: vec![
            op_range("a"),
            op_put("n", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestTxn(nested)),
            },
        ],
        failure: vec![],
    };
    let (resp, ev) = s.txn(&req, &no_lease).unwrap();
    assert!(resp.succeeded && resp.header.is_none());
    assert_eq!(ev.len(), 1);
    assert_eq!(s.current_revision(), 3);
    let hdr_rev = |op: &crate::proto::etcdserverpb::ResponseOp| match &op.response {
        Some(response_op::Response::ResponseRange(r)) => r.header.unwrap().revision,
        Some(response_op::Response::ResponsePut(r)) => r.header.unwrap().revision,
        Some(response_op::Response::ResponseTxn(r)) => r.header.unwrap().revision,
        _ => -1,
    };
    // etcd: range before the put sees rev 2, put is 3, nested txn header is empty
    assert_eq!(resp.responses.iter().map(hdr_rev).collect::<Vec<_>>(), [2, 3, 0]);
    // nested compare was evaluated before the txn (n did not exist) -> succeeded
    let Some(response_op::Response::ResponseTxn(inner)) = &resp.responses[2].response else {
        panic!("nested txn response missing");
    };
    assert!(inner.succeeded);
    let Some(response_op::Response::ResponseRange(rr)) = &inner.responses[0].response else {
        panic!("nested range missing");
    };
    assert_eq!(rr.kvs[0].mod_revision, 3, "reads inside a txn see its writes");
}

#[test]
fn txn_compare_missing_and_range_keys() {
    let mut s = Store::new();
    put(&mut s, "r1", "x");
    put(&mut s, "r2", "x");
    let run = |s: &mut Store, c: Compare| {
        s.txn(
            &TxnRequest {
                compare: vec![c],
                ..Default::default()
            },
            &no_lease,
        )
        .unwrap()
        .0
        .succeeded
    };
    let mut c = cmp(
        "r",
        CompareTarget::Value,
        CompareResult::Equal,
        TargetUnion::Value(b"x".to_vec()),
    );
    c.range_end = b"s".to_vec();
    assert!(run(&mut s, c.clone()));
    put(&mut s, "r3", "y");
    assert!(!run(&mut s, c.clone()));
    c.key = b"q".to_vec();
    c.range_end = b"r".to_vec();
    c.result = CompareResult::NotEqual as i32;
    assert!(!run(&mut s, c), "value compare on missing keys fails");
    assert!(run(
        &mut s,
        cmp(
            "zz",
            CompareTarget::Create,
            CompareResult::Equal,
            TargetUnion::CreateRevision(0)
        )
    ));
    assert!(run(
        &mut s,
        cmp(
            "r1",
            CompareTarget::Mod,
            CompareResult::Less,
            TargetUnion::ModRevision(3)
        )
    ));
    assert!(!run(
        &mut s,
        cmp(
            "r1",
            CompareTarget::Mod,
            CompareResult::Greater,
            TargetUnion::ModRevision(3)
        )
    ));
    assert!(run(
        &mut s,
        cmp("r1", CompareTarget::Lease, CompareResult::Equal, TargetUnion::Lease(0))
    ));
    // mismatched union compares against 0 (etcd): version 1 != 0
    assert!(!run(
        &mut s,
        cmp(
            "r1",
            CompareTarget::Version,
            CompareResult::Equal,
            TargetUnion::Value(b"1".to_vec())
        )
    ));
    assert_eq!(s.current_revision(), 4, "read-only txns do not bump the revision");
}

#[test]
fn txn_failure_rolls_back_everything() {
    let mut s = Store::new();
    put(&mut s, "a", "1");
    let before = s.to_snapshot();
    let hash = s.hash();
    let bad_put = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b"b".to_vec(),
            ignore_value: true,
            ..Default::default()
        })),
    };
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_put("x", "1"), bad_put],
        failure: vec![],
    };
    assert_eq!(s.txn(&req, &no_lease), Err(MvccError::KeyNotFound));
    let leased = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b"y".to_vec(),
            lease: 9,
            ..Default::default()
        })),
    };
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_put("x", "1"), leased],
        failure: vec![],
    };
    assert_eq!(s.txn(&req, &no_lease), Err(MvccError::LeaseNotFound));
    let mut future = rreq("a", "");
    future.revision = 99;
    let req = TxnRequest {
        compare: vec![],
        success: vec![
            op_put("x", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestRange(future)),
            },
        ],
        failure: vec![],
    };
    assert_eq!(s.txn(&req, &no_lease), Err(MvccError::FutureRevision));
    // an apply-time failure (unvalidated duplicate: put then ignore_value on a deleted key)
    let del_op = RequestOp {
        request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            ..Default::default()
        })),
    };
    let reput = RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: b"a".to_vec(),
            ignore_value: true,
            ..Default::default()
        })),
    };
    let req = TxnRequest {
        compare: vec![],
        success: vec![op_put("x", "1"), del_op, reput],
        failure: vec![],
    };
    assert_eq!(s.txn(&req, &no_lease), Err(MvccError::KeyNotFound));
    assert_eq!(s.to_snapshot(), before);
    assert_eq!(s.hash(), hash);
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.events_since(3, b"\0", b"\0", 0).unwrap().len(), 0);
}

#[test]
fn txn_sub_revisions_and_delete_events() {
    let mut s = Store::new();
    put(&mut s, "a", "1");
    put(&mut s, "b", "1");
    let req = TxnRequest {
        compare: vec![],
        success: vec![
            RequestOp {
                request: Some(request_op::Request::RequestDeleteRange(DeleteRangeRequest {
                    key: b"a".to_vec(),
                    range_end: b"c".to_vec(),
                    prev_kv: true,
                })),
            },
            op_put("c", "2"),
        ],
        failure: vec![],
    };
    let (resp, ev) = s.txn(&req, &no_lease).unwrap();
    assert_eq!(s.current_revision(), 4);
    let Some(response_op::Response::ResponseDeleteRange(d)) = &resp.responses[0].response else {
        panic!("no delete response");
    };
    assert_eq!((d.deleted, d.prev_kvs.len()), (2, 2));
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[0].r#type, EventType::Delete as i32);
    let kv = ev[0].kv.as_ref().unwrap();
    assert_eq!((kv.key.as_slice(), kv.mod_revision, kv.version), (&b"a"[..], 4, 0));
    assert_eq!(ev[0].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(ev[2].kv.as_ref().unwrap().mod_revision, 4);
    let subs: Vec<i64> = s
        .to_snapshot()
        .records
        .iter()
        .filter(|r| r.main == 4)
        .map(|r| r.sub)
        .collect();
    assert_eq!(subs, [0, 1, 2]);
}

#[test]
fn delete_keys_one_revision() {
    let mut s = Store::new();
    put(&mut s, "b", "1");
    put(&mut s, "a", "1");
    let ev = s.delete_keys(&[b"b".to_vec(), b"a".to_vec(), b"zz".to_vec(), b"a".to_vec()]);
    assert_eq!(ev.len(), 2);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(ev[0].kv.as_ref().unwrap().key, b"a");
    assert!(s.delete_keys(&[b"a".to_vec()]).is_empty());
    assert_eq!(s.current_revision(), 4);
}
