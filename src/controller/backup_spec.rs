//! The `EtcdBackup` custom resource (one on-demand backup of an `EtcdCluster`) and the backup
//! locations shared with `EtcdCluster.spec.backup` (the schedule) and `spec.bootstrap.fromBackup`
//! (the restore source).
//!
//! A backup runs as a Job (see [`crate::objects::backup_job`]) with the members' image:
//! `rustcd backup save` takes the snapshot from a healthy follower, verifies it (checksums, a
//! restore into a scratch directory, HashKV against the member's) and writes it to a PVC or an S3
//! bucket as `snapshot-<UTC time>-rev<revision>.db`; its JSON result comes back through the pod's
//! termination message into [`EtcdBackupStatus`].

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL rule on a [`BackupLocation`]: exactly one kind of location.
pub const LOCATION_EXCLUSIVE_RULE: &str = "has(self.pvc) != has(self.s3)";
/// Message returned by the API server when [`LOCATION_EXCLUSIVE_RULE`] fails.
pub const LOCATION_EXCLUSIVE_MESSAGE: &str = "exactly one of pvc and s3 must be set";

/// Condition type on an `EtcdBackup`: `True` once the backup is stored and verified.
pub const CONDITION_COMPLETE: &str = "Complete";
/// Condition type on an `EtcdBackup`: `True` when it failed (the reason and message say why).
pub const CONDITION_FAILED: &str = "Failed";

/// One backup of an `EtcdCluster` in the same namespace, taken once.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rustcd.io",
    version = "v1alpha1",
    kind = "EtcdBackup",
    plural = "etcdbackups",
    shortname = "etcdbackup",
    namespaced,
    status = "EtcdBackupStatus",
    derive = "PartialEq",
    doc = "One backup of an EtcdCluster (a verified snapshot written to a PVC or an S3 bucket).",
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".spec.clusterName"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Revision","type":"integer","jsonPath":".status.revision"}"#,
    printcolumn = r#"{"name":"Size","type":"integer","jsonPath":".status.size"}"#,
    printcolumn = r#"{"name":"Location","type":"string","priority":1,"jsonPath":".status.location"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupSpec {
    /// The `EtcdCluster` (same namespace) to back up.
    #[schemars(length(min = 1, max = 253))]
    pub cluster_name: String,
    /// Where to write the backup.
    pub destination: BackupLocation,
    /// After writing, delete older backups (`snapshot-*.db`) at the destination beyond the newest
    /// `keep`; 0 keeps them all.
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub keep: u32,
}

/// A place for backups: a directory in a PersistentVolumeClaim, or an S3-compatible bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": LOCATION_EXCLUSIVE_RULE, "message": LOCATION_EXCLUSIVE_MESSAGE }
]))]
pub struct BackupLocation {
    /// A directory in a PersistentVolumeClaim of the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pvc: Option<PvcLocation>,
    /// A bucket of an S3-compatible object store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Location>,
}

/// A path in a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PvcLocation {
    /// The claim (it must exist; a `ReadWriteOnce` claim is mounted by one backup at a time).
    #[schemars(length(min = 1, max = 253))]
    pub claim_name: String,
    /// As a destination: the directory inside the claim (created when missing; empty: the claim's
    /// root). As a restore source: a backup file, or a directory ending in `/` for the newest
    /// backup in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub path: Option<String>,
}

/// An S3 bucket and key prefix.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct S3Location {
    /// Bucket name (it must exist).
    #[schemars(length(min = 1, max = 63))]
    pub bucket: String,
    /// As a destination: the key prefix backups go under (`team/cluster/`). As a restore source:
    /// a backup's key, or a prefix ending in `/` for the newest backup under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub prefix: Option<String>,
    /// Endpoint of an S3-compatible server (`https://minio.example:9000`); unset: AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret whose keys become the backup's environment: `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY` (and optionally `AWS_SESSION_TOKEN`).
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,
}

/// Where an `EtcdBackup` is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum BackupPhase {
    /// Accepted; the Job is not created yet.
    #[default]
    Pending,
    /// The Job runs.
    Running,
    /// Stored and verified.
    Succeeded,
    /// Failed; the `Failed` condition says why. Nothing was written.
    Failed,
}

