//! Membership changes through Raft, with etcd's strict-reconfig checks before proposing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{EtcdServer, ServerError, REQUEST_TIMEOUT};
use crate::apply::{encode_conf_change, ApplyError, ApplyOutput};
use crate::membership::{self, reconfig, Change, MembershipError};
use crate::proto::etcdserverpb::Member;
use crate::raft_node::RaftError;

/// Why a membership request failed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error(transparent)]
    Membership(#[from] MembershipError),
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
}

impl From<RaftError> for MemberError {
    fn from(e: RaftError) -> Self {
        MemberError::Server(e.into())
    }
}

impl EtcdServer {
    fn connected(&self) -> impl Fn(u64) -> bool + '_ {
        move |id| self.connectivity.connected_for(id, reconfig::HEALTH_INTERVAL)
    }

    /// MemberAdd: a new voter or learner with these peer URLs; returns it and the new member list.
    pub async fn add_member(
        &self,
        peer_urls: Vec<String>,
        learner: bool,
    ) -> Result<(Member, Vec<Member>), MemberError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        // etcd derives an added member's ID from its URLs and the time, with an empty cluster name.
        let member = Member {
            id: membership::member_id(&peer_urls, "", Some(now)),
            name: String::new(),
            peer_ur_ls: peer_urls,
            client_ur_ls: Vec::new(),
            is_learner: learner,
        };
        if self.cfg.strict_reconfig_check {
            let m = self.sm.read().membership.clone();
            reconfig::may_add(&m, learner, self.member_id, &self.connected())?;
        }
        let members = self.propose_change(Change::Add(member.clone())).await?;
        Ok((member, members))
    }

    /// MemberRemove.
    pub async fn remove_member(&self, id: u64) -> Result<Vec<Member>, MemberError> {
        if self.cfg.strict_reconfig_check {
            let m = self.sm.read().membership.clone();
            let reachable = |peer| self.connectivity.is_connected(peer);
            reconfig::may_remove(&m, id, self.member_id, &reachable, &self.connected())?;
        }
        self.propose_change(Change::Remove(id)).await
    }

    /// MemberUpdate: new peer URLs.
    pub async fn update_member(&self, id: u64, peer_urls: Vec<String>) -> Result<Vec<Member>, MemberError> {
        self.propose_change(Change::Update { id, peer_urls }).await
    }

    /// MemberPromote, on the leader (followers forward it): only a learner that caught up.
    pub async fn promote_member(&self, id: u64) -> Result<Vec<Member>, MemberError> {
        let progress = self.raft.progress(id).await?;
        {
            let m = self.sm.read().membership.clone();
            // Refuse what apply would refuse before checking progress, as etcd does.
            m.validate(&Change::Promote(id))?;
            let strict = self.cfg.strict_reconfig_check;
            reconfig::may_promote(&m, progress, strict, self.member_id, &self.connected())?;
        }
        self.propose_change(Change::Promote(id)).await
    }

    /// MoveLeader, on the leader: hands leadership to voter `to` and waits until it leads.
    pub async fn move_leader(&self, to: u64) -> Result<(), MemberError> {
        if !self.raft.status.is_leader() {
            return Err(RaftError::NotLeader.into());
        }
        if self.sm.read().membership.member(to).is_none_or(|m| m.is_learner) {
            return Err(MemberError::BadLeaderTransferee);
        }
        if to == self.member_id {
            return Ok(());
        }
        self.raft.transfer_leader(to).await?;
        let deadline = tokio::time::Instant::now() + self.cfg.election_timeout * 2 + Duration::from_secs(1);
        while self.raft.status.leader() != to {
            if tokio::time::Instant::now() >= deadline {
                return Err(MemberError::LeaderTransferTimeout);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn propose_change(&self, change: Change) -> Result<Vec<Member>, MemberError> {
        let id = self.ids.next();
        let cc = encode_conf_change(id, &change);
        let res = tokio::time::timeout(REQUEST_TIMEOUT, self.raft.propose_conf_change(id, cc))
            .await
            .map_err(|_| RaftError::Timeout)??;
        match res {
            Ok(ApplyOutput::Members(members)) => Ok(members),
            Ok(_) => Ok(self.sm.read().membership.members.clone()),
            Err(ApplyError::Membership(e)) => Err(e.into()),
            Err(e) => Err(ServerError::Apply(e).into()),
        }
    }
}
