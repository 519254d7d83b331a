//! Unit tests of the MVCC store; expected values checked against etcd 3.4.23.

use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::{request_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp};
use crate::proto::mvccpb::{event::EventType, KeyValue};

pub(super) fn no_lease(_: i64) -> bool {
    false
}

pub(super) fn put(s: &mut Store, k: &str, v: &str) -> i64 {
    let req = PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    };
    s.put(&req, &no_lease).unwrap();
    s.current_revision()
}

pub(super) fn del(s: &mut Store, k: &str, end: &str) -> i64 {
    let req = DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        prev_kv: false,
    };
    s.delete_range(&req).unwrap().0.deleted
}

pub(super) fn rreq(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect()
}

fn get(s: &Store, k: &str) -> Option<KeyValue> {
    s.range(&rreq(k, "")).unwrap().kvs.into_iter().next()
}

pub(super) fn cmp(k: &str, target: CompareTarget, result: CompareResult, u: TargetUnion) -> Compare {
    Compare {
        key: k.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(u),
        range_end: vec![],
    }
}

pub(super) fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

pub(super) fn op_range(k: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(rreq(k, ""))),
    }
}

#[test]
fn fresh_store_revisions() {
    let s = Store::new();
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.compact_revision(), -1);
    assert_eq!(s.range(&rreq("a", "")).unwrap().count, 0);
}

#[test]
fn put_versions_and_recreate_after_delete() {
    let mut s = Store::new();
    assert_eq!(put(&mut s, "a", "1"), 2);
    assert_eq!(put(&mut s, "a", "2"), 3);
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(del(&mut s, "a", ""), 1);
    assert_eq!(s.current_revision(), 4);
    assert!(get(&s, "a").is_none());
    // deleting nothing does not bump the revision
    assert_eq!(del(&mut s, "a", ""), 0);
    assert_eq!(s.current_revision(), 4);
    assert_eq!(put(&mut s, "a", "3"), 5);
    let kv = get(&s, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    // past reads
    let mut r = rreq("a", "");
    r.revision = 3;
    let kv = &s.range(&r).unwrap().kvs[0];
    assert_eq!((kv.value.as_slice(), kv.version), (&b"2"[..], 2));
    r.revision = 4;
    assert!(s.range(&r).unwrap().kvs.is_empty());
    r.revision = 6;
    assert_eq!(s.range(&r), Err(MvccError::FutureRevision));
}

#[test]
fn put_prev_kv_ignore_value_lease() {
    let mut s = Store::new();
    let mut req = PutRequest {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
        lease: 7,
        prev_kv: true,
        ..Default::default()
    };
    assert_eq!(s.put(&req, &no_lease), Err(MvccError::LeaseNotFound));
    let (resp, ev) = s.put(&req, &|id| id == 7).unwrap();
    assert!(resp.prev_kv.is_none() && resp.header.is_none());
    assert_eq!(ev.len(), 1);
    assert!(ev[0].prev_kv.is_none());
    req.lease = 0;
    req.value.clear();
    req.ignore_value = true;
    req.ignore_lease = true;
    let (resp, ev) = s.put(&req, &no_lease).unwrap();
    assert_eq!(resp.prev_kv.unwrap().value, b"v");
    let kv = ev[0].kv.as_ref().unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease, kv.version), (&b"v"[..], 7, 2));
    assert_eq!(ev[0].prev_kv.as_ref().unwrap().mod_revision, 2);
    req.key = b"missing".to_vec();
    assert_eq!(s.put(&req, &no_lease), Err(MvccError::KeyNotFound));
    assert_eq!(s.current_revision(), 3);
}

#[test]
fn range_spans_limit_count() {
    let mut s = Store::new();
    for k in ["a", "b", "c", "d"] {
        put(&mut s, k, k);
    }
    assert_eq!(keys(&s.range(&rreq("b", "d")).unwrap().kvs), ["b", "c"]);
    assert_eq!(keys(&s.range(&rreq("b", "\0")).unwrap().kvs), ["b", "c", "d"]);
    assert_eq!(s.range(&rreq("\0", "\0")).unwrap().count, 4);
    assert_eq!(s.range(&rreq("d", "a")).unwrap().count, 0);
    let mut r = rreq("a", "\0");
    r.limit = 2;
    let resp = s.range(&r).unwrap();
    assert_eq!(
        (keys(&resp.kvs), resp.more, resp.count),
        (vec!["a".into(), "b".into()], true, 4)
    );
    r.limit = 4;
    assert!(!s.range(&r).unwrap().more);
    r.count_only = true;
    let resp = s.range(&r).unwrap();
    assert_eq!((resp.kvs.len(), resp.count, resp.more), (0, 4, false));
    let mut r = rreq("a", "\0");
    r.keys_only = true;
    assert!(s.range(&r).unwrap().kvs.iter().all(|kv| kv.value.is_empty()));
}

