//! Scenario tests for the planner, one rule at a time, plus end-to-end runs on the simulated cluster.

use super::sim::{Fault, Sim};
use super::*;

const NAME: &str = "demo";

fn id(ordinal: u32) -> MemberId {
    0x100 + u64::from(ordinal)
}

fn desired(replicas: u32) -> Desired {
    Desired {
        name: NAME.into(),
        replicas,
    }
}

fn member(ordinal: u32) -> ObservedMember {
    ObservedMember {
        id: id(ordinal),
        name: format!("{NAME}-{ordinal}"),
        peer_url: format!("https://{NAME}-{ordinal}.{NAME}-peer.ns.svc:2380"),
        is_learner: false,
        healthy: true,
        is_leader: ordinal == 0,
    }
}

/// `n` healthy voters on ordinals `0..n`, leader on 0, StatefulSet of `n` ready pods.
fn cluster(n: u32) -> Observed {
    Observed {
        members: Some((0..n).map(member).collect()),
        statefulset_replicas: Some(n),
        pods: (0..n)
            .map(|ordinal| ObservedPod {
                ordinal,
                ready: true,
                data_lost: false,
                outdated: false,
            })
            .collect(),
        bootstrapped: true,
        in_flight: None,
    }
}

fn m(o: &mut Observed, ordinal: u32) -> &mut ObservedMember {
    o.members
        .as_mut()
        .unwrap()
        .iter_mut()
        .find(|m| m.id == id(ordinal))
        .unwrap()
}

fn pod(o: &mut Observed, ordinal: u32) -> &mut ObservedPod {
    o.pods.iter_mut().find(|p| p.ordinal == ordinal).unwrap()
}

fn with_learner(mut o: Observed, ordinal: u32, started: bool, healthy: bool) -> Observed {
    let mut l = member(ordinal);
    l.is_learner = true;
    l.healthy = healthy;
    if !started {
        l.name.clear();
    }
    o.members.as_mut().unwrap().push(l);
    o
}

fn grown(mut o: Observed, replicas: u32, ready: bool) -> Observed {
    o.statefulset_replicas = Some(replicas);
    for ordinal in 0..replicas {
        if !o.pods.iter().any(|p| p.ordinal == ordinal) {
            o.pods.push(ObservedPod {
                ordinal,
                ready,
                data_lost: false,
                outdated: false,
            });
        }
    }
    o
}

fn is_wait(step: &Step, needle: &str) -> bool {
    matches!(step, Step::Wait { reason } if reason.contains(needle))
}

#[test]
fn ordinals_from_names_and_peer_urls() {
    let mut m0 = member(3);
    assert_eq!(member_ordinal(NAME, &m0), Some(3));
    m0.name.clear();
    assert_eq!(
        member_ordinal(NAME, &m0),
        Some(3),
        "unstarted member: from the peer URL"
    );
    m0.peer_url = "demo-7:2380".into();
    assert_eq!(member_ordinal(NAME, &m0), Some(7));
    for bad in [
        "demo2-1", "demo-", "demo-01", "demo-x", "other-1", "demo-1-2", "demo-64",
    ] {
        let m1 = ObservedMember {
            name: bad.into(),
            ..member(1)
        };
        assert_eq!(member_ordinal(NAME, &m1), None, "{bad}");
    }
    let dashed = ObservedMember {
        name: "my-db-12".into(),
        ..member(1)
    };
    assert_eq!(member_ordinal("my-db", &dashed), Some(12));
    assert_eq!(member_ordinal("my", &dashed), None);
}

#[test]
fn desired_from_spec() {
    let spec = crate::spec::EtcdClusterSpec {
        replicas: 5,
        ..Default::default()
    };
    assert_eq!(Desired::from_spec(NAME, &spec), desired(5));
    let bad = crate::spec::EtcdClusterSpec {
        replicas: -1,
        ..Default::default()
    };
    assert!(is_wait(
        &next_step(&Desired::from_spec(NAME, &bad), &cluster(3)),
        "out of range"
    ));
}

#[test]
fn fresh_cluster_bootstraps_one_member() {
    assert_eq!(
        next_step(&desired(3), &Observed::default()),
        Step::Bootstrap { replicas: 1 }
    );
    let starting = Observed {
        statefulset_replicas: Some(1),
        ..Observed::default()
    };
    assert!(is_wait(&next_step(&desired(3), &starting), "no member answers"));
    let lost = Observed {
        bootstrapped: true,
        ..Observed::default()
    };
    assert!(is_wait(&next_step(&desired(3), &lost), "restore"));
    assert!(is_wait(&next_step(&desired(0), &cluster(1)), "out of range"));
}

