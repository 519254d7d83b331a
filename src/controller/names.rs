//! Names, labels and URLs the operator derives from an `EtcdCluster`: one place, so the objects it
//! builds, the members it adds and the pods it reads always agree.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};

use super::error::Error;
use super::spec::EtcdCluster;

/// Client port of every member.
pub const CLIENT_PORT: i32 = 2379;
/// Peer port of every member.
pub const PEER_PORT: i32 = 2380;
/// Plain-HTTP port of `/metrics`, `/health`, `/livez` and `/readyz` (`--listen-metrics-urls`): the
/// kubelet probes it, so probes work whether or not the client port requires client certificates.
pub const METRICS_PORT: i32 = 2381;
/// Name of the member container in the pod template.
pub const CONTAINER_NAME: &str = "etcd";
/// Name of the data volume (and of the volumeClaimTemplate, so PVCs are `data-<pod>`).
pub const DATA_VOLUME: &str = "data";
/// Where the data volume is mounted.
pub const DATA_MOUNT_PATH: &str = "/var/lib/rustcd";
/// `--data-dir` of every member (a directory inside the volume, so a fresh volume is an empty dir).
pub const DATA_DIR: &str = "/var/lib/rustcd/data";
/// Field manager of everything the operator applies.
pub const FIELD_MANAGER: &str = "rustcd-operator";

/// Label with the cluster's name; part of the pod selector.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label with the application name (`rustcd`); part of the pod selector.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label naming the operator as the manager.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label StatefulSets put on their pods with the pod's ordinal.
pub const LABEL_POD_INDEX: &str = "apps.kubernetes.io/pod-index";

/// The identity of one `EtcdCluster`: name, namespace, UID and owner reference, checked once.
#[derive(Clone, Debug, PartialEq)]
pub struct Identity {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// Controller owner reference for every object the operator creates.
    pub owner: OwnerReference,
    /// `spec.tls.client` is set: client URLs are https.
    pub client_tls: bool,
    /// `spec.tls.peer` is set: peer URLs are https.
    pub peer_tls: bool,
}

fn scheme(tls: bool) -> &'static str {
    if tls {
        "https"
    } else {
        "http"
    }
}

impl Identity {
    /// The identity of `cluster`; an object without namespace or UID (never from the API server) is an error.
    pub fn of(cluster: &EtcdCluster) -> Result<Identity, Error> {
        let name = cluster.name_any();
        let namespace = cluster
            .namespace()
            .ok_or_else(|| Error::InvalidObject(format!("EtcdCluster {name} has no namespace")))?;
        let uid = cluster
            .uid()
            .ok_or_else(|| Error::InvalidObject(format!("EtcdCluster {name} has no uid")))?;
        let owner = cluster
            .controller_owner_ref(&())
            .ok_or_else(|| Error::InvalidObject(format!("EtcdCluster {name} has no owner reference")))?;
        let tls = cluster.spec.tls.as_ref();
        Ok(Identity {
            name,
            namespace,
            uid,
            owner,
            client_tls: tls.is_some_and(|t| t.client.is_some()),
            peer_tls: tls.is_some_and(|t| t.peer.is_some()),
        })
    }

    /// Headless Service giving each pod its peer DNS name.
    pub fn peer_service(&self) -> String {
        format!("{}-peer", self.name)
    }

    /// Client Service (and StatefulSet, and PodDisruptionBudget) name.
    pub fn client_service(&self) -> String {
        self.name.clone()
    }

    /// Pod (and member) name of `ordinal`.
    pub fn pod_name(&self, ordinal: u32) -> String {
        format!("{}-{ordinal}", self.name)
    }

    /// PersistentVolumeClaim the StatefulSet creates for `ordinal`.
    pub fn pvc_name(&self, ordinal: u32) -> String {
        format!("{DATA_VOLUME}-{}", self.pod_name(ordinal))
    }

    /// DNS name of pod `ordinal` through the headless peer Service.
    pub fn pod_host(&self, ordinal: u32) -> String {
        format!(
            "{}.{}.{}.svc",
            self.pod_name(ordinal),
            self.peer_service(),
            self.namespace
        )
    }

    /// Peer URL of `ordinal` (what MemberAdd registers and `--initial-advertise-peer-urls` says).
    pub fn peer_url(&self, ordinal: u32) -> String {
        format!("{}://{}:{PEER_PORT}", scheme(self.peer_tls), self.pod_host(ordinal))
    }

    /// Peer URL with the pod name left to the kubelet's `$(POD_NAME)` expansion.
    pub fn peer_url_template(&self) -> String {
        format!(
            "{}://$(POD_NAME).{}.{}.svc:{PEER_PORT}",
            scheme(self.peer_tls),
            self.peer_service(),
            self.namespace
        )
    }

