//! The `EtcdCluster` custom resource: its spec and the derived root type.
//!
//! `#[derive(CustomResource)]` generates the root type [`EtcdCluster`] (apiVersion `rustcd.io/v1alpha1`)
//! from [`EtcdClusterSpec`], together with `EtcdCluster::crd()`. Validation the OpenAPI schema cannot
//! express is attached as CEL rules (`x-kubernetes-validations`) through `#[schemars(extend(...))]`;
//! [`EtcdClusterSpec::validate`] and [`EtcdClusterSpec::validate_update`] mirror those rules in Rust so the
//! operator can refuse a spec the API server would have rejected (for example one applied before the CRD
//! was updated).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::backup_spec::{BackupLocation, BackupSchedule};
use super::cluster_status::EtcdClusterStatus;

/// Smallest allowed `spec.replicas`.
pub const MIN_REPLICAS: i32 = 1;
/// Largest allowed `spec.replicas` (etcd recommends at most 7 voters; 9 leaves room for experiments).
pub const MAX_REPLICAS: i32 = 9;
/// `spec.replicas` when the field is omitted.
pub const DEFAULT_REPLICAS: i32 = 3;

/// OpenAPI `pattern` for `spec.version`: `3.5.0`, `v0.1.0`, `3.6.0-rc.1`.
pub const VERSION_PATTERN: &str = r"^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$";

/// CEL transition rule on `spec`: the storage section cannot be added, removed or changed after creation
/// (a StatefulSet's volumeClaimTemplates are immutable, and switching between emptyDir and PVCs would
/// silently drop data).
pub const STORAGE_IMMUTABLE_RULE: &str =
    "has(self.storage) == has(oldSelf.storage) && (!has(self.storage) || self.storage == oldSelf.storage)";
/// Message returned by the API server when [`STORAGE_IMMUTABLE_RULE`] fails.
pub const STORAGE_IMMUTABLE_MESSAGE: &str = "spec.storage is immutable after creation";

/// CEL rule on each TLS endpoint: a certificate comes either from a Secret or from cert-manager.
pub const TLS_EXCLUSIVE_RULE: &str = "has(self.secretName) != has(self.issuerRef)";
/// Message returned by the API server when [`TLS_EXCLUSIVE_RULE`] fails.
pub const TLS_EXCLUSIVE_MESSAGE: &str = "exactly one of secretName and issuerRef must be set";

/// CEL rule on `spec.tls`: the operator's own client certificate only makes sense with client TLS.
pub const TLS_OPERATOR_SECRET_RULE: &str = "!has(self.operatorSecretName) || has(self.client)";
/// Message returned by the API server when [`TLS_OPERATOR_SECRET_RULE`] fails.
pub const TLS_OPERATOR_SECRET_MESSAGE: &str = "operatorSecretName needs client TLS";

/// CEL transition rule on `spec`: TLS cannot be switched on, off or to other certificates after creation
/// (the members' URLs change scheme with it, and running members keep the flags they started with).
pub const TLS_IMMUTABLE_RULE: &str = "has(self.tls) == has(oldSelf.tls) && (!has(self.tls) || self.tls == oldSelf.tls)";
/// Message returned by the API server when [`TLS_IMMUTABLE_RULE`] fails.
pub const TLS_IMMUTABLE_MESSAGE: &str = "spec.tls is immutable after creation";

fn default_replicas() -> i32 {
    DEFAULT_REPLICAS
}

/// Desired state of an etcd-compatible rustcd cluster.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "rustcd.io",
    version = "v1alpha1",
    kind = "EtcdCluster",
    plural = "etcdclusters",
    shortname = "etcd",
    namespaced,
    status = "EtcdClusterStatus",
    derive = "PartialEq",
    doc = "An etcd-compatible rustcd cluster managed by the rustcd operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Replicas","type":"integer","description":"Desired number of members","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","description":"Members that are healthy voters","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Version","type":"string","description":"Version the members run","jsonPath":".status.currentVersion"}"#,
    printcolumn = r#"{"name":"Leader","type":"string","description":"Name of the Raft leader","jsonPath":".status.leader"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": STORAGE_IMMUTABLE_RULE, "message": STORAGE_IMMUTABLE_MESSAGE },
    { "rule": TLS_IMMUTABLE_RULE, "message": TLS_IMMUTABLE_MESSAGE }
]))]
pub struct EtcdClusterSpec {
    /// Number of voting members. Scaling moves one member at a time (learner first on the way up).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = MIN_REPLICAS, max = MAX_REPLICAS))]
    pub replicas: i32,

