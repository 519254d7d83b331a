//! The membership planner: one safe step at a time from observed state to the desired member count.
//!
//! [`next_step`] is a pure function. The reconcile loop (`super::reconcile`) observes the cluster, calls it,
//! executes the returned [`Step`] and comes back; because the decision depends only on what is observed
//! now, an operator that crashes between two steps, or in the middle of one, resumes correctly.
//!
//! Members map to StatefulSet ordinals by name (`<cluster>-<ordinal>`) or, for a member that has not
//! started yet and so has no name, by the first DNS label of its peer URL. The rules, in order:
//!
//! 1. Nothing listed and no StatefulSet: [`Step::Bootstrap`] a one-member cluster (or wait if the
//!    status says the cluster existed: that needs a restore, not a new cluster). Members that do not
//!    map to an ordinal of this cluster, or two members on one ordinal, stop the planner (`Wait`).
//! 2. No quorum (healthy voters < majority of voters): no membership change at all. The only step is
//!    growing the StatefulSet back over voters whose pods are missing, which can restore quorum.
//! 3. Members (below the desired count) without a pod: grow the StatefulSet over them (this resumes
//!    "member added, StatefulSet not grown"). Pods above every member and above the desired count:
//!    shrink the StatefulSet (this finishes a removal).
//! 4. No leader: wait for the election.
//! 5. Learners (at most one may exist): remove learners above the desired count or beyond the first;
//!    replace a learner whose pod lost its data; wait until the learner's pod is ready and it is healthy
//!    (caught up); then promote it.
//! 6. A voter whose pod lost its data (a fresh volume for a member that had started): move leadership
//!    off it if needed, then [`Step::ReplaceMember`] (remove, re-add as a learner).
//! 7. Scale down: voters above the desired count go one at a time, unhealthy ones first, otherwise the
//!    highest ordinal; leadership is moved off a member before it is removed.
//! 8. Scale up: add the lowest missing ordinal as a learner. A brand new pod is only added while every
//!    voter is healthy; a pod that already exists (a crash after growing the StatefulSet, or the second
//!    half of a replacement) is re-added whenever there is quorum.
//! 9. All voters present: wait while any is unhealthy.
//! 10. Rolling changes: a voter whose pod runs an outdated template (`ObservedPod::outdated`: the
//!     image, resources, pod overrides or flags changed since it was created) is restarted with
//!     [`Step::RestartMember`], one at a time, only while every voter is healthy and its pod ready, and
//!     only with at least 3 voters (restarting one of 1 or 2 loses quorum; such clusters wait, saying
//!     so). Followers go first, the lowest ordinal first; the leader goes last, after leadership moved
//!     to an updated voter. Then [`Step::None`].
//!
//! Every membership step is checked against quorum: after it, healthy voters must still be a majority
//! of the resulting voter set, the last voter is never removed, and the leader is never removed.
//!
//! What the executor (the reconcile loop) must guarantee for this to hold:
//! - `Bootstrap` creates the StatefulSet with one replica and `initial-cluster-state=new`; every later
//!   pod starts with `initial-cluster-state=existing`, also when `GrowStatefulSet` recreates a lost
//!   StatefulSet.
//! - A pod discards a data directory whose member ID is not the one MemberList assigns to its ordinal
//!   (a PVC retained from a removed member) before joining.
//! - `ObservedPod::data_lost` is set only from evidence about the volume (the pod reports an empty or
//!   foreign data directory), never from mere unhealthiness.
//! - `ReplaceMember` removes first and adds second; a crash in between shows up as a missing member on
//!   an existing pod, which the planner re-adds.

use std::collections::BTreeMap;
use std::fmt;

/// Raft member ID as MemberList reports it.
pub type MemberId = u64;

/// Ordinals above this never belong to a cluster (replicas are at most 9); such members count as foreign.
pub const MAX_ORDINAL: u32 = 63;

/// What the spec asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Name of the `EtcdCluster`: pods are `<name>-<ordinal>`.
    pub name: String,
    /// Desired number of voting members (1..=9 after CRD validation).
    pub replicas: u32,
}