    /// Client URL with the pod name left to the kubelet's `$(POD_NAME)` expansion.
    pub fn client_url_template(&self) -> String {
        format!(
            "{}://$(POD_NAME).{}.{}.svc:{CLIENT_PORT}",
            scheme(self.client_tls),
            self.peer_service(),
            self.namespace
        )
    }

    /// Scheme of the client URLs.
    pub fn client_scheme(&self) -> &'static str {
        scheme(self.client_tls)
    }

    /// Scheme of the peer URLs.
    pub fn peer_scheme(&self) -> &'static str {
        scheme(self.peer_tls)
    }

    /// DNS name of the client Service (what clients inside the cluster dial).
    pub fn client_service_host(&self) -> String {
        format!("{}.{}.svc", self.client_service(), self.namespace)
    }

    /// `--initial-cluster-token`: unique per `EtcdCluster` object, so a recreated cluster of the same name
    /// never accepts a member of the old one.
    pub fn cluster_token(&self) -> String {
        format!("{}-{}", self.name, self.uid)
    }

    /// Labels selecting the member pods.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_string(), "rustcd".to_string()),
            (LABEL_INSTANCE.to_string(), self.name.clone()),
        ])
    }

    /// Labels of every object the operator creates: the selector labels plus `managed-by`.
    pub fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.selector_labels();
        labels.insert(LABEL_MANAGED_BY.to_string(), FIELD_MANAGER.to_string());
        labels
    }

    /// The selector in string form (`status.selector`, list calls).
    pub fn selector_string(&self) -> String {
        self.selector_labels()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The ordinal of pod `pod_name` of this cluster.
    pub fn ordinal_of(&self, pod_name: &str) -> Option<u32> {
        let digits = pod_name.strip_prefix(&self.name)?.strip_prefix('-')?;
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        digits.parse().ok()
    }
}

/// The member image: `spec.image` if set, else `default_image` with its tag replaced by `spec.version`.
pub fn member_image(default_image: &str, image: Option<&str>, version: Option<&str>) -> String {
    if let Some(image) = image {
        return image.to_string();
    }
    let Some(version) = version else {
        return default_image.to_string();
    };
    let without_digest = default_image.split('@').next().unwrap_or(default_image);
    let name_start = without_digest.rfind('/').map_or(0, |i| i + 1);
    let repository = match without_digest[name_start..].rfind(':') {
        Some(colon) => &without_digest[..name_start + colon],
        None => without_digest,
    };
    format!("{repository}:{version}")
}

/// The identity of a cluster `demo` in namespace `ns`, for tests.
#[cfg(test)]
pub(crate) fn test_identity() -> Identity {
    Identity {
        name: "demo".into(),
        namespace: "ns".into(),
        uid: "u-1".into(),
        owner: OwnerReference {
            api_version: "rustcd.io/v1alpha1".into(),
            kind: "EtcdCluster".into(),
            name: "demo".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: None,
        },
        client_tls: false,
        peer_tls: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        let id = test_identity();
        assert_eq!(id.peer_url(2), "http://demo-2.demo-peer.ns.svc:2380");
        assert_eq!(id.pvc_name(0), "data-demo-0");
        assert_eq!(
            id.selector_string(),
            "app.kubernetes.io/instance=demo,app.kubernetes.io/name=rustcd"
        );
        assert_eq!(id.peer_url_template(), "http://$(POD_NAME).demo-peer.ns.svc:2380");
        assert_eq!(id.client_url_template(), "http://$(POD_NAME).demo-peer.ns.svc:2379");
        let tls = Identity {
            client_tls: true,
            peer_tls: true,
            ..test_identity()
        };
        assert_eq!(tls.peer_url(2), "https://demo-2.demo-peer.ns.svc:2380");
        assert_eq!(tls.peer_url_template(), "https://$(POD_NAME).demo-peer.ns.svc:2380");
        assert_eq!(tls.client_url_template(), "https://$(POD_NAME).demo-peer.ns.svc:2379");
        assert_eq!(id.ordinal_of("demo-12"), Some(12));
        for bad in ["demo", "demo-", "demo-01", "demox-1", "other-1", "demo-1a"] {
            assert_eq!(id.ordinal_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn image_selection() {
        assert_eq!(member_image("rustcd:latest", None, None), "rustcd:latest");
        assert_eq!(member_image("rustcd:latest", None, Some("v0.2.0")), "rustcd:v0.2.0");
        assert_eq!(member_image("rustcd", None, Some("3.5.0")), "rustcd:3.5.0");
        assert_eq!(
            member_image("reg.local:5000/team/rustcd:1@sha256:ab", None, Some("3.5.0")),
            "reg.local:5000/team/rustcd:3.5.0"
        );
        assert_eq!(
            member_image("reg.local:5000/rustcd", None, Some("1.0.0")),
            "reg.local:5000/rustcd:1.0.0"
        );
        assert_eq!(member_image("rustcd:latest", Some("mine:x"), Some("3.5.0")), "mine:x");
    }
}
