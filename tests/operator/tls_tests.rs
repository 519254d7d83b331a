//! `spec.tls` through the whole loop: real rustcd members in Docker, certificates from the fake
//! cert-manager or from the user's Secrets, the operator calling the members with its own client
//! certificate, and rotation that restarts nothing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use kube::{Api, ResourceExt};
use rustcd_dial::Dialer;
use rustcd_operator::member_tls::Dial;
use rustcd_operator::spec::{IssuerKind, IssuerRef, TlsEndpoint, TlsSpec};
use rustcd_operator::{EtcdCluster, EtcdClusterSpec};

use crate::harness::{eventually, Harness, NS};
use crate::tls_probe::{der_of, secret_key, served_leaf};
use testkit::kube::cert_manager::FakeCertManager;
use testkit::kube::sandbox::docker;
use testkit::pki::{Authority, Request, Usage};

fn issuer_endpoint(name: &str) -> Option<TlsEndpoint> {
    Some(TlsEndpoint {
        secret_name: None,
        issuer_ref: Some(IssuerRef {
            name: name.into(),
            kind: IssuerKind::Issuer,
        }),
    })
}

fn secret_endpoint(name: &str) -> Option<TlsEndpoint> {
    Some(TlsEndpoint {
        secret_name: Some(name.into()),
        issuer_ref: None,
    })
}

async fn create(h: &Harness, name: &str, replicas: i32, tls: TlsSpec) {
    let spec = EtcdClusterSpec {
        replicas,
        tls: Some(tls),
        ..EtcdClusterSpec::default()
    };
    h.clusters()
        .create(&PostParams::default(), &EtcdCluster::new(name, spec))
        .await
        .expect("create EtcdCluster");
}

/// The pods of cluster `name` by name: (uid, IP).
async fn pods(h: &Harness, name: &str) -> BTreeMap<String, (String, IpAddr)> {
    let api: Api<Pod> = Api::namespaced(h.client.clone(), NS);
    let selector = format!("app.kubernetes.io/instance={name}");
    api.list(&ListParams::default().labels(&selector))
        .await
        .expect("list pods")
        .items
        .into_iter()
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.as_ref()?.parse().ok()?;
            Some((p.name_any(), (p.uid()?, ip)))
        })
        .collect()
}

/// The restart count and start time of every container of the sandbox, by container name.
fn containers(label: &str) -> BTreeMap<String, String> {
    let filter = format!("label={label}");
    let (_, ids) = docker(&["ps", "-q", "--filter", &filter]);
    ids.split_whitespace()
        .map(|id| {
            let (_, out) = docker(&["inspect", "-f", "{{.Name}} {{.RestartCount}} {{.State.StartedAt}}", id]);
            let out = out.trim().to_string();
            let (name, rest) = out.split_once(' ').unwrap_or((&out, ""));
            (name.to_string(), rest.to_string())
        })
        .collect()
}

/// MemberList through `dial` at pod `pod` of cluster `cluster`; (name, peer URL, client URL) sorted.
async fn member_list(
    dial: &Dial,
    cluster: &str,
    pod: &str,
    ip: IpAddr,
) -> Result<Vec<(String, String, String)>, String> {
    let host = format!("{pod}.{cluster}-peer.{NS}.svc");
    let client = rustcd_operator::etcd_client::MemberClient::connect(dial, ip, &host)
        .await
        .map_err(|e| e.to_string())?;
    let list = client.member_list().await.map_err(|e| e.to_string())?;
    let mut members: Vec<_> = list
        .members
        .into_iter()
        .map(|m| (m.name, m.peer_ur_ls.join(","), m.client_ur_ls.join(",")))
        .collect();
    members.sort();
    Ok(members)
}

