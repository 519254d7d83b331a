//! Linearizable reads: ReadIndex requests batched per round, their contexts, retries, and
//! releasing readers once the applied index reaches the confirmed read index.

use std::time::{Duration, Instant};

use raft::ReadState;

use super::Driver;

/// A ReadIndex request unanswered for this long is sent again (etcd retries after 500 ms).
const READ_INDEX_RETRY: Duration = Duration::from_millis(500);

/// ReadIndex context: this member's ID and a counter. The leader keeps pending requests by
/// context, so contexts must be unique across the members that forward reads to it.
fn read_context(member: u64, n: u64) -> Vec<u8> {
    let mut ctx = Vec::with_capacity(16);
    ctx.extend_from_slice(&member.to_be_bytes());
    ctx.extend_from_slice(&n.to_be_bytes());
    ctx
}

/// The counter of a context made by [`read_context`] for `member`.
fn parse_read_context(member: u64, ctx: &[u8]) -> Option<u64> {
    let (id, n) = ctx.split_at_checked(8)?;
    if id != member.to_be_bytes() || n.len() != 8 {
        return None;
    }
    Some(u64::from_be_bytes(n.try_into().ok()?))
}

impl Driver {
    /// Moves the readers of each confirmed ReadIndex request to wait for that index to apply.
    pub(super) fn confirm_reads(&mut self, states: Vec<ReadState>) {
        for rs in states {
            let Some(ctx) = parse_read_context(self.node.raft.id, &rs.request_ctx) else {
                continue;
            };
            if let Some((_, waiters)) = self.reads_in_flight.remove(&ctx) {
                for w in waiters {
                    self.reads_waiting_apply.push((rs.index, w));
                }
            }
        }
    }

    pub(super) fn issue_read_index(&mut self) {
        if self.node.raft.leader_id == 0 {
            return; // wait for a leader; callers time out on their side
        }
        let now = Instant::now();
        let stale: Vec<u64> = self
            .reads_in_flight
            .iter()
            .filter(|(_, (sent, _))| now.duration_since(*sent) >= READ_INDEX_RETRY)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            if let Some((_, waiters)) = self.reads_in_flight.remove(&ctx) {
                tracing::debug!(ctx, "no answer to a ReadIndex request; retrying");
                self.pending_reads.extend(waiters);
            }
        }
        if self.pending_reads.is_empty() {
            return;
        }
        self.read_ctx += 1;
        let ctx = self.read_ctx;
        self.node.read_index(read_context(self.node.raft.id, ctx));
        let waiters = std::mem::take(&mut self.pending_reads);
        self.reads_in_flight.insert(ctx, (now, waiters));
    }

    pub(super) fn release_reads(&mut self) {
        if self.reads_waiting_apply.is_empty() {
            return;
        }
        let applied = self.status.applied_index();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.reads_waiting_apply)
            .into_iter()
            .partition(|(idx, _)| *idx <= applied);
        self.reads_waiting_apply = waiting;
        for (idx, w) in ready {
            let _ = w.send(Ok(idx));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_contexts_are_unique_per_member() {
        let a = read_context(1, 7);
        assert_ne!(a, read_context(2, 7));
        assert_eq!(parse_read_context(1, &a), Some(7));
        assert_eq!(parse_read_context(2, &a), None);
        assert_eq!(parse_read_context(1, &a[..12]), None);
    }
}