impl Desired {
    /// The desired state of an `EtcdCluster` named `name` (a negative replica count, which the CRD
    /// forbids, becomes 0 and makes the planner wait).
    pub fn from_spec(name: &str, spec: &super::spec::EtcdClusterSpec) -> Self {
        Desired {
            name: name.to_string(),
            replicas: u32::try_from(spec.replicas).unwrap_or(0),
        }
    }
}

/// One member as MemberList reports it, with the health the operator measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedMember {
    /// Member ID.
    pub id: MemberId,
    /// Member name; empty until the member has started.
    pub name: String,
    /// First peer URL, e.g. `http://demo-2.demo-peer.ns.svc:2380`.
    pub peer_url: String,
    /// Whether the member is a learner.
    pub is_learner: bool,
    /// Whether the member answered Status/health (for a learner: and is caught up with the leader).
    pub healthy: bool,
    /// Whether the member reports itself as the leader.
    pub is_leader: bool,
}

/// One pod of the StatefulSet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedPod {
    /// StatefulSet ordinal.
    pub ordinal: u32,
    /// Pod Ready condition.
    pub ready: bool,
    /// The pod's data directory does not hold the member ID MemberList has for this ordinal (its volume
    /// is fresh): the member must be replaced before it may vote again.
    pub data_lost: bool,
    /// The pod was created from an older pod template than the StatefulSet's (membership flags aside):
    /// it must be restarted to run what the spec says now.
    pub outdated: bool,
}

/// Everything the planner looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// MemberList; `None` when no member answered.
    pub members: Option<Vec<ObservedMember>>,
    /// `spec.replicas` of the StatefulSet; `None` when it does not exist.
    pub statefulset_replicas: Option<u32>,
    /// Pods of the StatefulSet, by ordinal (a missing entry is a pod that is not ready).
    pub pods: Vec<ObservedPod>,
    /// Whether the status records a cluster ID, i.e. the cluster bootstrapped before.
    pub bootstrapped: bool,
    /// The step the status records as in flight. Advisory only: the planner decides from the observed
    /// cluster (a stale record, e.g. a promotion whose status write was lost, is harmless) and mentions
    /// the record in `Wait` reasons.
    pub in_flight: Option<Step>,
}

/// One step toward the desired membership.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Converged: nothing to do.
    None,
    /// Create the StatefulSet for a new cluster with `replicas` initial members (always 1: every further
    /// member joins as a learner).
    Bootstrap { replicas: u32 },
    /// MemberAdd (learner) with the peer URL of pod `<name>-<ordinal>`.
    AddLearner { ordinal: u32 },
    /// Set the StatefulSet's replicas (creating it with `initial-cluster-state=existing` if it is gone).
    GrowStatefulSet { replicas: u32 },
    /// MemberPromote of a caught-up learner.
    PromoteLearner { id: MemberId },
    /// MoveLeader from the current leader to a healthy voter that stays.
    MoveLeader { from: MemberId, to: MemberId },
    /// MemberRemove.
    RemoveMember { id: MemberId },
    /// Set the StatefulSet's replicas lower (only pods without members go away).
    ShrinkStatefulSet { replicas: u32 },
    /// The pod of `ordinal` lost its data: MemberRemove `id`, then MemberAdd a learner for `ordinal`.
    ReplaceMember { id: MemberId, ordinal: u32 },
    /// Delete the (outdated) pod of voter `ordinal`: the StatefulSet recreates it from the current
    /// template on the same volume, and the member comes back with its data.
    RestartMember { ordinal: u32 },
    /// Nothing safe to do now; come back later.
    Wait { reason: String },
}

