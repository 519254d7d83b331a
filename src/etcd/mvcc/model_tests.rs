//! Model-based property test: a naive list of every (rev, sub, key, value,
//! tombstone) record against the real store, under random operation sequences.

use proptest::prelude::*;

use super::tests::no_lease;
use super::*;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::{
    request_op, response_op, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::proto::mvccpb::{event::EventType, KeyValue};

#[derive(Clone, Debug)]
struct Rec {
    main: i64,
    key: Vec<u8>,
    value: Vec<u8>,
    lease: i64,
    tomb: bool,
}

/// The naive model: never drops anything, answers every read by scanning.
#[derive(Default)]
struct Model {
    recs: Vec<Rec>,
    cur: i64,
    compact: i64,
}

fn in_span(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        e => k >= key && k < e,
    }
}

impl Model {
    fn new() -> Self {
        Model {
            recs: vec![],
            cur: 1,
            compact: -1,
        }
    }

    /// The KeyValue of `key` at `rev`, computed from scratch.
    fn get(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        let hist: Vec<&Rec> = self.recs.iter().filter(|r| r.key == key && r.main <= rev).collect();
        let last = hist.last()?;
        if last.tomb {
            return None;
        }
        let start = hist.iter().rposition(|r| r.tomb).map_or(0, |i| i + 1);
        let gen = &hist[start..];
        Some(KeyValue {
            key: key.to_vec(),
            create_revision: gen[0].main,
            mod_revision: last.main,
            version: gen.len() as i64,
            value: last.value.clone(),
            lease: last.lease,
        })
    }

    /// The KeyValue written by record `i` (None for a tombstone).
    fn kv_of(&self, i: usize) -> Option<KeyValue> {
        let r = &self.recs[i];
        if r.tomb {
            return None;
        }
        let same: Vec<&Rec> = self.recs[..=i].iter().filter(|x| x.key == r.key).collect();
        let start = same.iter().rposition(|x| x.tomb).map_or(0, |j| j + 1);
        Some(KeyValue {
            key: r.key.clone(),
            create_revision: same[start].main,
            mod_revision: r.main,
            version: (same.len() - start) as i64,
            value: r.value.clone(),
            lease: r.lease,
        })
    }