    /// Version to run, such as `3.5.0` or `v0.1.0`; selects the image tag when `image` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = VERSION_PATTERN), length(max = 64))]
    pub version: Option<String>,

    /// Full image reference; overrides the image derived from `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,

    /// The members' `imagePullPolicy`. Unset, Kubernetes' default applies: `Always` for a `:latest`
    /// (or untagged) image, `IfNotPresent` otherwise; set `IfNotPresent` or `Never` for an image
    /// loaded onto the nodes (`kind load docker-image rustcd:latest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "pull_policy_schema")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Persistent storage for each member. Absent: an emptyDir (data lives as long as the pod).
    /// Immutable after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// Compute resources of the etcd container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Scheduling and metadata overrides for the member pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodOverrides>,

    /// How strongly members are spread over nodes (pod anti-affinity on `kubernetes.io/hostname`).
    /// Ignored when `pod.affinity` is set.
    #[serde(default)]
    pub anti_affinity: AntiAffinity,

    /// TLS for client and peer traffic (client-certificate authentication on both). Immutable after
    /// creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// What happens to a member's PersistentVolumeClaim when the cluster scales down.
    #[serde(default)]
    pub pvc_retention_policy: PvcRetentionPolicy,

    /// What happens to the members' PersistentVolumeClaims when the `EtcdCluster` is deleted: `Retain`
    /// (the default) keeps them; `Delete` deletes them (through the finalizer `rustcd.io/delete-pvcs`).
    #[serde(default)]
    pub pvc_deletion_policy: PvcRetentionPolicy,

    /// Scheduled backups: an `EtcdBackup` per scheduled time, the newest `keep` kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<BackupSchedule>,

    /// How the cluster starts. Read only while the first member bootstraps; changing it later does
    /// nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap: Option<Bootstrap>,
}

/// `spec.bootstrap`: where a new cluster's data comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrap {
    /// Start from this backup (a file, or a directory or prefix ending in `/` for the newest
    /// backup in it): the first member's data directory is restored from it (`rustcd backup
    /// restore`, with the member's own name, peer URL and cluster token) before it starts; the
    /// others join it as learners, as always.
    pub from_backup: BackupLocation,
}

impl Default for EtcdClusterSpec {
    fn default() -> Self {
        Self {
            replicas: DEFAULT_REPLICAS,
            version: None,
            image: None,
            image_pull_policy: None,
            storage: None,
            resources: None,
            pod: None,
            anti_affinity: AntiAffinity::default(),
            tls: None,
            pvc_retention_policy: PvcRetentionPolicy::default(),
            pvc_deletion_policy: PvcRetentionPolicy::default(),
            backup: None,
            bootstrap: None,
        }
    }
}

/// Persistent storage: one PersistentVolumeClaim per member.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size of each member's volume, e.g. `10Gi`.
    pub size: Quantity,
    /// StorageClass of the claims; the cluster default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub storage_class_name: Option<String>,
}

/// Overrides applied to every member pod.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodOverrides {
    /// Node labels the pods must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    /// Full affinity; replaces the anti-affinity derived from `spec.antiAffinity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Extra pod annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Extra pod labels (the operator's own selector labels always win).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// PriorityClass of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// When the kubelet pulls the member image (a container's `imagePullPolicy`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Before every container start.
    Always,
    /// Only when the node does not have it.
    IfNotPresent,
    /// Never: the node must have it.
    Never,
}

