//! Tests of the TLS test infrastructure itself: the fake cert-manager against the fake API server
//! (no Docker), and the fake kubelet's secret volumes with rustcd members in Docker serving TLS from a
//! mounted Secret, following its rotation without a restart (those print `SKIP:` and pass where Docker
//! is unavailable).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::{json, Value};

use crate::harness::{eventually, Harness, NS};
use crate::tls_probe::{der_of, secret_key, served_leaf};
use testkit::kube::cert_manager::{certificate_resource, certificates, FakeCertManager, SPEC_HASH_ANNOTATION};
use testkit::kube::sandbox::docker;
use testkit::pki::{Request, Usage};

const WAIT: Duration = Duration::from_secs(10);
/// A member container's start and first readiness.
const START: Duration = Duration::from_secs(60);
/// serverAuth and clientAuth (DER contents of the OIDs).
const SERVER_AUTH: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 3, 1];
const CLIENT_AUTH: &[u8] = &[0x2b, 6, 1, 5, 5, 7, 3, 2];
const MOUNT: &str = "/etc/rustcd/tls/client";
/// The name the members' certificates are for, and the client verifies.
const SERVER_NAME: &str = "member.rustcd.test";

/// Checks that `leaf` chains to `ca` and has the extended key usage `eku`.
fn chains(leaf: &[u8], ca: &[u8], eku: &'static [u8]) -> Result<(), webpki::Error> {
    let ca = CertificateDer::from(ca.to_vec());
    let anchor = webpki::anchor_from_trusted_cert(&ca)?;
    let leaf = CertificateDer::from(leaf.to_vec());
    let ee = webpki::EndEntityCert::try_from(&leaf)?;
    let algs = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .all;
    ee.verify_for_usage(
        algs,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::required(eku),
        None,
        None,
    )
    .map(|_| ())
}

