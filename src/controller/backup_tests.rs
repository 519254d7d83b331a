//! Tests of the backup Job builder and of reading a Job's outcome.

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use super::*;
use crate::backup_spec::{BackupLocation, EtcdBackupSpec, PvcLocation, S3Location};
use crate::names::test_identity;
use crate::objects::backup_job::{backup_job, job_name, BackupJobPlan};
use crate::spec::{EtcdClusterSpec, TlsEndpoint, TlsSpec};
use crate::tls::TlsLayout;

const RESULT: &str = r#"{"location":"/backup/snapshot-20261204T101010.000Z-rev42.db","size":4128,"sha256":"ab","revision":42,"hash":123,"member":"http://demo-1.demo-peer.ns.svc:2379","takenAt":"2026-12-04T10:10:10Z","deleted":[]}"#;

fn pod_with_message(message: &str) -> Pod {
    Pod {
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: "backup".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        message: Some(message.into()),
                        exit_code: 0,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn job(succeeded: i32, failed_reason: Option<&str>) -> Job {
    Job {
        status: Some(JobStatus {
            succeeded: Some(succeeded),
            conditions: failed_reason.map(|r| {
                vec![JobCondition {
                    type_: "Failed".into(),
                    status: "True".into(),
                    reason: Some(r.into()),
                    message: Some("Job has reached the specified backoff limit".into()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_job_outcome_comes_from_its_status_and_the_termination_message() {
    assert_eq!(job_outcome(&job(0, None), &[]), Outcome::Running);
    let Outcome::Succeeded(r) = job_outcome(&job(1, None), &[pod_with_message(RESULT)]) else {
        panic!("not succeeded");
    };
    assert_eq!((r.revision, r.size, r.hash), (42, 4128, 123));
    assert!(matches!(job_outcome(&job(1, None), &[]), Outcome::Failed(m) if m.contains("no result")));
    let error = r#"{"error":"backup directory /backup does not exist"}"#;
    assert_eq!(
        job_outcome(&job(0, Some("BackoffLimitExceeded")), &[pod_with_message(error)]),
        Outcome::Failed("backup directory /backup does not exist".into())
    );
    assert_eq!(
        job_outcome(&job(0, Some("DeadlineExceeded")), &[]),
        Outcome::Failed("the backup Job failed: DeadlineExceeded: Job has reached the specified backoff limit".into())
    );
}

fn backup_object(destination: BackupLocation) -> EtcdBackup {
    let mut b = EtcdBackup::new(
        "nightly",
        EtcdBackupSpec {
            cluster_name: "demo".into(),
            destination,
            keep: 3,
        },
    );
    b.metadata = ObjectMeta {
        name: Some("nightly".into()),
        namespace: Some("ns".into()),
        uid: Some("b-1".into()),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    b
}

fn pvc(path: Option<&str>) -> BackupLocation {
    BackupLocation {
        pvc: Some(PvcLocation {
            claim_name: "backups".into(),
            path: path.map(str::to_string),
        }),
        s3: None,
    }
}

#[test]
fn a_finished_status_shows_the_claim_path_and_sets_the_conditions() {
    let b = backup_object(pvc(Some("team/demo")));
    let now = Time(k8s_openapi::chrono::Utc::now());
    let Outcome::Succeeded(r) = job_outcome(&job(1, None), &[pod_with_message(RESULT)]) else {
        panic!()
    };
    let s = finished_status(&b, &Outcome::Succeeded(r), "BackupSucceeded", now.clone());
    assert_eq!(s.phase, BackupPhase::Succeeded);
    assert_eq!(
        s.location.as_deref(),
        Some("pvc://backups/team/demo/snapshot-20261204T101010.000Z-rev42.db")
    );
    assert_eq!((s.revision, s.size, s.hash), (Some(42), Some(4128), Some(123)));
    let complete = s.conditions.iter().find(|c| c.type_ == CONDITION_COMPLETE).unwrap();
    assert_eq!(complete.status, "True");
    assert!(
        s.conditions.iter().all(|c| !c.message.is_empty()),
        "Kubernetes 1.20 reads an empty message as null and refuses the status"
    );
    let failed = finished_status(&b, &Outcome::Failed("no".into()), "DestinationNotFound", now);
    assert_eq!(failed.phase, BackupPhase::Failed);
    let c = failed.conditions.iter().find(|c| c.type_ == CONDITION_FAILED).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
        ("True", "DestinationNotFound", "no")
    );
    assert!(failed.location.is_none());
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "rustcd.io/v1alpha1".into(),
        kind: "EtcdBackup".into(),
        name: "nightly".into(),
        uid: "b-1".into(),
        controller: Some(true),
        ..Default::default()
    }
}

#[test]
fn the_job_runs_the_agent_against_every_member_into_the_claim() {
    let id = test_identity();
    let tls = TlsLayout::of(&id, &EtcdClusterSpec::default());
    let destination = pvc(Some("/team/demo/"));
    let plan = BackupJobPlan {
        id: &id,
        backup: "nightly",
        owner: owner(),
        destination: &destination,
        keep: 3,
        image: "rustcd:v0.1.0".into(),
        pull_policy: None,
        tls: &tls,
        members: 3,
    };
    let job = backup_job(&plan);
    assert_eq!(job.metadata.name.as_deref(), Some("nightly-backup"));
    let spec = job.spec.unwrap();
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let c = &pod.containers[0];
    assert_eq!(
        c.args.clone().unwrap(),
        vec![
            "backup",
            "save",
            "--endpoints=http://demo-0.demo-peer.ns.svc:2379,http://demo-1.demo-peer.ns.svc:2379,http://demo-2.demo-peer.ns.svc:2379",
            "--to=/backup/",
            "--keep=3",
            "--result-file=/dev/termination-log",
        ]
    );
    let mount = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.name == "backup")
        .unwrap();
    assert_eq!(
        (mount.mount_path.as_str(), mount.sub_path.as_deref()),
        ("/backup", Some("team/demo"))
    );
    let labels = spec.template.metadata.unwrap().labels.unwrap();
    assert_eq!(
        labels.get("app.kubernetes.io/name").map(String::as_str),
        Some("rustcd-backup")
    );
    assert_eq!(labels.get(LABEL_BACKUP).map(String::as_str), Some("nightly"));
}

#[test]
fn an_s3_job_gets_the_aws_environment_and_a_tls_job_the_operator_certificate() {
    let mut id = test_identity();
    id.client_tls = true;
    let spec = EtcdClusterSpec {
        tls: Some(TlsSpec {
            client: Some(TlsEndpoint {
                secret_name: Some("demo-tls".into()),
                issuer_ref: None,
            }),
            peer: None,
            operator_secret_name: Some("ops".into()),
        }),
        ..EtcdClusterSpec::default()
    };
    let tls = TlsLayout::of(&id, &spec);
    let destination = BackupLocation {
        pvc: None,
        s3: Some(S3Location {
            bucket: "bk".into(),
            prefix: Some("team".into()),
            endpoint: Some("http://172.17.0.1:9000".into()),
            region: None,
            credentials_secret: "s3-creds".into(),
        }),
    };
    let plan = BackupJobPlan {
        id: &id,
        backup: "nightly",
        owner: owner(),
        destination: &destination,
        keep: 0,
        image: "rustcd:v0.1.0".into(),
        pull_policy: None,
        tls: &tls,
        members: 1,
    };
    let pod = backup_job(&plan).spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert!(args.contains(&"--to=s3://bk/team/".to_string()), "{args:?}");
    assert!(
        args.contains(&"--endpoints=https://demo-0.demo-peer.ns.svc:2379".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--cacert=/etc/rustcd/backup-tls/tls-ca/ca.crt".to_string()),
        "{args:?}"
    );
    let env: Vec<(String, String)> = c
        .env
        .clone()
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.value.unwrap_or_default()))
        .collect();
    assert!(env.contains(&("AWS_ENDPOINT".into(), "http://172.17.0.1:9000".into())));
    assert!(env.contains(&("AWS_ALLOW_HTTP".into(), "true".into())));
    assert!(env.contains(&("AWS_REGION".into(), "us-east-1".into())));
    let from = c.env_from.clone().unwrap();
    assert_eq!(from[0].secret_ref.as_ref().unwrap().name, "s3-creds");
    let secrets: Vec<String> = pod
        .volumes
        .unwrap()
        .into_iter()
        .filter_map(|v| v.secret?.secret_name)
        .collect();
    assert_eq!(secrets, vec!["demo-tls".to_string(), "ops".to_string()]);
}

#[test]
fn job_names_fit_the_job_name_label() {
    assert_eq!(job_name("x"), "x-backup");
    let long = "a".repeat(200);
    let name = job_name(&long);
    assert!(name.len() <= 63, "{name}");
    assert_ne!(job_name(&format!("{long}b")), name);
}