    fn live(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<KeyValue> {
        let mut ks: Vec<Vec<u8>> = self
            .recs
            .iter()
            .map(|r| r.key.clone())
            .filter(|k| in_span(k, key, end))
            .collect();
        ks.sort();
        ks.dedup();
        ks.iter().filter_map(|k| self.get(k, rev)).collect()
    }

    fn range(&self, req: &RangeRequest, cur: i64) -> Result<(Vec<KeyValue>, i64, bool), MvccError> {
        if req.revision > cur {
            return Err(MvccError::FutureRevision);
        }
        let rev = if req.revision <= 0 { cur } else { req.revision };
        if rev < self.compact {
            return Err(MvccError::Compacted {
                compact_revision: self.compact,
            });
        }
        let mut all = self.live(&req.key, &req.range_end, rev);
        let count = all.len() as i64;
        if req.min_mod_revision != 0 {
            all.retain(|kv| kv.mod_revision >= req.min_mod_revision);
        }
        if req.max_create_revision != 0 {
            all.retain(|kv| kv.create_revision <= req.max_create_revision);
        }
        // target: 0 key, 1 version, 2 create, 3 mod, 4 value; order 0 none, 1 asc, 2 desc
        let sort_key = |kv: &KeyValue| -> (i64, Vec<u8>) {
            match req.sort_target {
                1 => (kv.version, vec![]),
                2 => (kv.create_revision, vec![]),
                3 => (kv.mod_revision, vec![]),
                4 => (0, kv.value.clone()),
                _ => (0, kv.key.clone()),
            }
        };
        match (req.sort_order, req.sort_target) {
            (2, _) => all.sort_by_key(|kv| std::cmp::Reverse(sort_key(kv))),
            (_, t) if t != 0 || req.sort_order == 1 => all.sort_by_key(sort_key),
            _ => {}
        }
        let more = req.limit > 0 && all.len() as i64 > req.limit;
        let n = if req.limit > 0 { req.limit as usize } else { all.len() };
        Ok((all.into_iter().take(n).collect(), count, more))
    }

    fn holds(&self, c: &Compare) -> bool {
        let Some(TargetUnion::Version(v)) = c.target_union else {
            return false;
        };
        let kvs = self.live(&c.key, &c.range_end, self.cur);
        if kvs.is_empty() {
            return v == 0;
        }
        kvs.iter().all(|kv| kv.version == v)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8, i64, bool),
    Del(u8, u8),
    Txn(u8, i64, Vec<Op>, Vec<Op>),
    Range(u8, u8, i64, i64, (i32, i32, i64, i64)),
    Compact(i64),
    Events(i64),
}

fn key(i: u8) -> Vec<u8> {
    vec![b'a' + i]
}

fn end(i: u8, j: u8) -> Vec<u8> {
    match j {
        0 => vec![],
        1 => vec![0],
        _ => vec![b'a' + i + j - 1],
    }
}

fn leaf() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..5, 0u8..4, 0i64..3, any::<bool>()).prop_map(|(k, v, l, iv)| Op::Put(k, v, l, iv)),
        (0u8..5, 0u8..4).prop_map(|(k, e)| Op::Del(k, e)),
        (0u8..5, 0u8..4, -1i64..12, 0i64..3, (0i32..3, 0i32..5, 0i64..6, 0i64..6))
            .prop_map(|(k, e, r, l, x)| Op::Range(k, e, r, l, x)),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => leaf(),
        2 => (0u8..5, 0i64..3, prop::collection::vec(leaf(), 0..4), prop::collection::vec(leaf(), 0..3))
            .prop_map(|(k, v, s, f)| Op::Txn(k, v, s, f)),
        1 => (0i64..14).prop_map(Op::Compact),
        1 => (0i64..14).prop_map(Op::Events),
    ]
}

fn to_request(op: &Op) -> Option<RequestOp> {
    let r = match op {
        Op::Put(k, v, l, iv) => request_op::Request::RequestPut(PutRequest {
            key: key(*k),
            value: if *iv { vec![] } else { vec![b'0' + v] },
            lease: *l,
            ignore_value: *iv,
            prev_kv: true,
            ..Default::default()
        }),
        Op::Del(k, e) => request_op::Request::RequestDeleteRange(DeleteRangeRequest {
            key: key(*k),
            range_end: end(*k, *e),
            prev_kv: true,
        }),
        Op::Range(k, e, r, l, (so, st, min_mod, max_create)) => request_op::Request::RequestRange(RangeRequest {
            sort_order: *so,
            sort_target: *st,
            min_mod_revision: *min_mod,
            max_create_revision: *max_create,
            key: key(*k),
            range_end: end(*k, *e),
            revision: *r,
            limit: *l,
            ..Default::default()
        }),
        _ => return None,
    };
    Some(RequestOp { request: Some(r) })
}

fn lease_ok(id: i64) -> bool {
    id != 2
}

/// Applies a leaf op to the model at pending revision `main` (sub-revisions
/// implicit in record order). Returns the op's observable result.
fn model_leaf(m: &mut Model, op: &RequestOp, main: i64, changed: &mut bool) -> Result<Vec<KeyValue>, MvccError> {
    let read_rev = if *changed { main } else { main - 1 };
    match &op.request {
        Some(request_op::Request::RequestPut(p)) => {
            let prev = m.get(&p.key, read_rev);
            if p.ignore_value && prev.is_none() {
                return Err(MvccError::KeyNotFound);
            }
            let value = if p.ignore_value {
                prev.clone().map(|k| k.value).unwrap_or_default()
            } else {
                p.value.clone()
            };
            m.recs.push(Rec {
                main,
                key: p.key.clone(),
                value,
                lease: p.lease,
                tomb: false,
            });
            *changed = true;
            Ok(prev.into_iter().collect())
        }
        Some(request_op::Request::RequestDeleteRange(d)) => {
            let kvs = m.live(&d.key, &d.range_end, read_rev);
            for kv in &kvs {
                m.recs.push(Rec {
                    main,
                    key: kv.key.clone(),
                    value: vec![],
                    lease: 0,
                    tomb: true,
                });
                *changed = true;
            }
            Ok(kvs)
        }
        Some(request_op::Request::RequestRange(r)) => {
            let (kvs, _, _) = m.range(r, read_rev)?;
            Ok(kvs)
        }
        _ => Ok(vec![]),
    }
}