/// Whether `leaf` is valid for `name` (a DNS name or an IP address).
fn valid_for(leaf: &[u8], name: &str) -> bool {
    let leaf = CertificateDer::from(leaf.to_vec());
    let (Ok(ee), Ok(name)) = (webpki::EndEntityCert::try_from(&leaf), ServerName::try_from(name)) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The subject's commonName.
fn common_name(leaf: &[u8]) -> Option<String> {
    let leaf = CertificateDer::from(leaf.to_vec());
    let ee = webpki::EndEntityCert::try_from(&leaf).ok()?;
    let subject = ee.subject();
    let oid = [0x06, 0x03, 0x55, 0x04, 0x03];
    let at = subject.windows(oid.len()).position(|w| w == oid)? + oid.len();
    let len = usize::from(*subject.get(at + 1)?);
    String::from_utf8(subject.get(at + 2..at + 2 + len)?.to_vec()).ok()
}

fn serial(leaf: &[u8]) -> Vec<u8> {
    let leaf = CertificateDer::from(leaf.to_vec());
    let ee = webpki::EndEntityCert::try_from(&leaf).expect("parse the certificate");
    ee.serial().to_vec()
}

/// The first byte of the keyUsage bits (0x80 digitalSignature, 0x20 keyEncipherment).
fn key_usage(der: &[u8]) -> Option<u8> {
    let oid = [0x06, 0x03, 0x55, 0x1d, 0x0f];
    let mut at = der.windows(oid.len()).position(|w| w == oid)? + oid.len();
    if der.get(at) == Some(&0x01) {
        at += 3; // critical: BOOLEAN TRUE
    }
    // OCTET STRING { BIT STRING { unused-bits, bits... } }
    (der.get(at) == Some(&0x04) && der.get(at + 2) == Some(&0x03)).then_some(())?;
    der.get(at + 5).copied()
}

fn certificate(name: &str, spec: Value) -> DynamicObject {
    let mut object = DynamicObject::new(name, &certificate_resource());
    object.data = json!({ "spec": spec });
    object
}

async fn create_certificate(client: &Client, name: &str, spec: Value) {
    certificates(client.clone(), NS)
        .create(&PostParams::default(), &certificate(name, spec))
        .await
        .expect("create Certificate");
}

fn secrets(client: &Client) -> Api<Secret> {
    Api::namespaced(client.clone(), NS)
}

/// Waits for Secret `name` to satisfy `done`.
async fn secret_when(client: &Client, name: &str, done: impl Fn(&Secret) -> bool) -> Secret {
    let api = secrets(client);
    let done = &done;
    eventually(WAIT, || {
        let api = api.clone();
        async move { api.get_opt(name).await.ok().flatten().filter(|s| done(s)) }
    })
    .await
    .unwrap_or_else(|| panic!("Secret {name} not as expected within {WAIT:?}"))
}

fn leaf_of(secret: &Secret) -> Vec<u8> {
    der_of(&secret_key(secret, "tls.crt"))
}

/// The Ready condition of Certificate `name`: (status, reason, message), and `status.revision`.
async fn certificate_state(client: &Client, name: &str) -> Option<((String, String, String), Option<i64>)> {
    let cert = certificates(client.clone(), NS).get(name).await.ok()?;
    let status = &cert.data["status"];
    let ready = status["conditions"].as_array()?.iter().find(|c| c["type"] == "Ready")?;
    let text = |k: &str| ready[k].as_str().unwrap_or_default().to_string();
    Some((
        (text("status"), text("reason"), text("message")),
        status["revision"].as_i64(),
    ))
}

#[tokio::test]
async fn fake_cert_manager_issues_what_the_certificate_asks_for() {
    let h = Harness::without_pods().await;
    let cm = FakeCertManager::start(
        h.client.clone(),
        NS,
        &[("Issuer", "etcd-ca"), ("ClusterIssuer", "global")],
    );
    create_certificate(
        &h.client,
        "demo-server",
        json!({
            "secretName": "demo-server-tls",
            "commonName": "demo",
            "dnsNames": ["demo.ns.svc", "*.demo-peer.ns.svc"],
            "ipAddresses": ["127.0.0.1"],
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "duration": "2160h",
            "issuerRef": {"name": "etcd-ca", "kind": "Issuer", "group": "cert-manager.io"},
        }),
    )
    .await;
    create_certificate(
        &h.client,
        "demo-client",
        json!({
            "secretName": "demo-client-tls",
            "commonName": "root",
            "usages": ["client auth"],
            "duration": "1h30m",
            "issuerRef": {"name": "global", "kind": "ClusterIssuer"},
        }),
    )
    .await;

    let server = secret_when(&h.client, "demo-server-tls", |_| true).await;
    assert_eq!(server.type_.as_deref(), Some("kubernetes.io/tls"), "Secret type");
    let ca = der_of(&secret_key(&server, "ca.crt"));
    assert_eq!(ca, cm.ca_der(), "ca.crt is the fake cert-manager's CA");
    assert_eq!(
        String::from_utf8_lossy(&secret_key(&server, "ca.crt")),
        cm.ca_pem(),
        "ca.crt PEM"
    );
    let annotations = server.metadata.annotations.clone().unwrap_or_default();
    for (k, v) in [
        ("cert-manager.io/certificate-name", "demo-server"),
        ("cert-manager.io/issuer-name", "etcd-ca"),
        ("cert-manager.io/issuer-kind", "Issuer"),
    ] {
        assert_eq!(
            annotations.get(k).map(String::as_str),
            Some(v),
            "annotation {k}: {annotations:?}"
        );
    }
    assert!(
        annotations.contains_key(SPEC_HASH_ANNOTATION),
        "spec hash kept: {annotations:?}"
    );
    let leaf = leaf_of(&server);
    chains(&leaf, &ca, SERVER_AUTH).expect("server certificate chains to ca.crt for serverAuth");
    chains(&leaf, &ca, CLIENT_AUTH).expect("server certificate is also for clientAuth");
    assert_eq!(common_name(&leaf).as_deref(), Some("demo"), "commonName");
    for name in [
        "demo.ns.svc",
        "demo-0.demo-peer.ns.svc",
        "demo-2.demo-peer.ns.svc",
        "127.0.0.1",
    ] {
        assert!(valid_for(&leaf, name), "server certificate not valid for {name}");
    }
    for name in [
        "other.ns.svc",
        "demo-0.other-peer.ns.svc",
        "a.b.demo-peer.ns.svc",
        "127.0.0.2",
    ] {
        assert!(!valid_for(&leaf, name), "server certificate valid for {name}");
    }
    let ku = key_usage(&leaf).expect("keyUsage extension");
    assert_eq!(ku & 0xa0, 0xa0, "digitalSignature and keyEncipherment, got {ku:#x}");
    // The key in the Secret is the certificate's: rustls accepts the pair.
    let cert = CertificateDer::from(leaf.clone());
    let private =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(&secret_key(&server, "tls.key")).expect("tls.key PEM");
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(vec![cert], private, &provider).expect("tls.key matches tls.crt");

    let client = secret_when(&h.client, "demo-client-tls", |_| true).await;
    let client_leaf = leaf_of(&client);
    chains(&client_leaf, &ca, CLIENT_AUTH).expect("client certificate chains for clientAuth");
    assert!(
        chains(&client_leaf, &ca, SERVER_AUTH).is_err(),
        "client certificate must not be for serverAuth"
    );
    assert_eq!(common_name(&client_leaf).as_deref(), Some("root"), "client commonName");

    // Status: Ready, revision 1, notAfter `duration` from now.
    let certs = certificates(h.client.clone(), NS);
    for (name, lifetime) in [("demo-server", 2160 * 3600), ("demo-client", 5400)] {
        let state = eventually(WAIT, || async {
            certificate_state(&h.client, name).await.filter(|s| s.0 .0 == "True")
        })
        .await
        .unwrap_or_else(|| panic!("{name} not Ready"));
        assert_eq!(state.1, Some(1), "{name}: revision of the first issuance");
        let status = certs.get(name).await.expect("get Certificate").data["status"].clone();
        let not_after = status["notAfter"].as_str().expect("status.notAfter");
        let not_after = k8s_openapi::chrono::DateTime::parse_from_rfc3339(not_after).expect("RFC 3339 notAfter");
        let left = (not_after.timestamp() - k8s_openapi::chrono::Utc::now().timestamp()) as f64;
        assert!(
            (left - f64::from(lifetime)).abs() < 120.0,
            "{name}: notAfter {not_after} is {left}s away"
        );
    }

    // The client side of a test acting as etcdctl.
    let (cert_pem, key_pem) = cm.issue_client("root");
    let leaf = der_of(cert_pem.as_bytes());
    chains(&leaf, &ca, CLIENT_AUTH).expect("issue_client chains for clientAuth");
    assert!(
        chains(&leaf, &ca, SERVER_AUTH).is_err(),
        "issue_client is clientAuth only"
    );
    assert!(key_pem.contains("PRIVATE KEY"), "issue_client key PEM");
}

#[tokio::test]
async fn fake_cert_manager_leaves_certificates_of_unknown_issuers_pending() {
    let h = Harness::without_pods().await;
    let _cm = FakeCertManager::start(h.client.clone(), NS, &[("Issuer", "etcd-ca")]);
    for (name, issuer) in [
        ("wrong-name", json!({"name": "missing-ca"})),
        ("wrong-kind", json!({"name": "etcd-ca", "kind": "ClusterIssuer"})),
    ] {
        let spec = json!({"secretName": format!("{name}-tls"), "commonName": "x", "issuerRef": issuer});
        create_certificate(&h.client, name, spec).await;
    }
    for (name, missing) in [("wrong-name", "missing-ca"), ("wrong-kind", "etcd-ca")] {
        let ((status, reason, message), _) = eventually(WAIT, || async { certificate_state(&h.client, name).await })
            .await
            .unwrap_or_else(|| panic!("{name}: no Ready condition"));
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "Pending"),
            "{name}: {message}"
        );
        assert!(message.contains(missing), "{name}: message names the issuer: {message}");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for name in ["wrong-name-tls", "wrong-kind-tls"] {
        let secret = secrets(&h.client).get_opt(name).await.expect("get Secret");
        assert!(secret.is_none(), "{name} must not be written for an unknown issuer");
    }
    // Pointing the Certificate at a known issuer gets it issued.
    let patch = json!({"spec": {"issuerRef": {"name": "etcd-ca"}}});
    certificates(h.client.clone(), NS)
        .patch("wrong-name", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch issuerRef");
    secret_when(&h.client, "wrong-name-tls", |_| true).await;
}

#[tokio::test]
async fn fake_cert_manager_reissues_on_renew_and_spec_change_only() {
    let h = Harness::without_pods().await;
    let cm = FakeCertManager::start(h.client.clone(), NS, &[("Issuer", "etcd-ca")]);
    let spec = json!({
        "secretName": "member-tls", "commonName": "member", "dnsNames": ["a.ns.svc"],
        "usages": ["server auth"], "issuerRef": {"name": "etcd-ca"},
    });
    create_certificate(&h.client, "member", spec).await;
    let first = secret_when(&h.client, "member-tls", |_| true).await;
    let rv = first.resource_version();
    // Nothing changes: no re-issue, however many rounds go by.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = secrets(&h.client).get("member-tls").await.expect("get Secret");
    assert_eq!(
        still.resource_version(),
        rv,
        "an unchanged Certificate must not be re-issued"
    );
    let revision = || async { certificate_state(&h.client, "member").await.and_then(|s| s.1) };
    assert_eq!(revision().await, Some(1), "revision after the first issuance");

    cm.renew("member");
    let renewed = secret_when(&h.client, "member-tls", |s| s.resource_version() != rv).await;
    assert_ne!(
        serial(&leaf_of(&renewed)),
        serial(&leaf_of(&first)),
        "renew gives a new serial"
    );
    assert_ne!(
        secret_key(&renewed, "tls.key"),
        secret_key(&first, "tls.key"),
        "renew gives a new key"
    );
    assert_eq!(renewed.uid(), first.uid(), "renew rewrites the same Secret");
    eventually(WAIT, || async { (revision().await == Some(2)).then_some(()) })
        .await
        .expect("revision 2 after renew");
    // Renewed once only.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rv = secrets(&h.client)
        .get("member-tls")
        .await
        .expect("get Secret")
        .resource_version();
    assert_eq!(rv, renewed.resource_version(), "renew re-issues once");

    let patch = json!({"spec": {"dnsNames": ["a.ns.svc", "b.ns.svc"]}});
    certificates(h.client.clone(), NS)
        .patch("member", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("patch dnsNames");
    let changed = secret_when(&h.client, "member-tls", |s| s.resource_version() != rv).await;
    let leaf = leaf_of(&changed);
    assert!(
        valid_for(&leaf, "b.ns.svc"),
        "the new dnsName is in the re-issued certificate"
    );
    assert_ne!(
        serial(&leaf),
        serial(&leaf_of(&renewed)),
        "a spec change gives a new serial"
    );
    eventually(WAIT, || async { (revision().await == Some(3)).then_some(()) })
        .await
        .expect("revision 3 after the spec change");
}

// ---- secret volumes in the fake kubelet (Docker) ----

/// A one-member StatefulSet serving client TLS from Secret `secret` mounted at [`MOUNT`].
fn member_set(name: &str, image: &str, secret: &str) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": format!("{name}-peer"),
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{
                        "name": "rustcd",
                        "image": image,
                        "args": [
                            format!("--name={name}"),
                            "--listen-client-urls=https://0.0.0.0:2379",
                            format!("--advertise-client-urls=https://{SERVER_NAME}:2379"),
                            format!("--cert-file={MOUNT}/tls.crt"),
                            format!("--key-file={MOUNT}/tls.key"),
                            "--listen-metrics-urls=http://0.0.0.0:2381",
                        ],
                        "volumeMounts": [{"name": "tls-client", "mountPath": MOUNT, "readOnly": true}],
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": 2381}},
                    }],
                    "volumes": [{"name": "tls-client", "secret": {"secretName": secret}}],
                },
            },
        },
    }))
    .expect("StatefulSet")
}

