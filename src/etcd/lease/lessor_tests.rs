//! Behaviour tests of the [`Lessor`] with injected time.

use std::time::{Duration, Instant};

use super::*;
use crate::proto::rustcdpb::{LeaseRecord, LeaseSnapshot};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// A primary lessor with minimum TTL 2 and checkpointing as given.
fn leader(t0: Instant, checkpoint: Option<Duration>) -> Lessor {
    let mut cfg = LessorConfig::new(2);
    cfg.checkpoint_interval = checkpoint;
    let mut l = Lessor::with_config(cfg);
    l.promote(t0, Duration::ZERO);
    l
}

#[test]
fn min_lease_ttl_matches_etcd_formula() {
    // etcd defaults: 100 ms heartbeat, 1000 ms election -> 15 ticks * 100 ms = 1.5 s -> 2.
    assert_eq!(min_lease_ttl(ms(100), ms(1000)), 2);
    // 10 ticks of 100 ms: (3*10)/2 = 15 ticks -> 1.5 s -> 2; 11 ticks: 16 ticks -> 1.6 s -> 2.
    assert_eq!(min_lease_ttl(ms(100), ms(1100)), 2);
    // Integer tick division: 1050 ms / 100 ms = 10 ticks.
    assert_eq!(min_lease_ttl(ms(100), ms(1050)), 2);
    // 500 ms heartbeat, 5000 ms election: 10 ticks -> 15 * 0.5 s = 7.5 s -> 8.
    assert_eq!(min_lease_ttl(ms(500), ms(5000)), 8);
    // Exactly whole seconds are not rounded up: 1 s * (3*2/2) = 3 s.
    assert_eq!(min_lease_ttl(secs(1), secs(2)), 3);
    // Odd tick count: (3*3)/2 = 4 ticks of 100 ms = 0.4 s -> 1.
    assert_eq!(min_lease_ttl(ms(100), ms(300)), 1);
    assert_eq!(min_lease_ttl(Duration::ZERO, secs(1)), 0);
}

#[test]
fn grant_raises_ttl_to_minimum_and_validates() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    let r = l.grant(1, 1, t0).unwrap();
    assert_eq!((r.id, r.ttl, r.error.as_str()), (1, 2, ""));
    assert_eq!(l.grant(2, -5, t0).unwrap().ttl, 2);
    assert_eq!(l.grant(3, 0, t0).unwrap().ttl, 2);
    assert_eq!(l.grant(4, 60, t0).unwrap().ttl, 60);
    assert_eq!(l.grant(5, MAX_LEASE_TTL, t0).unwrap().ttl, MAX_LEASE_TTL);
    assert_eq!(l.grant(6, MAX_LEASE_TTL + 1, t0), Err(LeaseError::TtlTooLarge));
    assert_eq!(l.grant(4, 10, t0), Err(LeaseError::AlreadyExists));
    // Too large is checked before existence, as in etcd.
    assert_eq!(l.grant(4, MAX_LEASE_TTL + 1, t0), Err(LeaseError::TtlTooLarge));
    assert_eq!(l.grant(0, 10, t0), Err(LeaseError::NotFound));
    assert!(l.exists(4) && !l.exists(6));
    assert_eq!(l.granted_ttl(4), Some(60));
    assert_eq!(l.len(), 5);
}

#[test]
fn expired_reports_in_deadline_order_and_respects_limit() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(10, 30, t0).unwrap();
    l.grant(11, 5, t0).unwrap();
    l.grant(12, 10, t0).unwrap();
    l.grant(13, 5, t0).unwrap();
    assert!(l.expired(t0 + secs(4), 100).is_empty());
    assert!(l.expired(t0 + ms(4999), 100).is_empty());
    // Deadline reached exactly counts as expired (etcd: Remaining() <= 0).
    assert_eq!(l.expired(t0 + secs(5), 1), vec![11]);
    assert_eq!(l.expired(t0 + secs(5), 100), vec![13]);
    // 11 and 13 are reported again (retry interval passed, never revoked),
    // ahead of 12 and 10 whose deadlines are later.
    assert_eq!(l.expired(t0 + secs(31), 100), vec![11, 13, 12, 10]);
    // Still present until the revoke is applied.
    assert!(l.exists(11));
    assert_eq!(l.expired(t0, 0), Vec::<i64>::new());
}

