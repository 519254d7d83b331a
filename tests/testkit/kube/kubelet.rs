//! A fake StatefulSet controller and kubelet: what turns the operator's StatefulSets into running
//! rustcd members. Every few hundred milliseconds it
//! - creates the pods `<sts>-0..replicas` that are missing (from the template, with the labels,
//!   hostname/subdomain and owner reference the real controller sets) and, with volumeClaimTemplates,
//!   their PVCs `data-<pod>` (labelled with the StatefulSet's selector, as the real controller does);
//!   deletes pods above `replicas`;
//! - runs one Docker container per pod (keyed by pod UID, so a deleted and recreated pod gets a new
//!   container) on the test's private network with the alias `<pod>.<service>.<ns>.svc`, expanding
//!   `$(VAR)` in the arguments from the downward-API environment; a PVC is a Docker volume named after
//!   the PVC's UID, an emptyDir lives and dies with the container, a secret volume is a host directory
//!   bind-mounted read-only and kept in step with its Secret (see `secret_volumes`; a pod whose Secret
//!   is missing stays Pending without a container); an exited container is restarted (restartPolicy
//!   Always);
//! - stops the containers of terminating pods (`deletionTimestamp` set) and then deletes those pods with
//!   grace 0, so a pod object outlives its container as on a real node;
//! - removes containers whose pod is gone, and writes `status.podIP` and the Ready condition (the
//!   template's readiness probe, an HTTP GET against the container's IP) into each pod's status.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::secret_volumes::{Mount, SecretVolumes};
use crate::docker::docker;

/// A running fake kubelet; stops when dropped (the sandbox removes the containers; the secret volumes'
/// host directory goes when both this and the stopped task have released it).
pub struct FakeKubelet {
    task: JoinHandle<()>,
    _volumes_root: Arc<tempfile::TempDir>,
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Node {
    client: Client,
    namespace: String,
    network: String,
    label: String,
    /// Pod UID -> container name.
    running: BTreeMap<String, String>,
    /// Pod name -> container name.
    containers: BTreeMap<String, String>,
    volumes: SecretVolumes,
}

impl FakeKubelet {
    /// Starts watching `namespace`; containers join `network` and carry `label` (`key=value`).
    pub fn start(client: Client, namespace: &str, network: &str, label: &str) -> FakeKubelet {
        let root = tempfile::Builder::new()
            .prefix("fake-kubelet-")
            .tempdir()
            .expect("kubelet temp dir");
        // Readable by the containers whatever user they run as.
        std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("kubelet temp dir mode");
        let root = Arc::new(root);
        let mut node = Node {
            client,
            namespace: namespace.to_string(),
            network: network.to_string(),
            label: label.to_string(),
            running: BTreeMap::new(),
            containers: BTreeMap::new(),
            volumes: SecretVolumes::new(root.clone()),
        };
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = node.sync().await {
                    eprintln!("fake kubelet: {e}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        FakeKubelet {
            task,
            _volumes_root: root,
        }
    }
}

async fn blocking_docker(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || docker(&args.iter().map(String::as_str).collect::<Vec<_>>()))
        .await
        .unwrap_or_else(|e| (false, e.to_string()))
}

/// `$(VAR)` expansion as the kubelet does it for container args.
fn expand(arg: &str, env: &BTreeMap<String, String>) -> String {
    env.iter()
        .fold(arg.to_string(), |acc, (k, v)| acc.replace(&format!("$({k})"), v))
}

/// The container's environment: plain values and the downward-API fields the operator uses.
fn environment(pod: &Pod, container: &Container) -> BTreeMap<String, String> {
    container
        .env
        .iter()
        .flatten()
        .filter_map(|e| {
            let value = match (&e.value, e.value_from.as_ref().and_then(|f| f.field_ref.as_ref())) {
                (Some(v), _) => v.clone(),
                (None, Some(field)) => match field.field_path.as_str() {
                    "metadata.name" => pod.name_any(),
                    "metadata.namespace" => pod.namespace().unwrap_or_default(),
                    "status.podIP" => pod.status.as_ref()?.pod_ip.clone()?,
                    _ => return None,
                },
                _ => return None,
            };
            Some((e.name.clone(), value))
        })
        .collect()
}

/// The readiness probe's path: the template's, unless `OPERATOR_TEST_READINESS_PATH` overrides it (to
/// run these tests with `RUSTCD_BIN=/usr/bin/etcd`: etcd 3.4 has `/health` but no `/readyz`).
fn readiness_path(template: Option<&str>) -> String {
    std::env::var("OPERATOR_TEST_READINESS_PATH")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| template.unwrap_or("/").to_string())
}

