//! The `EtcdCluster` status: observed members, the scale subresource fields and kstatus conditions.
//!
//! Conditions are `metav1.Condition`s in a list keyed by `type`. The operator's own types are
//! `Available`, `Progressing` and `Degraded` (the Deployment-style convention). kstatus's generic rules
//! for custom resources read `status.observedGeneration` and the abnormal-true conditions `Reconciling`
//! and `Stalled`; to be kstatus-compatible the reconcile loop sets `observedGeneration` and mirrors
//! `Progressing` into [`CONDITION_RECONCILING`] and an unrecoverable `Degraded` into
//! [`CONDITION_STALLED`] (both are removed or `False` when the cluster is settled).
//! [`set_condition`] updates a list the way `meta.SetStatusCondition` does in Go:
//! `lastTransitionTime` only moves when the status flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::cluster_backups::BackupSummary;
use crate::spec::{EtcdClusterSpec, StorageSpec, TlsSpec};

/// Condition type: the cluster serves requests (it has a leader and a quorum of healthy voters).
pub const CONDITION_AVAILABLE: &str = "Available";
/// Condition type: the operator is moving the cluster toward its spec.
pub const CONDITION_PROGRESSING: &str = "Progressing";
/// Condition type: the cluster serves but not as specified (unhealthy members, lost data, no quorum).
pub const CONDITION_DEGRADED: &str = "Degraded";
/// kstatus condition: `True` while the operator is still moving toward the spec (status InProgress).
pub const CONDITION_RECONCILING: &str = "Reconciling";
/// kstatus condition: `True` when progress stopped and needs intervention (status Failed).
pub const CONDITION_STALLED: &str = "Stalled";

/// Coarse lifecycle phase, for humans; automation should read the conditions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Accepted, nothing created yet.
    #[default]
    Pending,
    /// The first member is being bootstrapped.
    Creating,
    /// All members are healthy voters and the membership matches the spec.
    Running,
    /// Members are being added or removed.
    Scaling,
    /// The cluster serves but some members are unhealthy or lost their data.
    Degraded,
    /// The cluster lost quorum or cannot be reconciled without intervention.
    Failed,
}

/// Observed state of an `EtcdCluster`, written by the operator through the status subresource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EtcdClusterStatus {
    /// Coarse lifecycle phase. Not optional: an optional enum would make the schema non-structural.
    #[serde(default)]
    pub phase: Phase,
    /// Number of member pods that exist (the scale subresource's `status.replicas`).
    #[serde(default)]
    pub replicas: i32,
    /// Number of members that are healthy voters.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `spec.version` as last accepted: what the pod template runs; a change of `spec.version` is
    /// checked against it (etcd's upgrade rules, see [`crate::spec::version_change`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_version: Option<String>,
    /// Number of member pods running the current pod template (a rolling update is done when this
    /// equals `replicas`).
    #[serde(default)]
    pub updated_replicas: i32,
    /// Members as reported by the cluster's MemberList.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberStatus>,
    /// Name of the current Raft leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Cluster ID in hex; set once the first member has bootstrapped.
    #[serde(default, rename = "clusterID", skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Version the members report (the lowest when they differ).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions: `Available`, `Progressing`, `Degraded` (and kstatus's `Reconciling`, `Stalled`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Label selector of the member pods, in string form (the scale subresource's `labelSelectorPath`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Per ordinal, the volume a member started on: the evidence the operator uses to tell that a
    /// member's data is gone (see `controller::volumes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["ordinal"]))]
    pub member_volumes: Vec<VolumeRecord>,
    /// The parts of the spec that cannot change after creation, as the cluster was created with them:
    /// what the operator checks the CRD's transition rules against, also where the API server does
    /// not run them (Kubernetes before 1.25).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_with: Option<CreatedWith>,
    /// The newest successful and failed backups and the next scheduled one (see
    /// `controller::cluster_backups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSummary>,
}

/// `spec.storage` and `spec.tls` as the cluster was created with them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedWith {
    /// `spec.storage` (absent: emptyDir).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// `spec.tls` (absent: plain http).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

impl CreatedWith {
    /// The record of `spec`.
    pub fn of(spec: &EtcdClusterSpec) -> CreatedWith {
        CreatedWith {
            storage: spec.storage.clone(),
            tls: spec.tls.clone(),
        }
    }

    /// `spec` with these creation-time fields: the "old" side of the transition rules.
    pub fn applied_to(&self, spec: &EtcdClusterSpec) -> EtcdClusterSpec {
        EtcdClusterSpec {
            storage: self.storage.clone(),
            tls: self.tls.clone(),
            ..spec.clone()
        }
    }
}

/// The volume a started member's data lives on.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// StatefulSet ordinal of the member's pod.
    pub ordinal: u32,
    /// Member ID in hex.
    pub member_id: String,
    /// UID of the PersistentVolumeClaim (with `spec.storage`) or of the pod (emptyDir) the member was
    /// first seen running on.
    #[serde(rename = "volumeUID")]
    pub volume_uid: String,
}

