//! Configuration change entries on the driver thread: the member list, Raft's configuration
//! and the peer transport change together, at the entry's log index.

use std::time::Instant;

use raft::eraftpb::Entry;

use super::Driver;
use crate::apply::{decode_conf_change, Applied};
use crate::membership::Change;

impl Driver {
    /// Applies one configuration change entry to the member list, Raft's configuration and
    /// the peer transport (in that order; a refused change touches none of them).
    pub(super) fn apply_conf_change(&mut self, e: &Entry) -> Option<Applied> {
        if e.index <= self.sm.read().applied_index {
            return None;
        }
        let (cc, proposal_id, change) = match decode_conf_change(&e.data) {
            Ok(d) => d,
            Err(err) => {
                tracing::error!(index = e.index, error = %err, "skipping an undecodable configuration change");
                self.sm.write().apply_entry(e.index, e.term, &[], Instant::now());
                return None;
            }
        };
        let result = self.sm.write().apply_membership_change(e.index, e.term, &change);
        match &result {
            Ok(_) => {
                if !matches!(change, Change::Update { .. }) {
                    match self.node.apply_conf_change(&cc) {
                        Ok(cs) => self.node.mut_store().mem.wl().set_conf_state(cs),
                        Err(err) => {
                            tracing::error!(index = e.index, error = %err, "raft refused a configuration change")
                        }
                    }
                }
                let me = self.node.raft.id;
                match &change {
                    Change::Remove(id) if *id == me => {
                        tracing::warn!("this member has been permanently removed from the cluster");
                        (self.hooks.on_removed)();
                    }
                    Change::Remove(id) => self.transport.remove(*id),
                    Change::Add(m) => self.transport.upsert(m.id, &m.peer_ur_ls),
                    Change::Update { id, peer_urls } => self.transport.upsert(*id, peer_urls),
                    Change::Promote(_) => {}
                }
                self.refresh_learner();
                tracing::info!(index = e.index, %change, "applied a membership change");
            }
            Err(err) => tracing::info!(index = e.index, %change, error = %err, "refused a membership change"),
        }
        Some(Applied {
            proposal_id,
            result,
            events: Vec::new(),
            revision: 0,
        })
    }

    pub(super) fn refresh_learner(&self) {
        let me = self.node.raft.id;
        let learner = self.sm.read().membership.member(me).is_some_and(|m| m.is_learner);
        self.status.set_learner(learner);
    }
}
