use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;
use crate::names::test_identity;
use crate::spec::{AntiAffinity, EtcdClusterSpec, PodOverrides, PullPolicy, StorageSpec};

fn plan(replicas: u32, membership: InitialCluster) -> StatefulSetPlan {
    StatefulSetPlan {
        replicas,
        membership,
        image: "rustcd:v1".into(),
    }
}

#[test]
fn bootstrap_statefulset() {
    let id = test_identity();
    let sts = statefulset(&id, &EtcdClusterSpec::default(), &plan(1, InitialCluster::bootstrap()));
    assert_eq!(sts.metadata.name.as_deref(), Some("demo"));
    assert_eq!(sts.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
    let spec = sts.spec.as_ref().unwrap();
    assert_eq!(spec.replicas, Some(1));
    assert_eq!(spec.service_name.as_deref(), Some("demo-peer"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy.as_ref().unwrap().type_.as_deref(),
        Some("OnDelete")
    );
    assert_eq!(spec.selector.match_labels, Some(id.selector_labels()));
    assert!(spec.volume_claim_templates.is_none());
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.volumes.as_ref().unwrap()[0].empty_dir, Some(Default::default()));
    let c = &pod.containers[0];
    assert_eq!(c.image.as_deref(), Some("rustcd:v1"));
    assert_eq!(
        c.image_pull_policy, None,
        "Kubernetes' default unless the spec sets one"
    );
    assert_eq!(
        c.args.as_ref().unwrap(),
        &[
            "--name=$(POD_NAME)",
            "--data-dir=/var/lib/rustcd/data",
            "--listen-peer-urls=http://0.0.0.0:2380",
            "--listen-client-urls=http://0.0.0.0:2379",
            "--listen-metrics-urls=http://0.0.0.0:2381",
            "--initial-advertise-peer-urls=http://$(POD_NAME).demo-peer.ns.svc:2380",
            "--advertise-client-urls=http://$(POD_NAME).demo-peer.ns.svc:2379",
            "--initial-cluster=demo-0=http://demo-0.demo-peer.ns.svc:2380",
            "--initial-cluster-state=new",
            "--initial-cluster-token=demo-u-1",
        ]
    );
    let env: Vec<_> = c.env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(env, ["POD_NAME", "POD_NAMESPACE"]);
    let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(
        (ready.path.as_deref(), &ready.port),
        (Some("/readyz"), &IntOrString::Int(2381))
    );
    let live = c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(live.path.as_deref(), Some("/livez"));
    // Default anti-affinity: preferred, on the hostname, selecting this cluster's pods.
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap();
    assert_eq!(preferred[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
}

#[test]
fn tls_mounts_secrets_and_switches_urls_to_https() {
    use crate::names::Identity;
    use crate::spec::{IssuerKind, IssuerRef, TlsEndpoint, TlsSpec};
    let spec = EtcdClusterSpec {
        tls: Some(TlsSpec {
            client: Some(TlsEndpoint {
                secret_name: Some("srv".into()),
                issuer_ref: None,
            }),
            peer: Some(TlsEndpoint {
                secret_name: None,
                issuer_ref: Some(IssuerRef {
                    name: "ca".into(),
                    kind: IssuerKind::Issuer,
                }),
            }),
            operator_secret_name: None,
        }),
        ..EtcdClusterSpec::default()
    };
    let id = Identity {
        client_tls: true,
        peer_tls: true,
        ..test_identity()
    };
    let sts = statefulset(&id, &spec, &plan(1, InitialCluster::bootstrap()));
    let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let volumes: Vec<_> = pod.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    assert_eq!(volumes, ["data", "tls-client", "tls-peer"]);
    let peer = &pod.volumes.as_ref().unwrap()[2];
    assert_eq!(
        peer.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("demo-peer-tls")
    );
    let c = &pod.containers[0];
    let mounts: Vec<_> = c
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.mount_path.as_str())
        .collect();
    assert_eq!(
        mounts,
        ["/var/lib/rustcd", "/etc/rustcd/tls/client", "/etc/rustcd/tls/peer"]
    );
    let args = c.args.as_ref().unwrap();
    for expected in [
        "--listen-peer-urls=https://0.0.0.0:2380",
        "--listen-client-urls=https://0.0.0.0:2379",
        "--listen-metrics-urls=http://0.0.0.0:2381",
        "--initial-advertise-peer-urls=https://$(POD_NAME).demo-peer.ns.svc:2380",
        "--advertise-client-urls=https://$(POD_NAME).demo-peer.ns.svc:2379",
        "--initial-cluster=demo-0=https://demo-0.demo-peer.ns.svc:2380",
        "--client-cert-auth",
        "--peer-client-cert-auth",
        "--peer-trusted-ca-file=/etc/rustcd/tls/peer/ca.crt",
    ] {
        assert!(args.iter().any(|a| a == expected), "{expected} missing from {args:?}");
    }
    // The probes need no client certificate.
    let ready = c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
    assert_eq!(ready.port, IntOrString::Int(2381));
    assert_eq!(ready.scheme, None);
}

#[test]
fn membership_round_trips_through_the_template() {
    let id = test_identity();
    let joining = InitialCluster {
        state: InitialClusterState::Existing,
        ordinals: vec![0, 1, 2],
    };
    let sts = statefulset(&id, &EtcdClusterSpec::default(), &plan(3, joining.clone()));
    let args = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    assert!(args.contains(&"--initial-cluster-state=existing".to_string()));
    assert!(args.contains(
        &"--initial-cluster=demo-0=http://demo-0.demo-peer.ns.svc:2380,demo-1=http://demo-1.demo-peer.ns.svc:2380,\
          demo-2=http://demo-2.demo-peer.ns.svc:2380"
            .to_string()
    ));
    assert_eq!(InitialCluster::from_statefulset(&id, &sts), Some(joining));
    let boot = statefulset(&id, &EtcdClusterSpec::default(), &plan(1, InitialCluster::bootstrap()));
    assert_eq!(
        InitialCluster::from_statefulset(&id, &boot),
        Some(InitialCluster::bootstrap())
    );
}

#[test]
fn storage_resources_and_pod_overrides() {
    let id = test_identity();
    let resources = ResourceRequirements {
        limits: Some(BTreeMap::from([("memory".to_string(), Quantity("1Gi".into()))])),
        ..Default::default()
    };
    let spec = EtcdClusterSpec {
        storage: Some(StorageSpec {
            size: Quantity("5Gi".into()),
            storage_class_name: Some("fast".into()),
        }),
        resources: Some(resources.clone()),
        image_pull_policy: Some(PullPolicy::IfNotPresent),
        anti_affinity: AntiAffinity::Required,
        pod: Some(PodOverrides {
            labels: Some(BTreeMap::from([
                ("team".to_string(), "a".to_string()),
                ("app.kubernetes.io/instance".to_string(), "hijack".to_string()),
            ])),
            annotations: Some(BTreeMap::from([("a".to_string(), "b".to_string())])),
            priority_class_name: Some("high".into()),
            node_selector: Some(BTreeMap::from([("disk".to_string(), "ssd".to_string())])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sts = statefulset(&id, &spec, &plan(3, InitialCluster::bootstrap()));
    let s = sts.spec.as_ref().unwrap();
    let claim = &s.volume_claim_templates.as_ref().unwrap()[0];
    assert_eq!(claim.metadata.name.as_deref(), Some("data"));
    let claim_spec = claim.spec.as_ref().unwrap();
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim_spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity("5Gi".into())
    );
    let meta = s.template.metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "a");
    assert_eq!(
        labels["app.kubernetes.io/instance"], "demo",
        "the operator's selector label wins"
    );
    assert_eq!(meta.annotations.as_ref().unwrap()["a"], "b");
    let pod = s.template.spec.as_ref().unwrap();
    assert!(pod.volumes.is_none(), "PVCs replace the emptyDir");
    assert_eq!(pod.containers[0].resources, Some(resources));
    assert_eq!(pod.containers[0].image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
    assert_eq!(pod.node_selector.as_ref().unwrap()["disk"], "ssd");
    let anti = pod.affinity.as_ref().unwrap().pod_anti_affinity.as_ref().unwrap();
    assert!(anti.required_during_scheduling_ignored_during_execution.is_some());
    assert!(default_affinity(&id, AntiAffinity::Disabled).is_none());
}

#[test]
fn services() {
    let id = test_identity();
    let peer = peer_service(&id);
    assert_eq!(peer.metadata.name.as_deref(), Some("demo-peer"));
    let spec = peer.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    let ports: Vec<i32> = spec.ports.as_ref().unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, [2379, 2380]);
    let client = client_service(&id);
    assert_eq!(client.metadata.name.as_deref(), Some("demo"));
    let spec = client.spec.as_ref().unwrap();
    assert_eq!(spec.cluster_ip, None);
    assert_eq!(spec.ports.as_ref().unwrap()[0].port, 2379);
    assert_eq!(spec.selector, Some(id.selector_labels()));
    assert_eq!(client.metadata.owner_references, Some(vec![id.owner.clone()]));
}

#[test]
fn disruption_budget_keeps_quorum() {
    let id = test_identity();
    for (voters, min) in [(0, 1), (1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
        let pdb = pod_disruption_budget(&id, voters);
        assert_eq!(
            pdb.spec.as_ref().unwrap().min_available,
            Some(IntOrString::Int(min)),
            "{voters} voters"
        );
    }
}

#[test]
fn template_hash_ignores_membership_and_follows_what_pods_run() {
    let id = test_identity();
    let hash = |spec: &EtcdClusterSpec, membership: InitialCluster| {
        let sts = statefulset(&id, spec, &plan(3, membership));
        let template = sts.spec.unwrap().template;
        let annotated =
            template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[TEMPLATE_HASH_ANNOTATION].clone();
        assert_eq!(
            annotated,
            template_hash(&template),
            "the annotation is the template's own hash"
        );
        annotated
    };
    let spec = EtcdClusterSpec::default();
    let grown = InitialCluster {
        state: InitialClusterState::Existing,
        ordinals: vec![0, 1, 2],
    };
    assert_eq!(
        hash(&spec, InitialCluster::bootstrap()),
        hash(&spec, grown.clone()),
        "scaling rolls nothing"
    );
    let resized = EtcdClusterSpec {
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([("cpu".to_string(), Quantity("50m".into()))])),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_ne!(
        hash(&spec, grown.clone()),
        hash(&resized, grown),
        "a resource change rolls the pods"
    );
}

#[test]
fn a_cluster_from_a_backup_restores_its_first_member_only_while_bootstrapping() {
    use crate::backup_spec::{BackupLocation, PvcLocation};
    use crate::spec::Bootstrap;
    let id = test_identity();
    let spec = EtcdClusterSpec {
        bootstrap: Some(Bootstrap {
            from_backup: BackupLocation {
                pvc: Some(PvcLocation {
                    claim_name: "backups".into(),
                    path: Some("demo/".into()),
                }),
                s3: None,
            },
        }),
        ..EtcdClusterSpec::default()
    };
    let new = statefulset(&id, &spec, &plan(1, InitialCluster::bootstrap()));
    let pod = new.spec.as_ref().unwrap().template.spec.clone().unwrap();
    let init = &pod.init_containers.as_ref().expect("a restore init container")[0];
    assert_eq!(init.name, "restore");
    assert_eq!(
        init.args.as_ref().unwrap(),
        &[
            "backup",
            "restore",
            "--from=/backup-source/demo/",
            "--only-for=demo-0",
            "--name=$(POD_NAME)",
            "--data-dir=/var/lib/rustcd/data",
            "--initial-cluster=demo-0=http://demo-0.demo-peer.ns.svc:2380",
            "--initial-cluster-token=demo-u-1",
            "--initial-advertise-peer-urls=http://$(POD_NAME).demo-peer.ns.svc:2380",
        ]
    );
    let source = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "backup-source")
        .unwrap();
    let claim = source.persistent_volume_claim.as_ref().unwrap();
    assert_eq!((claim.claim_name.as_str(), claim.read_only), ("backups", Some(true)));
    // Once members join, the template has no restore, and the first member is not rolled for it.
    let grown = statefulset(
        &id,
        &spec,
        &plan(
            2,
            InitialCluster {
                state: InitialClusterState::Existing,
                ordinals: vec![0, 1],
            },
        ),
    );
    let grown_template = grown.spec.as_ref().unwrap().template.clone();
    assert!(grown_template.spec.as_ref().unwrap().init_containers.is_none());
    assert!(!grown_template
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .iter()
        .flatten()
        .any(|v| v.name == "backup-source"));
    assert_eq!(
        template_hash(&new.spec.as_ref().unwrap().template),
        template_hash(&grown_template)
    );
    // Without spec.bootstrap, nothing of it.
    let plain = statefulset(&id, &EtcdClusterSpec::default(), &plan(1, InitialCluster::bootstrap()));
    assert_eq!(
        template_hash(&plain.spec.as_ref().unwrap().template),
        template_hash(&grown_template)
    );
}
