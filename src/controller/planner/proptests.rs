//! Property tests: safety of every step over arbitrary observed states, and convergence of the simulated
//! cluster under operator crashes.
//!
//! The invariants are checked with code written independently of the planner's own bookkeeping.

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::sample::Index;

use super::sim::{Fault, Sim};
use super::*;

const NAME: &str = "pt";

/// A member slot of an arbitrary state: (learner, started, healthy).
type Slot = Option<(bool, bool, bool)>;

#[derive(Clone, Debug)]
struct Arbitrary {
    desired: Desired,
    observed: Observed,
    /// Ordinal of each member in `observed.members`, by ID.
    ordinals: Vec<(MemberId, u32)>,
}

fn arb_state() -> impl Strategy<Value = Arbitrary> {
    (
        1u32..=9,
        prop::collection::vec(
            prop::option::weighted(
                0.7,
                (
                    prop::bool::weighted(0.15),
                    prop::bool::weighted(0.9),
                    prop::bool::weighted(0.85),
                ),
            ),
            0..=10,
        ),
        prop::option::of(any::<Index>()),
        prop_oneof![
            1 => Just(StsPick::Absent),
            3 => (0u32..=11).prop_map(StsPick::Fixed),
            6 => Just(StsPick::CoversMembers),
        ],
        prop::collection::vec(
            (
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.15),
                prop::bool::weighted(0.3),
            ),
            11,
        ),
        prop::bool::weighted(0.08),
        any::<bool>(),
    )
        .prop_map(|(replicas, slots, leader, sts, pods, unlisted, bootstrapped)| {
            build(replicas, &slots, leader, sts, &pods, unlisted, bootstrapped)
        })
}

/// A settled cluster (voters on `0..n`, StatefulSet of `n`) with random health, leader, lost volumes and
/// desired count: the states where removals press against quorum.
fn arb_settled_state() -> impl Strategy<Value = Arbitrary> {
    (
        1u32..=9,
        prop::collection::vec(prop::bool::weighted(0.75), 1..=9),
        any::<Index>(),
        prop::bool::weighted(0.1),
        prop::collection::vec(prop::bool::weighted(0.4), 11),
    )
        .prop_map(|(replicas, health, leader, lost, outdated)| {
            let slots: Vec<Slot> = health.iter().map(|h| Some((false, true, *h))).collect();
            let pods: Vec<(bool, bool, bool)> = (0..11).map(|k| (true, lost && k == 1, outdated[k])).collect();
            let mut a = build(replicas, &slots, None, StsPick::CoversMembers, &pods, false, true);
            a.observed.statefulset_replicas = Some(slots.len() as u32);
            if let Some(members) = a.observed.members.as_mut() {
                let healthy: Vec<usize> = (0..members.len()).filter(|i| members[*i].healthy).collect();
                if !healthy.is_empty() {
                    members[healthy[leader.index(healthy.len())]].is_leader = true;
                }
            }
            a
        })
}

/// How the arbitrary StatefulSet size relates to the members (mostly consistent, so that deeper rules
/// of the planner are reached often).
#[derive(Clone, Copy, Debug)]
enum StsPick {
    Absent,
    Fixed(u32),
    CoversMembers,
}

fn build(
    replicas: u32,
    slots: &[Slot],
    leader: Option<Index>,
    sts: StsPick,
    pods: &[(bool, bool, bool)],
    unlisted: bool,
    bootstrapped: bool,
) -> Arbitrary {
    let mut members = Vec::new();
    let mut ordinals = Vec::new();
    for (ordinal, slot) in (0u32..).zip(slots) {
        if let Some((learner, started, healthy)) = *slot {
            let id = 0xa000 + u64::from(ordinal) * 7;
            members.push(ObservedMember {
                id,
                name: if started {
                    format!("{NAME}-{ordinal}")
                } else {
                    String::new()
                },
                peer_url: format!("http://{NAME}-{ordinal}.{NAME}-peer:2380"),
                is_learner: learner,
                healthy: healthy && started,
                is_leader: false,
            });
            ordinals.push((id, ordinal));
        }
    }
    let sts = match sts {
        StsPick::Absent => None,
        StsPick::Fixed(n) => Some(n),
        StsPick::CoversMembers => Some(ordinals.iter().map(|(_, k)| k + 1).max().unwrap_or(0).max(replicas)),
    };
    let voter_indices: Vec<usize> = (0..members.len()).filter(|i| !members[*i].is_learner).collect();
    if let (Some(pick), false) = (leader, voter_indices.is_empty()) {
        members[voter_indices[pick.index(voter_indices.len())]].is_leader = true;
    }
    let pods = (0u32..)
        .zip(pods)
        .map(|(ordinal, (ready, data_lost, outdated))| ObservedPod {
            ordinal,
            ready: *ready,
            data_lost: *data_lost,
            outdated: *outdated,
        })
        .collect();
    Arbitrary {
        desired: Desired {
            name: NAME.into(),
            replicas,
        },
        observed: Observed {
            members: (!unlisted).then_some(members),
            statefulset_replicas: sts,
            pods,
            bootstrapped,
            in_flight: None,
        },
        ordinals,
    }
}