/// `etcdctl member list` (simple format) against `ip:2379` with a client certificate, sorted by name.
fn etcdctl_member_list(ip: IpAddr, ca: &str, cert: &str, key: &str) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).expect("write pem");
        path.display().to_string()
    };
    let (ca, cert, key) = (
        file("ca.pem", ca),
        file("client.pem", cert),
        file("client-key.pem", key),
    );
    let endpoint = format!("https://{ip}:2379");
    let flags = [
        format!("--cacert={ca}"),
        format!("--cert={cert}"),
        format!("--key={key}"),
    ];
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--insecure-skip-tls-verify", "member", "list"]);
    let out = testkit::etcdctl(&endpoint, &args);
    assert_eq!(out.status, 0, "etcdctl member list: {out:?}");
    let mut lines: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    lines.sort_by_key(|l| l.split(", ").nth(2).unwrap_or_default().to_string());
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cert_manager_certificates_secure_the_cluster_and_rotate_without_restarts() {
    let Some(mut h) = Harness::with_members("tls-cm").await else {
        return;
    };
    let cm = FakeCertManager::start(h.client.clone(), NS, &[("Issuer", "ca")]);
    h.start_operator();
    create(
        &h,
        "sec",
        3,
        TlsSpec {
            client: issuer_endpoint("ca"),
            peer: issuer_endpoint("ca"),
            operator_secret_name: None,
        },
    )
    .await;
    h.wait_status("sec", Duration::from_secs(240), |s| {
        s.ready_replicas == 3 && s.members.len() == 3
    })
    .await;

    // The operator asked cert-manager for the two member certificates and its own.
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        h.client.clone(),
        NS,
        &ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
            "certificates",
        ),
    );
    let mut names: Vec<String> = certificates
        .list(&ListParams::default())
        .await
        .expect("list certificates")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    names.sort();
    assert_eq!(names, ["sec-client-tls", "sec-operator-tls", "sec-peer-tls"]);

    // A client with a certificate from the cluster's CA sees three started members on https URLs.
    let (cert, key) = cm.issue_client("root");
    let ca = cm.ca_pem();
    let ca_der = cm.ca_der();
    let dial = Dial::tls(Dialer::from_pem(ca.as_bytes(), cert.as_bytes(), key.as_bytes()).expect("dialer"));
    let pods = pods(&h, "sec").await;
    let (_, ip0) = pods["sec-0"].clone();
    let members = member_list(&dial, "sec", "sec-0", ip0)
        .await
        .expect("member list over TLS");
    assert_eq!(members.len(), 3, "{members:?}");
    for (k, (name, peer, client)) in members.iter().enumerate() {
        assert_eq!(name, &format!("sec-{k}"));
        assert_eq!(peer, &format!("https://sec-{k}.sec-peer.{NS}.svc:2380"));
        assert_eq!(client, &format!("https://sec-{k}.sec-peer.{NS}.svc:2379"));
    }
    // etcdctl with the same client certificate prints the same three members (it dials the pod IP,
    // which the member certificates do not name, hence --insecure-skip-tls-verify; the client
    // certificate is still required and checked by the member).
    if testkit::etcdctl_usable() {
        let lines = etcdctl_member_list(ip0, &ca, &cert, &key);
        assert_eq!(lines.len(), 3, "{lines:?}");
        for (k, line) in lines.iter().enumerate() {
            let fields: Vec<&str> = line.split(", ").collect();
            assert_eq!(
                fields[1..],
                [
                    "started",
                    &format!("sec-{k}"),
                    &format!("https://sec-{k}.sec-peer.{NS}.svc:2380"),
                    &format!("https://sec-{k}.sec-peer.{NS}.svc:2379"),
                    "false"
                ],
                "{line}"
            );
        }
    }
    // Plaintext, no client certificate, or a certificate from another CA: refused.
    let plain = member_list(&Dial::plain(), "sec", "sec-0", ip0).await;
    assert!(plain.is_err(), "plaintext must be refused: {plain:?}");
    let stranger = Authority::new("stranger").sign(&Request::new("root", &[], Usage::Client, 30));
    let foreign =
        Dialer::from_pem(ca.as_bytes(), stranger.cert_pem.as_bytes(), stranger.key_pem.as_bytes()).expect("dialer");
    let refused = member_list(&Dial::tls(foreign), "sec", "sec-0", ip0).await;
    assert!(
        refused.is_err(),
        "a certificate from another CA must be refused: {refused:?}"
    );

    // Rotation: cert-manager renews every certificate (new keys). Members serve the new ones without
    // a restart, the StatefulSet's template does not change, and the operator keeps working.
    let sts_api: Api<StatefulSet> = Api::namespaced(h.client.clone(), NS);
    let template_before = sts_api.get("sec").await.expect("sts").spec.expect("spec").template;
    let label = h.sandbox.as_ref().expect("sandbox").label();
    let containers_before = containers(&label);
    assert_eq!(containers_before.len(), 3, "{containers_before:?}");
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let old_client = secret_key(&secrets.get("sec-client-tls").await.expect("secret"), "tls.crt");
    let old_peer = secret_key(&secrets.get("sec-peer-tls").await.expect("secret"), "tls.crt");
    for name in ["sec-client-tls", "sec-peer-tls", "sec-operator-tls"] {
        cm.renew(name);
    }
    let renewed = eventually(Duration::from_secs(30), || {
        let secrets = secrets.clone();
        let (old_client, old_peer) = (old_client.clone(), old_peer.clone());
        async move {
            let client = secret_key(&secrets.get("sec-client-tls").await.ok()?, "tls.crt");
            let peer = secret_key(&secrets.get("sec-peer-tls").await.ok()?, "tls.crt");
            (client != old_client && peer != old_peer).then_some((client, peer))
        }
    })
    .await;
    let (new_client, new_peer) = renewed.expect("cert-manager renewed the Secrets");
    for (pod, (_, ip)) in &pods {
        for (port, pem) in [(2379, &new_client), (2380, &new_peer)] {
            let expected = &der_of(pem);
            let host = format!("{pod}.sec-peer.{NS}.svc");
            let (ca, host) = (&ca_der, &host);
            let served = eventually(Duration::from_secs(120), || async move {
                (&served_leaf(*ip, port, ca, host).await? == expected).then_some(())
            })
            .await;
            assert!(served.is_some(), "{pod}:{port} still presents the old certificate");
        }
    }
    let template_after = sts_api.get("sec").await.expect("sts").spec.expect("spec").template;
    assert_eq!(template_before, template_after, "rotation changed the pod template");
    assert_eq!(containers(&label), containers_before, "rotation restarted a member");
    assert_eq!(
        self::pods(&h, "sec")
            .await
            .values()
            .map(|(uid, _)| uid.clone())
            .collect::<Vec<_>>(),
        pods.values().map(|(uid, _)| uid.clone()).collect::<Vec<_>>(),
        "rotation replaced a pod"
    );
    // The members still talk to each other (new connections use the new certificates) and the operator
    // still reaches them with its renewed certificate: scale down by one member.
    h.scale("sec", 2).await;
    h.wait_status("sec", Duration::from_secs(120), |s| {
        s.ready_replicas == 2 && s.members.len() == 2
    })
    .await;
    let members = member_list(&dial, "sec", "sec-0", ip0)
        .await
        .expect("member list after rotation");
    assert_eq!(members.len(), 2, "{members:?}");
}

