//! etcd's `--strict-reconfig-check` rules: what a member checks before it proposes a
//! membership change, so that the change cannot cost the cluster its quorum.
//!
//! A member is *started* once it has published its name. *Connected* means this member's
//! transport has had a working stream to it for at least [`HEALTH_INTERVAL`]; a member is
//! always connected to itself. *Down* means there is no working stream to it at all (etcd's
//! `ActiveSince` is zero): a member that reconnected a moment ago is neither down nor yet
//! connected.

use std::time::Duration;

use super::{Membership, MembershipError};

/// How long a peer must have been reachable to count as connected (etcd's `HealthInterval`).
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Learners may be promoted once their log reaches this share of the leader's (etcd's `readyPercent`).
pub const LEARNER_READY_PERCENT: f64 = 0.9;

/// Majority of `n` voters.
pub fn quorum(n: usize) -> usize {
    n / 2 + 1
}

/// Adding one more voter keeps a quorum of started voters (etcd's `IsReadyToAddVotingMember`).
pub fn ready_to_add_voter(m: &Membership) -> bool {
    let members = 1 + m.voters().count();
    let started = m.voters().filter(|v| !v.name.is_empty()).count();
    if started == 1 && members == 2 {
        // Growing a one-member cluster (etcd allows it: that is how a restored cluster grows).
        return true;
    }
    started >= quorum(members)
}

/// Removing voter `id` keeps a quorum of started voters (etcd's `IsReadyToRemoveVotingMember`).
pub fn ready_to_remove_voter(m: &Membership, id: u64) -> bool {
    let rest: Vec<_> = m.voters().filter(|v| v.id != id).collect();
    let started = rest.iter().filter(|v| !v.name.is_empty()).count();
    started >= quorum(rest.len())
}

/// Promoting a learner keeps a quorum of started voters (etcd's `IsReadyToPromoteMember`).
pub fn ready_to_promote(m: &Membership) -> bool {
    let members = 1 + m.voters().count();
    let started = 1 + m.voters().filter(|v| !v.name.is_empty()).count();
    started >= quorum(members)
}

/// Whether a learner whose log matches the leader's up to `learner_match` may be promoted.
pub fn learner_caught_up(learner_match: u64, leader_match: u64) -> bool {
    learner_match as f64 >= leader_match as f64 * LEARNER_READY_PERCENT
}

/// Voters this member is connected to (itself included).
fn connected_voters(m: &Membership, me: u64, connected: &dyn Fn(u64) -> bool) -> usize {
    m.voters().filter(|v| v.id == me || connected(v.id)).count()
}

/// etcd's `isConnectedFullySince`: this member reaches every voter.
fn fully_connected(m: &Membership, me: u64, connected: &dyn Fn(u64) -> bool) -> Result<(), MembershipError> {
    if connected_voters(m, me, connected) != m.voters().count() {
        return Err(MembershipError::Unhealthy);
    }
    Ok(())
}

/// The checks before MemberAdd (etcd's `mayAddMember`).
pub fn may_add(m: &Membership, learner: bool, me: u64, connected: &dyn Fn(u64) -> bool) -> Result<(), MembershipError> {
    if !learner && !ready_to_add_voter(m) {
        return Err(MembershipError::NotEnoughStarted);
    }
    fully_connected(m, me, connected)
}

/// The checks before MemberRemove (etcd's `mayRemoveMember`); `reachable(id)` says whether
/// there is a working stream to `id` now, however recent.
pub fn may_remove(
    m: &Membership,
    id: u64,
    me: u64,
    reachable: &dyn Fn(u64) -> bool,
    connected: &dyn Fn(u64) -> bool,
) -> Result<(), MembershipError> {
    if m.member(id).is_some_and(|x| x.is_learner) {
        return Ok(());
    }
    if !ready_to_remove_voter(m, id) {
        return Err(MembershipError::NotEnoughStarted);
    }
    // A member that is down is safe to remove: it is not part of the active quorum.
    if id != me && !reachable(id) {
        return Ok(());
    }
    let voters = m.voters().count();
    let active = connected_voters(m, me, connected);
    if active.saturating_sub(1) < quorum(voters.saturating_sub(1)) {
        return Err(MembershipError::Unhealthy);
    }
    Ok(())
}