#[test]
fn expired_retries_after_interval_until_revoked() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(1, 5, t0).unwrap();
    assert_eq!(l.expired(t0 + secs(5), 10), vec![1]);
    // Not reported again before the 3 s retry interval...
    assert!(l.expired(t0 + secs(6), 10).is_empty());
    assert!(l.expired(t0 + ms(7999), 10).is_empty());
    // ...but again once it has passed, since the revoke never arrived.
    assert_eq!(l.expired(t0 + secs(8), 10), vec![1]);
    assert_eq!(l.revoke(1), Ok(vec![]));
    assert!(l.expired(t0 + secs(20), 10).is_empty());
}

#[test]
fn zero_retry_interval_reports_each_lease_once_per_call() {
    let t0 = Instant::now();
    let mut cfg = LessorConfig::new(1);
    cfg.expired_retry_interval = Duration::ZERO;
    let mut l = Lessor::with_config(cfg);
    l.promote(t0, Duration::ZERO);
    l.grant(1, 1, t0).unwrap();
    l.grant(2, 1, t0).unwrap();
    assert_eq!(l.expired(t0 + secs(2), 100), vec![1, 2]);
    assert_eq!(l.expired(t0 + secs(2), 100), vec![1, 2]);
}

#[test]
fn renew_pushes_expiry_and_checks_state() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(1, 10, t0).unwrap();
    assert_eq!(l.renew(1, t0 + secs(8)), Ok(10));
    assert!(l.expired(t0 + secs(17), 10).is_empty());
    assert_eq!(l.time_to_live(1, t0 + secs(17), false).unwrap().ttl, 1);
    assert_eq!(l.expired(t0 + secs(18), 10), vec![1]);
    // Expired but not yet revoked: keep-alive must not resurrect it.
    assert_eq!(l.renew(1, t0 + secs(18)), Err(LeaseError::Expired));
    assert_eq!(l.renew(99, t0), Err(LeaseError::NotFound));
    l.demote();
    assert_eq!(l.renew(1, t0), Err(LeaseError::NotPrimary));
}

#[test]
fn time_to_live_truncates_like_etcd() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(1, 10, t0).unwrap();
    l.attach(1, b"/b").unwrap();
    l.attach(1, b"/a").unwrap();
    let r = l.time_to_live(1, t0 + ms(1), true).unwrap();
    // etcdctl right after `lease grant 10` shows remaining 9.
    assert_eq!((r.id, r.ttl, r.granted_ttl), (1, 9, 10));
    assert_eq!(r.keys, vec![b"/a".to_vec(), b"/b".to_vec()]);
    assert!(l.time_to_live(1, t0, false).unwrap().keys.is_empty());
    assert_eq!(l.time_to_live(1, t0, false).unwrap().ttl, 10);
    // Past the deadline but not revoked: 0 for the first second, then negative.
    assert_eq!(l.time_to_live(1, t0 + ms(10_400), false).unwrap().ttl, 0);
    assert_eq!(l.time_to_live(1, t0 + ms(11_200), false).unwrap().ttl, -1);
    assert_eq!(l.time_to_live(2, t0, false), Err(LeaseError::NotFound));
    let nf = not_found_time_to_live(2);
    assert_eq!((nf.id, nf.ttl, nf.granted_ttl), (2, -1, 0));
    l.demote();
    assert_eq!(l.time_to_live(1, t0, false), Err(LeaseError::NotPrimary));
}

#[test]
fn revoke_returns_sorted_keys_and_forgets_them() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(1, 10, t0).unwrap();
    for k in [&b"/z"[..], b"/a", b"/m"] {
        l.attach(1, k).unwrap();
    }
    assert_eq!(l.revoke(1), Ok(vec![b"/a".to_vec(), b"/m".to_vec(), b"/z".to_vec()]));
    assert_eq!(l.lease_of(b"/a"), 0);
    assert!(!l.exists(1));
    assert_eq!(l.revoke(1), Err(LeaseError::NotFound));
    assert_eq!(l.attach(1, b"/a"), Err(LeaseError::NotFound));
    assert_eq!(l.detach(1, b"/a"), Err(LeaseError::NotFound));
}

