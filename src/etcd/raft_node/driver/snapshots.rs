//! Snapshots on the driver thread: writing one every `--snapshot-count` entries (then
//! releasing WAL segments and compacting the in-memory log), and installing one the leader sent.

use std::time::Instant;

use prost::Message as _;
use raft::eraftpb::{ConfState, Snapshot};

use super::Driver;
use crate::storage::StorageError;

impl Driver {
    /// Installs a snapshot sent by the leader: state machine, raft log start, snapshot
    /// file and WAL marker, then lets watchers catch up from the new history.
    pub(super) fn install_snapshot(&mut self, snap: Snapshot) -> Result<(), StorageError> {
        let (index, term) = (snap.get_metadata().index, snap.get_metadata().term);
        let state = match crate::proto::rustcdpb::StateSnapshot::decode(snap.get_data()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(index, error = %e, "leader sent an undecodable snapshot; ignoring it");
                return Ok(());
            }
        };
        if let Err(e) = self.sm.write().restore(state, Instant::now()) {
            tracing::error!(index, error = %e, "leader sent a snapshot this member cannot load; ignoring it");
            return Ok(());
        }
        self.snapshots.save(index, term, snap.get_data())?;
        self.wal.mark_snapshot(index, term)?;
        self.wal.sync()?;
        let mut meta_only = snap;
        meta_only.set_data(Default::default());
        if let Err(e) = self.node.mut_store().mem.wl().apply_snapshot(meta_only) {
            tracing::error!(index, error = %e, "raft log could not take the snapshot");
        }
        self.last_snapshot_index = index;
        self.status.set_applied(index);
        let (members, removed) = {
            let sm = self.sm.read();
            (sm.membership.members.clone(), sm.membership.removed.clone())
        };
        for m in members {
            self.transport.upsert(m.id, &m.peer_ur_ls);
        }
        for id in removed {
            self.transport.remove(id);
        }
        self.refresh_learner();
        (self.hooks.on_restore)();
        tracing::info!(index, term, "installed a snapshot from the leader");
        Ok(())
    }

    pub(super) fn take_snapshot(&mut self) -> Result<(), StorageError> {
        let (index, term, data) = {
            let sm = self.sm.read();
            (sm.applied_index, sm.applied_term, sm.to_snapshot().encode_to_vec())
        };
        if index == 0 || index == self.last_snapshot_index {
            return Ok(());
        }
        self.snapshots.save(index, term, &data)?;
        self.wal.mark_snapshot(index, term)?;
        self.wal.sync()?;
        self.wal.release_to(index)?;
        self.snapshots.purge(self.cfg.max_snapshots)?;
        let compact_to = index.saturating_sub(self.cfg.catch_up_entries);
        if compact_to > 1 {
            if let Err(e) = self.node.mut_store().mem.wl().compact(compact_to) {
                tracing::warn!(error = %e, "raft log compaction skipped");
            }
        }
        tracing::info!(index, term, bytes = data.len(), "saved snapshot");
        self.last_snapshot_index = index;
        Ok(())
    }
}

/// Builds an empty raft snapshot carrying only metadata (what MemStorage needs on restart).
pub fn snapshot_metadata(index: u64, term: u64, conf_state: ConfState) -> Snapshot {
    let mut s = Snapshot::default();
    let md = s.mut_metadata();
    md.index = index;
    md.term = term;
    md.set_conf_state(conf_state);
    s
}
