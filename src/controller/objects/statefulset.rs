//! The member StatefulSet, built purely from the spec, the identity and the membership to start with.
//!
//! `updateStrategy` is `OnDelete`: the template carries `--initial-cluster` and
//! `--initial-cluster-state`, which change with every membership step, and a rolling restart of every
//! member for each step would be both slow and risky. A template change therefore only reaches pods
//! created afterwards (a new ordinal, or a pod the operator deleted to give a member a fresh volume);
//! running members ignore those flags anyway once their data directory exists.
//!
//! Probes go to the plain-HTTP metrics port (`--listen-metrics-urls`), which needs no client certificate
//! even when the client port requires one. TLS (see [`crate::tls`]) adds secret volumes and
//! the certificate flags; the template names the Secrets only, so a rotated certificate changes nothing
//! here.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodAffinityTerm,
    PodAntiAffinity, PodSpec, PodTemplateSpec, Probe, Volume, VolumeMount, VolumeResourceRequirements,
    WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::backup_job::{s3_env, source_location, SOURCE_MOUNT};
use crate::names::{
    Identity, CLIENT_PORT, CONTAINER_NAME, DATA_DIR, DATA_MOUNT_PATH, DATA_VOLUME, METRICS_PORT, PEER_PORT,
};
use crate::spec::{AntiAffinity, EtcdClusterSpec, StorageSpec};
use crate::tls::TlsLayout;

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InitialClusterState {
    /// The first member of a new cluster.
    New,
    /// A member joining a running cluster (every member after the first).
    Existing,
}

impl InitialClusterState {
    fn flag_value(self) -> &'static str {
        match self {
            InitialClusterState::New => "new",
            InitialClusterState::Existing => "existing",
        }
    }
}

/// The membership a pod created from the template starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialCluster {
    /// `--initial-cluster-state`.
    pub state: InitialClusterState,
    /// Ordinals of the members `--initial-cluster` lists (the current MemberList, including a learner
    /// that was just added).
    pub ordinals: Vec<u32>,
}

impl InitialCluster {
    /// The membership of a new one-member cluster.
    pub fn bootstrap() -> Self {
        InitialCluster {
            state: InitialClusterState::New,
            ordinals: vec![0],
        }
    }

