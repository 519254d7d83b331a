//! The full reconcile loop: the real controller against the fake API server, with rustcd containers as
//! the members (Docker tests skip, saying why, where Docker is unavailable).

use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use rustcd_operator::cluster_status::{
    find_condition, Phase, CONDITION_AVAILABLE, CONDITION_DEGRADED, CONDITION_PROGRESSING,
};
use rustcd_operator::EtcdClusterStatus;
use serde_json::json;

use crate::harness::{eventually, Harness, NS};

const CONVERGE: Duration = Duration::from_secs(60);

fn args(sts: &StatefulSet) -> Vec<String> {
    sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap()
}

fn replicas(sts: &StatefulSet) -> i32 {
    sts.spec.as_ref().unwrap().replicas.unwrap()
}

fn condition(status: &EtcdClusterStatus, type_: &str) -> String {
    find_condition(&status.conditions, type_).map_or_else(String::new, |c| c.status.clone())
}

pub fn running_with(voters: usize) -> impl Fn(&EtcdClusterStatus) -> bool {
    move |s| {
        s.phase == Phase::Running
            && s.members.len() == voters
            && s.members.iter().all(|m| m.healthy && !m.is_learner)
            && s.ready_replicas as usize == voters
    }
}

async fn statefulset(h: &Harness, name: &str) -> Option<StatefulSet> {
    Api::<StatefulSet>::namespaced(h.client.clone(), NS)
        .get_opt(name)
        .await
        .unwrap()
}

#[tokio::test]
async fn bootstrap_creates_the_owned_objects_and_reports_creating() {
    let mut h = Harness::without_pods().await;
    let cluster = h.create_cluster("demo", 3, false).await;
    h.start_operator();
    let uid = cluster.uid().unwrap();
    let sts = eventually(CONVERGE, || statefulset(&h, "demo"))
        .await
        .expect("StatefulSet created");
    assert_eq!(replicas(&sts), 1, "a new cluster starts with one member");
    let a = args(&sts);
    assert!(a.contains(&"--initial-cluster-state=new".to_string()), "{a:?}");
    assert!(a.contains(&"--initial-cluster=demo-0=http://demo-0.demo-peer.ns.svc:2380".to_string()));
    assert!(a.contains(&format!("--initial-cluster-token=demo-{uid}")));
    assert_eq!(
        sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
            .image
            .as_deref(),
        Some("rustcd:test")
    );

    let services: Api<Service> = Api::namespaced(h.client.clone(), NS);
    let peer = services.get("demo-peer").await.unwrap();
    assert_eq!(peer.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
    assert_eq!(peer.spec.as_ref().unwrap().publish_not_ready_addresses, Some(true));
    services.get("demo").await.unwrap();
    let pdb = Api::<PodDisruptionBudget>::namespaced(h.client.clone(), NS)
        .get("demo")
        .await
        .unwrap();
    assert_eq!(pdb.spec.unwrap().min_available, Some(IntOrString::Int(2)));
    for owner in [sts.owner_references(), peer.owner_references()] {
        assert_eq!(owner.len(), 1);
        assert_eq!((owner[0].uid.as_str(), owner[0].controller), (uid.as_str(), Some(true)));
    }

    let cluster = h
        .wait_status("demo", CONVERGE, |s| {
            s.observed_generation == Some(1) && s.selector.is_some()
        })
        .await;
    let status = cluster.status.unwrap();
    assert_eq!(status.phase, Phase::Creating);
    assert_eq!(status.cluster_id, None);
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=demo,app.kubernetes.io/name=rustcd")
    );
    assert_eq!(condition(&status, CONDITION_PROGRESSING), "True");
    assert_eq!(condition(&status, CONDITION_AVAILABLE), "False");
    assert_eq!(h.events_of("Bootstrapping").await, 1, "{:?}", h.event_counts().await);

    // Without members the operator waits: no second bootstrap, the StatefulSet stays at one pod.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = statefulset(&h, "demo").await.unwrap();
    assert_eq!(replicas(&again), 1);
    assert_eq!(
        again.metadata.generation, sts.metadata.generation,
        "no template churn while waiting"
    );

    // A spec change bumps the generation; the status follows it.
    h.scale("demo", 5).await;
    h.wait_status("demo", CONVERGE, |s| s.observed_generation == Some(2))
        .await;
    let pdb = Api::<PodDisruptionBudget>::namespaced(h.client.clone(), NS)
        .get("demo")
        .await
        .unwrap();
    assert_eq!(pdb.spec.unwrap().min_available, Some(IntOrString::Int(3)));
}