async fn create_set(h: &Harness, name: &str, secret: &str) {
    Api::<StatefulSet>::namespaced(h.client.clone(), NS)
        .create(&PostParams::default(), &member_set(name, &h.image, secret))
        .await
        .expect("create StatefulSet");
}

fn tls_secret(name: &str, cm: &FakeCertManager) -> (Secret, Vec<u8>) {
    let issued = cm.issue(&Request::new("member", &[SERVER_NAME], Usage::ServerAndClient, 30));
    let mut secret = Secret {
        type_: Some("kubernetes.io/tls".into()),
        ..Secret::default()
    };
    secret.metadata.name = Some(name.into());
    let data = secret.data.get_or_insert_with(Default::default);
    data.insert("tls.crt".into(), ByteString(issued.cert_pem.into_bytes()));
    data.insert("tls.key".into(), ByteString(issued.key_pem.into_bytes()));
    (secret, issued.der)
}

fn is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.pod_ip.as_ref()).is_some()
        && status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn ready_pod(h: &Harness, name: &str) -> (Pod, IpAddr) {
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), NS);
    let pod = eventually(START, || async {
        pods.get_opt(name).await.ok().flatten().filter(is_ready)
    })
    .await
    .unwrap_or_else(|| panic!("pod {name} not Ready within {START:?}"));
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).expect("podIP");
    let ip = ip.parse().expect("podIP is an IP address");
    (pod, ip)
}

