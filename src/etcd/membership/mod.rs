//! Cluster membership: member and cluster IDs derived exactly as etcd derives them,
//! the member list, and the cluster-wide alarms. Applied in Raft log order.
//!
//! `change` holds the membership changes (add, promote, update, remove) with etcd's
//! validation rules; [`reconfig`] the strict-reconfig checks a member makes before it
//! proposes one.

mod change;
pub mod reconfig;

use sha1::{Digest, Sha1};

use crate::config::InitialMember;
use crate::proto::etcdserverpb::{AlarmMember, AlarmType, Member};
use crate::proto::rustcdpb::ClusterSnapshot;

pub use change::{Change, MembershipError};

/// etcd's member ID: the first 8 bytes (big-endian) of SHA-1 over the sorted peer URLs
/// concatenated, followed by the cluster token (and, for members added at runtime,
/// the Unix time in seconds as decimal text).
pub fn member_id(peer_urls: &[String], cluster_token: &str, added_at_unix: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha1::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(cluster_token.as_bytes());
    if let Some(t) = added_at_unix {
        h.update(t.to_string().as_bytes());
    }
    first_u64(&h.finalize())
}

/// etcd's cluster ID: the first 8 bytes of SHA-1 over the sorted member IDs (8 bytes each, big-endian).
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha1::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    first_u64(&h.finalize())
}

fn first_u64(digest: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(b)
}

/// The cluster as the state machine knows it.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    pub cluster_id: u64,
    pub members: Vec<Member>,
    pub cluster_version: String,
    pub alarms: Vec<AlarmMember>,
    /// Members removed from the cluster (never re-admitted).
    pub removed: Vec<u64>,
}

impl Membership {
    /// The membership of a cluster bootstrapped from `--initial-cluster`.
    pub fn bootstrap(initial: &[InitialMember], token: &str) -> Self {
        let mut members: Vec<Member> = initial
            .iter()
            .map(|m| Member {
                id: member_id(&m.peer_urls, token, None),
                name: String::new(),
                peer_ur_ls: m.peer_urls.clone(),
                client_ur_ls: Vec::new(),
                is_learner: false,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        let ids: Vec<u64> = members.iter().map(|m| m.id).collect();
        Membership {
            cluster_id: cluster_id(&ids),
            members,
            cluster_version: String::new(),
            alarms: Vec::new(),
            removed: Vec::new(),
        }
    }

    /// Raft's configuration for this member list: voters and learners.
    pub fn conf_state(&self) -> raft::eraftpb::ConfState {
        let voters: Vec<u64> = self.voters().map(|m| m.id).collect();
        let learners: Vec<u64> = self.members.iter().filter(|m| m.is_learner).map(|m| m.id).collect();
        raft::eraftpb::ConfState::from((voters, learners))
    }

    /// Records a started member's name and client URLs (etcd publishes these through Raft).
    pub fn set_attributes(&mut self, id: u64, name: &str, client_urls: &[String]) {
        if let Some(m) = self.members.iter_mut().find(|m| m.id == id) {
            m.name = name.to_string();
            m.client_ur_ls = client_urls.to_vec();
        }
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    /// Activates an alarm; returns false if it was already active.
    pub fn activate_alarm(&mut self, member_id: u64, alarm: AlarmType) -> bool {
        if self
            .alarms
            .iter()
            .any(|a| a.member_id == member_id && a.alarm == alarm as i32)
        {
            return false;
        }
        self.alarms.push(AlarmMember {
            member_id,
            alarm: alarm as i32,
        });
        true
    }

    /// Deactivates an alarm; returns the removed alarm if it was active.
    pub fn deactivate_alarm(&mut self, member_id: u64, alarm: AlarmType) -> Option<AlarmMember> {
        let pos = self
            .alarms
            .iter()
            .position(|a| a.member_id == member_id && a.alarm == alarm as i32)?;
        Some(self.alarms.remove(pos))
    }

    /// Active alarms of one type (all types for `AlarmType::None`), as etcd's Alarm GET returns them.
    pub fn alarms_of(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        self.alarms
            .iter()
            .filter(|a| alarm == AlarmType::None || a.alarm == alarm as i32)
            .cloned()
            .collect()
    }

    pub fn has_alarm(&self, alarm: AlarmType) -> bool {
        self.alarms.iter().any(|a| a.alarm == alarm as i32)
    }

    pub fn to_snapshot(&self) -> ClusterSnapshot {
        ClusterSnapshot {
            cluster_id: self.cluster_id,
            members: self.members.clone(),
            cluster_version: self.cluster_version.clone(),
            alarms: self.alarms.clone(),
            removed: self.removed.clone(),
        }
    }

    pub fn from_snapshot(s: ClusterSnapshot) -> Self {
        Membership {
            cluster_id: s.cluster_id,
            members: s.members,
            cluster_version: s.cluster_version,
            alarms: s.alarms,
            removed: s.removed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_etcd_defaults() {
        // Plain `etcd` with no flags reports member 8e9e05c52164694d in cluster cdf818194e3a8c32.
        let id = member_id(&["http://localhost:2380".to_string()], "etcd-cluster", None);
        assert_eq!(format!("{id:x}"), "8e9e05c52164694d");
        assert_eq!(format!("{:x}", cluster_id(&[id])), "cdf818194e3a8c32");
    }

    #[test]
    fn member_id_ignores_url_order_but_not_token() {
        let a = member_id(&["http://a:1".into(), "http://b:2".into()], "t", None);
        let b = member_id(&["http://b:2".into(), "http://a:1".into()], "t", None);
        assert_eq!(a, b);
        assert_ne!(a, member_id(&["http://a:1".into(), "http://b:2".into()], "u", None));
        assert_ne!(a, member_id(&["http://a:1".into(), "http://b:2".into()], "t", Some(1)));
    }

    #[test]
    fn alarms_activate_once_and_deactivate() {
        let mut m = Membership::default();
        assert!(m.activate_alarm(1, AlarmType::Nospace));
        assert!(!m.activate_alarm(1, AlarmType::Nospace));
        assert!(m.has_alarm(AlarmType::Nospace));
        assert_eq!(m.alarms_of(AlarmType::None).len(), 1);
        assert!(m.deactivate_alarm(1, AlarmType::Nospace).is_some());
        assert!(!m.has_alarm(AlarmType::Nospace));
    }
}