/// `Option<PullPolicy>` as a structural schema (schemars' `anyOf` with a null branch is not one,
/// and the API server refuses the CRD).
fn pull_policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["Always", "IfNotPresent", "Never"],
        "nullable": true,
    })
}

impl PullPolicy {
    /// The value of a container's `imagePullPolicy`.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// Default pod anti-affinity between members of one cluster.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AntiAffinity {
    /// Spread members over nodes when possible (`preferredDuringScheduling...`).
    #[default]
    Preferred,
    /// Never put two members on one node (`requiredDuringScheduling...`).
    Required,
    /// No anti-affinity.
    #[serde(rename = "None")]
    Disabled,
}

/// Whether PersistentVolumeClaims are kept or deleted (on scale-down: a removed member's; on deletion:
/// all of the cluster's).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PvcRetentionPolicy {
    /// Keep the claim (after a scale-down, a later scale-up discards its stale data before the new
    /// member joins).
    #[default]
    Retain,
    /// Delete the claim with the member (or the cluster).
    Delete,
}

/// TLS settings. Each side that is set gets https URLs and requires client certificates signed by its
/// `ca.crt` (`--client-cert-auth`, `--peer-client-cert-auth`). A member certificate must name every
/// member's DNS name, `*.<cluster>-peer.<namespace>.svc` (and for the client side the Service,
/// `<cluster>.<namespace>.svc`), and carry both the server-auth and client-auth usages; the operator
/// asks cert-manager for exactly that.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": TLS_OPERATOR_SECRET_RULE, "message": TLS_OPERATOR_SECRET_MESSAGE }
]))]
pub struct TlsSpec {
    /// Certificate for the client endpoints (port 2379).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<TlsEndpoint>,
    /// Certificate for the peer endpoints (port 2380).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<TlsEndpoint>,
    /// Secret with the client certificate (`tls.crt`, `tls.key`) the operator presents to the members'
    /// client port. Default: with `client.issuerRef`, a certificate the operator has cert-manager
    /// issue (`<cluster>-operator-tls`, common name `root`); with `client.secretName`, that Secret's
    /// member certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub operator_secret_name: Option<String>,
}

/// Where one endpoint's certificate comes from: an existing Secret or a cert-manager issuer (exactly
/// one of the two).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    { "rule": TLS_EXCLUSIVE_RULE, "message": TLS_EXCLUSIVE_MESSAGE }
]))]
pub struct TlsEndpoint {
    /// Secret of type `kubernetes.io/tls` holding `tls.crt`, `tls.key` and `ca.crt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub secret_name: Option<String>,
    /// cert-manager issuer that signs the certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

/// Reference to a cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    /// Name of the issuer.
    #[schemars(length(max = 253))]
    pub name: String,
    /// `Issuer` (namespaced, the default) or `ClusterIssuer`.
    #[serde(default)]
    pub kind: IssuerKind,
}

/// Kind of a cert-manager issuer.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum IssuerKind {
    /// A namespaced `Issuer` in the cluster's namespace.
    #[default]
    Issuer,
    /// A cluster-scoped `ClusterIssuer`.
    ClusterIssuer,
}

/// A spec the API server would reject; each entry names the field and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid EtcdCluster spec: {}", .0.join("; "))]
pub struct SpecError(pub Vec<String>);