#[test]
fn attach_moves_keys_between_leases_and_detach_removes() {
    let t0 = Instant::now();
    let mut l = Lessor::new(2);
    l.grant(1, 10, t0).unwrap();
    l.grant(2, 10, t0).unwrap();
    l.attach(1, b"k").unwrap();
    l.attach(1, b"k").unwrap();
    assert_eq!(l.keys(1), Some(vec![b"k".to_vec()]));
    l.attach(2, b"k").unwrap();
    assert_eq!(l.lease_of(b"k"), 2);
    assert_eq!(l.keys(1), Some(vec![]));
    assert_eq!(l.keys(2), Some(vec![b"k".to_vec()]));
    // Detaching from a lease the key is not on leaves it where it is.
    l.detach(1, b"k").unwrap();
    assert_eq!(l.lease_of(b"k"), 2);
    l.detach(2, b"k").unwrap();
    assert_eq!(l.lease_of(b"k"), 0);
    assert_eq!(l.revoke(2), Ok(vec![]));
    assert_eq!(l.revoke(1), Ok(vec![]));
}

#[test]
fn followers_never_expire_and_promote_refreshes_full_ttl() {
    let t0 = Instant::now();
    let mut l = Lessor::new(2);
    assert!(!l.is_primary());
    l.grant(1, 5, t0).unwrap();
    l.grant(2, 20, t0).unwrap();
    assert!(l.expired(t0 + secs(1000), 10).is_empty());
    // Becoming leader at t0+100 with 1 s extension: full TTLs from then.
    let t1 = t0 + secs(100);
    l.promote(t1, secs(1));
    assert!(l.is_primary());
    assert!(l.expired(t1 + ms(5999), 10).is_empty());
    assert_eq!(l.expired(t1 + secs(6), 10), vec![1]);
    assert_eq!(l.time_to_live(2, t1, false).unwrap().ttl, 21);
    assert_eq!(l.leases(), vec![1, 2]);
    l.demote();
    assert!(!l.is_primary());
    assert!(l.expired(t1 + secs(1000), 10).is_empty());
    // Re-promotion gives lease 1 a fresh TTL again.
    let t2 = t1 + secs(1000);
    l.promote(t2, Duration::ZERO);
    assert!(l.expired(t2 + secs(4), 10).is_empty());
    assert_eq!(l.expired(t2 + secs(5), 10), vec![1]);
}

#[test]
fn checkpoint_sets_remaining_ttl_used_at_promotion() {
    let t0 = Instant::now();
    let mut l = Lessor::new(2);
    l.grant(1, 100, t0).unwrap();
    l.grant(2, 100, t0).unwrap();
    l.checkpoint(1, 30, t0);
    l.checkpoint(99, 30, t0); // unknown: ignored
    assert_eq!(l.checkpointed_remaining_ttl(1), Some(30));
    l.promote(t0, Duration::ZERO);
    assert_eq!(l.time_to_live(1, t0, false).unwrap().ttl, 30);
    assert_eq!(l.time_to_live(1, t0, false).unwrap().granted_ttl, 100);
    assert_eq!(l.expired(t0 + secs(30), 10), vec![1]);
    assert_eq!(l.time_to_live(2, t0, false).unwrap().ttl, 100);
    // A zero checkpoint clears it: the full TTL applies again.
    l.checkpoint(1, 0, t0);
    l.promote(t0, Duration::ZERO);
    assert_eq!(l.time_to_live(1, t0, false).unwrap().ttl, 100);
}

#[test]
fn leader_schedules_checkpoints_and_renew_queues_a_clear() {
    let t0 = Instant::now();
    let mut l = leader(t0, Some(secs(60)));
    l.grant(1, 300, t0).unwrap();
    l.grant(2, 30, t0).unwrap(); // shorter than the interval: never checkpointed
    assert!(l.due_checkpoints(t0 + secs(59), 10).is_empty());
    let t1 = t0 + ms(60_500);
    assert_eq!(l.due_checkpoints(t1, 10), vec![(1, 240)]);
    assert!(l.due_checkpoints(t1, 10).is_empty());
    // The proposal is applied: the remaining TTL is recorded, next one scheduled.
    l.checkpoint(1, 240, t1);
    assert_eq!(l.checkpointed_remaining_ttl(1), Some(240));
    // Keep-alive while a remaining TTL is set: full TTL, and a clear is queued.
    assert_eq!(l.renew(1, t1), Ok(300));
    assert_eq!(l.due_checkpoints(t1, 10), vec![(1, 0)]);
    l.checkpoint(1, 0, t1);
    // The clear re-scheduled a checkpoint 60 s later; renewed just before it
    // is due, the lease has its full TTL left and it is skipped.
    let t2 = t1 + secs(60);
    assert_eq!(l.renew(1, t2), Ok(300));
    assert!(l.due_checkpoints(t2, 10).is_empty());
    assert!(l.due_checkpoints(t2 + secs(600), 10).is_empty());
    // Followers propose nothing.
    l.demote();
    assert!(l.due_checkpoints(t1 + secs(600), 10).is_empty());
}

