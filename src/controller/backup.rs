//! The `EtcdBackup` controller: one Job per backup, its outcome written back into the backup's
//! status, an Event on the backup and on its cluster either way.
//!
//! [`reconcile_backup`] checks what it can before anything runs (the cluster exists, the destination
//! claim or the S3 credentials Secret exists, the destination is well-formed); a failed check fails
//! the backup with a `Failed` condition and a Warning Event, and no Job is created. Otherwise it
//! server-side applies the Job ([`crate::objects::backup_job`]) and, once the Job is done, reads the
//! result the agent left in its pod's termination message ([`job_outcome`], pure). A finished backup
//! is never run again; delete and recreate it to retry.

use std::sync::Arc;
use std::time::Duration;

use futures::{Future, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};
use serde::Deserialize;

use crate::backup_spec::{BackupPhase, EtcdBackup, EtcdBackupStatus, CONDITION_COMPLETE, CONDITION_FAILED};
use crate::cluster_status::set_condition;
use crate::error::Error;
use crate::execute::apply;
use crate::names::{member_image, Identity, FIELD_MANAGER, LABEL_MANAGED_BY};
use crate::objects::backup_job::{backup_job, job_name, BackupJobPlan, BACKUP_MOUNT, LABEL_BACKUP};
use crate::reconcile::Context;
use crate::spec::EtcdCluster;
use crate::tls::TlsLayout;

/// How often a running backup is looked at (the Job's own events also wake the controller).
const RUNNING_REQUEUE: Duration = Duration::from_secs(5);

/// What `rustcd backup save` printed (see `rustcd::backup_agent::BackupResult`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentResult {
    /// Location inside the pod (`/backup/name.db` or `s3://...`).
    pub location: String,
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Revision.
    pub revision: i64,
    /// HashKV at the revision.
    pub hash: u32,
    /// Endpoint snapshotted.
    pub member: String,
    /// RFC 3339.
    pub taken_at: String,
}

/// Where a backup's Job is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still running (or its pod not started yet).
    Running,
    /// Done: the agent's result.
    Succeeded(AgentResult),
    /// Failed: the agent's error, or the Job's reason.
    Failed(String),
}

/// The outcome of `job`, from its status and its pods' termination messages. Pure.
pub fn job_outcome(job: &Job, pods: &[Pod]) -> Outcome {
    let status = job.status.clone().unwrap_or_default();
    let messages: Vec<String> = pods
        .iter()
        .flat_map(|p| p.status.iter().flat_map(|s| s.container_statuses.iter().flatten()))
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
        .filter(|m| !m.trim().is_empty())
        .collect();
    if status.succeeded.unwrap_or(0) > 0 {
        return match messages
            .iter()
            .find_map(|m| serde_json::from_str::<AgentResult>(m.trim()).ok())
        {
            Some(r) => Outcome::Succeeded(r),
            None => Outcome::Failed("the backup Job succeeded but its pod left no result".into()),
        };
    }
    let failed = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Failed" && c.status == "True");
    if let Some(condition) = failed {
        let agent_error = messages.iter().rev().find_map(|m| {
            let v: serde_json::Value = serde_json::from_str(m.trim()).ok()?;
            v.get("error")?.as_str().map(str::to_string)
        });
        return Outcome::Failed(agent_error.unwrap_or_else(|| {
            format!(
                "the backup Job failed: {}{}",
                condition.reason.as_deref().unwrap_or("Failed"),
                condition
                    .message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            )
        }));
    }
    Outcome::Running
}

/// The location shown in status: a PVC path as `pvc://claim/path/name.db`.
fn shown_location(backup: &EtcdBackup, inside: &str) -> String {
    match &backup.spec.destination.pvc {
        Some(pvc) => {
            let name = inside
                .strip_prefix(BACKUP_MOUNT)
                .unwrap_or(inside)
                .trim_start_matches('/');
            let dir = crate::backup_spec::dir_path(pvc.path.as_deref().unwrap_or(""));
            format!("pvc://{}/{dir}{name}", pvc.claim_name)
        }
        None => inside.to_string(),
    }
}

fn condition(type_: &str, ok: bool, reason: &str, message: &str, generation: Option<i64>, now: &Time) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if ok { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation: generation,
        last_transition_time: now.clone(),
    }
}