#[tokio::test]
async fn one_member_bootstraps_and_the_status_reports_it() {
    let Some(mut h) = Harness::with_members("boot").await else {
        return;
    };
    h.create_cluster("demo", 1, false).await;
    h.start_operator();
    let cluster = h.wait_status("demo", CONVERGE, running_with(1)).await;
    let status = cluster.status.unwrap();
    let member = &status.members[0];
    assert_eq!(
        (member.name.as_str(), member.peer_url.as_str()),
        ("demo-0", "http://demo-0.demo-peer.ns.svc:2380")
    );
    assert_eq!(status.leader.as_deref(), Some("demo-0"));
    assert!(status.cluster_id.as_deref().is_some_and(|c| !c.is_empty()));
    assert!(status.current_version.is_some());
    assert_eq!((status.replicas, status.observed_generation), (1, Some(1)));
    assert_eq!(condition(&status, CONDITION_AVAILABLE), "True");
    assert_eq!(condition(&status, CONDITION_PROGRESSING), "False");
    // The member's volume (an emptyDir: the pod's UID) is on record.
    let pod = Api::<Pod>::namespaced(h.client.clone(), NS)
        .get("demo-0")
        .await
        .unwrap();
    assert_eq!(status.member_volumes.len(), 1);
    assert_eq!(status.member_volumes[0].member_id, member.id);
    assert_eq!(Some(&status.member_volumes[0].volume_uid), pod.uid().as_ref());
    // Pods created from now on join the existing cluster.
    let sts = statefulset(&h, "demo").await.unwrap();
    assert!(args(&sts).contains(&"--initial-cluster-state=existing".to_string()));
    assert_eq!(h.events_of("Bootstrapping").await, 1);
}

#[tokio::test]
async fn a_restarted_operator_resumes_without_bootstrapping_again() {
    let Some(mut h) = Harness::with_members("restart").await else {
        return;
    };
    h.create_cluster("demo", 1, true).await;
    h.start_operator();
    // Crash right after the bootstrap step, before the member is up.
    eventually(CONVERGE, || statefulset(&h, "demo"))
        .await
        .expect("bootstrapped");
    h.crash_operator();
    let pod = eventually(CONVERGE, || async {
        Api::<Pod>::namespaced(h.client.clone(), NS)
            .get_opt("demo-0")
            .await
            .ok()
            .flatten()
    })
    .await
    .expect("pod created by the StatefulSet");
    h.start_operator();
    let first = h.wait_status("demo", CONVERGE, running_with(1)).await.status.unwrap();
    // A crash while converged, and another restart: same cluster, same member, same pod.
    h.crash_operator();
    h.start_operator();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = h.wait_status("demo", CONVERGE, running_with(1)).await.status.unwrap();
    assert_eq!(second.cluster_id, first.cluster_id);
    assert_eq!(second.members, first.members);
    let now = Api::<Pod>::namespaced(h.client.clone(), NS)
        .get("demo-0")
        .await
        .unwrap();
    assert_eq!(now.uid(), pod.uid(), "the member's pod was never replaced");
    let pvc = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), NS)
        .get("data-demo-0")
        .await
        .unwrap();
    assert_eq!(
        Some(&second.member_volumes[0].volume_uid),
        pvc.uid().as_ref(),
        "PVC UID on record"
    );
    assert_eq!(h.events_of("Bootstrapping").await, 1);
}

/// A converged cluster `demo` of `replicas` members under a running operator; `None` without Docker.
pub async fn running_demo(test: &str, replicas: i32) -> Option<(Harness, EtcdClusterStatus)> {
    let mut h = Harness::with_members(test).await?;
    h.create_cluster("demo", replicas, false).await;
    h.start_operator();
    let voters = usize::try_from(replicas).unwrap_or(0);
    let cluster = h
        .wait_status("demo", Duration::from_secs(120), running_with(voters))
        .await;
    Some((h, cluster.status.expect("wait_status returns a cluster with a status")))
}

