//! Lease snapshots: the replicated lease records, without attached keys.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::proto::rustcdpb::{LeaseRecord, LeaseSnapshot};

use super::lessor::{Lease, Lessor, LessorConfig};

impl Lessor {
    /// The lease records for a snapshot, sorted by ID. Attached keys are not
    /// included: they are rebuilt from the MVCC store with [`attach`](Self::attach).
    pub fn to_snapshot(&self) -> LeaseSnapshot {
        let mut leases: Vec<LeaseRecord> = self
            .leases
            .iter()
            .map(|(id, l)| LeaseRecord {
                id: *id,
                ttl: l.ttl,
                remaining_ttl: l.remaining_ttl,
            })
            .collect();
        leases.sort_unstable_by_key(|r| r.id);
        LeaseSnapshot { leases }
    }

    /// A lessor restored from `snap` (see [`restore`](Self::restore)).
    pub fn from_snapshot(config: LessorConfig, snap: &LeaseSnapshot, now: Instant) -> Self {
        let mut lessor = Self::with_config(config);
        lessor.restore(snap, now);
        lessor
    }

    /// Replaces all state with `snap`. TTLs below the minimum are raised to it
    /// (as etcd's recovery does); ID 0 records are skipped. Attached keys are
    /// cleared; re-attach them from the MVCC store. If primary, deadlines are
    /// refreshed as by `promote(now, 0)`.
    pub fn restore(&mut self, snap: &LeaseSnapshot, now: Instant) {
        self.leases.clear();
        self.key_lease.clear();
        for rec in snap.leases.iter().filter(|r| r.id != 0) {
            self.leases.insert(
                rec.id,
                Lease {
                    ttl: rec.ttl.max(self.config.min_ttl_secs),
                    remaining_ttl: rec.remaining_ttl,
                    expiry: None,
                    keys: BTreeSet::new(),
                },
            );
        }
        if self.primary {
            self.promote(now, Duration::ZERO);
        } else {
            self.demote();
        }
    }
}