/// Independent facts about a member of an arbitrary state.
struct Fact {
    id: MemberId,
    ordinal: u32,
    learner: bool,
    leader: bool,
    healthy: bool,
}

fn facts(a: &Arbitrary) -> Vec<Fact> {
    let sts = a.observed.statefulset_replicas.unwrap_or(0);
    let members = a.observed.members.as_deref().unwrap_or_default();
    members
        .iter()
        .map(|m| {
            let ordinal = a
                .ordinals
                .iter()
                .find(|(id, _)| *id == m.id)
                .map(|(_, o)| *o)
                .unwrap_or(u32::MAX);
            let lost = ordinal < sts
                && !m.name.is_empty()
                && a.observed.pods.iter().any(|p| p.ordinal == ordinal && p.data_lost);
            Fact {
                id: m.id,
                ordinal,
                learner: m.is_learner,
                leader: m.is_leader,
                healthy: m.healthy && !lost,
            }
        })
        .collect()
}

fn majority(n: usize) -> usize {
    n / 2 + 1
}

fn check(a: &Arbitrary, step: &Step) -> Result<(), TestCaseError> {
    let f = facts(a);
    let voters: BTreeSet<u32> = f.iter().filter(|m| !m.learner).map(|m| m.ordinal).collect();
    let healthy: BTreeSet<u32> = f.iter().filter(|m| m.healthy).map(|m| m.ordinal).collect();
    let all: BTreeSet<u32> = f.iter().map(|m| m.ordinal).collect();
    let healthy_voters = voters.intersection(&healthy).count();
    let had_quorum = !voters.is_empty() && healthy_voters >= majority(voters.len());
    let sts = a.observed.statefulset_replicas.unwrap_or(0);
    let want = a.desired.replicas;
    let find = |id: MemberId| f.iter().find(|m| m.id == id);
    let (mut voters_after, mut all_after) = (voters.clone(), all.clone());

    match step {
        Step::RemoveMember { id } | Step::ReplaceMember { id, .. } => {
            let target = find(*id).ok_or_else(|| TestCaseError::fail("target is not a member"))?;
            prop_assert!(had_quorum, "membership change without quorum");
            prop_assert!(!target.leader, "removes the leader");
            voters_after.remove(&target.ordinal);
            all_after.remove(&target.ordinal);
            if let Step::ReplaceMember { ordinal, .. } = step {
                prop_assert_eq!(*ordinal, target.ordinal);
                prop_assert!(
                    f.iter().all(|m| !m.learner || m.id == *id),
                    "replacement would make a second learner"
                );
                all_after.insert(*ordinal);
            }
        }
        Step::PromoteLearner { id } => {
            let target = find(*id).ok_or_else(|| TestCaseError::fail("target is not a member"))?;
            prop_assert!(
                had_quorum && target.learner && target.healthy,
                "promotes an unfit learner"
            );
            prop_assert!(
                a.observed.pods.iter().any(|p| p.ordinal == target.ordinal && p.ready) && target.ordinal < sts
            );
            voters_after.insert(target.ordinal);
        }
        Step::AddLearner { ordinal } => {
            prop_assert!(
                had_quorum && f.iter().all(|m| !m.learner),
                "adds a learner without quorum or beside another"
            );
            prop_assert!(!all.contains(ordinal) && *ordinal < want);
            all_after.insert(*ordinal);
        }
        Step::MoveLeader { from, to } => {
            let (from, to) = (find(*from), find(*to));
            prop_assert!(had_quorum && from.is_some_and(|m| m.leader && !m.learner));
            prop_assert!(to.is_some_and(|m| m.healthy && !m.learner && !m.leader));
        }
        Step::GrowStatefulSet { replicas } => {
            prop_assert!(*replicas > sts);
            prop_assert!(
                *replicas <= want.max(all.iter().max().map_or(0, |k| k + 1)),
                "grows past need"
            );
        }
        Step::ShrinkStatefulSet { replicas } => {
            prop_assert!(*replicas < sts && *replicas >= want);
            prop_assert!(all.iter().all(|k| k < replicas), "shrink deletes a member's pod");
        }
        Step::Bootstrap { replicas } => {
            prop_assert_eq!(*replicas, 1);
            prop_assert!(f.is_empty() && a.observed.statefulset_replicas.is_none() && !a.observed.bootstrapped);
        }
        Step::RestartMember { ordinal } => {
            let target = f
                .iter()
                .find(|m| m.ordinal == *ordinal)
                .ok_or_else(|| TestCaseError::fail("restarts the pod of no member"))?;
            prop_assert!(!target.learner && !target.leader, "restarts a learner or the leader");
            prop_assert!(voters.len() >= 3, "restarts one of {} voters", voters.len());
            prop_assert!(
                f.iter().filter(|m| !m.learner).all(|m| m.healthy),
                "restarts while a voter is unhealthy"
            );
            prop_assert!(
                *ordinal < sts && a.observed.pods.iter().any(|p| p.ordinal == *ordinal && p.outdated),
                "restarts a pod that is not outdated"
            );
            prop_assert!(
                healthy_voters > majority(voters.len()),
                "a restart that takes quorum down (one of {healthy_voters} healthy voters goes down)"
            );
        }
        Step::None => {
            prop_assert!(
                f.iter().all(|m| !m.learner && m.healthy),
                "converged with a learner or unhealthy member"
            );
            prop_assert!(
                a.observed.pods.iter().filter(|p| p.ordinal < want).all(|p| !p.outdated),
                "converged with an outdated pod"
            );
            prop_assert_eq!(all.clone(), (0..want).collect::<BTreeSet<_>>());
            prop_assert_eq!(sts, want);
        }
        Step::Wait { reason } => prop_assert!(!reason.is_empty()),
    }

    // Quorum: a step never leaves fewer healthy voters than a majority of the resulting voters.
    if voters_after != voters {
        let healthy_after = voters_after.iter().filter(|k| healthy.contains(k)).count();
        prop_assert!(!voters_after.is_empty(), "removes the last voter");
        prop_assert!(
            healthy_after >= majority(voters_after.len()),
            "{healthy_after} healthy of {} voters after {step}",
            voters_after.len()
        );
    }
    // At most one membership change per step.
    prop_assert!(voters.symmetric_difference(&voters_after).count() <= 1);
    prop_assert!(all.symmetric_difference(&all_after).count() <= 1);
    Ok(())
}