/// HTTP GET `path` on `ip:port`; true for a 2xx answer within a second.
async fn probe(ip: IpAddr, port: u16, path: &str) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.1 2") || head.starts_with(b"HTTP/1.0 2"))
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

impl Node {
    fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn sync(&mut self) -> Result<(), kube::Error> {
        let sets = Api::<StatefulSet>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default())
            .await?
            .items;
        let pods = self.pods().list(&ListParams::default()).await?.items;
        for sts in &sets {
            self.reconcile_statefulset(sts, &pods).await?;
        }
        let pods = self.pods().list(&ListParams::default()).await?.items;
        // Terminating pods: stop the containers, then let the API server remove the object.
        for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_some()) {
            if let Some(container) = pod.uid().and_then(|uid| self.running.remove(&uid)) {
                blocking_docker(vec!["rm".into(), "-f".into(), container.clone()]).await;
                self.containers.retain(|_, c| c != &container);
            }
            let now = DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            };
            match self.pods().delete(&pod.name_any(), &now).await {
                Ok(_) | Err(kube::Error::Api(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let live: BTreeSet<String> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| p.uid())
            .collect();
        for (uid, container) in self.running.clone() {
            if !live.contains(&uid) {
                blocking_docker(vec!["rm".into(), "-f".into(), container.clone()]).await;
                self.running.remove(&uid);
                self.containers.retain(|_, c| c != &container);
            }
        }
        self.volumes.retain(|uid| live.contains(uid));
        for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
            let Some(sts) = sets
                .iter()
                .find(|s| pod.labels().get("statefulset.kubernetes.io/pod-name").is_some() && owned_by(pod, s))
            else {
                continue;
            };
            self.run_pod(sts, pod).await?;
        }
        // Rotated Secrets reach the running containers.
        let secrets = self.secrets();
        self.volumes.refresh(&secrets).await
    }

    async fn reconcile_statefulset(&self, sts: &StatefulSet, pods: &[Pod]) -> Result<(), kube::Error> {
        let name = sts.name_any();
        let spec = sts.spec.clone().unwrap_or_default();
        let replicas = u32::try_from(spec.replicas.unwrap_or(1)).unwrap_or(0);
        for pod in pods
            .iter()
            .filter(|p| owned_by(p, sts) && p.metadata.deletion_timestamp.is_none())
        {
            let ordinal = pod.name_any().rsplit_once('-').and_then(|(_, k)| k.parse::<u32>().ok());
            if ordinal.is_none_or(|k| k >= replicas) {
                match self.pods().delete(&pod.name_any(), &DeleteParams::default()).await {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let owner = sts.controller_owner_ref(&()).unwrap_or_else(|| OwnerReference {
            name: name.clone(),
            ..OwnerReference::default()
        });
        for k in 0..replicas {
            let pod_name = format!("{name}-{k}");
            for claim in spec.volume_claim_templates.iter().flatten() {
                let claim_name = format!("{}-{pod_name}", claim.name_any());
                let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.namespace);
                if claims.get_opt(&claim_name).await?.is_none() {
                    let mut pvc = claim.clone();
                    pvc.metadata = ObjectMeta {
                        name: Some(claim_name),
                        labels: spec.selector.match_labels.clone(),
                        ..ObjectMeta::default()
                    };
                    claims.create(&PostParams::default(), &pvc).await?;
                }
            }
            if pods.iter().any(|p| p.name_any() == pod_name) {
                continue;
            }
            let template = spec.template.clone();
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert("statefulset.kubernetes.io/pod-name".into(), pod_name.clone());
            labels.insert("apps.kubernetes.io/pod-index".into(), k.to_string());
            let mut pod_spec = template.spec.unwrap_or_default();
            pod_spec.hostname = Some(pod_name.clone());
            pod_spec.subdomain = spec.service_name.clone();
            // Scheduled at once, to the one fake node.
            pod_spec.node_name = Some("fake-node".into());
            let pod = Pod {
                metadata: ObjectMeta {
                    name: Some(pod_name),
                    labels: Some(labels),
                    annotations: template.metadata.and_then(|m| m.annotations),
                    owner_references: Some(vec![owner.clone()]),
                    ..ObjectMeta::default()
                },
                spec: Some(pod_spec),
                status: None,
            };
            match self.pods().create(&PostParams::default(), &pod).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Starts the pod's container if it has none, and reports its IP and readiness.
    async fn run_pod(&mut self, sts: &StatefulSet, pod: &Pod) -> Result<(), kube::Error> {
        let (Some(uid), Some(spec)) = (pod.uid(), pod.spec.as_ref()) else {
            return Ok(());
        };
        let Some(container) = spec.containers.first() else {
            return Ok(());
        };
        let pod_name = pod.name_any();
        let container_name = format!("{}-{pod_name}-{}", self.network, &uid[uid.len().saturating_sub(6)..]);
        if !self.running.contains_key(&uid) {
            // A previous incarnation of this pod is gone for good.
            let old = self.containers.remove(&pod_name);
            if let Some(old) = old {
                blocking_docker(vec!["rm".into(), "-f".into(), old]).await;
            }
            let mut args: Vec<String> = vec![
                "run".into(),
                "-d".into(),
                "--name".into(),
                container_name.clone(),
                "--label".into(),
                self.label.clone(),
                // restartPolicy: Always (Docker's backoff: 100 ms, doubling).
                "--restart".into(),
                "always".into(),
                "--network".into(),
                self.network.clone(),
                "--hostname".into(),
                pod_name.clone(),
            ];
            if let Some(service) = &spec.subdomain {
                args.extend([
                    "--network-alias".into(),
                    format!("{pod_name}.{service}.{}.svc", self.namespace),
                ]);
            }
            for mount in container.volume_mounts.iter().flatten() {
                let claimed = sts
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_claim_templates.as_ref())
                    .is_some_and(|ts| ts.iter().any(|t| t.name_any() == mount.name));
                if claimed {
                    let claim = format!("{}-{pod_name}", mount.name);
                    let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), &self.namespace);
                    let Some(claim_uid) = claims.get_opt(&claim).await?.and_then(|c| c.uid()) else {
                        return Ok(()); // pending until its claim exists
                    };
                    let volume = format!("{}-{claim_uid}", self.network);
                    blocking_docker(vec![
                        "volume".into(),
                        "create".into(),
                        "--label".into(),
                        self.label.clone(),
                        volume.clone(),
                    ])
                    .await;
                    args.extend(["-v".into(), format!("{volume}:{}", mount.mount_path)]);
                }
            }
            let secrets = self.secrets();
            match self.volumes.mount(&secrets, &uid, spec, container).await? {
                Mount::Ready(binds) => args.extend(binds),
                Mount::Pending(why) => return self.report_pending(pod, &why).await,
            }
            args.push(container.image.clone().unwrap_or_default());
            let env = environment(pod, container);
            args.extend(container.args.iter().flatten().map(|a| expand(a, &env)));
            let (ok, out) = blocking_docker(args).await;
            if !ok {
                eprintln!("fake kubelet: docker run {pod_name}: {out}");
                return Ok(());
            }
            self.running.insert(uid.clone(), container_name.clone());
            self.containers.insert(pod_name.clone(), container_name.clone());
        }
        let (_, ip) = blocking_docker(vec![
            "inspect".into(),
            "-f".into(),
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}".into(),
            container_name,
        ])
        .await;
        let ip: Option<IpAddr> = ip.trim().parse().ok();
        let ready = match (ip, container.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref())) {
            (Some(ip), Some(get)) => {
                let port = match &get.port {
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => u16::try_from(*p).unwrap_or(0),
                    k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_) => 0,
                };
                probe(ip, port, &readiness_path(get.path.as_deref())).await
            }
            (Some(_), None) => true,
            (None, _) => false,
        };
        let status = pod.status.clone().unwrap_or_default();
        let was_ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let ip_text = ip.map(|ip| ip.to_string());
        if status.pod_ip == ip_text && was_ready == ready && status.phase.as_deref() == Some("Running") {
            return Ok(());
        }
        let now = k8s_openapi::chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let patch = json!({"status": {
            "phase": "Running",
            "podIP": ip_text,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now}],
        }});
        self.patch_status(pod, patch).await
    }
}

impl Node {
    /// Merge-patches the pod's status; a pod deleted meanwhile (an API error) is fine.
    async fn patch_status(&self, pod: &Pod, patch: serde_json::Value) -> Result<(), kube::Error> {
        match self
            .pods()
            .patch_status(&pod.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Phase Pending and not Ready (the real kubelet's ContainerCreating), written once.
    async fn report_pending(&self, pod: &Pod, why: &str) -> Result<(), kube::Error> {
        let status = pod.status.clone().unwrap_or_default();
        let said = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.message.as_deref() == Some(why));
        if status.phase.as_deref() == Some("Pending") && said {
            return Ok(());
        }
        let now = k8s_openapi::chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let patch = json!({"status": {
            "phase": "Pending",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainerCreating",
                            "message": why, "lastTransitionTime": now}],
        }});
        self.patch_status(pod, patch).await
    }
}

fn owned_by(pod: &Pod, sts: &StatefulSet) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| Some(&o.uid) == sts.uid().as_ref() || o.name == sts.name_any() && o.kind == StatefulSet::kind(&()))
}
