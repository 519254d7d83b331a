//! Lease checkpoints: the leader periodically records remaining TTLs in the
//! Raft log so a new leader does not hand every lease its full TTL again
//! (etcd's opt-in lease checkpointing).

use std::time::Instant;

use super::lessor::Lessor;
use super::time::ceil_secs_until;

impl Lessor {
    /// Applies a `LeaseCheckpoint` from the log: records the remaining TTL that
    /// a future [`promote`](Self::promote) starts the lease from (0 clears it).
    /// Unknown leases are ignored, as in etcd. On the leader the next
    /// checkpoint is scheduled.
    pub fn checkpoint(&mut self, id: i64, remaining_ttl: i64, now: Instant) {
        let Some(lease) = self.leases.get_mut(&id) else {
            return;
        };
        lease.remaining_ttl = remaining_ttl;
        if self.primary {
            self.schedule_checkpoint(id, now);
        }
    }

    /// The checkpointed remaining TTL of lease `id` (0 when unset).
    pub fn checkpointed_remaining_ttl(&self, id: i64) -> Option<i64> {
        self.leases.get(&id).map(|l| l.remaining_ttl)
    }

    /// Schedules the next checkpoint of `id` if checkpointing is enabled and
    /// the lease's remaining TTL is longer than the interval.
    pub(crate) fn schedule_checkpoint(&mut self, id: i64, now: Instant) {
        let Some(interval) = self.config.checkpoint_interval else {
            return;
        };
        let Some(lease) = self.leases.get(&id) else {
            return;
        };
        let interval_secs = i64::try_from(interval.as_secs()).unwrap_or(i64::MAX);
        if lease.refresh_ttl() > interval_secs {
            if let Some(due) = now.checked_add(interval) {
                self.checkpoint_queue.register_or_update(id, due);
            }
        }
    }

    /// Leader-only: checkpoints to propose (as one `LeaseCheckpointRequest`),
    /// at most `limit`. First the clearing checkpoints queued by
    /// [`renew`](Self::renew) (`remaining_TTL: 0`), then due scheduled ones
    /// with the remaining TTL rounded up to whole seconds; leases that are
    /// expired or still have their full TTL left are skipped, as in etcd.
    pub fn due_checkpoints(&mut self, now: Instant, limit: usize) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        if !self.primary {
            return out;
        }
        while out.len() < limit {
            let Some(id) = self.pending_clears.pop_first() else {
                break;
            };
            if self.leases.contains_key(&id) {
                out.push((id, 0));
            }
        }
        while out.len() < limit {
            match self.checkpoint_queue.peek() {
                Some((due, _)) if due <= now => {}
                _ => break,
            }
            let Some((_, id)) = self.checkpoint_queue.pop() else {
                break;
            };
            let Some(lease) = self.leases.get(&id) else {
                continue;
            };
            let Some(expiry) = lease.expiry else {
                continue;
            };
            if now >= expiry {
                continue;
            }
            let remaining = ceil_secs_until(now, expiry);
            if remaining >= lease.ttl {
                continue;
            }
            out.push((id, remaining));
        }
        out
    }
}
