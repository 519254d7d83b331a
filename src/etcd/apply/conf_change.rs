//! Raft configuration change entries: how a membership [`Change`] is carried in raft's
//! `ConfChange` (node ID, change type, and a `rustcdpb.ConfChangeContext` with the member
//! and the proposal to answer), and how the state machine applies one. A peer-URL update
//! is an AddNode flagged `is_update`; the driver does not hand it to raft.

use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};

use super::{ApplyError, ApplyOutput, ApplyResult, StateMachine};
use crate::membership::Change;
use crate::proto::etcdserverpb::Member;
use crate::proto::rustcdpb::ConfChangeContext;

/// The raft `ConfChange` proposing `change`, answered to proposal `proposal_id`.
pub fn encode_conf_change(proposal_id: u64, change: &Change) -> ConfChange {
    let (change_type, member) = match change {
        Change::Add(m) if m.is_learner => (ConfChangeType::AddLearnerNode, Some(m.clone())),
        Change::Add(m) => (ConfChangeType::AddNode, Some(m.clone())),
        Change::Promote(_) => (ConfChangeType::AddNode, None),
        Change::Update { id, peer_urls } => (
            ConfChangeType::AddNode,
            Some(Member {
                id: *id,
                peer_ur_ls: peer_urls.clone(),
                ..Default::default()
            }),
        ),
        Change::Remove(_) => (ConfChangeType::RemoveNode, None),
    };
    let mut cc = ConfChange::default();
    cc.set_change_type(change_type);
    cc.node_id = change.member_id();
    let ctx = ConfChangeContext {
        proposal_id,
        member,
        is_promote: matches!(change, Change::Promote(_)),
        is_update: matches!(change, Change::Update { .. }),
    };
    cc.context = ctx.encode_to_vec().into();
    cc
}

/// Decodes a configuration change entry's payload into the proposal ID and the change.
pub fn decode_conf_change(data: &[u8]) -> Result<(ConfChange, u64, Change), String> {
    let cc = ConfChange::parse_from_bytes(data).map_err(|e| e.to_string())?;
    let ctx = ConfChangeContext::decode(cc.context.as_ref()).map_err(|e| e.to_string())?;
    let id = cc.node_id;
    let member = || -> Result<Member, String> {
        let mut m = ctx.member.clone().ok_or("configuration change without a member")?;
        m.id = id;
        Ok(m)
    };
    let change = match cc.get_change_type() {
        ConfChangeType::AddNode if ctx.is_promote => Change::Promote(id),
        ConfChangeType::AddNode if ctx.is_update => Change::Update {
            id,
            peer_urls: member()?.peer_ur_ls,
        },
        ConfChangeType::AddNode => Change::Add(Member {
            is_learner: false,
            ..member()?
        }),
        ConfChangeType::AddLearnerNode => Change::Add(Member {
            is_learner: true,
            ..member()?
        }),
        ConfChangeType::RemoveNode => Change::Remove(id),
    };
    Ok((cc, ctx.proposal_id, change))
}

impl StateMachine {
    /// Applies a membership change at `index`; returns the member list after it, or why it
    /// was refused (then neither the members nor Raft's configuration change).
    pub fn apply_membership_change(&mut self, index: u64, term: u64, change: &Change) -> ApplyResult {
        if index > self.applied_index {
            self.applied_index = index;
            self.applied_term = term;
        }
        self.membership.apply_change(change).map_err(ApplyError::Membership)?;
        Ok(ApplyOutput::Members(self.membership.members.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_round_trips_through_a_conf_change() {
        let learner = Member {
            id: 7,
            peer_ur_ls: vec!["http://n:2380".into()],
            is_learner: true,
            ..Default::default()
        };
        let changes = [
            Change::Add(learner.clone()),
            Change::Add(Member {
                is_learner: false,
                ..learner
            }),
            Change::Promote(7),
            Change::Update {
                id: 7,
                peer_urls: vec!["http://m:2380".into()],
            },
            Change::Remove(7),
        ];
        for (i, c) in changes.iter().enumerate() {
            let cc = encode_conf_change(i as u64 + 100, c);
            let bytes = cc.write_to_bytes().unwrap();
            let (_, pid, back) = decode_conf_change(&bytes).unwrap();
            assert_eq!(pid, i as u64 + 100);
            assert_eq!(&back, c);
        }
        assert!(decode_conf_change(b"\xff\xff").is_err());
    }
}