fn store_leaf_result(resp: &response_op::Response) -> Vec<KeyValue> {
    match resp {
        response_op::Response::ResponsePut(p) => p.prev_kv.clone().into_iter().collect(),
        response_op::Response::ResponseDeleteRange(d) => d.prev_kvs.clone(),
        response_op::Response::ResponseRange(r) => r.kvs.clone(),
        response_op::Response::ResponseTxn(_) => vec![],
    }
}

fn check_events(s: &Store, m: &Model, start: i64) {
    let got = s.events_since(start, b"\0", b"\0", 0);
    if start < m.compact {
        assert_eq!(
            got,
            Err(MvccError::Compacted {
                compact_revision: m.compact
            })
        );
        return;
    }
    let got = got.unwrap();
    // A write at the compact revision itself is only retained if it is the key's
    // last write of that revision (compaction keeps the latest record <= compact).
    let superseded_at_compact = |i: usize| {
        let r = &m.recs[i];
        r.main == m.compact && m.recs[i + 1..].iter().any(|x| x.key == r.key && x.main == r.main)
    };
    let want: Vec<usize> = (0..m.recs.len())
        .filter(|&i| m.recs[i].main >= start && !superseded_at_compact(i))
        .collect();
    assert_eq!(got.len(), want.len(), "event count from {start}");
    for (ev, &i) in got.iter().zip(&want) {
        let r = &m.recs[i];
        let kv = ev.kv.as_ref().unwrap();
        assert_eq!((&kv.key, kv.mod_revision), (&r.key, r.main));
        assert_eq!(ev.r#type == EventType::Delete as i32, r.tomb);
        if !r.tomb {
            assert_eq!(Some(kv.clone()), m.kv_of(i));
        }
        // prev_kv (the key's previous version, even within the same revision)
        // is exact for events after the compact revision
        if r.main > m.compact {
            let prev = (0..i).rev().find(|&j| m.recs[j].key == r.key).and_then(|j| m.kv_of(j));
            assert_eq!(ev.prev_kv, prev);
        }
    }
}

fn run(ops: Vec<Op>) {
    let mut s = Store::new();
    let mut m = Model::new();
    for op in &ops {
        match op {
            Op::Compact(r) => {
                let want = if *r <= m.compact {
                    Err(MvccError::Compacted {
                        compact_revision: m.compact,
                    })
                } else if *r > m.cur {
                    Err(MvccError::FutureRevision)
                } else {
                    m.compact = *r;
                    Ok(())
                };
                assert_eq!(s.compact(*r), want);
            }
            Op::Events(start) => check_events(&s, &m, *start),
            Op::Range(..) => {
                let Some(RequestOp {
                    request: Some(request_op::Request::RequestRange(r)),
                }) = to_request(op)
                else {
                    unreachable!()
                };
                let got = s.range(&r).map(|x| (x.kvs, x.count, x.more));
                assert_eq!(got, m.range(&r, m.cur), "range {r:?}");
            }
            Op::Put(..) | Op::Del(..) | Op::Txn(..) => {
                let (req, compare) = match op {
                    Op::Txn(k, v, succ, fail) => {
                        let c = Compare {
                            key: key(*k),
                            range_end: vec![],
                            target: CompareTarget::Version as i32,
                            result: CompareResult::Equal as i32,
                            target_union: Some(TargetUnion::Version(*v)),
                        };
                        let req = TxnRequest {
                            compare: vec![c.clone()],
                            success: succ.iter().filter_map(to_request).collect(),
                            failure: fail.iter().filter_map(to_request).collect(),
                        };
                        (req, Some(c))
                    }
                    _ => (
                        TxnRequest {
                            compare: vec![],
                            success: to_request(op).into_iter().collect(),
                            failure: vec![],
                        },
                        None,
                    ),
                };
                if validate_txn(&req, 128).is_err() {
                    continue;
                }
                let ok = compare.as_ref().is_none_or(|c| m.holds(c));
                let branch = if ok { &req.success } else { &req.failure };
                // model: pre-checks as etcd (ignore_value, leases, range revisions)
                let pre = branch.iter().try_for_each(|o| match &o.request {
                    Some(request_op::Request::RequestPut(p)) if p.ignore_value && m.get(&p.key, m.cur).is_none() => {
                        Err(MvccError::KeyNotFound)
                    }
                    Some(request_op::Request::RequestPut(p)) if !lease_ok(p.lease) => Err(MvccError::LeaseNotFound),
                    _ => Ok(()),
                });
                let pre = pre.and_then(|_| {
                    branch.iter().try_for_each(|o| match &o.request {
                        Some(request_op::Request::RequestRange(r)) if r.revision != 0 && r.revision > m.cur => {
                            Err(MvccError::FutureRevision)
                        }
                        Some(request_op::Request::RequestRange(r)) if r.revision != 0 && r.revision < m.compact => {
                            Err(MvccError::Compacted {
                                compact_revision: m.compact,
                            })
                        }
                        _ => Ok(()),
                    })
                });
                let got = s.txn(&req, &lease_ok);
                if let Err(e) = pre {
                    assert_eq!(got.map(|_| ()), Err(e));
                } else {
                    // Apply to the model; an apply-time failure (only possible through
                    // etcd's literal "\0" interval check, where etcd itself panics)
                    // must leave the store untouched.
                    let main = m.cur + 1;
                    let saved = m.recs.clone();
                    let mut changed = false;
                    let results: Result<Vec<Vec<KeyValue>>, MvccError> = branch
                        .iter()
                        .map(|o| model_leaf(&mut m, o, main, &mut changed))
                        .collect();
                    match results {
                        Err(e) => {
                            m.recs = saved;
                            assert_eq!(got.map(|_| ()), Err(e));
                        }
                        Ok(want) => {
                            let (resp, events) = got.unwrap();
                            assert_eq!(resp.succeeded, ok);
                            let results: Vec<Vec<KeyValue>> = resp
                                .responses
                                .iter()
                                .map(|r| store_leaf_result(r.response.as_ref().unwrap()))
                                .collect();
                            assert_eq!(results, want);
                            if changed {
                                m.cur = main;
                            }
                            assert_eq!(events.len(), m.recs.len() - saved.len());
                        }
                    }
                }
            }
        }
        assert_eq!(s.current_revision(), m.cur);
        let (_, used) = s.size_bytes();
        let recomputed: i64 = s
            .index
            .iter()
            .flat_map(|(k, h)| h.records.iter().map(|r| r.size(k.len())))
            .sum();
        assert_eq!(used, recomputed);
    }
    // every readable revision agrees with the model, and snapshots round-trip
    for rev in m.compact.max(1)..=m.cur {
        let r = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision: rev,
            ..Default::default()
        };
        assert_eq!(
            s.range(&r).map(|x| x.kvs),
            m.range(&r, m.cur).map(|x| x.0),
            "full range at {rev}"
        );
    }
    check_events(&s, &m, m.compact.max(1) + 1);
    let restored = Store::from_snapshot(&s.to_snapshot()).unwrap();
    assert_eq!(restored.hash_kv(0), s.hash_kv(0));
    assert_eq!(restored.to_snapshot(), s.to_snapshot());
    let _ = no_lease;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn store_matches_naive_model(ops in prop::collection::vec(op(), 1..40)) {
        run(ops);
    }
}