impl BackupPhase {
    /// Whether nothing more happens to the backup.
    pub fn is_finished(self) -> bool {
        matches!(self, BackupPhase::Succeeded | BackupPhase::Failed)
    }
}

/// Observed state of an `EtcdBackup`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdBackupStatus {
    /// Pending, Running, Succeeded or Failed.
    #[serde(default)]
    pub phase: BackupPhase,
    /// The Job that takes the backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Where the backup is: `s3://bucket/prefix/name.db`, or `pvc://claim/path/name.db`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// SHA-256 of the file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The key space's revision in the snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// HashKV of the key space at `revision` (`etcdctl endpoint hashkv --rev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<i64>,
    /// The member's client URL the snapshot was taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// When the snapshot was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    /// When the backup finished (succeeded or failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// `Complete` and `Failed`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// `EtcdCluster.spec.backup`: scheduled backups.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSchedule {
    /// When to back up, as a five-field cron expression in UTC (`0 */6 * * *`: every six hours).
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// How many scheduled backups to keep (older ones are deleted, with their `EtcdBackup`s).
    #[serde(default = "default_keep")]
    #[schemars(range(min = 1, max = 1000))]
    pub keep: u32,
    /// Where to write them.
    pub destination: BackupLocation,
    /// Stop scheduling (backups already taken stay).
    #[serde(default)]
    pub suspend: bool,
}

fn default_keep() -> u32 {
    7
}

impl BackupLocation {
    /// The CEL rule in Rust: `field` names the location in the message.
    pub fn validate(&self, field: &str) -> Result<(), String> {
        if self.pvc.is_some() == self.s3.is_some() {
            return Err(format!("{field}: {LOCATION_EXCLUSIVE_MESSAGE}"));
        }
        if let Some(path) = self.pvc.as_ref().and_then(|p| p.path.as_deref()) {
            if path.split('/').any(|p| p == "..") || path.starts_with('/') {
                return Err(format!("{field}.pvc.path: {path:?} must be relative, without '..'"));
            }
        }
        Ok(())
    }

    /// How the location is shown in status: `pvc://claim/path/` or `s3://bucket/prefix/`.
    pub fn display_prefix(&self) -> String {
        match (&self.pvc, &self.s3) {
            (Some(p), _) => format!("pvc://{}/{}", p.claim_name, dir_path(p.path.as_deref().unwrap_or(""))),
            (_, Some(s)) => format!("s3://{}/{}", s.bucket, dir_path(s.prefix.as_deref().unwrap_or(""))),
            _ => String::new(),
        }
    }
}

/// `path` with exactly one trailing `/` (empty stays empty).
pub fn dir_path(path: &str) -> String {
    let p = path.trim_matches('/');
    if p.is_empty() {
        String::new()
    } else {
        format!("{p}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_is_one_of_pvc_and_s3_with_a_relative_path() {
        let pvc = |path: &str| BackupLocation {
            pvc: Some(PvcLocation {
                claim_name: "b".into(),
                path: Some(path.into()),
            }),
            s3: None,
        };
        assert!(pvc("team/c1").validate("d").is_ok());
        assert!(pvc("").validate("d").is_ok());
        assert!(pvc("../x").validate("d").is_err());
        assert!(pvc("/abs").validate("d").is_err());
        assert_eq!(
            BackupLocation::default().validate("spec.destination"),
            Err(format!("spec.destination: {LOCATION_EXCLUSIVE_MESSAGE}"))
        );
        let both = BackupLocation {
            s3: Some(S3Location::default()),
            ..pvc("")
        };
        assert!(both.validate("d").is_err());
        assert_eq!(pvc("a/b/").display_prefix(), "pvc://b/a/b/");
        assert_eq!(pvc("").display_prefix(), "pvc://b/");
        let s3 = BackupLocation {
            pvc: None,
            s3: Some(S3Location {
                bucket: "bk".into(),
                prefix: Some("p".into()),
                ..Default::default()
            }),
        };
        assert_eq!(s3.display_prefix(), "s3://bk/p/");
    }
}