/// The status of a finished backup.
pub fn finished_status(backup: &EtcdBackup, outcome: &Outcome, reason: &str, now: Time) -> EtcdBackupStatus {
    let mut status = backup.status.clone().unwrap_or_default();
    let generation = backup.meta().generation;
    match outcome {
        Outcome::Succeeded(r) => {
            status.phase = BackupPhase::Succeeded;
            status.location = Some(shown_location(backup, &r.location));
            status.size = i64::try_from(r.size).ok();
            status.sha256 = Some(r.sha256.clone());
            status.revision = Some(r.revision);
            status.hash = Some(i64::from(r.hash));
            status.member = Some(r.member.clone());
            status.taken_at = Some(r.taken_at.clone());
            let message = format!("revision {} ({} bytes) verified and stored", r.revision, r.size);
            set_condition(
                &mut status.conditions,
                condition(CONDITION_COMPLETE, true, reason, &message, generation, &now),
            );
            set_condition(
                &mut status.conditions,
                condition(
                    CONDITION_FAILED,
                    false,
                    reason,
                    "the backup succeeded",
                    generation,
                    &now,
                ),
            );
        }
        Outcome::Failed(message) => {
            status.phase = BackupPhase::Failed;
            set_condition(
                &mut status.conditions,
                condition(CONDITION_FAILED, true, reason, message, generation, &now),
            );
            set_condition(
                &mut status.conditions,
                condition(CONDITION_COMPLETE, false, reason, message, generation, &now),
            );
        }
        Outcome::Running => status.phase = BackupPhase::Running,
    }
    if outcome != &Outcome::Running {
        status.completion_time = Some(now);
    }
    status
}

async fn write_status(ctx: &Context, backup: &EtcdBackup, status: &EtcdBackupStatus) -> Result<(), Error> {
    if backup.status.as_ref() == Some(status) {
        return Ok(());
    }
    let patch = serde_json::json!({
        "apiVersion": EtcdBackup::api_version(&()),
        "kind": EtcdBackup::kind(&()),
        "status": status,
    });
    let ns = backup.namespace().unwrap_or_default();
    Api::<EtcdBackup>::namespaced(ctx.client.clone(), &ns)
        .patch_status(
            &backup.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await?;
    Ok(())
}

async fn publish<K: Resource<DynamicType = ()>>(ctx: &Context, object: &K, type_: EventType, reason: &str, note: &str) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Backup".to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
        tracing::warn!(error = %e, "publishing an event failed");
    }
}

/// Finishes `backup` with `outcome`: its status (reason `reason`), and an Event of that reason with
/// `note` on the backup and on its cluster (`None`: no such cluster). Nothing more happens to it.
async fn finish(
    ctx: &Context,
    backup: &EtcdBackup,
    cluster: Option<&EtcdCluster>,
    outcome: &Outcome,
    reason: &str,
    note: &str,
) -> Result<Action, Error> {
    let now = Time(k8s_openapi::chrono::Utc::now());
    write_status(ctx, backup, &finished_status(backup, outcome, reason, now)).await?;
    let type_ = match outcome {
        Outcome::Succeeded(_) => {
            tracing::info!(reason, %note, "backup succeeded");
            EventType::Normal
        }
        _ => {
            tracing::warn!(reason, %note, "backup failed");
            EventType::Warning
        }
    };
    publish(ctx, backup, type_, reason, note).await;
    if let Some(cluster) = cluster {
        let note = format!("backup {}: {note}", backup.name_any());
        publish(ctx, cluster, type_, reason, &note).await;
    }
    Ok(Action::await_change())
}

/// Fails `backup` before anything ran (see [`finish`]).
async fn refuse(
    ctx: &Context,
    backup: &EtcdBackup,
    cluster: Option<&EtcdCluster>,
    reason: &str,
    message: String,
) -> Result<Action, Error> {
    finish(
        ctx,
        backup,
        cluster,
        &Outcome::Failed(message.clone()),
        reason,
        &message,
    )
    .await
}

/// One reconcile of `backup`, in a `backup` span.
pub async fn reconcile_backup(backup: Arc<EtcdBackup>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "backup",
        backup = %backup.name_any(),
        namespace = %backup.namespace().unwrap_or_default(),
        cluster = %backup.spec.cluster_name,
    );
    tracing::Instrument::instrument(reconcile_inner(&backup, &ctx), span).await
}