fn tls_secret(name: &str, ca: &[u8], cert: &[u8], key: &[u8]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            ("ca.crt".to_string(), ByteString(ca.to_vec())),
            ("tls.crt".to_string(), ByteString(cert.to_vec())),
            ("tls.key".to_string(), ByteString(key.to_vec())),
        ])),
        ..Secret::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn user_secrets_are_waited_for_then_used() {
    let Some(mut h) = Harness::with_members("tls-own").await else {
        return;
    };
    h.start_operator();
    create(
        &h,
        "own",
        1,
        TlsSpec {
            client: secret_endpoint("own-server"),
            peer: secret_endpoint("own-peer"),
            operator_secret_name: Some("own-operator".into()),
        },
    )
    .await;
    // No Secret yet: the operator waits, says why, and creates no pod.
    let waiting = h
        .wait_status("own", Duration::from_secs(30), |s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Progressing" && c.message.contains("Secret ns/own-server does not exist yet"))
        })
        .await;
    assert!(waiting.status.is_some());
    let sts: Api<StatefulSet> = Api::namespaced(h.client.clone(), NS);
    assert!(
        sts.get_opt("own").await.expect("get sts").is_none(),
        "no StatefulSet before the certificates"
    );

    let ca = Authority::new("own CA");
    let sans = ["*.own-peer.ns.svc", "own.ns.svc", "localhost"];
    let server = ca.sign(&Request::new("own", &sans, Usage::ServerAndClient, 30));
    let peer = ca.sign(&Request::new("own", &sans[..1], Usage::ServerAndClient, 30));
    let operator = ca.sign(&Request::new("root", &[], Usage::Client, 30));
    let ca_pem = ca.pem();
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    for (name, issued) in [
        ("own-server", &server),
        ("own-peer", &peer),
        ("own-operator", &operator),
    ] {
        let secret = tls_secret(
            name,
            ca_pem.as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        );
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("create secret");
    }
    h.wait_status("own", Duration::from_secs(120), |s| {
        s.ready_replicas == 1 && s.members.len() == 1
    })
    .await;
    let pods = pods(&h, "own").await;
    let (_, ip) = pods["own-0"].clone();
    let dial = Dial::tls(
        Dialer::from_pem(
            ca_pem.as_bytes(),
            operator.cert_pem.as_bytes(),
            operator.key_pem.as_bytes(),
        )
        .expect("dialer"),
    );
    let members = member_list(&dial, "own", "own-0", ip).await.expect("member list");
    assert_eq!(
        members,
        [(
            "own-0".to_string(),
            "https://own-0.own-peer.ns.svc:2380".to_string(),
            "https://own-0.own-peer.ns.svc:2379".to_string()
        )]
    );
    assert_eq!(
        served_leaf(ip, 2379, &ca.der(), "own-0.own-peer.ns.svc").await,
        Some(server.der.clone())
    );
}