impl EtcdClusterSpec {
    /// Checks the rules the CRD schema and its CEL validations enforce on a single object.
    pub fn validate(&self) -> Result<(), SpecError> {
        let mut problems = Vec::new();
        if !(MIN_REPLICAS..=MAX_REPLICAS).contains(&self.replicas) {
            problems.push(format!(
                "spec.replicas: {} is outside {MIN_REPLICAS}..={MAX_REPLICAS}",
                self.replicas
            ));
        }
        if let Some(version) = &self.version {
            if !is_well_formed_version(version) {
                problems.push(format!("spec.version: {version:?} is not like 3.5.0 or v0.1.0"));
            }
        }
        if let Some(tls) = &self.tls {
            for (name, endpoint) in [("client", &tls.client), ("peer", &tls.peer)] {
                if let Some(endpoint) = endpoint {
                    if endpoint.secret_name.is_some() == endpoint.issuer_ref.is_some() {
                        problems.push(format!("spec.tls.{name}: {TLS_EXCLUSIVE_MESSAGE}"));
                    }
                }
            }
            if tls.operator_secret_name.is_some() && tls.client.is_none() {
                problems.push(format!("spec.tls: {TLS_OPERATOR_SECRET_MESSAGE}"));
            }
        }
        if let Some(backup) = &self.backup {
            if let Err(e) = crate::cluster_backups::parse_schedule(&backup.schedule) {
                problems.push(format!("spec.backup.schedule: {e}"));
            }
            if let Err(e) = backup.destination.validate("spec.backup.destination") {
                problems.push(e);
            }
        }
        if let Some(bootstrap) = &self.bootstrap {
            if let Err(e) = bootstrap.from_backup.validate("spec.bootstrap.fromBackup") {
                problems.push(e);
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SpecError(problems))
        }
    }

    /// Checks an update from `old` to `self`: [`validate`](Self::validate) plus the transition rules.
    pub fn validate_update(&self, old: &EtcdClusterSpec) -> Result<(), SpecError> {
        let mut problems = match self.validate() {
            Ok(()) => Vec::new(),
            Err(SpecError(problems)) => problems,
        };
        if self.storage != old.storage {
            problems.push(STORAGE_IMMUTABLE_MESSAGE.to_string());
        }
        if self.tls != old.tls {
            problems.push(TLS_IMMUTABLE_MESSAGE.to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(SpecError(problems))
        }
    }
}

/// `(major, minor, patch)` of a well-formed version (see [`is_well_formed_version`]).
fn version_triple(version: &str) -> Option<(u64, u64, u64)> {
    let core = version.strip_prefix('v').unwrap_or(version).split('-').next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Whether the members may go from `from` to `to` (`spec.version` before and after), by etcd's upgrade
/// rules: any patch change within a minor version, or one minor version up; never a skipped minor
/// version, a downgrade across minor versions, or another major version. `Err` says why and what to do.
pub fn version_change(from: &str, to: &str) -> Result<(), String> {
    let (Some(old), Some(new)) = (version_triple(from), version_triple(to)) else {
        return Ok(()); // the well-formedness check reports these
    };
    let step = format!("spec.version {to} from {from}");
    match (new.0.cmp(&old.0), new.1.cmp(&old.1)) {
        (std::cmp::Ordering::Equal, std::cmp::Ordering::Equal) => Ok(()),
        (std::cmp::Ordering::Equal, std::cmp::Ordering::Greater) if new.1 == old.1 + 1 => Ok(()),
        (std::cmp::Ordering::Equal, std::cmp::Ordering::Greater) => Err(format!(
            "{step} skips a minor version: upgrade one minor version at a time ({}.{}.x first)",
            old.0,
            old.1 + 1
        )),
        (std::cmp::Ordering::Equal, std::cmp::Ordering::Less) => Err(format!(
            "{step} is a downgrade across minor versions, which etcd does not support this way: \
             restore a backup taken on {}.{}.x instead",
            new.0, new.1
        )),
        _ => Err(format!("{step} changes the major version, which is not supported")),
    }
}

/// Whether `spec.version` may become `to` now: checked against `accepted` (the version last accepted,
/// `status.acceptedVersion`) with [`version_change`], and refused while the rollout of `accepted` is
/// unfinished (`updated` of `replicas` pods on the current template). Nothing to check without both.
pub fn version_update(accepted: Option<&str>, to: Option<&str>, updated: i32, replicas: i32) -> Result<(), SpecError> {
    let (Some(from), Some(to)) = (accepted, to) else {
        return Ok(());
    };
    if from != to && updated < replicas {
        return Err(SpecError(vec![format!(
            "spec.version {to}: the rollout of {from} is not finished ({updated} of {replicas} pods updated); \
             change the version again once it is"
        )]));
    }
    version_change(from, to).map_err(|p| SpecError(vec![p]))
}

/// Whether `version` matches [`VERSION_PATTERN`] (`v?MAJOR.MINOR.PATCH(-PRERELEASE)?`).
pub fn is_well_formed_version(version: &str) -> bool {
    let version = version.strip_prefix('v').unwrap_or(version);
    let (core, pre) = match version.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (version, None),
    };
    let numbers_ok = {
        let parts: Vec<&str> = core.split('.').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    };
    let pre_ok =
        pre.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    numbers_ok && pre_ok && version.len() <= 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_format() {
        for ok in ["3.5.0", "v0.1.0", "3.6.0-rc.1", "v10.20.30-alpha-1"] {
            assert!(is_well_formed_version(ok), "{ok} should be accepted");
        }
        for bad in [
            "",
            "3.5",
            "v3",
            "3.5.0.1",
            "latest",
            "3.5.0-",
            "vv3.5.0",
            "3.x.0",
            "3.5.0+meta",
            " 3.5.0",
        ] {
            assert!(!is_well_formed_version(bad), "{bad} should be rejected");
        }
    }

    #[test]
    fn defaults_when_fields_are_omitted() {
        let spec: EtcdClusterSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, EtcdClusterSpec::default());
        assert_eq!(spec.replicas, 3);
        assert_eq!(spec.anti_affinity, AntiAffinity::Preferred);
        assert_eq!(spec.pvc_retention_policy, PvcRetentionPolicy::Retain);
        assert!(spec.validate().is_ok());
    }