    /// `--initial-cluster` value: `<pod>=<peer url>` for each ordinal.
    pub fn initial_cluster(&self, id: &Identity) -> String {
        self.ordinals
            .iter()
            .map(|k| format!("{}={}", id.pod_name(*k), id.peer_url(*k)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Reads the membership back from a StatefulSet this module built (so a reconcile that cannot list
    /// members keeps what the template says instead of guessing).
    pub fn from_statefulset(id: &Identity, sts: &StatefulSet) -> Option<InitialCluster> {
        let args = sts
            .spec
            .as_ref()?
            .template
            .spec
            .as_ref()?
            .containers
            .iter()
            .find(|c| c.name == CONTAINER_NAME)?
            .args
            .as_ref()?;
        let value = |flag: &str| args.iter().find_map(|a| a.strip_prefix(flag)?.strip_prefix('='));
        let state = match value("--initial-cluster-state")? {
            "new" => InitialClusterState::New,
            _ => InitialClusterState::Existing,
        };
        let ordinals = value("--initial-cluster")?
            .split(',')
            .filter_map(|entry| id.ordinal_of(entry.split('=').next()?))
            .collect();
        Some(InitialCluster { state, ordinals })
    }
}

/// What the operator wants of the StatefulSet besides the spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatefulSetPlan {
    /// `spec.replicas`.
    pub replicas: u32,
    /// InitialCluster flags of the pod template.
    pub membership: InitialCluster,
    /// The member image (see [`crate::names::member_image`]).
    pub image: String,
}

/// The container's arguments.
pub fn member_args(id: &Identity, membership: &InitialCluster, tls: &TlsLayout) -> Vec<String> {
    let mut args = vec![
        "--name=$(POD_NAME)".to_string(),
        format!("--data-dir={DATA_DIR}"),
        format!("--listen-peer-urls={}://0.0.0.0:{PEER_PORT}", id.peer_scheme()),
        format!("--listen-client-urls={}://0.0.0.0:{CLIENT_PORT}", id.client_scheme()),
        format!("--listen-metrics-urls=http://0.0.0.0:{METRICS_PORT}"),
        format!("--initial-advertise-peer-urls={}", id.peer_url_template()),
        format!("--advertise-client-urls={}", id.client_url_template()),
        format!("--initial-cluster={}", membership.initial_cluster(id)),
        format!("--initial-cluster-state={}", membership.state.flag_value()),
        format!("--initial-cluster-token={}", id.cluster_token()),
    ];
    args.extend(tls.member_args());
    args
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn http_probe(path: &str, period: i32, failures: i32, initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::Int(METRICS_PORT),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn container(id: &Identity, spec: &EtcdClusterSpec, plan: &StatefulSetPlan, tls: &TlsLayout) -> Container {
    let port = |name: &str, port: i32| ContainerPort {
        name: Some(name.to_string()),
        container_port: port,
        ..ContainerPort::default()
    };
    Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(plan.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(member_args(id, &plan.membership, tls)),
        env: Some(vec![
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
        ]),
        ports: Some(vec![
            port("client", CLIENT_PORT),
            port("peer", PEER_PORT),
            port("metrics", METRICS_PORT),
        ]),
        // Liveness is lenient (a member catching up from a snapshot is alive); readiness gates traffic.
        liveness_probe: Some(http_probe("/livez", 10, 6, 10)),
        readiness_probe: Some(http_probe("/readyz", 5, 3, 0)),
        resources: spec.resources.clone(),
        volume_mounts: Some(
            [VolumeMount {
                name: DATA_VOLUME.to_string(),
                mount_path: DATA_MOUNT_PATH.to_string(),
                ..VolumeMount::default()
            }]
            .into_iter()
            .chain(tls.mounts())
            .collect(),
        ),
        ..Container::default()
    }
}

/// Pod anti-affinity between members of one cluster, as `spec.antiAffinity` asks.
pub fn default_affinity(id: &Identity, anti_affinity: AntiAffinity) -> Option<Affinity> {
    let term = PodAffinityTerm {
        label_selector: Some(LabelSelector {
            match_labels: Some(id.selector_labels()),
            ..LabelSelector::default()
        }),
        topology_key: "kubernetes.io/hostname".to_string(),
        ..PodAffinityTerm::default()
    };
    let anti = match anti_affinity {
        AntiAffinity::Disabled => return None,
        AntiAffinity::Preferred => PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: term,
            }]),
            ..PodAntiAffinity::default()
        },
        AntiAffinity::Required => PodAntiAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![term]),
            ..PodAntiAffinity::default()
        },
    };
    Some(Affinity {
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    })
}

fn volume_claim(storage: &StorageSpec) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), storage.size.clone())])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// Pod (and pod template) annotation: [`template_hash`] of the template the pod was created from. A pod
/// whose value differs from the StatefulSet's template is outdated and gets rolled.
pub const TEMPLATE_HASH_ANNOTATION: &str = "rustcd.io/template-hash";

/// Flags that matter only at a member's first start and change with every membership change: left out
/// of [`template_hash`], so scaling never rolls the running members.
const MEMBERSHIP_FLAGS: [&str; 2] = ["--initial-cluster=", "--initial-cluster-state="];

/// A hash of what a member pod runs: the template as JSON without the membership flags and without
/// its own annotation (64-bit FNV-1a, hex; stable across builds and operator versions).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let mut t = template.clone();
    if let Some(meta) = t.metadata.as_mut() {
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.remove(TEMPLATE_HASH_ANNOTATION);
        }
        if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            meta.annotations = None;
        }
    }
    for c in t.spec.iter_mut().flat_map(|s| s.containers.iter_mut()) {
        if let Some(args) = c.args.as_mut() {
            args.retain(|a| !MEMBERSHIP_FLAGS.iter().any(|f| a.starts_with(f)));
        }
    }
    // The restore init container and its source exist only while the first member bootstraps:
    // their going away must not roll that member.
    if let Some(pod) = t.spec.as_mut() {
        if let Some(init) = pod.init_containers.as_mut() {
            init.retain(|c| c.name != RESTORE_CONTAINER);
        }
        if pod.init_containers.as_ref().is_some_and(Vec::is_empty) {
            pod.init_containers = None;
        }
        if let Some(volumes) = pod.volumes.as_mut() {
            volumes.retain(|v| v.name != SOURCE_VOLUME);
        }
        if pod.volumes.as_ref().is_some_and(Vec::is_empty) {
            pod.volumes = None;
        }
    }
    let json = serde_json::to_vec(&t).unwrap_or_default();
    format!("{:016x}", super::fnv1a(&json))
}