#[test]
fn converged_cluster_does_nothing() {
    for n in 1..=9 {
        assert_eq!(next_step(&desired(n), &cluster(n)), Step::None, "{n}");
    }
}

#[test]
fn scale_up_adds_learner_grows_waits_promotes() {
    let d = desired(4);
    assert_eq!(next_step(&d, &cluster(3)), Step::AddLearner { ordinal: 3 });
    let added = with_learner(cluster(3), 3, false, false);
    assert_eq!(next_step(&d, &added), Step::GrowStatefulSet { replicas: 4 });
    let starting = grown(added, 4, false);
    assert!(is_wait(&next_step(&d, &starting), "catching up"));
    let mut syncing = with_learner(grown(cluster(3), 4, true), 3, true, false);
    assert!(
        is_wait(&next_step(&d, &syncing), "catching up"),
        "pod ready, learner not caught up"
    );
    m(&mut syncing, 3).healthy = true;
    assert_eq!(next_step(&d, &syncing), Step::PromoteLearner { id: id(3) });
    // After the promotion (even if the status write was lost) the cluster has converged.
    let mut promoted = syncing;
    m(&mut promoted, 3).is_learner = false;
    promoted.in_flight = Some(Step::PromoteLearner { id: id(3) });
    assert_eq!(next_step(&d, &promoted), Step::None);
}

#[test]
fn scale_up_resumes_after_statefulset_grew_without_member() {
    let mut o = grown(cluster(3), 4, false);
    m(&mut o, 1).healthy = false;
    // The pod already exists: re-adding it is a repair, allowed with quorum.
    assert_eq!(next_step(&desired(4), &o), Step::AddLearner { ordinal: 3 });
}

#[test]
fn scale_up_waits_while_a_voter_is_unhealthy() {
    let mut o = cluster(3);
    m(&mut o, 2).healthy = false;
    assert!(is_wait(&next_step(&desired(5), &o), "unhealthy"));
}

#[test]
fn scale_down_moves_leader_removes_then_shrinks() {
    let d = desired(2);
    let mut o = cluster(3);
    m(&mut o, 0).is_leader = false;
    m(&mut o, 2).is_leader = true;
    assert_eq!(next_step(&d, &o), Step::MoveLeader { from: id(2), to: id(0) });
    let o = cluster(3);
    assert_eq!(next_step(&d, &o), Step::RemoveMember { id: id(2) });
    let mut removed = cluster(3);
    removed.members.as_mut().unwrap().retain(|m| m.id != id(2));
    assert_eq!(next_step(&d, &removed), Step::ShrinkStatefulSet { replicas: 2 });
    assert_eq!(
        next_step(&desired(1), &removed),
        Step::ShrinkStatefulSet { replicas: 2 },
        "one member at a time"
    );
}

#[test]
fn scale_down_removes_unhealthy_surplus_first() {
    let mut o = cluster(5);
    m(&mut o, 3).healthy = false;
    assert_eq!(next_step(&desired(3), &o), Step::RemoveMember { id: id(3) });
}

#[test]
fn scale_down_never_breaks_quorum() {
    let mut o = cluster(5);
    m(&mut o, 1).healthy = false;
    m(&mut o, 2).healthy = false;
    // 3 of 5 healthy: removing healthy 4 would leave 2 of 4.
    assert!(is_wait(&next_step(&desired(3), &o), "below quorum"));
    // Without quorum nothing is removed at all.
    m(&mut o, 3).healthy = false;
    assert!(is_wait(&next_step(&desired(1), &o), "no quorum"));
}

#[test]
fn no_quorum_grows_back_missing_pods_only() {
    let mut o = cluster(3);
    o.statefulset_replicas = Some(1);
    m(&mut o, 1).healthy = false;
    m(&mut o, 2).healthy = false;
    assert_eq!(next_step(&desired(1), &o), Step::GrowStatefulSet { replicas: 3 });
}

#[test]
fn voter_without_pod_is_given_one() {
    let mut o = cluster(3);
    o.statefulset_replicas = Some(2);
    m(&mut o, 2).healthy = false;
    assert_eq!(next_step(&desired(3), &o), Step::GrowStatefulSet { replicas: 3 });
    // Above the desired count it is removed instead.
    assert_eq!(next_step(&desired(2), &o), Step::RemoveMember { id: id(2) });
}

#[test]
fn waits_for_a_leader() {
    let mut o = cluster(3);
    m(&mut o, 0).is_leader = false;
    assert!(is_wait(&next_step(&desired(3), &o), "no leader"));
}