impl Step {
    /// CamelCase reason for the `Progressing` condition.
    pub fn reason(&self) -> &'static str {
        match self {
            Step::None => "Converged",
            Step::Bootstrap { .. } => "Bootstrapping",
            Step::AddLearner { .. } => "AddingLearner",
            Step::GrowStatefulSet { .. } => "GrowingStatefulSet",
            Step::PromoteLearner { .. } => "PromotingLearner",
            Step::MoveLeader { .. } => "MovingLeader",
            Step::RemoveMember { .. } => "RemovingMember",
            Step::ShrinkStatefulSet { .. } => "ShrinkingStatefulSet",
            Step::ReplaceMember { .. } => "ReplacingMember",
            Step::RestartMember { .. } => "RollingUpdate",
            Step::Wait { .. } => "Waiting",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::None => write!(f, "converged"),
            Step::Bootstrap { replicas } => write!(f, "bootstrap {replicas} member(s)"),
            Step::AddLearner { ordinal } => write!(f, "add learner for ordinal {ordinal}"),
            Step::GrowStatefulSet { replicas } => write!(f, "grow StatefulSet to {replicas}"),
            Step::PromoteLearner { id } => write!(f, "promote learner {id:x}"),
            Step::MoveLeader { from, to } => write!(f, "move leader {from:x} -> {to:x}"),
            Step::RemoveMember { id } => write!(f, "remove member {id:x}"),
            Step::ShrinkStatefulSet { replicas } => write!(f, "shrink StatefulSet to {replicas}"),
            Step::ReplaceMember { id, ordinal } => write!(f, "replace member {id:x} of ordinal {ordinal}"),
            Step::RestartMember { ordinal } => write!(f, "restart the outdated pod of ordinal {ordinal}"),
            Step::Wait { reason } => write!(f, "wait: {reason}"),
        }
    }
}

/// Majority of `voters`.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// The StatefulSet ordinal a member belongs to: from its name `<cluster>-<ordinal>`, or, while the name
/// is empty, from the first DNS label of its peer URL.
pub fn member_ordinal(cluster: &str, member: &ObservedMember) -> Option<u32> {
    let label = if member.name.is_empty() {
        let rest = member
            .peer_url
            .split_once("://")
            .map_or(member.peer_url.as_str(), |(_, rest)| rest);
        rest.split(['.', ':', '/']).next().unwrap_or("")
    } else {
        member.name.as_str()
    };
    let digits = label.strip_prefix(cluster)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse::<u32>().ok().filter(|k| *k <= MAX_ORDINAL)
}

fn wait(reason: impl Into<String>) -> Step {
    Step::Wait { reason: reason.into() }
}

/// A member with its ordinal and derived flags.
#[derive(Clone, Copy, Debug)]
struct View<'a> {
    member: &'a ObservedMember,
    ordinal: u32,
    /// Has a pod (ordinal below the StatefulSet's replicas).
    has_pod: bool,
    /// Healthy and its data is its own.
    healthy: bool,
    /// Started before (has a name) but its pod's volume is fresh.
    data_lost: bool,
}

/// The observed cluster, indexed.
struct Cluster<'a> {
    desired: u32,
    sts: u32,
    members: Vec<View<'a>>,
    pods: BTreeMap<u32, &'a ObservedPod>,
}

impl<'a> Cluster<'a> {
    fn voters(&self) -> impl Iterator<Item = &View<'a>> {
        self.members.iter().filter(|m| !m.member.is_learner)
    }

    fn learners(&self) -> impl Iterator<Item = &View<'a>> {
        self.members.iter().filter(|m| m.member.is_learner)
    }

    fn healthy_voters(&self) -> usize {
        self.voters().filter(|m| m.healthy).count()
    }

    fn has_quorum(&self) -> bool {
        let voters = self.voters().count();
        voters > 0 && self.healthy_voters() >= quorum(voters)
    }

    fn leader(&self) -> Option<&View<'a>> {
        self.members.iter().find(|m| m.member.is_leader && !m.member.is_learner)
    }

    fn pod_ready(&self, ordinal: u32) -> bool {
        ordinal < self.sts && self.pods.get(&ordinal).is_some_and(|p| p.ready)
    }

    fn top_member_ordinal(&self) -> Option<u32> {
        self.members.iter().map(|m| m.ordinal).max()
    }

    /// Whether removing voter or learner `target` keeps a healthy majority and at least one voter.
    fn removal_is_safe(&self, target: &View<'a>) -> bool {
        if target.member.is_learner {
            return true;
        }
        let voters = self.voters().count();
        let healthy = self.healthy_voters() - usize::from(target.healthy);
        voters > 1 && healthy >= quorum(voters - 1)
    }

    /// The voter that should take over leadership from `from`: healthy, staying, lowest ordinal.
    fn leader_target(&self, from: &View<'a>) -> Option<&View<'a>> {
        self.voters()
            .filter(|m| m.member.id != from.member.id && m.healthy && m.ordinal < self.desired)
            .min_by_key(|m| m.ordinal)
    }

    /// Remove (or replace) `target`, moving leadership away first; `Wait` when that is not safe.
    fn remove(&self, target: &View<'a>, replace: bool) -> Step {
        let id = target.member.id;
        if target.member.is_leader && !target.member.is_learner {
            return match self.leader_target(target) {
                Some(to) => Step::MoveLeader {
                    from: id,
                    to: to.member.id,
                },
                None => wait(format!("no healthy voter can take over leadership from {id:x}")),
            };
        }
        if !self.removal_is_safe(target) {
            let voters = self.voters().count();
            return wait(format!(
                "removing {id:x} would leave {} healthy of {} voters, below quorum",
                self.healthy_voters() - usize::from(target.healthy),
                voters.saturating_sub(1)
            ));
        }
        if replace {
            Step::ReplaceMember {
                id,
                ordinal: target.ordinal,
            }
        } else {
            Step::RemoveMember { id }
        }
    }
}

