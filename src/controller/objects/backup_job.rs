//! The Job that takes one backup: `rustcd backup save` in the members' image, pointed at every
//! member's client URL, writing to the `EtcdBackup`'s destination, its JSON result in the pod's
//! termination message.
//!
//! A PVC destination is mounted at [`BACKUP_MOUNT`] with the destination's path as `subPath` (the
//! kubelet creates the directory); an S3 destination becomes the AWS environment variables plus the
//! credentials Secret as `envFrom`. With client TLS the Job mounts the client side's CA and the
//! operator's client certificate, exactly what the operator itself dials the members with.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, PersistentVolumeClaimVolumeSource, PodSpec,
    PodTemplateSpec, SecretEnvSource, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use crate::backup_spec::{dir_path, BackupLocation};
use crate::names::{Identity, CLIENT_PORT, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY, LABEL_NAME};
use crate::spec::PullPolicy;
use crate::tls::TlsLayout;

/// Where a PVC destination is mounted in the backup pod.
pub const BACKUP_MOUNT: &str = "/backup";
/// Where the CA and the client certificate are mounted.
const TLS_MOUNT: &str = "/etc/rustcd/backup-tls";
/// Label on backup Jobs and pods: the `EtcdBackup`'s name.
pub const LABEL_BACKUP: &str = "rustcd.io/backup";
/// `app.kubernetes.io/name` of backup Jobs and pods (not the members' `rustcd`, so the member
/// selector never matches them).
pub const BACKUP_APP_NAME: &str = "rustcd-backup";
/// Seconds a backup Job may run.
pub const BACKUP_DEADLINE_SECONDS: i64 = 900;

/// What a backup Job is built from.
#[derive(Clone, Debug)]
pub struct BackupJobPlan<'a> {
    /// The cluster backed up.
    pub id: &'a Identity,
    /// The `EtcdBackup`'s name.
    pub backup: &'a str,
    /// Controller reference to the `EtcdBackup`.
    pub owner: OwnerReference,
    /// Where to write.
    pub destination: &'a BackupLocation,
    /// `--keep`.
    pub keep: u32,
    /// The members' image (it carries `rustcd`).
    pub image: String,
    /// The members' pull policy.
    pub pull_policy: Option<PullPolicy>,
    /// The cluster's TLS layout.
    pub tls: &'a TlsLayout,
    /// Members to list as endpoints (ordinals `0..members`).
    pub members: u32,
}

/// The Job's name for backup `backup`: the backup's name, shortened with a hash to fit the 63
/// characters of the `job-name` label the Job controller adds.
pub fn job_name(backup: &str) -> String {
    let name = format!("{backup}-backup");
    if name.len() <= 63 {
        return name;
    }
    let hash = super::fnv1a(backup.as_bytes()) & 0xffff_ffff;
    let head: String = backup.chars().take(45).collect();
    format!("{}-{hash:08x}-backup", head.trim_end_matches(['-', '.']))
}

/// Labels of a backup Job and its pod.
pub fn backup_labels(id: &Identity, backup: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), BACKUP_APP_NAME.to_string()),
        (LABEL_INSTANCE.to_string(), id.name.clone()),
        (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
        (LABEL_BACKUP.to_string(), backup.to_string()),
    ])
}

/// The `--to` location inside the pod.
pub fn agent_location(destination: &BackupLocation) -> String {
    match (&destination.pvc, &destination.s3) {
        (_, Some(s3)) => format!("s3://{}/{}", s3.bucket, dir_path(s3.prefix.as_deref().unwrap_or(""))),
        _ => format!("{BACKUP_MOUNT}/"),
    }
}

/// Where a restore source is mounted in the first member's init container.
pub const SOURCE_MOUNT: &str = "/backup-source";

/// The `--from` location of a restore source inside the pod: a PVC's path under
/// [`SOURCE_MOUNT`] (the whole claim is mounted), an S3 key or prefix as given.
pub fn source_location(source: &BackupLocation) -> String {
    match (&source.pvc, &source.s3) {
        (_, Some(s3)) => format!(
            "s3://{}/{}",
            s3.bucket,
            s3.prefix.as_deref().unwrap_or("").trim_start_matches('/')
        ),
        (Some(pvc), _) => format!(
            "{SOURCE_MOUNT}/{}",
            pvc.path.as_deref().unwrap_or("").trim_start_matches('/')
        ),
        _ => format!("{SOURCE_MOUNT}/"),
    }
}