/// The checks before MemberPromote, on the leader (etcd's `mayPromoteMember`): the learner's
/// progress always (`progress` is None when the leader has none for it), the quorum and
/// connectivity rules only with `strict` (`--strict-reconfig-check`).
pub fn may_promote(
    m: &Membership,
    progress: Option<(u64, u64)>,
    strict: bool,
    me: u64,
    connected: &dyn Fn(u64) -> bool,
) -> Result<(), MembershipError> {
    if let Some((learner, leader)) = progress {
        if !learner_caught_up(learner, leader) {
            return Err(MembershipError::LearnerNotReady);
        }
    }
    if !strict {
        return Ok(());
    }
    if !ready_to_promote(m) {
        return Err(MembershipError::NotEnoughStarted);
    }
    fully_connected(m, me, connected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Change;
    use crate::proto::etcdserverpb::Member;

    /// `started` voters with names, then `unstarted` voters without.
    fn cluster(started: u64, unstarted: u64) -> Membership {
        let mut m = Membership::default();
        for id in 1..=started + unstarted {
            m.apply_change(&Change::Add(Member {
                id,
                name: if id <= started { format!("m{id}") } else { String::new() },
                peer_ur_ls: vec![format!("http://m{id}:2380")],
                client_ur_ls: Vec::new(),
                is_learner: false,
            }))
            .unwrap();
        }
        m
    }

    fn all(_: u64) -> bool {
        true
    }

    #[test]
    fn add_voter_needs_a_started_quorum_of_the_grown_cluster() {
        assert!(ready_to_add_voter(&cluster(1, 0)), "1 -> 2 is allowed");
        assert!(
            !ready_to_add_voter(&cluster(1, 1)),
            "2 voters, 1 started: 3 need 2 started"
        );
        assert!(!ready_to_add_voter(&cluster(2, 1)), "4 voters need 3 started");
        assert!(ready_to_add_voter(&cluster(3, 0)));
        assert!(!ready_to_add_voter(&cluster(2, 2)));
        assert_eq!(
            may_add(&cluster(1, 1), false, 1, &all),
            Err(MembershipError::NotEnoughStarted)
        );
        // Learners do not vote: only connectivity matters.
        assert_eq!(
            may_add(&cluster(1, 1), true, 1, &|_| false),
            Err(MembershipError::Unhealthy)
        );
        assert_eq!(may_add(&cluster(3, 0), true, 1, &all), Ok(()));
    }

    #[test]
    fn remove_keeps_a_started_quorum_and_tolerates_down_members() {
        assert!(ready_to_remove_voter(&cluster(3, 0), 3));
        assert!(!ready_to_remove_voter(&cluster(1, 2), 1));
        let not_3 = |id| id != 3;
        // Removing the member that is down is fine even though only 2 of 3 are connected.
        assert_eq!(may_remove(&cluster(3, 0), 3, 1, &not_3, &not_3), Ok(()));
        // Removing a live member while another is down would leave 1 of 2 connected.
        assert_eq!(
            may_remove(&cluster(3, 0), 2, 1, &not_3, &not_3),
            Err(MembershipError::Unhealthy)
        );
        assert_eq!(may_remove(&cluster(3, 0), 2, 1, &all, &all), Ok(()));
        assert_eq!(
            may_remove(&cluster(1, 0), 1, 1, &all, &all),
            Err(MembershipError::NotEnoughStarted)
        );
        // Member 3 reconnected a moment ago: it is not down, so removing it takes the quorum
        // check, and it does not count as connected yet: 1 of the remaining 2 is too few.
        assert_eq!(
            may_remove(&cluster(3, 0), 3, 1, &all, &not_3),
            Err(MembershipError::Unhealthy)
        );
        // Removing a member that was never reachable needs no quorum check either.
        assert_eq!(may_remove(&cluster(5, 0), 5, 1, &|id| id != 5, &|id| id == 2), Ok(()));
    }

    #[test]
    fn promote_needs_a_caught_up_learner() {
        assert!(learner_caught_up(90, 100));
        assert!(!learner_caught_up(89, 100));
        let m = cluster(3, 0);
        assert_eq!(
            may_promote(&m, Some((10, 100)), true, 1, &all),
            Err(MembershipError::LearnerNotReady)
        );
        assert_eq!(may_promote(&m, Some((100, 100)), true, 1, &all), Ok(()));
        assert_eq!(
            may_promote(&m, None, true, 1, &|id| id == 1),
            Err(MembershipError::Unhealthy)
        );
        // Without --strict-reconfig-check only the learner's progress counts.
        assert_eq!(may_promote(&m, None, false, 1, &|_| false), Ok(()));
        assert_eq!(
            may_promote(&m, Some((10, 100)), false, 1, &all),
            Err(MembershipError::LearnerNotReady)
        );
    }
}
