//! Observation: what the API server and the members say right now. This is the only place the reconcile
//! loop reads state; [`super::assess`] turns an [`Observation`] into the planner's input without I/O.
//!
//! Pods are dialed by `status.podIP` on the client port, all at once. MemberList comes from the first
//! pod (lowest ordinal) that answers it linearizably; Status from every pod that has an IP.

use std::collections::BTreeMap;
use std::net::IpAddr;

use futures::future::join_all;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::error::Error;
use super::etcd_client::MemberClient;
use super::member_tls::Dial;
use super::names::{Identity, DATA_VOLUME};
use super::objects::{RESTORE_CONTAINER, TEMPLATE_HASH_ANNOTATION};
use rustcd_proto::etcdserverpb::{Member, StatusResponse};

/// One pod of the cluster, as the API server reports it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodFacts {
    /// `metadata.uid`.
    pub uid: String,
    /// `status.podIP`.
    pub ip: Option<IpAddr>,
    /// Ready condition is `True` and the pod is not being deleted.
    pub ready: bool,
    /// UID of the volume holding the member's data (PVC UID with storage, pod UID for an emptyDir).
    pub volume_uid: Option<String>,
    /// The pod's template hash annotation (see [`crate::objects::template_hash`]).
    pub template_hash: Option<String>,
    /// Why the `restore` init container (`spec.bootstrap.fromBackup`) failed, if it did: its last
    /// termination message (the kubelet keeps the end of its log there).
    pub restore_failure: Option<String>,
}

/// Everything one reconcile looks at.
#[derive(Clone, Debug, Default)]
pub struct Observation {
    /// The StatefulSet `<name>`.
    pub statefulset: Option<StatefulSet>,
    /// Pods by ordinal.
    pub pods: BTreeMap<u32, PodFacts>,
    /// Ordinals that have a PersistentVolumeClaim `data-<name>-<ordinal>`.
    pub claims: Vec<u32>,
    /// MemberList; `None` when no member answered.
    pub members: Option<Vec<Member>>,
    /// Status of each pod that answered, by ordinal.
    pub statuses: BTreeMap<u32, StatusResponse>,
    /// Connections to the pods that answered Status, by ordinal.
    pub clients: BTreeMap<u32, MemberClient>,
}

impl Observation {
    /// The template hash of the StatefulSet's pod template: what current pods carry.
    pub fn template_hash(&self) -> Option<&str> {
        let template = &self.statefulset.as_ref()?.spec.as_ref()?.template;
        template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get(TEMPLATE_HASH_ANNOTATION)
            .map(String::as_str)
    }

    /// `spec.replicas` of the StatefulSet.
    pub fn statefulset_replicas(&self) -> Option<u32> {
        let sts = self.statefulset.as_ref()?;
        let replicas = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        Some(u32::try_from(replicas).unwrap_or(0))
    }
}

fn pod_facts(pod: &Pod, storage: bool, claims: &BTreeMap<String, String>) -> PodFacts {
    let status = pod.status.as_ref();
    let ready = pod.metadata.deletion_timestamp.is_none()
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let volume_uid = if storage {
        claims.get(&format!("{DATA_VOLUME}-{}", pod.name_any())).cloned()
    } else {
        pod.uid()
    };
    PodFacts {
        uid: pod.uid().unwrap_or_default(),
        ip: status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()),
        ready,
        volume_uid,
        template_hash: pod.annotations().get(TEMPLATE_HASH_ANNOTATION).cloned(),
        restore_failure: restore_failure(pod),
    }
}

/// The failure of the pod's `restore` init container: the current or, while it waits to be retried,
/// the last termination with a non-zero exit code.
fn restore_failure(pod: &Pod) -> Option<String> {
    let status = pod
        .status
        .as_ref()?
        .init_container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == RESTORE_CONTAINER)?;
    let failed = |s: Option<&k8s_openapi::api::core::v1::ContainerState>| {
        let t = s?.terminated.as_ref().filter(|t| t.exit_code != 0)?;
        Some(
            t.message
                .as_deref()
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| format!("exit code {}", t.exit_code)),
        )
    };
    failed(status.state.as_ref()).or_else(|| failed(status.last_state.as_ref()))
}