/// The fake kubelet's container of `pod`.
fn container_of(h: &Harness, pod: &Pod) -> String {
    let tag = &h.sandbox.as_ref().expect("sandbox").tag;
    let uid = pod.uid().expect("pod uid");
    format!("{tag}-{}-{}", pod.name_any(), &uid[uid.len().saturating_sub(6)..])
}

fn inspect(container: &str, format: &str) -> String {
    let (ok, out) = docker(&["inspect", "-f", format, container]);
    assert!(ok, "docker inspect {container}: {out}");
    out.trim().to_string()
}

/// Waits until `ip:2379` presents `leaf`.
async fn serves(ip: IpAddr, ca: &[u8], leaf: &[u8], what: &str) {
    let served = eventually(WAIT, || async {
        served_leaf(ip, 2379, ca, SERVER_NAME).await.filter(|l| l == leaf)
    })
    .await;
    assert!(served.is_some(), "{ip}:2379 does not present {what}");
}

/// Checks that the container's mount of [`MOUNT`] is the kubelet's read-only AtomicWriter layout, and
/// returns (host dir, current data dir).
fn atomic_layout(container: &str, cert_pem: &[u8]) -> (String, String) {
    let source = inspect(
        container,
        &format!("{{{{range .Mounts}}}}{{{{if eq .Destination \"{MOUNT}\"}}}}{{{{.Source}}}} {{{{.RW}}}}{{{{end}}}}{{{{end}}}}"),
    );
    let (source, rw) = source
        .split_once(' ')
        .unwrap_or_else(|| panic!("no mount of {MOUNT}: {source:?}"));
    assert_eq!(rw, "false", "secret volumes are mounted read-only");
    let dir = Path::new(source);
    let data = std::fs::read_link(dir.join("..data")).expect("..data is a symlink");
    let data = data.to_string_lossy().into_owned();
    assert!(data.starts_with("..") && dir.join(&data).is_dir(), "..data -> {data}");
    for file in ["tls.crt", "tls.key"] {
        let link = std::fs::read_link(dir.join(file)).unwrap_or_else(|e| panic!("{file} is no symlink: {e}"));
        assert_eq!(link, Path::new("..data").join(file), "{file} -> ..data/{file}");
    }
    let on_disk = std::fs::read(dir.join("tls.crt")).expect("read tls.crt");
    assert_eq!(on_disk, cert_pem, "the mounted tls.crt is the Secret's");
    (source.to_string(), data)
}

