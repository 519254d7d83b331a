//! Membership changes, validated and applied in Raft log order with etcd's rules
//! (etcd's `ValidateConfigurationChange` + `applyConfChange`).
//!
//! Validation runs at apply time on every member, so every member accepts or refuses a
//! change identically; a refused change leaves both the member list and Raft's
//! configuration untouched.

use crate::proto::etcdserverpb::Member;

use super::Membership;

/// At most this many learners at once (etcd's `maxLearners`).
pub const MAX_LEARNERS: usize = 1;

/// Why a membership change is refused; the texts are etcd's gRPC errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("etcdserver: member ID already exist")]
    IdExists,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Unknown or removed member ID.
    #[error("etcdserver: member not found")]
    NotFound,
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStarted,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: given member URLs are invalid")]
    BadUrls,
}

/// One membership change, as carried by a Raft configuration change entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A new voter or learner (`member.is_learner`), not started yet.
    Add(Member),
    /// A learner becomes a voter.
    Promote(u64),
    /// New peer URLs for a member.
    Update {
        id: u64,
        peer_urls: Vec<String>,
    },
    Remove(u64),
}

impl Change {
    /// The member the change is about.
    pub fn member_id(&self) -> u64 {
        match self {
            Change::Add(m) => m.id,
            Change::Promote(id) | Change::Remove(id) | Change::Update { id, .. } => *id,
        }
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Add(m) => write!(
                f,
                "add {} {:x} {:?}",
                if m.is_learner { "learner" } else { "voter" },
                m.id,
                m.peer_ur_ls
            ),
            Change::Promote(id) => write!(f, "promote {id:x}"),
            Change::Update { id, peer_urls } => write!(f, "update {id:x} {peer_urls:?}"),
            Change::Remove(id) => write!(f, "remove {id:x}"),
        }
    }
}

impl Membership {
    /// Checks a change against the current members (etcd's `ValidateConfigurationChange`).
    pub fn validate(&self, change: &Change) -> Result<(), MembershipError> {
        let id = change.member_id();
        if self.removed.contains(&id) {
            return Err(MembershipError::NotFound);
        }
        match change {
            Change::Add(m) => {
                if self.member(id).is_some() {
                    return Err(MembershipError::IdExists);
                }
                if self.peer_urls_taken(&m.peer_ur_ls, None) {
                    return Err(MembershipError::PeerUrlExists);
                }
                if m.is_learner && self.members.iter().filter(|m| m.is_learner).count() >= MAX_LEARNERS {
                    return Err(MembershipError::TooManyLearners);
                }
                Ok(())
            }
            Change::Promote(_) => match self.member(id) {
                None => Err(MembershipError::NotFound),
                Some(m) if !m.is_learner => Err(MembershipError::NotLearner),
                Some(_) => Ok(()),
            },
            Change::Update { peer_urls, .. } => {
                if self.member(id).is_none() {
                    return Err(MembershipError::NotFound);
                }
                if self.peer_urls_taken(peer_urls, Some(id)) {
                    return Err(MembershipError::PeerUrlExists);
                }
                Ok(())
            }
            Change::Remove(_) => {
                if self.member(id).is_none() {
                    return Err(MembershipError::NotFound);
                }
                Ok(())
            }
        }
    }

    /// Validates and applies a change.
    pub fn apply_change(&mut self, change: &Change) -> Result<(), MembershipError> {
        self.validate(change)?;
        match change {
            Change::Add(m) => {
                self.members.push(m.clone());
                self.members.sort_by_key(|m| m.id);
            }
            Change::Promote(id) => {
                if let Some(m) = self.members.iter_mut().find(|m| m.id == *id) {
                    m.is_learner = false;
                }
            }
            Change::Update { id, peer_urls } => {
                if let Some(m) = self.members.iter_mut().find(|m| m.id == *id) {
                    m.peer_ur_ls = peer_urls.clone();
                }
            }
            Change::Remove(id) => {
                self.members.retain(|m| m.id != *id);
                self.alarms.retain(|a| a.member_id != *id);
                self.removed.push(*id);
            }
        }
        Ok(())
    }

