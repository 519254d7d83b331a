//! An `EtcdCluster`'s side of backups: `spec.backup`'s schedule (an `EtcdBackup` per scheduled time,
//! owned by the cluster), retention of the scheduled ones, and `status.backup`, the summary of the
//! cluster's backups.
//!
//! The decisions are pure ([`decide`], [`prune`], [`summarize`]); [`sync`] does the I/O. A schedule
//! only runs while the cluster has a cluster ID (it bootstrapped); missed times are not replayed:
//! when several have passed (the operator was down), one backup is taken for the latest, as a
//! CronJob with `startingDeadlineSeconds` unset would.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::chrono::{DateTime, SecondsFormat, Utc};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backup_spec::{BackupPhase, BackupSchedule, EtcdBackup, EtcdBackupSpec, CONDITION_FAILED};
use crate::error::Error;
use crate::names::{Identity, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY};

/// Annotation on a scheduled `EtcdBackup`: the schedule time it was created for (RFC 3339).
pub const SCHEDULED_AT_ANNOTATION: &str = "rustcd.io/scheduled-at";
/// Label on a scheduled `EtcdBackup`: the cluster whose schedule created it.
pub const LABEL_SCHEDULE_OF: &str = "rustcd.io/schedule-of";

/// `status.backup`: the newest successful and failed backups of the cluster, and the next
/// scheduled time.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupSummary {
    /// The newest successful backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful: Option<BackupRecord>,
    /// The newest failed backup, when it is newer than the newest successful one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed: Option<BackupRecord>,
    /// When `spec.backup` takes the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_scheduled: Option<Time>,
}

/// One backup, as summarized in the cluster's status.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRecord {
    /// The `EtcdBackup`.
    pub name: String,
    /// When it finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Where it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// Bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    /// Revision of the key space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Parses a five-field cron expression (croner's POSIX syntax, with `@hourly`-style aliases).
pub fn parse_schedule(schedule: &str) -> Result<Cron, String> {
    if schedule.split_whitespace().count() > 5 {
        return Err(format!(
            "{schedule:?}: a schedule has five fields (minute hour day month weekday)"
        ));
    }
    Cron::from_str(schedule).map_err(|e| format!("{schedule:?}: {e}"))
}

/// What the schedule asks for now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Take a backup for this scheduled time.
    pub take: Option<DateTime<Utc>>,
    /// The next scheduled time after now.
    pub next: Option<DateTime<Utc>>,
}

/// Given the last scheduled time a backup was created for (else the time the schedule started
/// counting from), whether one is due at `now`, and when the next is. Pure.
pub fn decide(cron: &Cron, last: Option<DateTime<Utc>>, since: DateTime<Utc>, now: DateTime<Utc>) -> Decision {
    let anchor = last.unwrap_or(since);
    let due = cron
        .find_next_occurrence(&anchor, false)
        .ok()
        .filter(|t| *t <= now)
        .and_then(|_| cron.find_previous_occurrence(&now, true).ok())
        .filter(|t| *t > anchor);
    Decision {
        take: due,
        next: cron.find_next_occurrence(&now, false).ok(),
    }
}

/// The name of the scheduled backup of `cluster` for time `at`: `<cluster>-<yyyymmddhhmm>`.
pub fn scheduled_name(cluster: &str, at: DateTime<Utc>) -> String {
    format!("{cluster}-{}", at.format("%Y%m%d%H%M"))
}

/// A scheduled backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// Its name.
    pub name: String,
    /// The time it was scheduled for.
    pub at: DateTime<Utc>,
    /// Whether it finished.
    pub finished: bool,
}

/// The scheduled backups to delete so that the newest `keep` remain; never one still running. Pure.
pub fn prune(mut backups: Vec<Scheduled>, keep: u32) -> Vec<String> {
    backups.sort_by_key(|b| b.at);
    let keep = usize::try_from(keep).unwrap_or(usize::MAX).max(1);
    let excess = backups.len().saturating_sub(keep);
    backups
        .into_iter()
        .take(excess)
        .filter(|b| b.finished)
        .map(|b| b.name)
        .collect()
}

fn finished_time(b: &EtcdBackup) -> Option<DateTime<Utc>> {
    b.status.as_ref()?.completion_time.as_ref().map(|t| t.0)
}

/// The summary of `backups` (all of one cluster's). Pure.
pub fn summarize(backups: &[EtcdBackup], next: Option<DateTime<Utc>>) -> Option<BackupSummary> {
    let newest = |phase: BackupPhase| {
        backups
            .iter()
            .filter(|b| b.status.as_ref().is_some_and(|s| s.phase == phase))
            .max_by_key(|b| finished_time(b))
    };
    let ok = newest(BackupPhase::Succeeded);
    let failed = newest(BackupPhase::Failed).filter(|f| ok.is_none_or(|o| finished_time(f) > finished_time(o)));
    let record = |b: &EtcdBackup| {
        let s = b.status.clone().unwrap_or_default();
        BackupRecord {
            name: b.name_any(),
            time: s.completion_time.clone(),
            location: s.location.clone(),
            size: s.size,
            revision: s.revision,
            message: s
                .conditions
                .iter()
                .find(|c| c.type_ == CONDITION_FAILED && c.status == "True")
                .map(|c| c.message.clone()),
        }
    };
    let summary = BackupSummary {
        last_successful: ok.map(record),
        last_failed: failed.map(record),
        next_scheduled: next.map(Time),
    };
    (summary != BackupSummary::default()).then_some(summary)
}

