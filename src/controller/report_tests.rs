use std::collections::BTreeMap;

use k8s_openapi::chrono::{TimeZone, Utc};

use super::*;
use crate::cluster_status::find_condition;
use crate::names::test_identity;
use crate::planner::{Observed, ObservedMember, ObservedPod};

fn at(secs: i64) -> Time {
    Time(Utc.timestamp_opt(secs, 0).unwrap())
}

fn voter(id: u64, healthy: bool) -> ObservedMember {
    ObservedMember {
        id,
        name: format!("demo-{}", id - 10),
        peer_url: test_identity().peer_url((id - 10) as u32),
        is_learner: false,
        healthy,
        is_leader: id == 10,
    }
}

fn assessment(members: Option<Vec<ObservedMember>>, bootstrapped: bool) -> Assessment {
    let n = members.as_ref().map_or(0, Vec::len) as u32;
    Assessment {
        observed: Observed {
            pods: (0..n)
                .map(|k| ObservedPod {
                    ordinal: k,
                    ready: true,
                    data_lost: false,
                    outdated: false,
                })
                .collect(),
            statefulset_replicas: Some(n),
            members,
            bootstrapped,
            in_flight: None,
        },
        leader: Some(10).filter(|_| n > 0),
        cluster_id: Some(0xabc).filter(|_| n > 0),
        version: Some("3.5.0".into()).filter(|_| n > 0),
        ordinals: (0..n).map(|k| (u64::from(k) + 10, k)).collect::<BTreeMap<_, _>>(),
        records: Vec::new(),
        restore_failure: None,
        lost_volumes: 0,
    }
}

fn records(n: u32) -> Vec<crate::cluster_status::VolumeRecord> {
    (0..n)
        .map(|k| crate::cluster_status::VolumeRecord {
            ordinal: k,
            member_id: format!("{:x}", 10 + k),
            volume_uid: format!("v{k}"),
        })
        .collect()
}

#[test]
fn quorum_lost_for_good_needs_no_quorum_and_a_majority_of_lost_volumes() {
    let id = test_identity();
    let wait = Step::Wait {
        reason: "no member answers MemberList yet".into(),
    };
    // No MemberList (no quorum), 2 of 3 recorded volumes replaced: QuorumLost.
    let mut a = assessment(None, true);
    a.records = records(3);
    a.lost_volumes = 2;
    let s = build_status(&id, Some(1), &EtcdClusterStatus::default(), &a, &wait, at(1));
    assert_eq!(status_of(&s, CONDITION_DEGRADED), ("True".into(), "QuorumLost".into()));
    assert_eq!(status_of(&s, CONDITION_STALLED), ("True".into(), "QuorumLost".into()));
    let m = &find_condition(&s.conditions, CONDITION_DEGRADED).unwrap().message;
    assert!(m.starts_with("2 of 3 members lost their data"), "{m}");
    // One of three lost: only NoQuorum (the lost one can be replaced once the others answer).
    a.lost_volumes = 1;
    let s = build_status(&id, Some(1), &EtcdClusterStatus::default(), &a, &wait, at(1));
    assert_eq!(status_of(&s, CONDITION_DEGRADED).1, "NoQuorum");
    // Volumes gone but quorum kept (3 healthy voters of 3 after replacements): not QuorumLost.
    let mut b = assessment(Some(vec![voter(10, true), voter(11, true), voter(12, true)]), true);
    b.records = records(3);
    b.lost_volumes = 2;
    let s = build_status(&id, Some(1), &EtcdClusterStatus::default(), &b, &Step::None, at(1));
    assert_ne!(status_of(&s, CONDITION_DEGRADED).1, "QuorumLost");
}

#[test]
fn a_failed_restore_is_degraded_and_stalled_with_its_message() {
    let id = test_identity();
    let mut a = assessment(None, false);
    a.restore_failure =
        Some("backup fetch failed: /backup-source/x/: no backup (snapshot-*.db) under /backup-source/x/".into());
    let s = build_status(
        &id,
        Some(1),
        &EtcdClusterStatus::default(),
        &a,
        &Step::Wait {
            reason: "no member answers MemberList yet".into(),
        },
        at(1),
    );
    assert_eq!(
        status_of(&s, CONDITION_DEGRADED),
        ("True".into(), "RestoreFailed".into())
    );
    assert_eq!(
        status_of(&s, CONDITION_STALLED),
        ("True".into(), "RestoreFailed".into())
    );
    let m = &find_condition(&s.conditions, CONDITION_DEGRADED).unwrap().message;
    assert!(m.contains("no backup (snapshot-*.db) under"), "{m}");
}