fn arb_fault() -> impl Strategy<Value = Fault> {
    prop_oneof![6 => Just(Fault::None), 2 => Just(Fault::Drop), 2 => Just(Fault::Crash)]
}

/// Disturbances of a settled cluster that a crashed operator or a lost volume leave behind.
#[derive(Clone, Copy, Debug)]
enum Disturbance {
    None,
    LeftoverLearner {
        with_pod: bool,
    },
    GrownWithoutMember,
    RemovedNotShrunk,
    DataLost(Index),
    Leader(Index),
    /// A minority of pods crash-loop for a few ticks, then recover.
    PodsDown(Index, u32),
    /// The spec changed: every pod runs an outdated template.
    Outdated,
}

fn arb_disturbance() -> impl Strategy<Value = Disturbance> {
    prop_oneof![
        Just(Disturbance::None),
        any::<bool>().prop_map(|with_pod| Disturbance::LeftoverLearner { with_pod }),
        Just(Disturbance::GrownWithoutMember),
        Just(Disturbance::RemovedNotShrunk),
        any::<Index>().prop_map(Disturbance::DataLost),
        any::<Index>().prop_map(Disturbance::Leader),
        (any::<Index>(), 1u32..=6).prop_map(|(i, ticks)| Disturbance::PodsDown(i, ticks)),
        Just(Disturbance::Outdated),
    ]
}