fn pod_template(id: &Identity, spec: &EtcdClusterSpec, plan: &StatefulSetPlan) -> PodTemplateSpec {
    let mut template = unhashed_pod_template(id, spec, plan);
    let hash = template_hash(&template);
    if let Some(meta) = template.metadata.as_mut() {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(TEMPLATE_HASH_ANNOTATION.to_string(), hash);
    }
    template
}

/// Name of the init container that restores `spec.bootstrap.fromBackup` into the first member.
pub const RESTORE_CONTAINER: &str = "restore";
/// Volume of a PVC restore source.
const SOURCE_VOLUME: &str = "backup-source";

/// While the first member bootstraps from a backup: the init container that restores it (a no-op
/// for any other member and for a data directory that has data), and the source's volume.
fn restore_from_backup(
    id: &Identity,
    spec: &EtcdClusterSpec,
    plan: &StatefulSetPlan,
) -> Option<(Container, Option<Volume>)> {
    let source = &spec.bootstrap.as_ref()?.from_backup;
    if plan.membership.state != InitialClusterState::New {
        return None;
    }
    let (mut env, env_from) = s3_env(source);
    env.push(field_env("POD_NAME", "metadata.name"));
    let mut mounts = vec![VolumeMount {
        name: DATA_VOLUME.to_string(),
        mount_path: DATA_MOUNT_PATH.to_string(),
        ..VolumeMount::default()
    }];
    let volume = source.pvc.as_ref().map(|pvc| {
        mounts.push(VolumeMount {
            name: SOURCE_VOLUME.into(),
            mount_path: SOURCE_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        Volume {
            name: SOURCE_VOLUME.into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: pvc.claim_name.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        }
    });
    let container = Container {
        name: RESTORE_CONTAINER.into(),
        image: Some(plan.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec![
            "backup".into(),
            "restore".into(),
            format!("--from={}", source_location(source)),
            format!("--only-for={}", id.pod_name(0)),
            "--name=$(POD_NAME)".into(),
            format!("--data-dir={DATA_DIR}"),
            format!("--initial-cluster={}", plan.membership.initial_cluster(id)),
            format!("--initial-cluster-token={}", id.cluster_token()),
            format!("--initial-advertise-peer-urls={}", id.peer_url_template()),
        ]),
        env: Some(env),
        env_from: (!env_from.is_empty()).then_some(env_from),
        volume_mounts: Some(mounts),
        // The error `rustcd backup restore` prints becomes the termination message the operator
        // reports (`RestoreFailed`).
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    Some((container, volume))
}

fn unhashed_pod_template(id: &Identity, spec: &EtcdClusterSpec, plan: &StatefulSetPlan) -> PodTemplateSpec {
    let overrides = spec.pod.clone().unwrap_or_default();
    // The operator's own labels win over the user's.
    let mut labels = overrides.labels.clone().unwrap_or_default();
    labels.extend(id.labels());
    let tls = TlsLayout::of(id, spec);
    let data = spec.storage.is_none().then(|| Volume {
        name: DATA_VOLUME.to_string(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    });
    let restore = restore_from_backup(id, spec, plan);
    let volumes: Vec<Volume> = data
        .into_iter()
        .chain(tls.volumes())
        .chain(restore.as_ref().and_then(|(_, v)| v.clone()))
        .collect();
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: overrides.annotations.clone(),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container(id, spec, plan, &tls)],
            init_containers: restore.map(|(c, _)| vec![c]),
            volumes: (!volumes.is_empty()).then_some(volumes),
            affinity: overrides
                .affinity
                .clone()
                .or_else(|| default_affinity(id, spec.anti_affinity)),
            node_selector: overrides.node_selector.clone(),
            tolerations: overrides.tolerations.clone(),
            priority_class_name: overrides.priority_class_name.clone(),
            ..PodSpec::default()
        }),
    }
}

/// The StatefulSet `<name>` running the members.
pub fn statefulset(id: &Identity, spec: &EtcdClusterSpec, plan: &StatefulSetPlan) -> StatefulSet {
    StatefulSet {
        metadata: super::metadata(id, &id.client_service()),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(plan.replicas).unwrap_or(i32::MAX)),
            service_name: Some(id.peer_service()),
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(id.selector_labels()),
                ..LabelSelector::default()
            },
            template: pod_template(id, spec, plan),
            volume_claim_templates: spec.storage.as_ref().map(|s| vec![volume_claim(s)]),
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}