/// Decides the next step. See the module documentation for the rules.
pub fn next_step(desired: &Desired, observed: &Observed) -> Step {
    let step = plan(desired, observed);
    match (step, &observed.in_flight) {
        (Step::Wait { reason }, Some(previous)) => wait(format!("{reason} (last recorded step: {previous})")),
        (step, _) => step,
    }
}

fn plan(desired: &Desired, observed: &Observed) -> Step {
    if desired.replicas == 0 || desired.replicas > MAX_ORDINAL {
        return wait(format!("desired replicas {} out of range", desired.replicas));
    }
    let members = match &observed.members {
        Some(members) if !members.is_empty() => members,
        _ => {
            return match (observed.statefulset_replicas, observed.bootstrapped) {
                (None, false) => Step::Bootstrap { replicas: 1 },
                (None, true) => wait("the StatefulSet is gone and no member answers: the cluster needs a restore"),
                (Some(_), _) => wait("no member answers MemberList yet"),
            };
        }
    };
    let sts = observed.statefulset_replicas.unwrap_or(0);
    let pods: BTreeMap<u32, &ObservedPod> = observed.pods.iter().map(|p| (p.ordinal, p)).collect();
    let mut views = Vec::with_capacity(members.len());
    let mut seen = BTreeMap::new();
    for member in members {
        let Some(ordinal) = member_ordinal(&desired.name, member) else {
            return wait(format!(
                "member {:x} ({:?}, {}) is not a pod of {}: remove it by hand",
                member.id, member.name, member.peer_url, desired.name
            ));
        };
        if let Some(other) = seen.insert(ordinal, member.id) {
            return wait(format!(
                "members {other:x} and {:x} both claim ordinal {ordinal}",
                member.id
            ));
        }
        let has_pod = ordinal < sts;
        let data_lost = has_pod && !member.name.is_empty() && pods.get(&ordinal).is_some_and(|p| p.data_lost);
        views.push(View {
            member,
            ordinal,
            has_pod,
            healthy: member.healthy && !data_lost,
            data_lost,
        });
    }
    views.sort_by_key(|m| m.ordinal);
    let cluster = Cluster {
        desired: desired.replicas,
        sts,
        members: views,
        pods,
    };
    plan_membership(&cluster)
}