/// One member as reported by MemberList, plus the health the operator measured.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Member ID in hex (as `etcdctl member list -w table` prints it).
    pub id: String,
    /// Member name; empty until the member has started and published its name.
    #[serde(default)]
    #[schemars(transform = without_default)]
    pub name: String,
    /// First peer URL.
    #[serde(default, rename = "peerURL")]
    #[schemars(transform = without_default)]
    pub peer_url: String,
    /// Client URLs; empty until the member has started.
    #[serde(default, rename = "clientURLs", skip_serializing_if = "Vec::is_empty")]
    pub client_urls: Vec<String>,
    /// Whether the member is a non-voting learner.
    #[serde(default)]
    pub is_learner: bool,
    /// Whether the member answered its status/health check.
    #[serde(default)]
    pub healthy: bool,
}

/// Drops the `default` schemars derives from `#[serde(default)]` on a `String`: Kubernetes 1.20's CRD
/// validation takes `default: ''` for null and refuses the whole CRD ("must be of type string").
fn without_default(schema: &mut schemars::Schema) {
    schema.remove("default");
}

impl MemberStatus {
    /// Formats a member ID the way `status.members[].id` stores it.
    pub fn format_id(id: u64) -> String {
        format!("{id:x}")
    }

    /// Parses `id` back to a member ID.
    pub fn parsed_id(&self) -> Option<u64> {
        u64::from_str_radix(&self.id, 16).ok()
    }
}

/// Builds a condition for `set_condition`.
pub fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.to_string(),
        status: if status { "True" } else { "False" }.to_string(),
        reason: reason.to_string(),
        message: message.into(),
        observed_generation,
        last_transition_time: now,
    }
}

/// Inserts or updates the condition of `new.type_`, keeping the old `lastTransitionTime` when the status
/// did not change. Returns whether anything changed (so the caller can skip a status write).
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) => {
            let transition_time = if existing.status == new.status {
                existing.last_transition_time.clone()
            } else {
                new.last_transition_time.clone()
            };
            let updated = Condition {
                last_transition_time: transition_time,
                ..new
            };
            let changed = *existing != updated;
            *existing = updated;
            changed
        }
    }
}

/// The condition of type `type_`, if present.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::{TimeZone, Utc};

    fn at(secs: i64) -> Time {
        Time(Utc.timestamp_opt(secs, 0).unwrap())
    }

    #[test]
    fn set_condition_keeps_transition_time_until_status_flips() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            condition(CONDITION_AVAILABLE, true, "Quorum", "ok", Some(1), at(10))
        ));
        // Same status, new message: updated, transition time kept.
        assert!(set_condition(
            &mut conditions,
            condition(CONDITION_AVAILABLE, true, "Quorum", "3/3", Some(2), at(20))
        ));
        let c = find_condition(&conditions, CONDITION_AVAILABLE).unwrap();
        assert_eq!(
            (c.message.as_str(), c.observed_generation, &c.last_transition_time),
            ("3/3", Some(2), &at(10))
        );
        // Identical: no change reported.
        assert!(!set_condition(
            &mut conditions,
            condition(CONDITION_AVAILABLE, true, "Quorum", "3/3", Some(2), at(30))
        ));
        // Flip: transition time moves.
        assert!(set_condition(
            &mut conditions,
            condition(CONDITION_AVAILABLE, false, "NoQuorum", "1/3", Some(2), at(40))
        ));
        assert_eq!(
            find_condition(&conditions, CONDITION_AVAILABLE)
                .unwrap()
                .last_transition_time,
            at(40)
        );
        assert!(set_condition(
            &mut conditions,
            condition(CONDITION_DEGRADED, true, "NoQuorum", "1/3", Some(2), at(40))
        ));
        assert_eq!(conditions.len(), 2);
        assert!(find_condition(&conditions, CONDITION_PROGRESSING).is_none());
    }

    #[test]
    fn status_wire_names() {
        let status = EtcdClusterStatus {
            phase: Phase::Running,
            replicas: 3,
            ready_replicas: 3,
            cluster_id: Some("cdf818194e3a8c32".into()),
            members: vec![MemberStatus {
                id: MemberStatus::format_id(0x8e9e05c52164694d),
                name: "demo-0".into(),
                peer_url: "http://demo-0.demo:2380".into(),
                client_urls: vec!["http://demo-0.demo:2379".into()],
                is_learner: false,
                healthy: true,
            }],
            selector: Some("app.kubernetes.io/instance=demo".into()),
            ..EtcdClusterStatus::default()
        };
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["clusterID"], "cdf818194e3a8c32");
        assert_eq!(json["readyReplicas"], 3);
        assert_eq!(json["members"][0]["id"], "8e9e05c52164694d");
        assert_eq!(json["members"][0]["peerURL"], "http://demo-0.demo:2380");
        assert_eq!(json["members"][0]["clientURLs"][0], "http://demo-0.demo:2379");
        assert_eq!(json["members"][0]["isLearner"], false);
        assert_eq!(status.members[0].parsed_id(), Some(0x8e9e05c52164694d));
        let back: EtcdClusterStatus = serde_json::from_value(json).unwrap();
        assert_eq!(back, status);
    }
}