#[tokio::test]
async fn secret_volume_is_mounted_and_rotated_without_a_restart() {
    let Some(h) = Harness::with_members("secret-volume").await else {
        return;
    };
    let cm = FakeCertManager::start(h.client.clone(), NS, &[]);
    let (secret, first_leaf) = tls_secret("member-tls", &cm);
    secrets(&h.client)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
    create_set(&h, "member", "member-tls").await;
    let (pod, ip) = ready_pod(&h, "member-0").await;
    let container = container_of(&h, &pod);
    let started = inspect(&container, "{{.Id}} {{.RestartCount}}");
    serves(ip, &cm.ca_der(), &first_leaf, "the Secret's certificate").await;
    let (host_dir, first_data) = atomic_layout(&container, &secret_key(&secret, "tls.crt"));

    // Rotate: the new certificate reaches the running member without a restart.
    let (rotated, second_leaf) = tls_secret("member-tls", &cm);
    let patch = json!({"data": {
        "tls.crt": rotated.data.as_ref().expect("data")["tls.crt"],
        "tls.key": rotated.data.as_ref().expect("data")["tls.key"],
    }});
    secrets(&h.client)
        .patch("member-tls", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .expect("rotate the Secret");
    serves(ip, &cm.ca_der(), &second_leaf, "the rotated certificate").await;
    assert_eq!(
        inspect(&container, "{{.Id}} {{.RestartCount}}"),
        started,
        "the container was restarted or replaced"
    );
    assert!(started.ends_with(" 0"), "restart count: {started}");
    let (_, second_data) = atomic_layout(&container, &secret_key(&rotated, "tls.crt"));
    assert_ne!(first_data, second_data, "a new data dir after the rotation");
    assert!(
        !Path::new(&host_dir).join(&first_data).exists(),
        "the old data dir is removed"
    );

    // The pod's volumes go with its container.
    let scale = json!({"spec": {"replicas": 0}});
    Api::<StatefulSet>::namespaced(h.client.clone(), NS)
        .patch("member", &PatchParams::default(), &Patch::Merge(scale))
        .await
        .expect("scale to 0");
    let gone = eventually(WAIT, || async { (!Path::new(&host_dir).exists()).then_some(()) }).await;
    assert!(gone.is_some(), "{host_dir} outlived its pod");
}

#[tokio::test]
async fn pod_waits_for_its_secret_and_follows_renewals() {
    let Some(h) = Harness::with_members("secret-pending").await else {
        return;
    };
    create_set(&h, "late", "late-tls").await;
    let pods: Api<Pod> = Api::namespaced(h.client.clone(), NS);
    let pending = eventually(WAIT, || async {
        let pod = pods.get_opt("late-0").await.ok().flatten()?;
        let status = pod.status.clone()?;
        (status.phase.as_deref() == Some("Pending")).then_some(pod)
    })
    .await
    .expect("late-0 Pending");
    let message = pending
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| format!("{cs:?}"));
    assert!(
        message
            .as_deref()
            .is_some_and(|m| m.contains("late-tls") && m.contains("\"False\"")),
        "not Ready, saying which Secret is missing: {message:?}"
    );
    // Still no container a few syncs later.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let label = format!("label={}", h.sandbox.as_ref().expect("sandbox").label());
    let (_, containers) = docker(&["ps", "-a", "-q", "--filter", &label, "--filter", "name=late-0"]);
    assert!(
        containers.trim().is_empty(),
        "a container without its Secret: {containers}"
    );

    // cert-manager writes the Secret: the pod starts and serves it; a renewal reaches it in place.
    let cm = FakeCertManager::start(h.client.clone(), NS, &[("Issuer", "etcd-ca")]);
    let spec = json!({
        "secretName": "late-tls", "commonName": "late", "dnsNames": [SERVER_NAME],
        "usages": ["server auth", "client auth"], "issuerRef": {"name": "etcd-ca"},
    });
    create_certificate(&h.client, "late", spec).await;
    let issued = secret_when(&h.client, "late-tls", |_| true).await;
    let (pod, ip) = ready_pod(&h, "late-0").await;
    let container = container_of(&h, &pod);
    let started = inspect(&container, "{{.Id}} {{.RestartCount}}");
    serves(ip, &cm.ca_der(), &leaf_of(&issued), "the issued certificate").await;

    cm.renew("late");
    let renewed = secret_when(&h.client, "late-tls", |s| {
        s.resource_version() != issued.resource_version()
    })
    .await;
    serves(ip, &cm.ca_der(), &leaf_of(&renewed), "the renewed certificate").await;
    assert_eq!(
        inspect(&container, "{{.Id}} {{.RestartCount}}"),
        started,
        "the container was restarted or replaced"
    );
}