fn plan_membership(c: &Cluster<'_>) -> Step {
    let want = c.desired;
    let voters = c.voters().count();

    // 2. Without quorum no membership change can commit: only bring back missing pods.
    if !c.has_quorum() {
        let missing = c.voters().filter(|m| !m.has_pod).map(|m| m.ordinal + 1).max();
        return match missing {
            Some(replicas) => Step::GrowStatefulSet { replicas },
            None => wait(format!("no quorum: {} of {voters} voters healthy", c.healthy_voters())),
        };
    }

    // 3. Keep the StatefulSet covering exactly the members that stay.
    if let Some(replicas) = c
        .members
        .iter()
        .filter(|m| !m.has_pod && m.ordinal < want)
        .map(|m| m.ordinal + 1)
        .max()
    {
        return Step::GrowStatefulSet { replicas };
    }
    let keep = want.max(c.top_member_ordinal().map_or(0, |k| k + 1));
    if c.sts > keep {
        return Step::ShrinkStatefulSet { replicas: keep };
    }

    // 4. InitialCluster changes go through the leader.
    if c.leader().is_none() {
        return wait("no leader elected");
    }

    // 5. Learners: at most one, and it either becomes a voter or goes away.
    let learners: Vec<&View<'_>> = c.learners().collect();
    if let Some(extra) = learners.iter().rev().find(|l| l.ordinal >= want) {
        return Step::RemoveMember { id: extra.member.id };
    }
    if learners.len() > 1 {
        return learners
            .last()
            .map_or_else(|| wait("learners"), |l| Step::RemoveMember { id: l.member.id });
    }
    if let Some(learner) = learners.first() {
        let name = &learner.member.name;
        if learner.data_lost {
            return Step::ReplaceMember {
                id: learner.member.id,
                ordinal: learner.ordinal,
            };
        }
        if !c.pod_ready(learner.ordinal) || !learner.member.healthy {
            return wait(format!(
                "learner {:x} ({name:?}, ordinal {}) is catching up",
                learner.member.id, learner.ordinal
            ));
        }
        return Step::PromoteLearner { id: learner.member.id };
    }

    // 6. A voter that stays but lost its data is replaced before anything else.
    if let Some(lost) = c.voters().find(|m| m.data_lost && m.ordinal < want) {
        return c.remove(lost, true);
    }

    // 7. Scale down, one member at a time: unhealthy ones first, else the highest ordinal.
    let surplus: Vec<&View<'_>> = c.voters().filter(|m| m.ordinal >= want).collect();
    let down = surplus
        .iter()
        .rev()
        .find(|m| !m.healthy)
        .or(surplus.last())
        .map(|target| c.remove(target, false));
    if let Some(step) = &down {
        if !matches!(step, Step::Wait { .. }) {
            return step.clone();
        }
    }

    // 8. Scale up through a learner, the lowest missing ordinal first.
    let staying = c.voters().filter(|m| m.ordinal < want).count();
    if (staying as u32) < want {
        let taken: Vec<u32> = c.members.iter().map(|m| m.ordinal).collect();
        if let Some(ordinal) = (0..want).find(|k| !taken.contains(k)) {
            let unhealthy = voters - c.healthy_voters();
            if ordinal < c.sts || unhealthy == 0 {
                return Step::AddLearner { ordinal };
            }
            return down
                .unwrap_or_else(|| wait(format!("not adding a member while {unhealthy} voter(s) are unhealthy")));
        }
    }
    if let Some(step) = down {
        return step;
    }

    // 9. InitialCluster matches: converged once every voter is healthy.
    let unhealthy: Vec<String> = c
        .voters()
        .filter(|m| !m.healthy)
        .map(|m| format!("{:x} (ordinal {})", m.member.id, m.ordinal))
        .collect();
    if !unhealthy.is_empty() {
        return wait(format!("unhealthy voters: {}", unhealthy.join(", ")));
    }
    roll(c)
}

/// Rule 10: the next restart of an outdated pod, or [`Step::None`] when every pod is current.
fn roll(c: &Cluster<'_>) -> Step {
    let outdated = |m: &View<'_>| c.pods.get(&m.ordinal).is_some_and(|p| p.outdated);
    let stale: Vec<&View<'_>> = c.voters().filter(|m| outdated(m)).collect();
    if stale.is_empty() {
        return Step::None;
    }
    let voters = c.voters().count();
    if voters < 3 {
        return wait(format!(
            "{} pod(s) run an outdated template, and restarting one of {voters} voter(s) would lose quorum: \
             scale to 3 or more (or delete the pods yourself, accepting the outage)",
            stale.len()
        ));
    }
    if let Some(m) = c.voters().find(|m| !c.pod_ready(m.ordinal)) {
        return wait(format!("rolling update: the pod of ordinal {} is not ready", m.ordinal));
    }
    if let Some(follower) = stale.iter().find(|m| !m.member.is_leader) {
        return Step::RestartMember {
            ordinal: follower.ordinal,
        };
    }
    // Only the leader is left: hand leadership to an updated voter first.
    let leader = stale[0];
    match c
        .voters()
        .filter(|m| m.member.id != leader.member.id && m.healthy && !outdated(m))
        .min_by_key(|m| m.ordinal)
    {
        Some(to) => Step::MoveLeader {
            from: leader.member.id,
            to: to.member.id,
        },
        None => wait("rolling update: no updated voter can take over leadership"),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;
