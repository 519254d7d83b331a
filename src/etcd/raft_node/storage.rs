//! The raft-rs `Storage` the node reads its log from: raft-rs's in-memory log (the WAL
//! makes it durable), plus snapshots built from the state machine, so that a leader can
//! send a follower that fell behind its log a snapshot carrying the whole state.

use std::sync::Arc;

use parking_lot::RwLock;
use prost::Message as _;
use raft::eraftpb::{Entry, Snapshot};
use raft::storage::MemStorage;
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

use crate::apply::StateMachine;

/// raft-rs storage: `MemStorage` for entries and hard state; snapshots from the state machine.
pub struct NodeStorage {
    pub mem: MemStorage,
    pub sm: Arc<RwLock<StateMachine>>,
}

impl Storage for NodeStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        self.mem.initial_state()
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.mem.entries(low, high, max_size, context)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.mem.term(idx)
    }

    fn first_index(&self) -> raft::Result<u64> {
        self.mem.first_index()
    }

    fn last_index(&self) -> raft::Result<u64> {
        self.mem.last_index()
    }

    /// The state machine as of its applied index (raft-rs asks on the driver thread,
    /// which applies entries itself, so the applied state is consistent with the log).
    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let sm = self.sm.read();
        if sm.applied_index < request_index {
            return Err(raft::Error::Store(StorageError::SnapshotTemporarilyUnavailable));
        }
        let conf_state = sm.membership.conf_state();
        let mut snap = Snapshot::default();
        snap.set_data(sm.to_snapshot().encode_to_vec().into());
        let md = snap.mut_metadata();
        md.index = sm.applied_index;
        md.term = sm.applied_term;
        md.set_conf_state(conf_state);
        Ok(snap)
    }
}