#[tokio::test]
async fn scale_up_one_to_three_then_down_to_one() {
    let Some((h, one)) = running_demo("scale", 1).await else {
        return;
    };
    h.scale("demo", 3).await;
    let three = h
        .wait_status("demo", Duration::from_secs(120), running_with(3))
        .await
        .status
        .unwrap();
    assert_eq!(three.cluster_id, one.cluster_id);
    let names: Vec<&str> = three.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), 3);
    for k in 0..3 {
        assert!(names.contains(&format!("demo-{k}").as_str()), "{names:?}");
    }
    let counts = h.event_counts().await;
    for step in ["AddingLearner", "GrowingStatefulSet", "PromotingLearner"] {
        assert_eq!(counts.get(step), Some(&2), "{counts:?} {:?}", h.warnings().await);
    }
    h.scale("demo", 1).await;
    let back = h
        .wait_status("demo", Duration::from_secs(120), running_with(1))
        .await
        .status
        .unwrap();
    assert_eq!(back.members[0].name, "demo-0");
    assert_eq!(replicas(&statefulset(&h, "demo").await.unwrap()), 1);
    let pods = Api::<Pod>::namespaced(h.client.clone(), NS);
    let gone = eventually(CONVERGE, || async {
        let left = pods.list(&ListParams::default()).await.ok()?.items;
        (left.len() == 1).then_some(())
    });
    assert!(gone.await.is_some(), "the pods of removed members go away");
}

#[tokio::test]
async fn a_member_that_lost_its_data_is_replaced() {
    let Some((h, before)) = running_demo("loss", 3).await else {
        return;
    };
    let lost = before
        .members
        .iter()
        .find(|m| m.name == "demo-2")
        .expect("demo-2")
        .id
        .clone();
    // The pod goes away with its emptyDir: the StatefulSet recreates it with a fresh volume.
    Api::<Pod>::namespaced(h.client.clone(), NS)
        .delete("demo-2", &DeleteParams::default())
        .await
        .unwrap();
    let after = h
        .wait_status("demo", Duration::from_secs(120), move |s| {
            running_with(3)(s) && s.members.iter().all(|m| m.id != lost)
        })
        .await
        .status
        .unwrap();
    assert_eq!(after.cluster_id, before.cluster_id);
    assert!(
        h.events_of("ReplacingMember").await >= 1,
        "{:?}",
        h.event_counts().await
    );
}

#[tokio::test]
async fn a_crash_right_after_member_add_resumes() {
    let Some((mut h, _one)) = running_demo("midstep", 1).await else {
        return;
    };
    h.scale("demo", 2).await;
    eventually(CONVERGE, || async {
        (h.events_of("AddingLearner").await > 0).then_some(())
    })
    .await
    .expect("a learner was added");
    h.crash_operator();
    h.start_operator();
    h.wait_status("demo", Duration::from_secs(120), running_with(2)).await;
    assert_eq!(h.events_of("AddingLearner").await, 1, "{:?}", h.event_counts().await);
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_not_acted_on() {
    // The fake API server has no CRD schema validation, so it accepts what a real one would refuse.
    let mut h = Harness::without_pods().await;
    h.create_cluster("bad", 12, false).await;
    h.start_operator();
    let warned = eventually(CONVERGE, || async {
        h.warnings()
            .await
            .into_iter()
            .find(|note| note.contains("spec.replicas"))
    })
    .await;
    assert!(warned.is_some(), "an InvalidSpec warning names the field");
    assert!(
        statefulset(&h, "bad").await.is_none(),
        "nothing is created for an invalid spec"
    );
}

/// The CRD's transition rules (storage and TLS are immutable) are CEL, which Kubernetes before 1.25
/// ignores (and the fake API server does not run): the operator refuses the change itself, against
/// the `status.createdWith` record, and touches nothing.
#[tokio::test]
async fn a_changed_immutable_field_is_refused_by_the_operator() {
    let mut h = Harness::without_pods().await;
    h.create_cluster("fixed", 3, false).await;
    h.start_operator();
    h.wait_status("fixed", CONVERGE, |s| s.created_with.is_some()).await;
    let before = eventually(CONVERGE, || statefulset(&h, "fixed"))
        .await
        .expect("StatefulSet created");
    h.clusters()
        .patch(
            "fixed",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"storage": {"size": "1Gi"}, "replicas": 5}})),
        )
        .await
        .unwrap();
    let refused = h
        .wait_status("fixed", CONVERGE, |s| {
            find_condition(&s.conditions, CONDITION_DEGRADED).is_some_and(|c| c.reason == "InvalidSpec")
        })
        .await;
    let degraded = find_condition(&refused.status.as_ref().unwrap().conditions, CONDITION_DEGRADED).unwrap();
    assert_eq!(degraded.status, "True");
    assert!(
        degraded.message.contains("spec.storage is immutable"),
        "{}",
        degraded.message
    );
    let warned = eventually(CONVERGE, || async {
        h.warnings()
            .await
            .into_iter()
            .find(|note| note.contains("spec.storage is immutable"))
    })
    .await;
    assert!(warned.is_some(), "an InvalidSpec warning names the field");
    // Nothing acted on: not the storage, not the replica change made in the same patch.
    let after = statefulset(&h, "fixed").await.expect("StatefulSet kept");
    assert_eq!(after.spec, before.spec);
}