/// Reads the StatefulSet, pods and claims of `id` and asks the members (dialed as `dial` says; not at
/// all without one) for MemberList and Status.
pub async fn observe(client: &Client, id: &Identity, storage: bool, dial: Option<&Dial>) -> Result<Observation, Error> {
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), &id.namespace);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), &id.namespace);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &id.namespace);
    let selector = ListParams::default().labels(&id.selector_string());

    let statefulset = sts_api.get_opt(&id.client_service()).await?;
    let claim_list = if storage {
        pvc_api.list(&selector).await?.items
    } else {
        Vec::new()
    };
    let claim_uids: BTreeMap<String, String> = claim_list
        .iter()
        .filter_map(|c| Some((c.name_any(), c.uid()?)))
        .collect();
    let claims = claim_list
        .iter()
        .filter_map(|c| id.ordinal_of(c.name_any().strip_prefix(&format!("{DATA_VOLUME}-"))?))
        .collect();
    let pods: BTreeMap<u32, PodFacts> = pod_api
        .list(&selector)
        .await?
        .items
        .iter()
        .filter_map(|p| Some((id.ordinal_of(&p.name_any())?, pod_facts(p, storage, &claim_uids))))
        .collect();

    let dialed = join_all(pods.iter().filter_map(|(ordinal, pod)| {
        let (ip, dial) = (pod.ip?, dial?);
        Some(async move {
            let client = match MemberClient::connect(dial, ip, &id.pod_host(*ordinal)).await {
                Ok(client) => client,
                // A pod that passed its readiness probe but cannot be dialed points at the operator's
                // side (certificates, network policy): worth a warning. Others are usually starting.
                Err(e) if pod.ready => {
                    tracing::warn!(pod = %id.pod_name(*ordinal), error = %e, "cannot reach a ready member");
                    return None;
                }
                Err(e) => {
                    tracing::debug!(pod = %id.pod_name(*ordinal), error = %e, "dialing a member failed");
                    return None;
                }
            };
            let status = client.status().await.ok()?;
            Some((*ordinal, client, status))
        })
    }))
    .await;
    let mut clients = BTreeMap::new();
    let mut statuses = BTreeMap::new();
    for (ordinal, client, status) in dialed.into_iter().flatten() {
        clients.insert(ordinal, client);
        statuses.insert(ordinal, status);
    }
    let mut members = None;
    for client in clients.values() {
        match client.member_list().await {
            Ok(list) => {
                members = Some(list.members);
                break;
            }
            Err(e) => tracing::debug!(endpoint = client.endpoint(), error = %e, "MemberList failed"),
        }
    }
    Ok(Observation {
        statefulset,
        pods,
        claims,
        members,
        statuses,
        clients,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(init: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "demo-0"},
            "status": {"initContainerStatuses": [init]}
        }))
        .unwrap()
    }

    #[test]
    fn a_failed_restore_is_read_from_the_init_container_status() {
        let base =
            serde_json::json!({"name": "restore", "image": "i", "imageID": "", "ready": false, "restartCount": 2});
        let with = |extra: serde_json::Value| {
            let mut v = base.clone();
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            pod(v)
        };
        let crashed = with(serde_json::json!({
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "message": "rustcd: backup restore failed: no backup\n"}}
        }));
        assert_eq!(
            restore_failure(&crashed).as_deref(),
            Some("rustcd: backup restore failed: no backup")
        );
        let silent = with(serde_json::json!({"state": {"terminated": {"exitCode": 2}}}));
        assert_eq!(restore_failure(&silent).as_deref(), Some("exit code 2"));
        let done = with(serde_json::json!({"state": {"terminated": {"exitCode": 0}}}));
        assert_eq!(restore_failure(&done), None);
        let running = with(serde_json::json!({"state": {"running": {}}}));
        assert_eq!(restore_failure(&running), None);
        let mut other = base.clone();
        other["name"] = "other".into();
        other["state"] = serde_json::json!({"terminated": {"exitCode": 1}});
        assert_eq!(restore_failure(&pod(other)), None);
    }
}
