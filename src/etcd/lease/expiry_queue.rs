//! A deadline-ordered queue of lease IDs with O(log n) update and removal.
//!
//! Used for both lease expiry tracking and scheduled checkpoints. Each lease ID
//! appears at most once; re-registering moves it to the new deadline. Ties are
//! broken by lease ID so iteration order is deterministic.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Deadline-ordered set of lease IDs.
#[derive(Debug, Default, Clone)]
pub(crate) struct ExpiryQueue {
    by_deadline: BTreeSet<(Instant, i64)>,
    deadline_of: HashMap<i64, Instant>,
}

impl ExpiryQueue {
    /// Creates an empty queue.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Inserts `id` with `deadline`, replacing any previous deadline for it.
    pub(crate) fn register_or_update(&mut self, id: i64, deadline: Instant) {
        if let Some(old) = self.deadline_of.insert(id, deadline) {
            self.by_deadline.remove(&(old, id));
        }
        self.by_deadline.insert((deadline, id));
    }

    /// Removes `id` from the queue if present.
    pub(crate) fn remove(&mut self, id: i64) {
        if let Some(old) = self.deadline_of.remove(&id) {
            self.by_deadline.remove(&(old, id));
        }
    }

    /// The entry with the earliest deadline (lowest ID on ties).
    pub(crate) fn peek(&self) -> Option<(Instant, i64)> {
        self.by_deadline.first().copied()
    }

    /// Removes and returns the earliest entry.
    pub(crate) fn pop(&mut self) -> Option<(Instant, i64)> {
        let first = self.by_deadline.pop_first()?;
        self.deadline_of.remove(&first.1);
        Some(first)
    }

    /// The deadline registered for `id`, if any.
    #[cfg(test)]
    pub(crate) fn deadline(&self, id: i64) -> Option<Instant> {
        self.deadline_of.get(&id).copied()
    }

    /// Number of queued IDs.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.deadline_of.len()
    }

    /// Removes every entry.
    pub(crate) fn clear(&mut self) {
        self.by_deadline.clear();
        self.deadline_of.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn orders_by_deadline_then_id_and_updates_in_place() {
        let t0 = Instant::now();
        let mut q = ExpiryQueue::new();
        q.register_or_update(3, t0 + Duration::from_secs(3));
        q.register_or_update(1, t0 + Duration::from_secs(5));
        q.register_or_update(2, t0 + Duration::from_secs(3));
        assert_eq!(q.len(), 3);
        assert_eq!(q.peek(), Some((t0 + Duration::from_secs(3), 2)));
        // Moving 2 later leaves 3 first; the old entry for 2 is gone.
        q.register_or_update(2, t0 + Duration::from_secs(9));
        assert_eq!(q.len(), 3);
        assert_eq!(q.deadline(2), Some(t0 + Duration::from_secs(9)));
        assert_eq!(q.pop(), Some((t0 + Duration::from_secs(3), 3)));
        assert_eq!(q.pop(), Some((t0 + Duration::from_secs(5), 1)));
        q.remove(2);
        assert_eq!(q.pop(), None);
        assert_eq!(q.len(), 0);
        q.register_or_update(7, t0);
        q.clear();
        assert!(q.peek().is_none());
    }
}