#[test]
fn range_filters_sort_limit_like_etcd() {
    // Same data as the etcd 3.4 check: s1..s4 = 9,8,7,6 at revs 2..5, s2 = x at 6.
    let mut s = Store::new();
    for (k, v) in [("s1", "9"), ("s2", "8"), ("s3", "7"), ("s4", "6"), ("s2", "x")] {
        put(&mut s, k, v);
    }
    let mut r = rreq("s", "t");
    r.limit = 2;
    r.min_mod_revision = 4;
    let resp = s.range(&r).unwrap();
    // etcd: count is before filtering, more is after filtering
    assert_eq!(
        (keys(&resp.kvs), resp.more, resp.count),
        (vec!["s2".into(), "s3".into()], true, 4)
    );
    let mut r = rreq("s", "t");
    r.sort_target = SortTarget::Value as i32; // order NONE -> ascend
    assert_eq!(keys(&s.range(&r).unwrap().kvs), ["s4", "s3", "s1", "s2"]);
    r.sort_order = SortOrder::Descend as i32;
    r.sort_target = SortTarget::Mod as i32;
    r.limit = 1;
    assert_eq!(keys(&s.range(&r).unwrap().kvs), ["s2"]);
    let mut r = rreq("s", "t");
    r.sort_order = SortOrder::Descend as i32;
    assert_eq!(keys(&s.range(&r).unwrap().kvs), ["s4", "s3", "s2", "s1"]);
    let mut r = rreq("s", "t");
    r.max_create_revision = 3;
    r.sort_target = SortTarget::Version as i32;
    r.sort_order = SortOrder::Descend as i32;
    assert_eq!(keys(&s.range(&r).unwrap().kvs), ["s2", "s1"]);
}

#[test]
fn compaction_semantics() {
    let mut s = Store::new();
    put(&mut s, "k1", "v1"); // 2
    put(&mut s, "k2", "v2"); // 3
    del(&mut s, "k1", ""); // 4
    put(&mut s, "k3", "v3"); // 5
    put(&mut s, "k2", "v2b"); // 6
    let (_, used_before) = s.size_bytes();
    assert_eq!(s.compact(7), Err(MvccError::FutureRevision));
    s.compact(5).unwrap();
    assert_eq!(s.compact_revision(), 5);
    assert_eq!(s.compact(5), Err(MvccError::Compacted { compact_revision: 5 }));
    assert_eq!(s.compact(3), Err(MvccError::Compacted { compact_revision: 5 }));
    let mut r = rreq("k", "l");
    r.revision = 4;
    assert_eq!(s.range(&r), Err(MvccError::Compacted { compact_revision: 5 }));
    r.revision = 5;
    assert_eq!(keys(&s.range(&r).unwrap().kvs), ["k2", "k3"]);
    assert_eq!(s.range(&r).unwrap().kvs[0].value, b"v2");
    assert!(!s.index.contains_key(&b"k1"[..]), "deleted key dropped");
    let (total, used) = s.size_bytes();
    assert!(used < used_before && total >= used_before);
    s.defragment();
    assert_eq!(s.size_bytes(), (used, used));
    // k2 keeps v2@3 (needed at rev 5) and v2b@6
    assert_eq!(s.index[&b"k2"[..]].records.len(), 2);
    assert_eq!(
        s.events_since(4, b"k", b"l", 0),
        Err(MvccError::Compacted { compact_revision: 5 })
    );
    let ev = s.events_since(5, b"k", b"l", 0).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[1].prev_kv.as_ref().unwrap().value, b"v2");
}

#[test]
fn compaction_keeps_tombstone_at_compact_rev_for_replay() {
    let mut s = Store::new();
    put(&mut s, "a", "1"); // 2
    del(&mut s, "a", ""); // 3
    s.compact(3).unwrap();
    let ev = s.events_since(3, b"a", b"", 0).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].r#type, EventType::Delete as i32);
    put(&mut s, "b", "1"); // 4
    s.compact(4).unwrap();
    assert!(!s.index.contains_key(&b"a"[..]));
}

