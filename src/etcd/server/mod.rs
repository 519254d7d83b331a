//! `EtcdServer`: the member as the RPC layer sees it. It owns the Raft handle, the state
//! machine, the token store and the watch hub, and offers three things to handlers:
//! `propose` (a write through Raft, answered after it is applied), `linearizable_read`
//! (a ReadIndex barrier), and `header` (etcd's response header).

pub mod background;
mod bootstrap;
pub mod discovery;
mod ids;
mod leader_link;
mod members;
mod watch_source;

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use prost::Message as _;

pub use bootstrap::{start, BootstrapError, Started};
pub use ids::IdGenerator;
pub use leader_link::LeaderLink;
pub use members::MemberError;

use crate::apply::{ApplyError, ApplyOutput, StateMachine};
use crate::auth::TokenStore;
use crate::config::ServerConfig;
use crate::metrics::ServerMetrics;
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::rustcdpb::{internal_request::Request, InternalRequest};
use crate::raft_node::{RaftError, RaftHandle};
use crate::watch::WatchHub;

/// How long a request may wait for Raft before etcd's "request timed out" error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// The etcd API version rustcd implements and reports in Status and /version.
pub const ETCD_API_VERSION: &str = "3.5.0";
/// The cluster version reported by /version (major.minor.0, as etcd reports it).
pub const CLUSTER_VERSION: &str = "3.5.0";

/// Failure of a proposal or read, before it is mapped to a gRPC status.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Raft(#[from] RaftError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("etcdserver: request is too large")]
    TooLarge,
}

/// Who is making a request, established from the auth token (if auth is enabled).
#[derive(Debug, Clone, Default)]
pub struct AuthInfo {
    pub username: String,
    pub revision: u64,
}

/// One running member.
pub struct EtcdServer {
    pub cfg: ServerConfig,
    pub member_id: u64,
    pub cluster_id: u64,
    pub raft: RaftHandle,
    pub sm: Arc<RwLock<StateMachine>>,
    pub tokens: TokenStore,
    pub watch: Arc<WatchHub>,
    pub metrics: Arc<ServerMetrics>,
    pub ids: IdGenerator,
    pub started_at: Instant,
    /// Forwarding channel to the leader (followers forward lease keep-alives to it).
    pub leader_link: LeaderLink,
    /// Notified when this member has been removed from the cluster (it then stops).
    pub removed: Arc<tokio::sync::Notify>,
    /// Notified when the Raft driver stopped on a storage error (the process then exits non-zero).
    pub storage_failed: Arc<tokio::sync::Notify>,
    /// Which peers this member's transport reaches (for etcd's strict reconfig checks).
    pub connectivity: Arc<crate::peer::Connectivity>,
}

impl EtcdServer {
    /// etcd's response header at the given revision.
    pub fn header_at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.raft.status.term(),
        }
    }

    /// etcd's response header at the current revision.
    pub fn header(&self) -> ResponseHeader {
        let rev = self.sm.read().mvcc.current_revision();
        self.header_at(rev)
    }

    /// Proposes a request through Raft and waits until it is applied on this member.
    pub async fn propose(&self, request: Request, auth: &AuthInfo) -> Result<ApplyOutput, ServerError> {
        let id = self.ids.next();
        let req = InternalRequest {
            id,
            username: auth.username.clone(),
            auth_revision: auth.revision,
            request: Some(request),
        };
        let data = req.encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(ServerError::TooLarge);
        }
        self.metrics.proposals_pending.inc();
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.raft.propose(id, data)).await;
        self.metrics.proposals_pending.dec();
        match res {
            Err(_) => {
                self.metrics.proposals_failed.inc();
                Err(RaftError::Timeout.into())
            }
            Ok(Err(e)) => {
                self.metrics.proposals_failed.inc();
                Err(e.into())
            }
            Ok(Ok(result)) => Ok(result?),
        }
    }

    /// Blocks until every write committed before this call is applied here (ReadIndex).
    pub async fn linearizable_read(&self) -> Result<(), ServerError> {
        match tokio::time::timeout(REQUEST_TIMEOUT, self.raft.read_index()).await {
            Err(_) => Err(RaftError::Timeout.into()),
            Ok(r) => r.map(|_| ()).map_err(Into::into),
        }
    }

    /// Whether this member currently has a leader.
    pub fn has_leader(&self) -> bool {
        self.raft.status.leader() != 0
    }
}