/// The members' client URLs by DNS name (what their certificates name).
pub fn member_endpoints(id: &Identity, members: u32) -> String {
    (0..members.max(1))
        .map(|k| format!("{}://{}:{CLIENT_PORT}", id.client_scheme(), id.pod_host(k)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The S3 environment of a location (none for a PVC).
pub fn s3_env(location: &BackupLocation) -> (Vec<EnvVar>, Vec<EnvFromSource>) {
    let Some(s3) = &location.s3 else {
        return (Vec::new(), Vec::new());
    };
    let var = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        ..EnvVar::default()
    };
    let mut env = vec![var("AWS_REGION", s3.region.as_deref().unwrap_or("us-east-1"))];
    if let Some(endpoint) = &s3.endpoint {
        env.push(var("AWS_ENDPOINT", endpoint));
        if endpoint.starts_with("http://") {
            env.push(var("AWS_ALLOW_HTTP", "true"));
        }
    }
    let from = vec![EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: s3.credentials_secret.clone(),
            optional: Some(false),
        }),
        ..EnvFromSource::default()
    }];
    (env, from)
}

/// The backup Job.
pub fn backup_job(plan: &BackupJobPlan<'_>) -> Job {
    let name = job_name(plan.backup);
    let labels = backup_labels(plan.id, plan.backup);
    let mut args = vec![
        "backup".to_string(),
        "save".to_string(),
        format!("--endpoints={}", member_endpoints(plan.id, plan.members)),
        format!("--to={}", agent_location(plan.destination)),
        format!("--keep={}", plan.keep),
        "--result-file=/dev/termination-log".to_string(),
    ];
    let mut volumes = vec![Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "scratch".into(),
        mount_path: "/tmp".into(),
        ..VolumeMount::default()
    }];
    if let Some(pvc) = &plan.destination.pvc {
        volumes.push(Volume {
            name: "backup".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: Some(false),
            }),
            ..Volume::default()
        });
        let sub = pvc.path.as_deref().unwrap_or("").trim_matches('/');
        mounts.push(VolumeMount {
            name: "backup".into(),
            mount_path: BACKUP_MOUNT.into(),
            sub_path: (!sub.is_empty()).then(|| sub.to_string()),
            ..VolumeMount::default()
        });
    }
    if let Some((ca_secret, client_secret)) = plan.tls.operator_secrets() {
        for (volume, secret) in [("tls-ca", ca_secret), ("tls-client", client_secret)] {
            volumes.push(Volume {
                name: volume.into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            });
            mounts.push(VolumeMount {
                name: volume.into(),
                mount_path: format!("{TLS_MOUNT}/{volume}"),
                read_only: Some(true),
                ..VolumeMount::default()
            });
        }
        args.push(format!("--cacert={TLS_MOUNT}/tls-ca/ca.crt"));
        args.push(format!("--cert={TLS_MOUNT}/tls-client/tls.crt"));
        args.push(format!("--key={TLS_MOUNT}/tls-client/tls.key"));
    }
    let (env, env_from) = s3_env(plan.destination);
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(plan.id.namespace.clone()),
            labels: Some(labels.clone()),
            owner_references: Some(vec![plan.owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(1),
            active_deadline_seconds: Some(BACKUP_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    automount_service_account_token: Some(false),
                    containers: vec![Container {
                        name: "backup".into(),
                        image: Some(plan.image.clone()),
                        image_pull_policy: plan.pull_policy.map(|p| p.as_str().to_string()),
                        args: Some(args),
                        env: (!env.is_empty()).then_some(env),
                        env_from: (!env_from.is_empty()).then_some(env_from),
                        volume_mounts: Some(mounts),
                        termination_message_policy: Some("File".into()),
                        ..Container::default()
                    }],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        ..Job::default()
    }
}