#[test]
fn events_since_filters_and_max() {
    let mut s = Store::new();
    put(&mut s, "a", "1"); // 2
    put(&mut s, "b", "1"); // 3
    put(&mut s, "a", "2"); // 4
    let ev = s.events_since(3, b"a", b"", 0).unwrap();
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].prev_kv.as_ref().unwrap().value, b"1");
    assert_eq!(s.events_since(0, b"a", b"\0", 0).unwrap().len(), 3);
    assert_eq!(s.events_since(0, b"a", b"\0", 2).unwrap().len(), 2);
    assert!(s.events_since(5, b"a", b"\0", 0).unwrap().is_empty());
    assert_eq!(s.events_since(-4, b"a", b"\0", 0).unwrap().len(), 3);
    s.compact(3).unwrap();
    assert_eq!(
        s.events_since(-4, b"a", b"", 0),
        Err(MvccError::Compacted { compact_revision: 3 })
    );
    assert_eq!(s.events_since(3, b"a", b"\0", 0).unwrap().len(), 2);
    // `max` never splits a revision: both deletes of revision 5 come together
    s.delete_keys(&[b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(s.events_since(4, b"a", b"\0", 2).unwrap().len(), 3);
    assert_eq!(s.events_since(5, b"a", b"\0", 1).unwrap().len(), 2);
}

#[test]
fn hash_kv_and_snapshot_round_trip() {
    let mut s = Store::new();
    let mut t = Store::new();
    for st in [&mut s, &mut t] {
        put(st, "a", "1");
        put(st, "b", "2");
        del(st, "a", "");
        put(st, "c", "3");
    }
    assert_eq!(s.hash_kv(0), t.hash_kv(0));
    assert_ne!(s.hash_kv(3).unwrap().0, s.hash_kv(4).unwrap().0);
    assert_eq!(s.hash_kv(9), Err(MvccError::FutureRevision));
    s.compact(3).unwrap();
    assert_eq!(s.hash_kv(3), Err(MvccError::Compacted { compact_revision: 3 }));
    let snap = s.to_snapshot();
    assert_eq!((snap.current_revision, snap.compact_revision), (5, 3));
    let r = Store::from_snapshot(&snap).unwrap();
    assert_eq!(r.to_snapshot(), snap);
    assert_eq!(r.hash_kv(0), s.hash_kv(0));
    assert_eq!(r.index, s.index);
    assert_eq!(r.log, s.log);
    assert_eq!(r.size_bytes().1, s.size_bytes().1);
    let mut broken = snap.clone();
    broken.records.swap(0, 1);
    assert!(matches!(
        Store::from_snapshot(&broken),
        Err(MvccError::InvalidSnapshot(_))
    ));
    t.put(
        &PutRequest {
            key: b"d".to_vec(),
            ..Default::default()
        },
        &no_lease,
    )
    .unwrap();
    assert_ne!(t.hash(), s.hash());
}

#[test]
fn error_texts_and_codes() {
    assert_eq!(
        MvccError::Compacted { compact_revision: 1 }.to_string(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        MvccError::FutureRevision.to_string(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    assert_eq!(MvccError::LeaseNotFound.grpc_status_code(), 5);
    assert_eq!(MvccError::FutureRevision.grpc_status_code(), 11);
    assert_eq!(MvccError::DuplicateKey.grpc_status_code(), 3);
    assert_eq!(MvccError::KeyNotFound.to_string(), "etcdserver: key not found");
}

/// Rough throughput check: `cargo test --lib etcd::mvcc::tests::perf_smoke -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf_smoke() {
    let n = 300_000;
    let mut s = Store::new();
    let t = std::time::Instant::now();
    for i in 0..n {
        let req = PutRequest {
            key: format!("/registry/pods/ns/pod-{i:08}").into_bytes(),
            value: vec![b'x'; 256],
            ..Default::default()
        };
        s.put(&req, &no_lease).unwrap();
    }
    let put = t.elapsed();
    let t = std::time::Instant::now();
    for i in 0..n {
        let r = rreq(&format!("/registry/pods/ns/pod-{i:08}"), "");
        assert_eq!(s.range(&r).unwrap().count, 1);
    }
    let get = t.elapsed();
    let t = std::time::Instant::now();
    let mut r = rreq("/registry/pods/", "/registry/pods0");
    r.limit = 500;
    for _ in 0..10 {
        assert!(s.range(&r).unwrap().more);
    }
    let list = t.elapsed();
    let t = std::time::Instant::now();
    s.compact(s.current_revision()).unwrap();
    let compact = t.elapsed();
    eprintln!("{n} puts {put:?}, gets {get:?}, 10 limited lists {list:?}, compact {compact:?}");
}
