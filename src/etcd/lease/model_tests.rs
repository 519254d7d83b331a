//! Property test: the [`Lessor`] against a naive model (a `Vec` of leases with
//! deadlines, scanned linearly) over random operation sequences.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

/// Retry interval used by the test lessor, in milliseconds.
const RETRY_MS: u64 = 3_000;
/// Minimum TTL of the test lessor, in seconds.
const MIN_TTL: i64 = 2;

#[derive(Debug, Clone)]
enum Op {
    Grant { id: i64, ttl: i64 },
    Renew { id: i64 },
    Revoke { id: i64 },
    Checkpoint { id: i64, remaining: i64 },
    Advance { ms: u64 },
    Expired { limit: usize },
    Demote,
    Promote { extend_ms: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let id = 1i64..12;
    prop_oneof![
        3 => (id.clone(), -1i64..15).prop_map(|(id, ttl)| Op::Grant { id, ttl }),
        3 => id.clone().prop_map(|id| Op::Renew { id }),
        1 => id.clone().prop_map(|id| Op::Revoke { id }),
        1 => (id, 0i64..10).prop_map(|(id, remaining)| Op::Checkpoint { id, remaining }),
        4 => (0u64..4_000).prop_map(|ms| Op::Advance { ms }),
        3 => (1usize..5).prop_map(|limit| Op::Expired { limit }),
        1 => Just(Op::Demote),
        1 => (0u64..2_000).prop_map(|extend_ms| Op::Promote { extend_ms }),
    ]
}

/// One lease in the model; times in milliseconds since the start.
#[derive(Debug, Clone)]
struct ModelLease {
    id: i64,
    ttl: i64,
    remaining: i64,
    /// When the lease expires (leader only).
    deadline: Option<u64>,
    /// When `expired` next looks at the lease (leader only).
    next_check: Option<u64>,
}

#[derive(Debug, Default)]
struct Model {
    leases: Vec<ModelLease>,
    primary: bool,
}

impl Model {
    fn find(&mut self, id: i64) -> Option<&mut ModelLease> {
        self.leases.iter_mut().find(|l| l.id == id)
    }

    fn expired(&mut self, now: u64, limit: usize) -> Vec<i64> {
        if !self.primary {
            return Vec::new();
        }
        let mut due: Vec<(u64, i64)> = self
            .leases
            .iter()
            .filter_map(|l| l.next_check.filter(|c| *c <= now).map(|c| (c, l.id)))
            .collect();
        due.sort();
        let mut out = Vec::new();
        for (_, id) in due.into_iter().take(limit) {
            if let Some(l) = self.find(id) {
                assert!(l.deadline.is_some_and(|d| d <= now), "model invariant");
                l.next_check = Some(now + RETRY_MS);
                out.push(id);
            }
        }
        out
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut cfg = LessorConfig::new(MIN_TTL);
    cfg.expired_retry_interval = Duration::from_millis(RETRY_MS);
    let mut lessor = Lessor::with_config(cfg);
    lessor.promote(t0, Duration::ZERO);
    let mut model = Model {
        leases: Vec::new(),
        primary: true,
    };
    let mut now: u64 = 0;
    for op in ops {
        match op {
            Op::Grant { id, ttl } => {
                let got = lessor.grant(id, ttl, at(now)).map(|r| r.ttl);
                if model.find(id).is_some() {
                    prop_assert_eq!(got, Err(LeaseError::AlreadyExists));
                } else {
                    let ttl = ttl.max(MIN_TTL);
                    prop_assert_eq!(got, Ok(ttl));
                    let deadline = model.primary.then(|| now + ttl as u64 * 1000);
                    model.leases.push(ModelLease {
                        id,
                        ttl,
                        remaining: 0,
                        deadline,
                        next_check: deadline,
                    });
                }
            }
            Op::Renew { id } => {
                let got = lessor.renew(id, at(now));
                let primary = model.primary;
                match model.find(id) {
                    _ if !primary => prop_assert_eq!(got, Err(LeaseError::NotPrimary)),
                    None => prop_assert_eq!(got, Err(LeaseError::NotFound)),
                    Some(l) if l.deadline.is_some_and(|d| d <= now) => {
                        prop_assert_eq!(got, Err(LeaseError::Expired))
                    }
                    Some(l) => {
                        prop_assert_eq!(got, Ok(l.ttl));
                        l.deadline = Some(now + l.ttl as u64 * 1000);
                        l.next_check = l.deadline;
                    }
                }
            }
            Op::Revoke { id } => {
                let got = lessor.revoke(id);
                if model.find(id).is_some() {
                    prop_assert_eq!(got, Ok(vec![]));
                    model.leases.retain(|l| l.id != id);
                } else {
                    prop_assert_eq!(got, Err(LeaseError::NotFound));
                }
            }
            Op::Checkpoint { id, remaining } => {
                lessor.checkpoint(id, remaining, at(now));
                if let Some(l) = model.find(id) {
                    l.remaining = remaining;
                }
            }
            Op::Advance { ms } => now += ms,
            Op::Expired { limit } => {
                let got = lessor.expired(at(now), limit);
                prop_assert_eq!(got, model.expired(now, limit));
            }
            Op::Demote => {
                lessor.demote();
                model.primary = false;
                for l in &mut model.leases {
                    l.deadline = None;
                    l.next_check = None;
                }
            }
            Op::Promote { extend_ms } => {
                lessor.promote(at(now), Duration::from_millis(extend_ms));
                model.primary = true;
                for l in &mut model.leases {
                    let secs = if l.remaining > 0 { l.remaining } else { l.ttl };
                    l.deadline = Some(now + extend_ms + secs as u64 * 1000);
                    l.next_check = l.deadline;
                }
            }
        }
        // Cross-check the observable state after every step.
        let mut ids: Vec<i64> = model.leases.iter().map(|l| l.id).collect();
        let mut got_ids = lessor.leases();
        ids.sort();
        got_ids.sort();
        prop_assert_eq!(got_ids, ids);
        for l in &model.leases {
            let ttl = lessor.time_to_live(l.id, at(now), false).map(|r| r.ttl);
            match l.deadline {
                Some(d) => {
                    let remaining_ms = d as i64 - now as i64;
                    prop_assert_eq!(ttl, Ok(remaining_ms / 1000));
                }
                None => prop_assert_eq!(ttl, Err(LeaseError::NotPrimary)),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn lessor_matches_naive_model(ops in proptest::collection::vec(op(), 1..120)) {
        run(ops)?;
    }
}