#[test]
fn checkpoints_disabled_by_default() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(1, 3000, t0).unwrap();
    l.checkpoint(1, 100, t0);
    assert_eq!(l.renew(1, t0), Ok(3000));
    assert!(l.due_checkpoints(t0 + secs(2000), 10).is_empty());
}

#[test]
fn snapshot_round_trips_exactly() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    l.grant(7, 10, t0).unwrap();
    l.grant(3, 1, t0).unwrap();
    l.grant(5, 500, t0).unwrap();
    l.checkpoint(5, 123, t0);
    l.attach(7, b"k").unwrap();
    let snap = l.to_snapshot();
    let rec = |id, ttl, remaining_ttl| LeaseRecord { id, ttl, remaining_ttl };
    assert_eq!(
        snap,
        LeaseSnapshot {
            leases: vec![rec(3, 2, 0), rec(5, 500, 123), rec(7, 10, 0)]
        }
    );
    let restored = Lessor::from_snapshot(*l.config(), &snap, t0);
    assert_eq!(restored.to_snapshot(), snap);
    assert!(!restored.is_primary());
    // Keys are not part of the snapshot: re-attached from MVCC.
    assert_eq!(restored.keys(7), Some(vec![]));
    // Restoring on a primary refreshes deadlines from the checkpointed TTLs.
    let mut p = leader(t0, None);
    p.grant(99, 10, t0).unwrap();
    p.attach(99, b"old").unwrap();
    p.restore(&snap, t0);
    assert!(!p.exists(99));
    assert_eq!(p.lease_of(b"old"), 0);
    assert_eq!(p.time_to_live(5, t0, false).unwrap().ttl, 123);
    assert_eq!(p.expired(t0 + secs(2), 10), vec![3]);
    // TTLs below the minimum are raised on restore, like etcd's recovery.
    let low = LeaseSnapshot {
        leases: vec![rec(1, 1, 0), rec(0, 5, 0)],
    };
    let r = Lessor::from_snapshot(LessorConfig::new(4), &low, t0);
    assert_eq!(r.to_snapshot().leases, vec![rec(1, 4, 0)]);
}

#[test]
fn promote_spreads_piled_up_expiries() {
    let t0 = Instant::now();
    let mut l = Lessor::new(2);
    let n: i64 = 1500;
    for id in 1..=n {
        l.grant(id, 10, t0).unwrap();
    }
    l.promote(t0, Duration::ZERO);
    // etcd allows 750 expiries in the first window; the rest are delayed.
    assert!(l.expired(t0 + ms(9_999), 10_000).is_empty());
    let first = l.expired(t0 + secs(10), 10_000);
    assert_eq!(first.len(), 750);
    let mut total = first.len();
    let mut t = t0 + secs(10);
    while total < n as usize && t < t0 + secs(20) {
        t += ms(100);
        total += l.expired(t, 10_000).len();
    }
    assert_eq!(total, n as usize);
    // The last delayed lease expires about (1500 / 750) s after the base.
    assert!(t >= t0 + ms(11_900) && t <= t0 + ms(12_100), "{t:?}");
}

#[test]
fn many_leases_expire_in_order() {
    let t0 = Instant::now();
    let mut l = leader(t0, None);
    let n: u64 = 20_000;
    // TTLs 2..=201 s spread over the leases, in a scrambled ID order.
    for i in 0..n {
        let id = ((i * 7919) % n + 1) as i64;
        l.grant(id, 2 + (i % 200) as i64, t0).unwrap();
    }
    let mut seen = 0;
    let mut last_ttl = 0;
    for s in 0..=202 {
        let batch = l.expired(t0 + secs(s), usize::MAX);
        for id in &batch {
            let ttl = l.granted_ttl(*id).unwrap();
            assert_eq!(ttl, s as i64);
            assert!(ttl >= last_ttl);
            last_ttl = ttl;
            l.revoke(*id).unwrap();
        }
        seen += batch.len();
    }
    assert_eq!(seen as u64, n);
    assert!(l.is_empty());
}