/// Secrets that exist but cannot be used: the cluster waits and says which Secret and what is wrong.
#[tokio::test]
async fn unusable_secrets_are_reported_by_name() {
    let mut h = Harness::without_pods().await;
    h.start_operator();
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), NS);
    let ca = Authority::new("ca");
    let operator = ca.sign(&Request::new("root", &[], Usage::Client, 30));
    // The members' Secret has a CA that is not PEM; the operator's lacks its key.
    let junk_ca = tls_secret("bad-server", b"not a certificate", b"x", b"y");
    secrets
        .create(&PostParams::default(), &junk_ca)
        .await
        .expect("create secret");
    let mut keyless = tls_secret("bad-operator", ca.pem().as_bytes(), operator.cert_pem.as_bytes(), b"");
    if let Some(data) = keyless.data.as_mut() {
        data.remove("tls.key");
    }
    secrets
        .create(&PostParams::default(), &keyless)
        .await
        .expect("create secret");
    create(
        &h,
        "bad",
        1,
        TlsSpec {
            client: secret_endpoint("bad-server"),
            peer: None,
            operator_secret_name: Some("bad-operator".into()),
        },
    )
    .await;
    let progressing = |cluster: &EtcdCluster| {
        let status = cluster.status.as_ref().expect("status");
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Progressing")
            .expect("Progressing");
        c.message.clone()
    };
    let waiting = h
        .wait_status("bad", Duration::from_secs(30), |s| {
            s.conditions
                .iter()
                .any(|c| c.message.contains("Secret ns/bad-operator has no tls.key"))
        })
        .await;
    assert!(progressing(&waiting).starts_with("wait: waiting for TLS certificates: "));
    // With the key in place, the CA is the next problem, named with both Secrets.
    let fixed = tls_secret(
        "bad-operator",
        ca.pem().as_bytes(),
        operator.cert_pem.as_bytes(),
        operator.key_pem.as_bytes(),
    );
    secrets
        .replace("bad-operator", &PostParams::default(), &fixed)
        .await
        .expect("replace secret");
    let waiting = h
        .wait_status("bad", Duration::from_secs(30), |s| {
            s.conditions.iter().any(|c| c.message.contains("CA bundle"))
        })
        .await;
    let message = progressing(&waiting);
    assert!(message.contains("ns/bad-server (ca.crt)"), "{message}");
    let sts: Api<StatefulSet> = Api::namespaced(h.client.clone(), NS);
    assert!(
        sts.get_opt("bad").await.expect("get sts").is_none(),
        "nothing started on unusable certificates"
    );
}
