//! Lock-free view of the Raft node's progress for RPC handlers and metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Updated by the driver thread after every Ready; read by anyone.
#[derive(Debug, Default)]
pub struct RaftView {
    term: AtomicU64,
    leader: AtomicU64,
    commit_index: AtomicU64,
    applied_index: AtomicU64,
    is_leader: AtomicBool,
    is_learner: AtomicBool,
    leader_changes: AtomicU64,
    /// Set once, when the driver stopped on a WAL, snapshot or fsync error (fail-stop).
    storage_failure: std::sync::OnceLock<String>,
}

impl RaftView {
    pub fn term(&self) -> u64 {
        self.term.load(Ordering::Acquire)
    }
    pub fn leader(&self) -> u64 {
        self.leader.load(Ordering::Acquire)
    }
    pub fn commit_index(&self) -> u64 {
        self.commit_index.load(Ordering::Acquire)
    }
    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }
    pub fn is_leader(&self) -> bool {
        self.is_leader.load(Ordering::Acquire)
    }
    /// Whether this member is a learner (it then serves only Status and serializable reads).
    pub fn is_learner(&self) -> bool {
        self.is_learner.load(Ordering::Acquire)
    }
    pub(crate) fn set_learner(&self, learner: bool) {
        self.is_learner.store(learner, Ordering::Release);
    }
    pub fn leader_changes(&self) -> u64 {
        self.leader_changes.load(Ordering::Acquire)
    }
    pub(crate) fn set(&self, term: u64, leader: u64, is_leader: bool, commit: u64) {
        self.term.store(term, Ordering::Release);
        if self.leader.swap(leader, Ordering::AcqRel) != leader && leader != 0 {
            self.leader_changes.fetch_add(1, Ordering::AcqRel);
        }
        self.is_leader.store(is_leader, Ordering::Release);
        self.commit_index.store(commit, Ordering::Release);
    }
    /// The storage error the driver stopped on, if it did: the member then fails `/livez` and
    /// `/readyz` until the process exits.
    pub fn storage_failure(&self) -> Option<&str> {
        self.storage_failure.get().map(String::as_str)
    }
    pub(crate) fn set_storage_failure(&self, error: String) {
        let _ = self.storage_failure.set(error);
    }
    pub(crate) fn set_applied(&self, index: u64) {
        self.applied_index.store(index, Ordering::Release);
    }
}
