//! TLS end to end: etcd's standard secure deployment (https client and peer URLs, mutual
//! TLS on both) with rustcd in place of etcd, checked with etcdctl and against Debian's
//! etcd 3.4; bad certificates and plaintext refused with the store unchanged; certificate
//! rotation without restart; auth by the client certificate's CN. Certificates are
//! generated at test time (`testkit::pki`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use testkit::cluster::Cluster;
use testkit::pki::{Pki, Usage};
use testkit::{etcdctl, etcdctl_until_ok, print_skip, skip_reason, Background, Kind, Output};

/// A fresh test PKI, or None (saying why) when etcd/etcdctl are not installed.
fn pki_unless_skipped() -> Option<Pki> {
    if let Some(r) = skip_reason() {
        print_skip(&r);
        return None;
    }
    Some(Pki::new())
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// etcdctl with the given TLS flags in front of `args`.
fn ctl(endpoint: &str, tls: &[String], args: &[&str]) -> Output {
    let mut all = refs(tls);
    all.extend_from_slice(args);
    etcdctl(endpoint, &all)
}

/// Whether `cond` holds within a few seconds (a server logs a rejection just after the
/// client has seen it).
fn eventually(cond: impl Fn() -> bool) -> bool {
    eventually_for(Duration::from_secs(5), cond)
}

fn eventually_for(within: Duration, cond: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    cond()
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port")
}

/// A secure cluster of `kind` with etcdctl's client certificate flags.
fn secure(kind: Kind, n: usize, pki: &Pki) -> Cluster {
    let flags = pki.member_flags();
    let ctl_flags = pki.ctl_flags(&pki.client);
    let c = Cluster::start_secure(kind, n, &refs(&flags), "https", &refs(&ctl_flags));
    c.leader(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("secure {} cluster elected no leader", kind.name()));
    c
}

/// `member list` with IDs and URLs replaced by the member names, lines sorted.
fn normalized_member_list(c: &Cluster, tls: &[String]) -> String {
    let o = etcdctl_until_ok(
        &c.members[0].client,
        &[refs(tls), vec!["member", "list"]].concat(),
        Duration::from_secs(20),
    );
    assert_eq!(o.status, 0, "member list failed: {o:?}");
    let mut lines: Vec<String> = o
        .stdout
        .lines()
        .map(|l| {
            let mut l = l.split_once(',').map(|x| x.1).unwrap_or_default().to_string();
            for m in &c.members {
                l = l.replace(&m.client, &format!("<{}-client>", m.name));
                l = l.replace(&m.peer, &format!("<{}-peer>", m.name));
            }
            format!("<id>,{l}")
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

#[test]
fn secure_three_member_cluster_works_like_etcd() {
    let Some(pki) = pki_unless_skipped() else { return };
    let tls = pki.ctl_flags(&pki.client);
    let rustcd = secure(Kind::Rustcd, 3, &pki);
    let etcd = secure(Kind::Etcd, 3, &pki);
    let ours = normalized_member_list(&rustcd, &tls);
    let theirs = normalized_member_list(&etcd, &tls);
    assert_eq!(ours, theirs, "member list differs from etcd's");
    assert_eq!(ours.matches(", started, ").count(), 3, "{ours}");
    assert!(ours.contains("<m1-peer>, <m1-client>"), "{ours}");

    // put / get / watch through the https endpoints, on a follower and the leader.
    let endpoints = rustcd.endpoints();
    // From revision 1: the event is seen even if the watch starts after the put.
    let mut watch = Background::spawn(&endpoints, &[refs(&tls), vec!["watch", "k", "--rev=1"]].concat(), None);
    let put = ctl(&rustcd.members[2].client, &tls, &["put", "k", "v1"]);
    assert_eq!((put.status, put.stdout.trim()), (0, "OK"), "{put:?}");
    let get = ctl(&rustcd.members[0].client, &tls, &["get", "k"]);
    assert_eq!(get.stdout, "k\nv1\n", "{get:?}");
    assert!(
        watch.wait_for(Duration::from_secs(10), |out| out.contains("PUT\nk\nv1")),
        "watch saw no event: {:?}",
        watch.stdout_so_far()
    );
    // /health is served over https too (same router).
    let port = port_of(&rustcd.members[1].client);
    let health = https_get(port, "127.0.0.1", &pki, Some(&pki.client), "/health").expect("https /health");
    assert!(health.text.contains("\"health\":\"true\""), "{}", health.text);

    // Followers forward lease keep-alives to the leader over its https client URL.
    let leader = rustcd.leader(Duration::from_secs(10)).expect("leader");
    let follower = &rustcd.members[(leader + 1) % 3].client;
    let grant = ctl(follower, &tls, &["lease", "grant", "60"]);
    let id = grant.stdout.split_whitespace().nth(1).unwrap_or_default().to_string();
    assert_eq!(grant.status, 0, "{grant:?}");
    let keep = ctl(follower, &tls, &["lease", "keep-alive", "--once", &id]);
    assert!(keep.stdout.contains("keepalived with TTL(60)"), "{keep:?}");
}

/// What [`https_get`] saw.
#[derive(Debug)]
struct Reply {
    /// The server's leaf certificate (DER).
    leaf: Vec<u8>,
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::CipherSuite>,
    /// The raw HTTP response.
    text: String,
}

/// A rustls client: connects to 127.0.0.1:`port` verifying the server as `name`, sends a
/// GET over HTTP/1.1 and returns what the server presented and answered.
fn https_get(
    port: u16,
    name: &str,
    pki: &Pki,
    identity: Option<&(PathBuf, PathBuf)>,
    path: &str,
) -> Result<Reply, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&pki.ca.cert).expect("CA file") {
        roots.add(c.expect("CA pem")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => {
            let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
                .expect("cert")
                .map(|c| c.expect("pem"))
                .collect();
            let key = PrivateKeyDer::from_pem_file(key).expect("key");
            builder.with_client_auth_cert(chain, key).expect("client identity")
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let server_name = ServerName::try_from(name.to_string()).expect("server name");
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), server_name).map_err(|e| e.to_string())?;
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(|e| e.to_string())?;
    }
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (version, suite) = (
        conn.protocol_version(),
        conn.negotiated_cipher_suite().map(|s| s.suite()),
    );
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    if response.is_empty() {
        return Err(read
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "connection closed".into()));
    }
    Ok(Reply {
        leaf,
        version,
        suite,
        text: String::from_utf8_lossy(&response).into_owned(),
    })
}

#[test]
fn bad_certificates_names_and_plaintext_are_refused() {
    let Some(pki) = pki_unless_skipped() else { return };
    let good = pki.ctl_flags(&pki.client);
    let c = secure(Kind::Rustcd, 1, &pki);
    let ep = c.members[0].client.clone();
    assert_eq!(ctl(&ep, &good, &["put", "k", "v0"]).status, 0);
    let before = ctl(&ep, &good, &["get", "", "--prefix", "-w", "json"]).stdout;

    let ca_only = vec![format!("--cacert={}", pki.ca.cert.display())];
    let bad: [(&str, Vec<String>, &str); 4] = [
        ("no client certificate", ca_only, "peer sent no certificates"),
        (
            "a certificate from another CA",
            pki.ctl_flags(&pki.other_ca_client),
            "UnknownIssuer",
        ),
        ("an expired certificate", pki.ctl_flags(&pki.expired_client), "expired"),
        ("plaintext to the TLS port", vec![], "corrupt message"),
    ];
    for (what, flags, logged) in &bad {
        let endpoint = if flags.is_empty() {
            ep.replace("https://", "http://")
        } else {
            ep.clone()
        };
        let o = ctl(
            &endpoint,
            flags,
            &["--dial-timeout=2s", "--command-timeout=3s", "put", "k", "bad"],
        );
        assert_ne!(o.status, 0, "{what}: the put was accepted: {o:?}");
        assert!(
            eventually(|| c.log(0).contains(logged)),
            "{what}: the member did not log {logged:?}: {}",
            c.log(0)
        );
    }
    // A client that dials a name the server certificate does not carry refuses the server.
    let e = https_get(port_of(&ep), "wrong.example", &pki, Some(&pki.client), "/health").unwrap_err();
    assert!(e.contains("certificate not valid for name \"wrong.example\""), "{e}");

    // A peer without a valid certificate cannot talk Raft: a TLS client without a
    // certificate, and a 4th member whose peer certificate comes from another CA.
    let peer_port = port_of(&c.members[0].peer);
    assert!(https_get(peer_port, "127.0.0.1", &pki, None, "/").is_err());
    let stranger = stranger_joins(&c, &pki);
    assert_ne!(stranger.status, 0, "{stranger:?}");
    // The stranger names the peer that refused it (usually with the TLS alert, e.g.
    // "received fatal alert: UnknownCA"; under load the close can win the race).
    let refused = |e: &str| e.contains("cannot fetch cluster info") && e.contains(&c.members[0].peer);
    assert!(refused(&stranger.stderr), "{}", stranger.stderr);
    assert!(eventually(|| c.log(0).contains("rejected connection")), "{}", c.log(0));

    let after = ctl(&ep, &good, &["get", "", "--prefix", "-w", "json"]).stdout;
    assert_eq!(mask_raft_term(&before), mask_raft_term(&after), "the store changed");
    let members = ctl(&ep, &good, &["member", "list"]).stdout;
    assert_eq!(members.lines().count(), 1, "{members}");
}

/// Drops the raft term from a JSON response header (an election may happen meanwhile).
fn mask_raft_term(json: &str) -> String {
    let mut v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v["header"]["raft_term"] = serde_json::Value::Null;
    v.to_string()
}

/// A 4th rustcd with a peer certificate from another CA tries to join member 0's cluster.
fn stranger_joins(c: &Cluster, pki: &Pki) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let peer = format!("https://127.0.0.1:{}", testkit::free_port());
    let client = format!("https://127.0.0.1:{}", testkit::free_port());
    let initial = format!("{}={},stranger={peer}", c.members[0].name, c.members[0].peer);
    let out = std::process::Command::new(Kind::Rustcd.binary())
        .args(["--name", "stranger", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &initial, "--initial-cluster-state", "existing"])
        .args(["--initial-cluster-token", "test-cluster"])
        .arg(format!("--cert-file={}", pki.server.0.display()))
        .arg(format!("--key-file={}", pki.server.1.display()))
        .arg(format!("--peer-cert-file={}", pki.other_ca_peer.0.display()))
        .arg(format!("--peer-key-file={}", pki.other_ca_peer.1.display()))
        .arg(format!("--peer-trusted-ca-file={}", pki.ca.cert.display()))
        .output()
        .expect("run the stranger");
    Output {
        status: out.status.code().unwrap_or(-9),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn rotated_server_certificate_is_served_without_restart() {
    let Some(pki) = pki_unless_skipped() else { return };
    let c = secure(Kind::Rustcd, 1, &pki);
    let port = port_of(&c.members[0].client);
    let old_leaf = https_get(port, "localhost", &pki, Some(&pki.client), "/health")
        .expect("first")
        .leaf;
    // Re-issue the server certificate (new key) into the same files.
    let sans = ["127.0.0.1", "localhost"];
    let new_der = pki
        .ca
        .issue(pki.dir.path(), "server", "rotated", &sans, Usage::ServerAndClient, 30)
        .der;
    assert_ne!(old_leaf, new_der);
    let reply = https_get(port, "localhost", &pki, Some(&pki.client), "/health").expect("after rotation");
    assert_eq!(reply.leaf, new_der, "the new certificate is not served");
    let health = reply.text;
    assert!(health.contains("\"health\":\"true\""), "{health}");
    let put = ctl(
        &c.members[0].client,
        &pki.ctl_flags(&pki.client),
        &["put", "after", "rotation"],
    );
    assert_eq!(put.status, 0, "{put:?}");
    assert!(c.log(0).contains("reloaded the TLS certificate"), "{}", c.log(0));
}

#[test]
fn auth_attributes_requests_without_token_to_the_certificate_cn() {
    let Some(pki) = pki_unless_skipped() else { return };
    let c = secure(Kind::Rustcd, 1, &pki);
    let ep = c.members[0].client.clone();
    let root = pki.ctl_flags(&pki.client);
    for args in [
        vec!["user", "add", "root", "--new-user-password=secret"],
        vec!["user", "grant-role", "root", "root"],
        vec!["user", "add", "alice", "--new-user-password=secret"],
        vec!["auth", "enable"],
    ] {
        let o = ctl(&ep, &root, &args);
        assert_eq!(o.status, 0, "{args:?}: {o:?}");
    }
    // The certificate's CN is "root": no --user needed.
    let o = ctl(&ep, &root, &["put", "k", "by-root"]);
    assert_eq!(o.status, 0, "{o:?}");
    // A certificate named "alice" has alice's (empty) permissions.
    let alice = pki.ca.issue(pki.dir.path(), "alice", "alice", &[], Usage::Client, 30);
    let o = ctl(&ep, &pki.ctl_flags(&alice.pair()), &["put", "k", "by-alice"]);
    assert_ne!(o.status, 0, "{o:?}");
    assert!(o.stderr.contains("permission denied"), "{o:?}");
    let o = ctl(&ep, &root, &["get", "k", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), "by-root", "{o:?}");
}

#[test]
fn versions_suites_crls_allowed_cn_and_mixed_listeners() {
    let Some(pki) = pki_unless_skipped() else { return };
    let d = pki.dir.path();
    let revoked = pki.ca.issue(d, "revoked-client", "root", &[], Usage::Client, 30);
    let crl = pki.ca.revoke(d, "crl.pem", &[revoked.serial]);
    let metrics_port = testkit::free_port();
    let peer = format!("https://127.0.0.1:{}", testkit::free_port());
    let flags = [
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        format!("--peer-cert-file={}", pki.peer.0.display()),
        format!("--peer-key-file={}", pki.peer.1.display()),
        format!("--peer-trusted-ca-file={}", pki.ca.cert.display()),
        "--peer-client-cert-auth".into(),
        "--peer-cert-allowed-cn=peer".into(),
        format!("--listen-metrics-urls=https://127.0.0.1:{metrics_port}"),
        format!("--cert-file={}", pki.server.0.display()),
        format!("--key-file={}", pki.server.1.display()),
        format!("--trusted-ca-file={}", pki.ca.cert.display()),
        "--client-cert-auth".into(),
        format!("--client-crl-file={}", crl.display()),
        "--tls-max-version=TLS1.2".into(),
        "--cipher-suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
    ];
    // Server::start waits for /health on the plain client URL: http and https side by side.
    let s = testkit::Server::start(Kind::Rustcd, &refs(&flags));
    let r = https_get(metrics_port, "127.0.0.1", &pki, Some(&pki.client), "/metrics").expect("https metrics");
    assert!(r.text.contains("etcd_server_has_leader"), "{}", r.text);
    assert_eq!(r.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(
        r.suite,
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );
    assert!(https_get(metrics_port, "127.0.0.1", &pki, Some(&revoked.pair()), "/metrics").is_err());
    assert!(
        eventually(|| s.logs().contains("invalid peer certificate: Revoked")),
        "{}",
        s.logs()
    );
    // --peer-cert-allowed-cn: a valid certificate with another CN is turned away.
    let peer_port = port_of(&peer);
    let r = https_get(peer_port, "127.0.0.1", &pki, Some(&pki.peer), "/");
    assert!(r.is_ok(), "the allowed CN was refused: {r:?}");
    assert!(https_get(peer_port, "127.0.0.1", &pki, Some(&pki.client), "/").is_err());
    // (The JSON log escapes the quotes around the names.)
    let refused = |l: &str| l.contains("client certificate CN") && l.contains("is not the allowed CN");
    assert!(eventually(|| refused(&s.logs())), "{}", s.logs());
}

/// `--peer-cert-allowed-hostname` and `--client-cert-allowed-hostname`: a 3-member cluster whose peer
/// certificates name `localhost` forms under the peer rule, a client certificate for `client.example`
/// passes the client rule, and certificates that name neither are turned away.
#[test]
fn allowed_hostnames_admit_named_certificates_only() {
    let Some(pki) = pki_unless_skipped() else { return };
    let d = pki.dir.path();
    let named = pki
        .ca
        .issue(d, "named-client", "root", &["client.example"], Usage::Client, 30);
    let mut flags = pki.member_flags();
    flags.extend([
        "--peer-cert-allowed-hostname=localhost".into(),
        "--client-cert-allowed-hostname=client.example".into(),
    ]);
    let tls = pki.ctl_flags(&named.pair());
    let c = Cluster::start_secure(Kind::Rustcd, 3, &refs(&flags), "https", &refs(&tls));
    let list = etcdctl_until_ok(
        &c.members[0].client,
        &[refs(&tls), vec!["member", "list"]].concat(),
        Duration::from_secs(30),
    );
    assert_eq!(list.stdout.matches(", started, ").count(), 3, "{list:?}");
    assert_eq!(ctl(&c.members[1].client, &tls, &["put", "k", "v"]).status, 0);
    // A client certificate without the name: refused by the client port.
    let unnamed = pki.ctl_flags(&pki.client);
    assert_ne!(ctl(&c.members[0].client, &unnamed, &["get", "k"]).status, 0);
    // A peer connection with a certificate that does not name localhost: refused by the peer port.
    let peer_port = port_of(&c.members[0].peer);
    assert!(https_get(peer_port, "127.0.0.1", &pki, Some(&pki.client), "/").is_err());
    let log = || c.members[0].dir.with_extension("log");
    let refused = || {
        std::fs::read_to_string(log())
            .unwrap_or_default()
            .contains("is not valid for the allowed hostname")
    };
    assert!(eventually(refused), "no refusal logged");
}

#[test]
fn auto_tls_cluster_serves_with_self_signed_certificates() {
    if let Some(r) = skip_reason() {
        return print_skip(&r);
    }
    let c = Cluster::start_secure(Kind::Rustcd, 3, &["--auto-tls", "--peer-auto-tls"], "https", &[]);
    // etcdctl 3.4's --insecure-skip-tls-verify fails against etcd's own auto-TLS too, so
    // trust each member's generated certificate explicitly.
    let trust = |i: usize| {
        vec![format!(
            "--cacert={}",
            c.members[i].dir.join("fixtures/client/cert.pem").display()
        )]
    };
    let started = |o: &Output| o.stdout.matches(", started, ").count() == 3;
    let list = |_: ()| ctl(&c.members[0].client, &trust(0), &["member", "list"]);
    assert!(
        eventually_for(Duration::from_secs(30), || started(&list(()))),
        "{:?}",
        list(())
    );
    let put = ctl(&c.members[1].client, &trust(1), &["put", "k", "v"]);
    assert_eq!(put.status, 0, "{put:?}");
    assert!(c.members[0].dir.join("fixtures/peer/cert.pem").is_file());
}

#[test]
fn lagging_member_catches_up_from_a_snapshot_over_tls() {
    use rustcd::proto::etcdserverpb::{kv_client::KvClient, PutRequest};
    use rustcd::tls::{client_dialer, TlsConfig, TlsInfo};
    let Some(pki) = pki_unless_skipped() else { return };
    let tls = pki.ctl_flags(&pki.client);
    // The leader keeps 5 entries behind a snapshot taken every 20: a member that misses
    // 100 writes must receive a snapshot, over the https peer URL.
    let mut flags = pki.member_flags();
    flags.extend([
        "--snapshot-count=20".into(),
        "--experimental-snapshot-catchup-entries=5".into(),
    ]);
    let mut c = Cluster::start_secure(Kind::Rustcd, 3, &refs(&flags), "https", &refs(&tls));
    let leader = c.leader(Duration::from_secs(30)).expect("a leader");
    let lagging = (leader + 1) % 3;
    c.kill9(lagging);
    // Write through rustcd's own Dialer with etcdctl's client certificate (faster than 100 etcdctl runs).
    let client = TlsInfo::client(
        &pki.client.0.display().to_string(),
        &pki.client.1.display().to_string(),
        &pki.ca.cert.display().to_string(),
        false,
        "",
        false,
    );
    let dialer = client_dialer(&TlsConfig {
        client,
        ..TlsConfig::default()
    })
    .expect("dialer");
    let url = c.members[leader].client.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let channel = dialer.connect(&url, |e| e).await.expect("connect over TLS");
        let mut kv = KvClient::new(channel);
        for i in 0..100 {
            let put = PutRequest {
                key: format!("k{i:03}").into_bytes(),
                value: format!("v{i}-{}", "x".repeat(4096)).into_bytes(),
                ..Default::default()
            };
            kv.put(put).await.expect("put");
        }
    });
    c.spawn(lagging);
    let ep = c.members[lagging].client.clone();
    let caught_up = || {
        ctl(&ep, &tls, &["get", "k099", "--print-value-only", "--consistency=s"])
            .stdout
            .starts_with("v99-")
    };
    assert!(eventually_for(Duration::from_secs(20), caught_up), "{}", c.log(lagging));
    assert!(
        c.log(lagging).contains("installed a snapshot from the leader"),
        "{}",
        c.log(lagging)
    );
}

/// Client and peer certificates from two different CAs (e.g. two cert-manager issuers): a
/// follower forwards lease keep-alives and time-to-live requests to the leader's client port,
/// whose `--trusted-ca-file` is the client CA only, so it must present its client-side
/// certificate there, not its peer certificate.
#[test]
fn client_and_peer_certificates_from_different_cas() {
    let Some(pki) = pki_unless_skipped() else { return };
    let d = pki.dir.path();
    let peer_ca = testkit::pki::Ca::new(d, "peer CA", "peer-ca");
    let sans = ["127.0.0.1", "localhost"];
    let peer = peer_ca.issue(d, "peer-2", "peer", &sans, Usage::ServerAndClient, 30);
    let p = |p: &PathBuf| p.display().to_string();
    let flags = [
        format!("--cert-file={}", p(&pki.server.0)),
        format!("--key-file={}", p(&pki.server.1)),
        format!("--trusted-ca-file={}", p(&pki.ca.cert)),
        "--client-cert-auth".into(),
        format!("--peer-cert-file={}", p(&peer.cert)),
        format!("--peer-key-file={}", p(&peer.key)),
        format!("--peer-trusted-ca-file={}", p(&peer_ca.cert)),
        "--peer-client-cert-auth".into(),
    ];
    let tls = pki.ctl_flags(&pki.client);
    let c = Cluster::start_secure(Kind::Rustcd, 3, &refs(&flags), "https", &refs(&tls));
    let leader = c.leader(Duration::from_secs(30)).expect("a leader");
    let follower = &c.members[(leader + 1) % 3].client;
    let grant = ctl(follower, &tls, &["lease", "grant", "60"]);
    assert_eq!(grant.status, 0, "{grant:?}");
    let id = grant.stdout.split_whitespace().nth(1).expect("lease id").to_string();
    let keep = ctl(follower, &tls, &["lease", "keep-alive", "--once", &id]);
    assert_eq!(keep.status, 0, "keep-alive through a follower: {keep:?}");
    assert!(keep.stdout.contains("keepalived with TTL(60)"), "{keep:?}");
    let ttl = ctl(follower, &tls, &["lease", "timetolive", &id]);
    assert_eq!(ttl.status, 0, "time-to-live through a follower: {ttl:?}");
    assert!(ttl.stdout.contains("granted with TTL(60s)"), "{ttl:?}");
}