fn disturbed(voters: u32, d: Disturbance) -> Sim {
    let mut sim = if voters == 0 {
        Sim::new(NAME)
    } else {
        Sim::healthy(NAME, voters)
    };
    if voters == 0 {
        return sim;
    }
    match d {
        Disturbance::None => {}
        Disturbance::LeftoverLearner { with_pod } => {
            let id = sim.fresh_id();
            sim.members.push(sim::SimMember {
                id,
                ordinal: voters,
                learner: true,
                started: false,
                caught_up: false,
            });
            if with_pod {
                sim.sts = Some(voters + 1);
            }
        }
        Disturbance::GrownWithoutMember => sim.sts = Some(voters + 1),
        Disturbance::RemovedNotShrunk if voters > 1 => {
            sim.members.retain(|m| m.ordinal != voters - 1);
        }
        Disturbance::RemovedNotShrunk => {}
        // Losing one volume keeps quorum only from three voters up.
        Disturbance::DataLost(i) if voters >= 3 => {
            sim.data_lost.insert(i.index(voters as usize) as u32);
        }
        Disturbance::DataLost(_) => {}
        Disturbance::Leader(i) => sim.leader = Some(sim.members[i.index(sim.members.len())].id),
        // Up to a minority of pods, starting at a random ordinal, so quorum survives.
        Disturbance::PodsDown(i, ticks) => {
            let start = i.index(voters as usize) as u32;
            for k in 0..(voters - 1) / 2 {
                sim.down.insert((start + k) % voters, ticks);
            }
        }
        Disturbance::Outdated => sim.outdated = (0..voters).collect(),
    }
    sim
}

/// Runs the planner against the simulated cluster; checks safety on every step; returns whether it converged.
fn run(sim: &mut Sim, replicas: u32, faults: &[Fault], limit: usize) -> Result<bool, TestCaseError> {
    for i in 0..limit {
        let before_quorum = sim.has_quorum();
        let step = next_step(&sim.desired(replicas), &sim.observe());
        if step == Step::None {
            prop_assert!(sim.converged(replicas), "None before convergence: {:?}", sim);
            return Ok(true);
        }
        let fault = faults.get(i).copied().unwrap_or(Fault::None);
        if let Err(err) = sim.apply(&step, fault) {
            return Err(TestCaseError::fail(format!("{step} refused: {err}; {sim:?}")));
        }
        prop_assert!(!before_quorum || sim.has_quorum(), "{} lost quorum: {:?}", step, sim);
        sim.tick();
        prop_assert!(sim.learners() <= 1, "two learners: {:?}", sim);
        prop_assert!(
            !sim.bootstrapped || sim.has_quorum(),
            "quorum lost after {}: {:?}",
            step,
            sim
        );
    }
    Ok(false)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn every_step_is_safe(a in prop_oneof![arb_state(), arb_settled_state()]) {
        let step = next_step(&a.desired, &a.observed);
        check(&a, &step)?;
    }

    #[test]
    fn in_flight_record_never_changes_the_decision(a in arb_state(), recorded in prop_oneof![
        Just(Step::PromoteLearner { id: 0xa000 }),
        Just(Step::AddLearner { ordinal: 3 }),
        Just(Step::RemoveMember { id: 0xa007 }),
        Just(Step::GrowStatefulSet { replicas: 4 }),
    ]) {
        let plain = next_step(&a.desired, &a.observed);
        let mut with = a.observed.clone();
        with.in_flight = Some(recorded);
        let step = next_step(&a.desired, &with);
        prop_assert_eq!(plain.reason(), step.reason());
        if !matches!(plain, Step::Wait { .. }) {
            prop_assert_eq!(plain, step);
        }
    }

    #[test]
    fn converges_despite_crashes(
        voters in 0u32..=9,
        replicas in 1u32..=9,
        disturbance in arb_disturbance(),
        faults in prop::collection::vec(arb_fault(), 0..30),
    ) {
        // Fewer than 3 members are never rolled (the planner waits, saying so: see the unit tests).
        let disturbance = match disturbance {
            Disturbance::Outdated if replicas < 3 => Disturbance::None,
            d => d,
        };
        let mut sim = disturbed(voters, disturbance);
        // A rolling update takes a few steps per pod.
        let limit = faults.len() + 8 * (voters.abs_diff(replicas) as usize + 4) + 4 * voters as usize + 6;
        prop_assert!(run(&mut sim, replicas, &faults, limit)?, "no convergence to {} in {} steps: {:?}", replicas, limit, sim);
    }

    #[test]
    fn scale_paths_reach_their_targets(faults in prop::collection::vec(arb_fault(), 0..60)) {
        let mut sim = Sim::healthy(NAME, 1);
        let mut faults = faults.as_slice();
        for target in [3u32, 5, 3, 1] {
            let limit = faults.len() + 40;
            prop_assert!(run(&mut sim, target, faults, limit)?, "stuck before {}: {:?}", target, sim);
            faults = &faults[faults.len().min(20)..];
            if target == 5 {
                // A spec change at 5 members: rolled while scaling back to 3.
                sim.outdated = (0..5).collect();
            }
        }
        let mut sim = Sim::healthy(NAME, 3);
        prop_assert!(run(&mut sim, 1, faults, faults.len() + 30)?);
    }
}
