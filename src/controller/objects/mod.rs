//! Pure builders: `EtcdCluster` spec (plus what the operator decided) -> Kubernetes object.
//!
//! Nothing here does I/O; the reconcile loop server-side-applies what these functions return, so the
//! objects in the cluster converge to exactly these fields (fields the operator stops setting are
//! removed by the API server, fields other managers set are left alone).

pub mod backup_job;
mod certificates;
mod services;
mod statefulset;

pub use certificates::{certificate, certificate_resource};
pub use services::{client_service, peer_service, pod_disruption_budget};
pub use statefulset::{
    default_affinity, member_args, statefulset, template_hash, InitialCluster, InitialClusterState, StatefulSetPlan,
    RESTORE_CONTAINER, TEMPLATE_HASH_ANNOTATION,
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::names::Identity;

/// Metadata of an object named `name` owned by the cluster: namespace, labels, controller reference.
fn metadata(id: &Identity, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(id.namespace.clone()),
        labels: Some(id.labels()),
        owner_references: Some(vec![id.owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// 64-bit FNV-1a: stable across builds and operator versions (template hashes, shortened names).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests;
