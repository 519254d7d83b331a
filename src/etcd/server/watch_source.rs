//! Connects the watch hub to the state machine (history) and the member's identity (headers).

use std::sync::Arc;

use parking_lot::RwLock;

use crate::apply::StateMachine;
use crate::mvcc::MvccError;
use crate::proto::{etcdserverpb::ResponseHeader, mvccpb};
use crate::raft_node::RaftView;
use crate::watch::{HeaderSource, History};

/// The MVCC store's history, read under the state machine's read lock.
pub struct StoreHistory(pub Arc<RwLock<StateMachine>>);

impl History for StoreHistory {
    fn current_revision(&self) -> i64 {
        self.0.read().mvcc.current_revision()
    }

    fn compact_revision(&self) -> i64 {
        self.0.read().mvcc.compact_revision().max(0)
    }

    fn events_since(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        max: usize,
    ) -> Result<Vec<mvccpb::Event>, i64> {
        let sm = self.0.read();
        sm.mvcc
            .events_since(start_rev, key, range_end, max)
            .map_err(|e| match e {
                MvccError::Compacted { compact_revision } => compact_revision,
                _ => sm.mvcc.compact_revision().max(0),
            })
    }
}

/// etcd response headers for watch responses.
pub struct Headers {
    pub cluster_id: u64,
    pub member_id: u64,
    pub status: Arc<RaftView>,
}

impl HeaderSource for Headers {
    fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.status.term(),
        }
    }
}