/// The scheduled `EtcdBackup` for `at`, owned by the cluster.
pub fn scheduled_backup(id: &Identity, schedule: &BackupSchedule, at: DateTime<Utc>) -> EtcdBackup {
    let mut b = EtcdBackup::new(
        &scheduled_name(&id.name, at),
        EtcdBackupSpec {
            cluster_name: id.name.clone(),
            destination: schedule.destination.clone(),
            keep: schedule.keep,
        },
    );
    b.metadata = ObjectMeta {
        name: b.metadata.name.clone(),
        namespace: Some(id.namespace.clone()),
        labels: Some(BTreeMap::from([
            (LABEL_INSTANCE.to_string(), id.name.clone()),
            (LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string()),
            (LABEL_SCHEDULE_OF.to_string(), id.name.clone()),
        ])),
        annotations: Some(BTreeMap::from([(
            SCHEDULED_AT_ANNOTATION.to_string(),
            at.to_rfc3339_opts(SecondsFormat::Secs, true),
        )])),
        owner_references: Some(vec![id.owner.clone()]),
        ..ObjectMeta::default()
    };
    b
}

fn scheduled_at(b: &EtcdBackup) -> Option<DateTime<Utc>> {
    let s = b.annotations().get(SCHEDULED_AT_ANNOTATION)?;
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// Runs the schedule and retention for the cluster, and returns its `status.backup` and how soon
/// the schedule wants the next reconcile. `since` is when the schedule starts counting (the
/// cluster's creation).
pub async fn sync(
    client: &Client,
    id: &Identity,
    schedule: Option<&BackupSchedule>,
    bootstrapped: bool,
    since: DateTime<Utc>,
) -> Result<(Option<BackupSummary>, Option<Duration>), Error> {
    let api = Api::<EtcdBackup>::namespaced(client.clone(), &id.namespace);
    let all: Vec<EtcdBackup> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|b| b.spec.cluster_name == id.name)
        .collect();
    let now = Utc::now();
    let mut next = None;
    if let Some(schedule) = schedule.filter(|s| !s.suspend) {
        let cron = parse_schedule(&schedule.schedule).map_err(Error::InvalidObject)?;
        let ours: Vec<&EtcdBackup> = all
            .iter()
            .filter(|b| b.labels().get(LABEL_SCHEDULE_OF) == Some(&id.name))
            .collect();
        let last = ours.iter().filter_map(|b| scheduled_at(b)).max();
        let decision = decide(&cron, last, since, now);
        if let (Some(at), true) = (decision.take, bootstrapped) {
            let backup = scheduled_backup(id, schedule, at);
            match api.create(&PostParams::default(), &backup).await {
                Ok(_) => tracing::info!(backup = %backup.name_any(), "scheduled backup created"),
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        let scheduled: Vec<Scheduled> = ours
            .iter()
            .filter_map(|b| {
                Some(Scheduled {
                    name: b.name_any(),
                    at: scheduled_at(b)?,
                    finished: b.status.as_ref().is_some_and(|s| s.phase.is_finished()),
                })
            })
            .collect();
        for name in prune(scheduled, schedule.keep) {
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => tracing::info!(backup = %name, "old scheduled backup deleted"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        next = decision.next;
    }
    let wait = next
        .and_then(|t| (t - now).to_std().ok())
        .map(|d| d + Duration::from_secs(1));
    Ok((summarize(&all, next), wait))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 4, h, m, 0).unwrap()
    }

    #[test]
    fn schedules_parse_with_five_fields() {
        assert!(parse_schedule("*/5 * * * *").is_ok());
        assert!(parse_schedule("@hourly").is_ok());
        assert!(parse_schedule("0 0 * * * *").is_err());
        assert!(parse_schedule("every hour").is_err());
        assert!(parse_schedule("61 * * * *").is_err());
    }

    #[test]
    fn a_backup_is_due_once_per_passed_time_and_missed_times_collapse() {
        let every_10 = parse_schedule("*/10 * * * *").unwrap();
        // Created 12:03: nothing due at 12:05; next at 12:10.
        let d = decide(&every_10, None, t(12, 3), t(12, 5));
        assert_eq!(
            d,
            Decision {
                take: None,
                next: Some(t(12, 10))
            }
        );
        // At 12:10:30 the 12:10 one is due.
        let now = t(12, 10) + k8s_openapi::chrono::Duration::seconds(30);
        assert_eq!(decide(&every_10, None, t(12, 3), now).take, Some(t(12, 10)));
        // Once created, not again.
        assert_eq!(decide(&every_10, Some(t(12, 10)), t(12, 3), now).take, None);
        // The operator was down from 12:10 to 12:45: one backup, for 12:40.
        let d = decide(&every_10, Some(t(12, 10)), t(12, 3), t(12, 45));
        assert_eq!(
            d,
            Decision {
                take: Some(t(12, 40)),
                next: Some(t(12, 50))
            }
        );
        // Exactly on the time.
        assert_eq!(
            decide(&every_10, Some(t(12, 10)), t(12, 3), t(12, 20)).take,
            Some(t(12, 20))
        );
    }

    #[test]
    fn retention_keeps_the_newest_and_never_deletes_a_running_backup() {
        let s = |name: &str, m: u32, finished: bool| Scheduled {
            name: name.into(),
            at: t(12, m),
            finished,
        };
        let all = vec![s("c", 30, true), s("a", 10, true), s("b", 20, false), s("d", 40, true)];
        assert_eq!(prune(all.clone(), 2), vec!["a".to_string()]);
        assert_eq!(prune(all.clone(), 1), vec!["a".to_string(), "c".to_string()]);
        assert!(prune(all.clone(), 4).is_empty());
        assert_eq!(prune(all, 0), vec!["a".to_string(), "c".to_string()]);
        assert_eq!(scheduled_name("demo", t(7, 5)), "demo-202612040705");
    }
}