    #[test]
    fn wire_names() {
        let spec: EtcdClusterSpec = serde_json::from_value(serde_json::json!({
            "replicas": 5,
            "version": "3.5.0",
            "storage": {"size": "10Gi", "storageClassName": "fast"},
            "antiAffinity": "None",
            "pvcRetentionPolicy": "Delete",
            "pod": {"priorityClassName": "high", "nodeSelector": {"disk": "ssd"}},
            "tls": {"peer": {"issuerRef": {"name": "ca", "kind": "ClusterIssuer"}}, "client": {"secretName": "c"}}
        }))
        .unwrap();
        assert_eq!(spec.anti_affinity, AntiAffinity::Disabled);
        assert_eq!(spec.pvc_retention_policy, PvcRetentionPolicy::Delete);
        let storage = spec.storage.as_ref().unwrap();
        assert_eq!(storage.size, Quantity("10Gi".into()));
        let peer = spec.tls.as_ref().unwrap().peer.as_ref().unwrap();
        assert_eq!(peer.issuer_ref.as_ref().unwrap().kind, IssuerKind::ClusterIssuer);
        assert!(spec.validate().is_ok());
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(back["antiAffinity"], "None");
        assert_eq!(back["storage"]["storageClassName"], "fast");
        assert_eq!(back["pod"]["priorityClassName"], "high");
    }