fn status_of(c: &EtcdClusterStatus, type_: &str) -> (String, String) {
    let c = find_condition(&c.conditions, type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[test]
fn converged_cluster_is_running_and_available() {
    let id = test_identity();
    let a = assessment(Some(vec![voter(10, true), voter(11, true), voter(12, true)]), true);
    let s = build_status(&id, Some(4), &EtcdClusterStatus::default(), &a, &Step::None, at(1));
    assert_eq!(s.phase, Phase::Running);
    assert_eq!((s.replicas, s.ready_replicas, s.updated_replicas), (3, 3, 3));
    assert_eq!(s.leader.as_deref(), Some("demo-0"));
    assert_eq!(s.cluster_id.as_deref(), Some("abc"));
    assert_eq!(s.current_version.as_deref(), Some("3.5.0"));
    assert_eq!(s.observed_generation, Some(4));
    assert_eq!(s.selector.as_deref(), Some(id.selector_string().as_str()));
    assert_eq!(s.members.len(), 3);
    assert_eq!(s.members[1].id, "b");
    assert_eq!(status_of(&s, CONDITION_AVAILABLE), ("True".into(), "Quorum".into()));
    assert_eq!(
        status_of(&s, CONDITION_PROGRESSING),
        ("False".into(), "Converged".into())
    );
    assert_eq!(status_of(&s, CONDITION_RECONCILING).0, "False");
    assert_eq!(status_of(&s, CONDITION_DEGRADED).0, "False");
    assert_eq!(status_of(&s, CONDITION_STALLED).0, "False");
}

#[test]
fn phases() {
    let id = test_identity();
    let none = EtcdClusterStatus::default();
    let creating = build_status(
        &id,
        Some(1),
        &none,
        &assessment(None, false),
        &Step::Bootstrap { replicas: 1 },
        at(1),
    );
    assert_eq!(creating.phase, Phase::Creating);
    assert_eq!(
        status_of(&creating, CONDITION_PROGRESSING),
        ("True".into(), "Bootstrapping".into())
    );
    assert_eq!(creating.cluster_id, None);

    let lost = build_status(&id, Some(1), &converged(), &assessment(None, true), &Step::None, at(2));
    assert_eq!(lost.phase, Phase::Failed);
    assert_eq!(lost.cluster_id.as_deref(), Some("abc"), "kept from the previous status");
    assert_eq!(status_of(&lost, CONDITION_STALLED), ("True".into(), "NoQuorum".into()));

    let scaling = assessment(Some(vec![voter(10, true)]), true);
    let s = build_status(&id, Some(2), &none, &scaling, &Step::AddLearner { ordinal: 1 }, at(3));
    assert_eq!(s.phase, Phase::Scaling);

    let unhealthy = assessment(Some(vec![voter(10, true), voter(11, true), voter(12, false)]), true);
    let wait = Step::Wait { reason: "x".into() };
    let s = build_status(&id, Some(2), &none, &unhealthy, &wait, at(3));
    assert_eq!((s.phase, s.ready_replicas), (Phase::Degraded, 2));
    assert_eq!(
        status_of(&s, CONDITION_DEGRADED),
        ("True".into(), "UnhealthyMembers".into())
    );

    let mut lost_data = assessment(Some(vec![voter(10, true), voter(11, true), voter(12, true)]), true);
    lost_data.observed.pods[2].data_lost = true;
    let step = Step::ReplaceMember { id: 12, ordinal: 2 };
    let s = build_status(&id, Some(2), &none, &lost_data, &step, at(3));
    assert_eq!(status_of(&s, CONDITION_DEGRADED), ("True".into(), "DataLost".into()));

    let no_quorum = assessment(Some(vec![voter(10, true), voter(11, false), voter(12, false)]), true);
    let s = build_status(&id, Some(2), &none, &no_quorum, &wait, at(3));
    assert_eq!(s.phase, Phase::Failed);
    assert_eq!(status_of(&s, CONDITION_AVAILABLE).0, "False");
}

fn converged() -> EtcdClusterStatus {
    let a = assessment(Some(vec![voter(10, true)]), true);
    build_status(
        &test_identity(),
        Some(1),
        &EtcdClusterStatus::default(),
        &a,
        &Step::None,
        at(1),
    )
}

#[test]
fn transition_times_move_only_on_flips() {
    let id = test_identity();
    let first = converged();
    let a = assessment(Some(vec![voter(10, true)]), true);
    let again = build_status(&id, Some(1), &first, &a, &Step::None, at(50));
    assert_eq!(
        again, first,
        "an unchanged cluster gives an identical status (no write)"
    );
    let s = build_status(&id, Some(2), &first, &a, &Step::AddLearner { ordinal: 1 }, at(60));
    let progressing = find_condition(&s.conditions, CONDITION_PROGRESSING).unwrap();
    assert_eq!(progressing.last_transition_time, at(60));
    let available = find_condition(&s.conditions, CONDITION_AVAILABLE).unwrap();
    assert_eq!(available.last_transition_time, at(1));
}