#[tokio::test]
async fn pvcs_of_removed_members_are_retained_or_deleted_as_the_spec_says() {
    let Some(mut h) = Harness::with_members("pvc").await else {
        return;
    };
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), NS);
    h.create_cluster("keep", 2, true).await;
    h.create_cluster("drop", 2, true).await;
    h.clusters()
        .patch(
            "drop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"pvcRetentionPolicy": "Delete"}})),
        )
        .await
        .unwrap();
    h.start_operator();
    let within = Duration::from_secs(120);
    h.wait_status("keep", within, running_with(2)).await;
    h.wait_status("drop", within, running_with(2)).await;
    let retained = claims.get("data-keep-1").await.unwrap().uid();
    h.scale("keep", 1).await;
    h.scale("drop", 1).await;
    h.wait_status("keep", within, running_with(1)).await;
    h.wait_status("drop", within, running_with(1)).await;
    let deleted = eventually(CONVERGE, || async {
        claims.get_opt("data-drop-1").await.unwrap().is_none().then_some(())
    });
    assert!(deleted.await.is_some(), "Delete: the removed member's claim goes");
    assert_eq!(
        claims.get("data-keep-1").await.unwrap().uid(),
        retained,
        "Retain: the claim stays"
    );
    // Scaling up again reuses the ordinal on a fresh claim: the stale data never joins the cluster.
    h.scale("keep", 2).await;
    h.wait_status("keep", within, running_with(2)).await;
    let fresh = claims.get("data-keep-1").await.unwrap().uid();
    assert_ne!(fresh, retained);
}

#[tokio::test]
async fn a_single_member_that_lost_its_data_is_reported_not_bootstrapped_again() {
    let Some((h, before)) = running_demo("lost1", 1).await else {
        return;
    };
    // The pod goes away with its emptyDir; the StatefulSet recreates it on a fresh volume.
    Api::<Pod>::namespaced(h.client.clone(), NS)
        .delete("demo-0", &DeleteParams::default())
        .await
        .unwrap();
    let after = h
        .wait_status("demo", CONVERGE, |s| {
            let degraded = find_condition(&s.conditions, CONDITION_DEGRADED);
            degraded.is_some_and(|c| c.status == "True" && (c.reason == "DataLost" || c.reason == "NoQuorum"))
        })
        .await
        .status
        .unwrap();
    assert_ne!(after.phase, Phase::Running);
    assert_eq!(after.cluster_id, before.cluster_id);
    let sts = statefulset(&h, "demo").await.unwrap();
    assert!(args(&sts).contains(&"--initial-cluster-state=existing".to_string()));
    assert_eq!(
        h.events_of("Bootstrapping").await,
        1,
        "the lost cluster is not created anew"
    );
    assert_eq!(
        h.events_of("ReplacingMember").await,
        0,
        "the last voter is never removed"
    );
}