async fn reconcile_inner(backup: &EtcdBackup, ctx: &Context) -> Result<Action, Error> {
    let status = backup.status.clone().unwrap_or_default();
    if status.phase.is_finished() || backup.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = backup
        .namespace()
        .ok_or_else(|| Error::InvalidObject(format!("EtcdBackup {} has no namespace", backup.name_any())))?;
    let client = &ctx.client;
    let Some(cluster) = Api::<EtcdCluster>::namespaced(client.clone(), &ns)
        .get_opt(&backup.spec.cluster_name)
        .await?
    else {
        let message = format!("EtcdCluster {:?} not found in namespace {ns}", backup.spec.cluster_name);
        return refuse(ctx, backup, None, "ClusterNotFound", message).await;
    };
    if let Err(message) = backup.spec.destination.validate("spec.destination") {
        return refuse(ctx, backup, Some(&cluster), "InvalidSpec", message).await;
    }
    if let Some(pvc) = &backup.spec.destination.pvc {
        let found = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns)
            .get_opt(&pvc.claim_name)
            .await?;
        if found.is_none() {
            let message = format!(
                "the destination PersistentVolumeClaim {:?} does not exist",
                pvc.claim_name
            );
            return refuse(ctx, backup, Some(&cluster), "DestinationNotFound", message).await;
        }
    }
    if let Some(s3) = &backup.spec.destination.s3 {
        let found = Api::<Secret>::namespaced(client.clone(), &ns)
            .get_opt(&s3.credentials_secret)
            .await?;
        if found.is_none() {
            let message = format!("the S3 credentials Secret {:?} does not exist", s3.credentials_secret);
            return refuse(ctx, backup, Some(&cluster), "CredentialsNotFound", message).await;
        }
    }
    let id = Identity::of(&cluster)?;
    let owner = backup
        .controller_owner_ref(&())
        .ok_or_else(|| Error::InvalidObject(format!("EtcdBackup {} has no owner reference", backup.name_any())))?;
    let jobs = Api::<Job>::namespaced(client.clone(), &ns);
    let name = job_name(&backup.name_any());
    let Some(job) = jobs.get_opt(&name).await? else {
        let tls = TlsLayout::of(&id, &cluster.spec);
        let members = cluster
            .status
            .as_ref()
            .map_or(cluster.spec.replicas, |s| s.replicas.max(cluster.spec.replicas));
        let plan = BackupJobPlan {
            id: &id,
            backup: &backup.name_any(),
            owner,
            destination: &backup.spec.destination,
            keep: backup.spec.keep,
            image: member_image(
                &ctx.settings.default_image,
                cluster.spec.image.as_deref(),
                cluster.spec.version.as_deref(),
            ),
            pull_policy: cluster.spec.image_pull_policy,
            tls: &tls,
            members: u32::try_from(members).unwrap_or(1),
        };
        apply(&jobs, &backup_job(&plan)).await?;
        tracing::info!(job = %name, "backup started");
        let mut status = status;
        status.phase = BackupPhase::Running;
        status.job_name = Some(name.clone());
        write_status(ctx, backup, &status).await?;
        publish(
            ctx,
            backup,
            EventType::Normal,
            "BackupStarted",
            &format!("Job {name} started"),
        )
        .await;
        return Ok(Action::requeue(RUNNING_REQUEUE));
    };
    let pods = Api::<Pod>::namespaced(client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("job-name={name}")))
        .await?
        .items;
    let outcome = job_outcome(&job, &pods);
    match &outcome {
        Outcome::Running => {
            let mut status = status;
            status.phase = BackupPhase::Running;
            status.job_name = Some(name);
            write_status(ctx, backup, &status).await?;
            Ok(Action::requeue(RUNNING_REQUEUE))
        }
        Outcome::Succeeded(r) => {
            let note = format!(
                "{} (revision {}, {} bytes, from {})",
                shown_location(backup, &r.location),
                r.revision,
                r.size,
                r.member
            );
            finish(ctx, backup, Some(&cluster), &outcome, "BackupSucceeded", &note).await
        }
        Outcome::Failed(message) => finish(ctx, backup, Some(&cluster), &outcome, "BackupFailed", message).await,
    }
}

/// Requeue after a failed backup reconcile.
pub fn backup_error_policy(_backup: Arc<EtcdBackup>, _error: &Error, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.settings.error_requeue)
}

/// Runs the `EtcdBackup` controller until `shutdown` completes.
pub async fn run_backups(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let (backups, jobs) = match ctx.settings.namespace.as_deref() {
        Some(ns) => (
            Api::<EtcdBackup>::namespaced(client.clone(), ns),
            Api::<Job>::namespaced(client.clone(), ns),
        ),
        None => (Api::<EtcdBackup>::all(client.clone()), Api::<Job>::all(client.clone())),
    };
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={FIELD_MANAGER},{LABEL_BACKUP}"));
    Controller::new(backups, watcher::Config::default())
        .owns(jobs, managed)
        .graceful_shutdown_on(shutdown)
        .run(reconcile_backup, backup_error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(backup = %object.name, "reconciled"),
                Err(e) => tracing::warn!(error = %rustcd_dial::error_chain(&e), "backup reconcile failed"),
            }
        })
        .await;
}

#[cfg(test)]
#[path = "backup_tests.rs"]
mod tests;
