//! `EtcdBackup`s against the fake API server (no pods run): what the operator checks before a Job
//! exists, the Job it creates, and the status and Events it derives from a finished Job, whose
//! status and pod the test writes as the Job controller and kubelet would. The Jobs really run in
//! `tests/e2e` (the real control plane).

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use rustcd_operator::backup_spec::{
    BackupLocation, BackupPhase, EtcdBackup, EtcdBackupSpec, EtcdBackupStatus, PvcLocation, S3Location,
};
use serde_json::json;

use crate::harness::{eventually, Harness, NS};

fn pvc_destination(claim: &str) -> BackupLocation {
    BackupLocation {
        pvc: Some(PvcLocation {
            claim_name: claim.into(),
            path: Some("demo".into()),
        }),
        s3: None,
    }
}

async fn create_backup(h: &Harness, name: &str, cluster: &str, destination: BackupLocation) {
    let spec = EtcdBackupSpec {
        cluster_name: cluster.into(),
        destination,
        keep: 2,
    };
    Api::<EtcdBackup>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &EtcdBackup::new(name, spec))
        .await
        .expect("create EtcdBackup");
}

async fn wait_backup(h: &Harness, name: &str, done: impl Fn(&EtcdBackupStatus) -> bool) -> EtcdBackupStatus {
    let api = Api::<EtcdBackup>::namespaced(h.client.clone(), NS);
    let done = &done;
    let found = eventually(Duration::from_secs(20), || {
        let api = api.clone();
        async move {
            let s = api.get(name).await.ok()?.status?;
            done(&s).then_some(s)
        }
    })
    .await;
    match found {
        Some(s) => s,
        None => panic!(
            "{name}: status not reached; last: {:#?}",
            api.get(name).await.ok().and_then(|b| b.status)
        ),
    }
}

fn failed_reason(s: &EtcdBackupStatus) -> Option<(String, String)> {
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some((c.reason.clone(), c.message.clone()))
}

#[tokio::test]
async fn backups_are_checked_before_a_job_and_report_what_the_job_did() {
    let mut h = Harness::without_pods().await;
    h.start_operator();
    h.create_cluster("demo", 3, true).await;
    let jobs = Api::<Job>::namespaced(h.client.clone(), NS);

    // No such cluster, claim or Secret: Failed with the reason, a Warning Event, and no Job.
    create_backup(&h, "orphan", "nope", pvc_destination("backups")).await;
    let s = wait_backup(&h, "orphan", |s| s.phase == BackupPhase::Failed).await;
    assert_eq!(failed_reason(&s).unwrap().0, "ClusterNotFound");
    create_backup(&h, "no-claim", "demo", pvc_destination("backups")).await;
    let s = wait_backup(&h, "no-claim", |s| s.phase == BackupPhase::Failed).await;
    let (reason, message) = failed_reason(&s).unwrap();
    assert_eq!(reason, "DestinationNotFound");
    assert!(message.contains("\"backups\" does not exist"), "{message}");
    let s3 = BackupLocation {
        pvc: None,
        s3: Some(S3Location {
            bucket: "bk".into(),
            prefix: None,
            endpoint: Some("http://s3.example:9000".into()),
            region: None,
            credentials_secret: "s3-creds".into(),
        }),
    };
    create_backup(&h, "no-secret", "demo", s3.clone()).await;
    let s = wait_backup(&h, "no-secret", |s| s.phase == BackupPhase::Failed).await;
    assert_eq!(failed_reason(&s).unwrap().0, "CredentialsNotFound");
    assert!(jobs.list(&Default::default()).await.unwrap().items.is_empty());
    let warnings = h.warnings().await;
    assert!(
        warnings.iter().any(|w| w.contains("\"backups\" does not exist")),
        "{warnings:?}"
    );

    // With the claim: a Job, Running.
    let claim: PersistentVolumeClaim = serde_json::from_value(json!({
        "metadata": {"name": "backups"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    }))
    .unwrap();
    Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &claim)
        .await
        .unwrap();
    create_backup(&h, "first", "demo", pvc_destination("backups")).await;
    let s = wait_backup(&h, "first", |s| s.phase == BackupPhase::Running).await;
    assert_eq!(s.job_name.as_deref(), Some("first-backup"));
    let job = jobs.get("first-backup").await.expect("the Job");
    let args = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--keep=2".to_string()), "{args:?}");
    assert_eq!(job.metadata.owner_references.unwrap()[0].kind, "EtcdBackup");

    // The Job controller and kubelet's part, written by hand: the pod's termination message and
    // the Job's success.
    let result = r#"{"location":"/backup/snapshot-20261204T101010.000Z-rev42.db","size":4128,"sha256":"ab","revision":42,"hash":123,"member":"http://demo-1.demo-peer.ns.svc:2379","takenAt":"2026-12-04T10:10:10Z","deleted":[]}"#;
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "first-backup-x1", "labels": {"job-name": "first-backup"}},
        "spec": {"containers": [{"name": "backup", "image": "rustcd:test"}]}
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(h.client.clone(), NS);
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let terminated = json!({"status": {"containerStatuses": [{
        "name": "backup", "image": "rustcd:test", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": 0, "message": result}}
    }]}});
    pods.patch_status("first-backup-x1", &PatchParams::default(), &Patch::Merge(&terminated))
        .await
        .unwrap();
    jobs.patch_status(
        "first-backup",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"succeeded": 1}})),
    )
    .await
    .unwrap();
    let s = wait_backup(&h, "first", |s| s.phase == BackupPhase::Succeeded).await;
    assert_eq!(
        s.location.as_deref(),
        Some("pvc://backups/demo/snapshot-20261204T101010.000Z-rev42.db")
    );
    assert_eq!((s.revision, s.size), (Some(42), Some(4128)));
    assert_eq!(
        h.events_of("BackupSucceeded").await,
        2,
        "on the backup and on the cluster"
    );

    // The cluster's status summarizes it.
    let cluster = h
        .wait_status("demo", Duration::from_secs(20), |s| {
            s.backup.as_ref().and_then(|b| b.last_successful.as_ref()).is_some()
        })
        .await;
    let summary = cluster.status.unwrap().backup.unwrap();
    let last = summary.last_successful.clone().unwrap();
    assert_eq!((last.name.as_str(), last.revision), ("first", Some(42)));
    // The newest failure predates the success, so it is not shown.
    assert!(summary.last_failed.is_none(), "{summary:?}");
}