#[test]
fn data_loss_replaces_the_member() {
    let mut o = cluster(3);
    pod(&mut o, 1).data_lost = true;
    assert_eq!(
        next_step(&desired(3), &o),
        Step::ReplaceMember { id: id(1), ordinal: 1 }
    );
    // The leader is moved off first.
    let mut o = cluster(3);
    pod(&mut o, 0).data_lost = true;
    assert_eq!(next_step(&desired(3), &o), Step::MoveLeader { from: id(0), to: id(1) });
    // Above the desired count it is simply removed.
    let mut o = cluster(3);
    pod(&mut o, 2).data_lost = true;
    assert_eq!(next_step(&desired(2), &o), Step::RemoveMember { id: id(2) });
    // A member that never started has nothing to lose: it is a fresh join, not a data loss.
    let mut o = with_learner(grown(cluster(3), 4, false), 3, false, false);
    pod(&mut o, 3).data_lost = true;
    assert!(is_wait(&next_step(&desired(4), &o), "catching up"));
    // A started learner whose volume is fresh is replaced too.
    let mut o = with_learner(grown(cluster(3), 4, true), 3, true, true);
    pod(&mut o, 3).data_lost = true;
    assert_eq!(
        next_step(&desired(4), &o),
        Step::ReplaceMember { id: id(3), ordinal: 3 }
    );
}

#[test]
fn data_loss_without_quorum_waits() {
    let mut o = cluster(3);
    pod(&mut o, 1).data_lost = true;
    m(&mut o, 2).healthy = false;
    assert!(is_wait(&next_step(&desired(3), &o), "no quorum"));
}

#[test]
fn stray_learners_are_removed() {
    // Desired count dropped while a learner was joining.
    let o = with_learner(grown(cluster(3), 4, true), 3, true, true);
    assert_eq!(next_step(&desired(3), &o), Step::RemoveMember { id: id(3) });
    // Two learners (added by hand): keep one.
    let o = with_learner(with_learner(grown(cluster(3), 5, true), 3, true, true), 4, true, true);
    assert_eq!(next_step(&desired(5), &o), Step::RemoveMember { id: id(4) });
}

#[test]
fn foreign_or_duplicate_members_stop_the_planner() {
    let mut o = cluster(3);
    m(&mut o, 2).name = "intruder".into();
    assert!(is_wait(&next_step(&desired(3), &o), "not a pod of demo"));
    let mut o = cluster(3);
    m(&mut o, 2).name = "demo-1".into();
    assert!(is_wait(&next_step(&desired(3), &o), "both claim ordinal 1"));
}

#[test]
fn wait_reasons_mention_the_recorded_step() {
    let mut o = cluster(3);
    m(&mut o, 0).is_leader = false;
    o.in_flight = Some(Step::MoveLeader { from: id(0), to: id(1) });
    let step = next_step(&desired(3), &o);
    assert!(is_wait(&step, "last recorded step: move leader 100 -> 101"), "{step}");
}

/// Drives the simulated cluster with the planner until it converges; returns the steps taken.
fn drive(sim: &mut Sim, replicas: u32, faults: &[Fault], limit: usize) -> Vec<Step> {
    let mut steps = Vec::new();
    for i in 0..limit {
        let step = next_step(&sim.desired(replicas), &sim.observe());
        if step == Step::None {
            assert!(sim.converged(replicas), "planner says converged but {sim:?}");
            return steps;
        }
        let fault = faults.get(i).copied().unwrap_or(Fault::None);
        if let Err(err) = sim.apply(&step, fault) {
            panic!("step {step} refused: {err}\nsteps so far: {steps:?}\n{sim:?}");
        }
        steps.push(step);
        sim.tick();
        assert!(sim.learners() <= 1, "more than one learner: {sim:?}");
    }
    panic!("no convergence to {replicas} in {limit} steps: {steps:?}\n{sim:?}");
}

#[test]
fn sim_bootstrap_then_scale_1_3_5_3_1() {
    let mut sim = Sim::new(NAME);
    let steps = drive(&mut sim, 1, &[], 10);
    assert_eq!(steps[0], Step::Bootstrap { replicas: 1 });
    for target in [3, 5, 3, 1] {
        drive(&mut sim, target, &[], 40);
        assert!(sim.converged(target));
    }
}

