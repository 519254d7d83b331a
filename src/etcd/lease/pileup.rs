//! Spreading of piled-up lease expiries at promotion (etcd's `Promote`).
//!
//! When a new leader refreshes many leases at once, leases that would expire
//! in the same second are pushed back so that at most three quarters of the
//! revoke rate expire per second, leaving room for other revokes.

use std::time::{Duration, Instant};

use super::lessor::{Lessor, LEASE_REVOKE_RATE};
use super::time::{offset_ns, signed_ns_until};

/// Nanoseconds per second.
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// Re-spreads the deadlines `promote` just set on `lessor` (which must be
/// primary), following etcd's algorithm over leases sorted by remaining time.
pub(crate) fn spread_expiries(lessor: &mut Lessor, now: Instant, extend: Duration) {
    let mut by_remaining: Vec<(i128, i64)> = lessor
        .leases
        .iter()
        .filter_map(|(id, l)| l.expiry.map(|e| (signed_ns_until(now, e), *id)))
        .collect();
    by_remaining.sort_unstable();
    let Some(&(first, _)) = by_remaining.first() else {
        return;
    };
    let extend_ns = i128::try_from(extend.as_nanos()).unwrap_or(i128::MAX);
    // etcd: targetExpiresPerSecond := (3 * leaseRevokeRate) / 4
    let target = (3 * LEASE_REVOKE_RATE / 4) as f64;
    let mut base = first;
    let mut next = base + NANOS_PER_SEC;
    let mut expires: u64 = 0;
    for (remaining, id) in by_remaining {
        if remaining > next {
            base = remaining;
            next = base + NANOS_PER_SEC;
            expires = 1;
            continue;
        }
        expires += 1;
        if (expires as f64) <= target {
            continue;
        }
        // Leases further ahead of the base window need less extra delay.
        let rate_delay = NANOS_PER_SEC as f64 * (expires as f64 / target) - (remaining - base) as f64;
        let delay = rate_delay as i128;
        next = base + delay;
        let Some(lease) = lessor.leases.get_mut(&id) else {
            continue;
        };
        let total = delay + extend_ns + i128::from(lease.refresh_ttl()) * NANOS_PER_SEC;
        lease.expiry = offset_ns(now, total);
        match lease.expiry {
            Some(deadline) => lessor.expiry_queue.register_or_update(id, deadline),
            None => lessor.expiry_queue.remove(id),
        }
    }
}