    #[test]
    fn validate_reports_every_problem() {
        let spec = EtcdClusterSpec {
            replicas: 10,
            version: Some("latest".into()),
            tls: Some(TlsSpec {
                client: Some(TlsEndpoint {
                    secret_name: Some("s".into()),
                    issuer_ref: Some(IssuerRef {
                        name: "i".into(),
                        kind: IssuerKind::Issuer,
                    }),
                }),
                peer: Some(TlsEndpoint {
                    secret_name: Some("p".into()),
                    issuer_ref: None,
                }),
                operator_secret_name: None,
            }),
            ..EtcdClusterSpec::default()
        };
        let SpecError(problems) = spec.validate().unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("spec.replicas"));
        assert!(problems[1].contains("spec.version"));
        assert!(problems[2].contains("spec.tls.client"));
        // An endpoint with neither source, and an operator certificate without client TLS.
        let spec = EtcdClusterSpec {
            tls: Some(TlsSpec {
                client: None,
                peer: Some(TlsEndpoint::default()),
                operator_secret_name: Some("op".into()),
            }),
            ..EtcdClusterSpec::default()
        };
        let SpecError(problems) = spec.validate().unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("spec.tls.peer: exactly one of"), "{problems:?}");
        assert!(
            problems[1].contains("operatorSecretName needs client TLS"),
            "{problems:?}"
        );
        assert!(EtcdClusterSpec {
            replicas: 0,
            ..Default::default()
        }
        .validate()
        .is_err());
        assert!(EtcdClusterSpec {
            replicas: 9,
            ..Default::default()
        }
        .validate()
        .is_ok());
    }

    #[test]
    fn storage_is_immutable_on_update() {
        let with = |size: &str| EtcdClusterSpec {
            storage: Some(StorageSpec {
                size: Quantity(size.into()),
                storage_class_name: None,
            }),
            ..EtcdClusterSpec::default()
        };
        let none = EtcdClusterSpec::default();
        assert!(with("1Gi").validate_update(&with("1Gi")).is_ok());
        assert!(with("2Gi").validate_update(&with("1Gi")).is_err());
        assert!(none.validate_update(&with("1Gi")).is_err());
        assert!(with("1Gi").validate_update(&none).is_err());
        let scaled = EtcdClusterSpec {
            replicas: 5,
            ..with("1Gi")
        };
        assert!(scaled.validate_update(&with("1Gi")).is_ok());
    }

    #[test]
    fn tls_is_immutable_on_update() {
        let with = |secret: &str| EtcdClusterSpec {
            tls: Some(TlsSpec {
                client: Some(TlsEndpoint {
                    secret_name: Some(secret.into()),
                    issuer_ref: None,
                }),
                ..TlsSpec::default()
            }),
            ..EtcdClusterSpec::default()
        };
        let none = EtcdClusterSpec::default();
        assert!(with("a").validate_update(&with("a")).is_ok());
        let e = with("b").validate_update(&with("a")).unwrap_err();
        assert!(e.to_string().contains("spec.tls is immutable after creation"), "{e}");
        assert!(none.validate_update(&with("a")).is_err());
        assert!(with("a").validate_update(&none).is_err());
    }
}

#[cfg(test)]
mod version_tests {
    use super::{version_change, version_update};

    #[test]
    fn a_new_version_waits_for_the_previous_rollout() {
        assert!(
            version_update(None, Some("3.6.0"), 0, 3).is_ok(),
            "nothing accepted yet"
        );
        assert!(
            version_update(Some("3.5.0"), None, 0, 3).is_ok(),
            "no version asked for"
        );
        assert!(
            version_update(Some("3.5.0"), Some("3.5.0"), 1, 3).is_ok(),
            "the rollout itself"
        );
        assert!(version_update(Some("3.5.0"), Some("3.6.0"), 3, 3).is_ok());
        let busy = version_update(Some("3.5.0"), Some("3.6.0"), 1, 3)
            .unwrap_err()
            .to_string();
        assert!(busy.contains("rollout of 3.5.0 is not finished (1 of 3"), "{busy}");
        let skip = version_update(Some("3.4.0"), Some("3.6.0"), 3, 3)
            .unwrap_err()
            .to_string();
        assert!(skip.contains("skips a minor version"), "{skip}");
    }

    #[test]
    fn upgrades_follow_etcds_rules() {
        for (from, to) in [
            ("3.5.0", "3.5.9"),
            ("3.5.9", "3.5.1"),
            ("v0.1.0", "v0.2.0"),
            ("3.5.0", "3.6.0-rc.1"),
            ("3.5.0", "3.5.0"),
        ] {
            assert_eq!(version_change(from, to), Ok(()), "{from} -> {to}");
        }
        let skip = version_change("3.4.20", "3.6.0").unwrap_err();
        assert!(
            skip.contains("skips a minor version") && skip.contains("3.5.x first"),
            "{skip}"
        );
        let down = version_change("3.5.0", "3.4.9").unwrap_err();
        assert!(down.contains("downgrade across minor versions"), "{down}");
        let major = version_change("3.5.0", "4.0.0").unwrap_err();
        assert!(major.contains("major version"), "{major}");
        assert_eq!(
            version_change("latest", "3.5.0"),
            Ok(()),
            "malformed versions are reported elsewhere"
        );
    }
}