#[test]
fn sim_scale_up_sequence_is_the_documented_one() {
    let mut sim = Sim::healthy(NAME, 1);
    let steps = drive(&mut sim, 2, &[], 20);
    let kinds: Vec<&str> = steps.iter().map(Step::reason).collect();
    assert_eq!(
        kinds,
        ["AddingLearner", "GrowingStatefulSet", "Waiting", "PromotingLearner"]
    );
}

#[test]
fn sim_scale_down_3_to_1_with_leader_on_top() {
    let mut sim = Sim::healthy(NAME, 3);
    sim.leader = sim.members.iter().find(|m| m.ordinal == 2).map(|m| m.id);
    let steps = drive(&mut sim, 1, &[], 20);
    let kinds: Vec<&str> = steps.iter().map(Step::reason).collect();
    assert_eq!(
        kinds,
        [
            "MovingLeader",
            "RemovingMember",
            "ShrinkingStatefulSet",
            "RemovingMember",
            "ShrinkingStatefulSet"
        ]
    );
}

#[test]
fn sim_replaces_member_that_lost_its_data_even_after_a_crash_midway() {
    for fault in [Fault::None, Fault::Crash] {
        let mut sim = Sim::healthy(NAME, 3);
        sim.data_lost.insert(1);
        let old = sim.members[1].id;
        let steps = drive(&mut sim, 3, &[fault], 20);
        assert_eq!(steps[0], Step::ReplaceMember { id: old, ordinal: 1 });
        assert!(sim.members.iter().all(|m| m.id != old), "{fault:?}");
    }
}

#[test]
fn sim_only_member_on_a_high_ordinal_is_moved_down() {
    let mut sim = Sim::healthy(NAME, 4);
    sim.members.retain(|m| m.ordinal == 3);
    sim.leader = Some(sim.members[0].id);
    drive(&mut sim, 1, &[], 30);
}

#[test]
fn rolling_update_restarts_followers_first_and_the_leader_last() {
    let mut o = cluster(3);
    for p in o.pods.iter_mut() {
        p.outdated = true;
    }
    assert_eq!(next_step(&desired(3), &o), Step::RestartMember { ordinal: 1 });
    pod(&mut o, 1).outdated = false;
    assert_eq!(next_step(&desired(3), &o), Step::RestartMember { ordinal: 2 });
    pod(&mut o, 2).outdated = false;
    // Only the leader (ordinal 0) is left: leadership moves to an updated voter first.
    assert_eq!(next_step(&desired(3), &o), Step::MoveLeader { from: id(0), to: id(1) });
    m(&mut o, 0).is_leader = false;
    m(&mut o, 1).is_leader = true;
    assert_eq!(next_step(&desired(3), &o), Step::RestartMember { ordinal: 0 });
    pod(&mut o, 0).outdated = false;
    assert_eq!(next_step(&desired(3), &o), Step::None);
}

#[test]
fn rolling_update_waits_for_health_and_readiness() {
    let mut o = cluster(3);
    pod(&mut o, 2).outdated = true;
    m(&mut o, 1).healthy = false;
    assert!(matches!(next_step(&desired(3), &o), Step::Wait { .. }));
    m(&mut o, 1).healthy = true;
    pod(&mut o, 1).ready = false;
    assert!(matches!(next_step(&desired(3), &o), Step::Wait { reason } if reason.contains("not ready")));
    pod(&mut o, 1).ready = true;
    assert_eq!(next_step(&desired(3), &o), Step::RestartMember { ordinal: 2 });
}

#[test]
fn rolling_update_never_restarts_one_of_two_or_one_voters() {
    for n in [1, 2] {
        let mut o = cluster(n);
        pod(&mut o, 0).outdated = true;
        match next_step(&desired(n), &o) {
            Step::Wait { reason } => assert!(reason.contains("would lose quorum"), "{reason}"),
            other => panic!("{n} voters: {other}"),
        }
    }
}

#[test]
fn sim_rolls_a_five_member_cluster_one_pod_at_a_time() {
    let mut sim = Sim::healthy(NAME, 5);
    sim.outdated = (0..5).collect();
    let mut restarts = Vec::new();
    for _ in 0..60 {
        let step = next_step(&sim.desired(5), &sim.observe());
        if step == Step::None {
            break;
        }
        if let Step::RestartMember { ordinal } = step {
            restarts.push(ordinal);
        }
        sim.apply(&step, Fault::None).unwrap();
        assert!(sim.has_quorum(), "{step} lost quorum");
        sim.tick();
    }
    assert!(sim.converged(5), "{sim:?}");
    // Followers 1..4 first, then the old leader 0 (after MoveLeader).
    assert_eq!(restarts, [1, 2, 3, 4, 0]);
}