    /// Whether a member (other than `except`) already uses one of `urls`.
    fn peer_urls_taken(&self, urls: &[String], except: Option<u64>) -> bool {
        self.members
            .iter()
            .filter(|m| Some(m.id) != except)
            .any(|m| m.peer_ur_ls.iter().any(|u| urls.contains(u)))
    }

    /// Voting members.
    pub fn voters(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(|m| !m.is_learner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: u64, url: &str, learner: bool) -> Member {
        Member {
            id,
            name: String::new(),
            peer_ur_ls: vec![url.to_string()],
            client_ur_ls: Vec::new(),
            is_learner: learner,
        }
    }

    fn three() -> Membership {
        let mut m = Membership::default();
        for (id, u) in [(1, "http://a:2380"), (2, "http://b:2380"), (3, "http://c:2380")] {
            m.apply_change(&Change::Add(member(id, u, false))).unwrap();
        }
        m
    }

    #[test]
    fn add_refuses_duplicate_ids_and_urls() {
        let mut m = three();
        assert_eq!(
            m.apply_change(&Change::Add(member(2, "http://z:2380", false))),
            Err(MembershipError::IdExists)
        );
        assert_eq!(
            m.apply_change(&Change::Add(member(9, "http://b:2380", false))),
            Err(MembershipError::PeerUrlExists)
        );
        assert_eq!(m.members.len(), 3);
    }

    #[test]
    fn one_learner_at_a_time_and_promotion_rules() {
        let mut m = three();
        m.apply_change(&Change::Add(member(4, "http://d:2380", true))).unwrap();
        assert_eq!(
            m.apply_change(&Change::Add(member(5, "http://e:2380", true))),
            Err(MembershipError::TooManyLearners)
        );
        assert_eq!(m.apply_change(&Change::Promote(1)), Err(MembershipError::NotLearner));
        assert_eq!(m.apply_change(&Change::Promote(7)), Err(MembershipError::NotFound));
        assert_eq!(m.conf_state().learners, vec![4]);
        m.apply_change(&Change::Promote(4)).unwrap();
        assert_eq!(m.conf_state().voters, vec![1, 2, 3, 4]);
        assert!(m.conf_state().learners.is_empty());
    }

    #[test]
    fn removed_ids_never_come_back() {
        let mut m = three();
        m.activate_alarm(2, crate::proto::etcdserverpb::AlarmType::Nospace);
        m.apply_change(&Change::Remove(2)).unwrap();
        assert!(m.alarms.is_empty());
        assert_eq!(m.apply_change(&Change::Remove(2)), Err(MembershipError::NotFound));
        assert_eq!(
            m.apply_change(&Change::Add(member(2, "http://b:2380", false))),
            Err(MembershipError::NotFound)
        );
        // The removed member's URL is free again for a new member.
        m.apply_change(&Change::Add(member(8, "http://b:2380", false))).unwrap();
        assert_eq!(m.to_snapshot().removed, vec![2]);
    }

    #[test]
    fn update_checks_other_members_urls_only() {
        let mut m = three();
        m.apply_change(&Change::Update {
            id: 1,
            peer_urls: vec!["http://a:2380".into(), "http://a2:2380".into()],
        })
        .unwrap();
        assert_eq!(
            m.apply_change(&Change::Update {
                id: 1,
                peer_urls: vec!["http://c:2380".into()]
            }),
            Err(MembershipError::PeerUrlExists)
        );
        assert_eq!(
            m.apply_change(&Change::Update {
                id: 6,
                peer_urls: vec!["http://f:2380".into()]
            }),
            Err(MembershipError::NotFound)
        );
        assert_eq!(m.member(1).unwrap().peer_ur_ls.len(), 2);
    }
}
