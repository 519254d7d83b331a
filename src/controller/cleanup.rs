//! What happens to an `EtcdCluster`'s PersistentVolumeClaims when the cluster is deleted
//! (`spec.pvcDeletionPolicy`).
//!
//! The claims come from the StatefulSet's `volumeClaimTemplates`, so Kubernetes' garbage collector
//! never deletes them (they have no owner). With `Delete` (and `spec.storage` set) the cluster carries
//! the finalizer [`PVC_FINALIZER`]: once it is being deleted, the operator deletes the StatefulSet (so
//! no pod comes back on a claim), then every claim with the cluster's selector labels, then removes the
//! finalizer, and the API server lets the cluster (and through owner references the Services and the
//! PodDisruptionBudget) go. With `Retain` there is no finalizer and the claims stay, as they always
//! did. One path for every Kubernetes the chart supports: the StatefulSet's own
//! `persistentVolumeClaimRetentionPolicy` only exists from 1.23 (alpha) and is on by default from 1.27.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};

use super::error::Error;
use super::execute::delete_if_present;
use super::names::Identity;
use super::spec::{EtcdCluster, EtcdClusterSpec, PvcRetentionPolicy};

/// The finalizer of a cluster whose claims are deleted with it.
pub const PVC_FINALIZER: &str = "rustcd.io/delete-pvcs";

/// Whether a cluster with `spec` must carry [`PVC_FINALIZER`].
pub fn wants_finalizer(spec: &EtcdClusterSpec) -> bool {
    spec.storage.is_some() && spec.pvc_deletion_policy == PvcRetentionPolicy::Delete
}

/// The finalizer list after adding or removing [`PVC_FINALIZER`] (others kept, in order); `None` when
/// `current` already is what `wanted` asks for.
pub fn finalizers_after(current: &[String], wanted: bool) -> Option<Vec<String>> {
    let has = current.iter().any(|f| f == PVC_FINALIZER);
    match (has, wanted) {
        (false, true) => Some(current.iter().cloned().chain([PVC_FINALIZER.to_string()]).collect()),
        (true, false) => Some(current.iter().filter(|f| *f != PVC_FINALIZER).cloned().collect()),
        _ => None,
    }
}

/// Writes `finalizers` with the cluster's resourceVersion as precondition (a concurrent change of the
/// list makes this fail with a conflict, and the next reconcile retries on fresh data).
async fn write_finalizers(client: &Client, cluster: &EtcdCluster, finalizers: Vec<String>) -> Result<(), Error> {
    let api: Api<EtcdCluster> = Api::namespaced(client.clone(), &cluster.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": {"finalizers": finalizers, "resourceVersion": cluster.resource_version()},
    });
    api.patch(&cluster.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Adds or removes the finalizer as the spec asks (a cluster being deleted keeps what it has).
pub async fn sync_finalizer(client: &Client, cluster: &EtcdCluster) -> Result<(), Error> {
    if cluster.meta().deletion_timestamp.is_some() {
        return Ok(());
    }
    match finalizers_after(cluster.finalizers(), wants_finalizer(&cluster.spec)) {
        Some(finalizers) => write_finalizers(client, cluster, finalizers).await,
        None => Ok(()),
    }
}

/// A cluster being deleted that still carries the finalizer: deletes the StatefulSet and the claims,
/// then removes the finalizer. Returns how many claims were deleted.
pub async fn finish_deletion(client: &Client, cluster: &EtcdCluster, id: &Identity) -> Result<usize, Error> {
    let ns = &id.namespace;
    delete_if_present(
        &Api::<StatefulSet>::namespaced(client.clone(), ns),
        &id.client_service(),
    )
    .await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let listed = claims
        .list(&ListParams::default().labels(&id.selector_string()))
        .await?
        .items;
    for claim in &listed {
        delete_if_present(&claims, &claim.name_any()).await?;
    }
    if let Some(finalizers) = finalizers_after(cluster.finalizers(), false) {
        write_finalizers(client, cluster, finalizers).await?;
    }
    Ok(listed.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finalizer_is_added_and_removed_without_touching_others() {
        let others = vec!["a/b".to_string()];
        assert_eq!(
            finalizers_after(&others, true),
            Some(vec!["a/b".to_string(), PVC_FINALIZER.to_string()])
        );
        let with = vec![PVC_FINALIZER.to_string(), "a/b".to_string()];
        assert_eq!(finalizers_after(&with, true), None);
        assert_eq!(finalizers_after(&with, false), Some(others.clone()));
        assert_eq!(finalizers_after(&others, false), None);
        assert_eq!(finalizers_after(&[], false), None);
    }

    #[test]
    fn only_a_cluster_with_storage_and_delete_wants_it() {
        let storage = Some(crate::spec::StorageSpec {
            size: k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
            storage_class_name: None,
        });
        let with = |storage, policy| EtcdClusterSpec {
            storage,
            pvc_deletion_policy: policy,
            ..EtcdClusterSpec::default()
        };
        assert!(wants_finalizer(&with(storage.clone(), PvcRetentionPolicy::Delete)));
        assert!(!wants_finalizer(&with(storage, PvcRetentionPolicy::Retain)));
        assert!(!wants_finalizer(&with(None, PvcRetentionPolicy::Delete)));
    }
}
