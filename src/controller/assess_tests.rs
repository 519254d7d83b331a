use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};

use super::*;
use crate::cluster_status::MemberStatus;
use crate::names::test_identity;
use crate::observe::PodFacts;
use rustcd_proto::etcdserverpb::ResponseHeader;

fn member(id: u64, ordinal: u32, started: bool, learner: bool) -> Member {
    Member {
        id,
        name: if started {
            format!("demo-{ordinal}")
        } else {
            String::new()
        },
        peer_ur_ls: vec![test_identity().peer_url(ordinal)],
        client_ur_ls: Vec::new(),
        is_learner: learner,
    }
}

fn status(me: u64, leader: u64, term: u64, applied: u64) -> StatusResponse {
    StatusResponse {
        header: Some(ResponseHeader {
            cluster_id: 0xc1,
            member_id: me,
            ..Default::default()
        }),
        version: "3.5.0".into(),
        leader,
        raft_index: applied,
        raft_term: term,
        raft_applied_index: applied,
        ..Default::default()
    }
}

fn pod(uid: &str) -> PodFacts {
    PodFacts {
        uid: uid.into(),
        ip: None,
        ready: true,
        volume_uid: Some(uid.into()),
        template_hash: None,
        restore_failure: None,
    }
}

fn sts(replicas: i32) -> Option<StatefulSet> {
    Some(StatefulSet {
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[test]
fn health_leader_and_learner_catch_up() {
    let obs = Observation {
        statefulset: sts(3),
        pods: BTreeMap::from([(0, pod("p0")), (1, pod("p1")), (2, pod("p2"))]),
        members: Some(vec![
            member(10, 0, true, false),
            member(11, 1, true, false),
            member(12, 2, true, true),
        ]),
        statuses: BTreeMap::from([
            (0, status(10, 10, 2, 1000)),
            (
                1,
                StatusResponse {
                    errors: vec!["NOSPACE".into()],
                    ..status(11, 10, 2, 1000)
                },
            ),
            (2, status(12, 10, 2, 899)),
        ]),
        ..Default::default()
    };
    let a = assess(&test_identity(), &obs, &[], true);
    let members = a.observed.members.as_ref().unwrap();
    let health: Vec<(bool, bool)> = members.iter().map(|m| (m.healthy, m.is_leader)).collect();
    assert_eq!(health, [(true, true), (false, false), (false, false)]);
    assert_eq!((a.leader, a.cluster_id), (Some(10), Some(0xc1)));
    assert_eq!(a.observed.statefulset_replicas, Some(3));
    assert_eq!(a.ordinals, BTreeMap::from([(10, 0), (11, 1), (12, 2)]));
    // 90% of the leader's log applied: caught up.
    let mut caught_up = obs.clone();
    caught_up.statuses.insert(2, status(12, 10, 2, 900));
    let a = assess(&test_identity(), &caught_up, &[], true);
    assert!(a.observed.members.as_ref().unwrap()[2].healthy);
}

#[test]
fn a_status_about_another_member_is_not_health() {
    // Pod 1 answers, but as member 99 (a stale data directory): member 11 is not healthy.
    let obs = Observation {
        statefulset: sts(2),
        pods: BTreeMap::from([(0, pod("p0")), (1, pod("p1"))]),
        members: Some(vec![member(10, 0, true, false), member(11, 1, true, false)]),
        statuses: BTreeMap::from([(0, status(10, 10, 1, 5)), (1, status(99, 99, 1, 5))]),
        ..Default::default()
    };
    let a = assess(&test_identity(), &obs, &[], true);
    let members = a.observed.members.unwrap();
    assert!(members[0].healthy && !members[1].healthy);
    assert_eq!(a.leader, Some(10), "an unlisted member is never the leader");
}

#[test]
fn data_loss_from_a_changed_volume() {
    let started = Observation {
        statefulset: sts(2),
        pods: BTreeMap::from([(0, pod("p0")), (1, pod("p1"))]),
        members: Some(vec![member(10, 0, true, false), member(11, 1, false, true)]),
        statuses: BTreeMap::from([(0, status(10, 10, 1, 5))]),
        ..Default::default()
    };
    let a = assess(&test_identity(), &started, &[], true);
    assert_eq!(
        a.records,
        [VolumeRecord {
            ordinal: 0,
            member_id: MemberStatus::format_id(10),
            volume_uid: "p0".into()
        }],
        "only the started member is recorded"
    );
    assert!(a.observed.pods.iter().all(|p| !p.data_lost));
    // Pod 0 replaced (emptyDir: new pod UID, fresh volume) while member 10 is still listed.
    let mut replaced = started.clone();
    replaced.pods.insert(0, pod("p0-new"));
    let b = assess(&test_identity(), &replaced, &a.records, true);
    assert!(b.observed.pods[0].data_lost);
    assert!(!b.observed.pods[1].data_lost);
    assert_eq!(
        b.records, a.records,
        "the evidence is kept until the member is replaced"
    );
    // No MemberList: records are carried over unchanged.
    let silent = Observation {
        members: None,
        ..replaced
    };
    assert_eq!(assess(&test_identity(), &silent, &a.records, true).records, a.records);
}

#[test]
fn lowest_version_wins() {
    let mut obs = Observation::default();
    for (k, v) in [(0, "3.10.0"), (1, "3.9.2"), (2, "")] {
        obs.statuses.insert(
            k,
            StatusResponse {
                version: v.into(),
                ..status(k.into(), 0, 1, 1)
            },
        );
    }
    assert_eq!(
        assess(&test_identity(), &obs, &[], false).version.as_deref(),
        Some("3.9.2")
    );
    assert!(version_key("v3.10.0-rc.1") > version_key("3.9.9"));
}
