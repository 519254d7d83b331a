//! The `rustcd-operator` binary against the fake API server: its CLI and environment, leader election
//! through a Lease, the metrics and health endpoints, the reconcile loop, and a graceful SIGTERM.

use std::io::Write;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::harness::{eventually, NS};
use testkit::kube::fake_api::FakeApiServer;

/// Kills the operator if the test fails before it exits.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, response))
}

#[tokio::test]
async fn the_binary_elects_itself_serves_metrics_reconciles_and_stops_on_sigterm() {
    let server = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut file = std::fs::File::create(&kubeconfig).unwrap();
    write!(
        file,
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters: [{{name: fake, cluster: {{server: \"http://{}\"}}}}]\n\
         users: [{{name: fake, user: {{}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake, user: fake, namespace: {NS}}}}}]\n",
        server.addr
    )
    .unwrap();
    let port = free_port();
    let mut operator = Operator(
        Command::new(env!("CARGO_BIN_EXE_rustcd-operator"))
            .args(["--log-format", "text", "--leader-election-id", "op-lease"])
            .env("KUBECONFIG", &kubeconfig)
            .env("RUSTCD_OPERATOR_METRICS_BIND_ADDRESS", format!("127.0.0.1:{port}"))
            .env("POD_NAME", "operator-0")
            .env("POD_NAMESPACE", NS)
            .env("RUSTCD_IMAGE", "registry.local/rustcd:latest")
            .env("WATCH_NAMESPACE", NS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rustcd-operator"),
    );
    let within = Duration::from_secs(30);
    let healthy = eventually(within, || async {
        http_get(port, "/healthz").await.filter(|(c, _)| *c == 200)
    });
    assert!(healthy.await.is_some(), "/healthz answers");
    assert_eq!(http_get(port, "/readyz").await.map(|(c, _)| c), Some(200));

    let client = server.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let holder = eventually(within, || async {
        let spec = leases.get_opt("op-lease").await.ok()??.spec?;
        spec.holder_identity.filter(|h| h == "operator-0")
    });
    assert!(
        holder.await.is_some(),
        "the operator holds the Lease under its POD_NAME"
    );

    let clusters: Api<rustcd_operator::EtcdCluster> = Api::namespaced(client.clone(), NS);
    let spec = rustcd_operator::EtcdClusterSpec {
        version: Some("v0.2.0".into()),
        ..Default::default()
    };
    clusters
        .create(&Default::default(), &rustcd_operator::EtcdCluster::new("demo", spec))
        .await
        .unwrap();
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let sts = eventually(within, || async { sets.get_opt("demo").await.ok().flatten() })
        .await
        .expect("the binary bootstraps the cluster");
    let image = sts.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
    assert_eq!(
        image.as_deref(),
        Some("registry.local/rustcd:v0.2.0"),
        "--image with spec.version's tag"
    );

    let metrics = eventually(within, || async {
        let (_, body) = http_get(port, "/metrics").await?;
        body.contains("rustcd_operator_reconciliations_total{result=\"ok\"}")
            .then_some(body)
    })
    .await
    .expect("reconciles are counted");
    assert!(metrics.contains("rustcd_operator_is_leader 1"), "{metrics}");
    assert!(
        metrics.contains("rustcd_operator_membership_steps_total{step=\"Bootstrapping\"} 1"),
        "{metrics}"
    );

    let pid = operator.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let exited = eventually(Duration::from_secs(15), || {
        let status = operator.0.try_wait().ok().flatten();
        async move { status }
    })
    .await
    .expect("exits after SIGTERM");
    assert!(exited.success(), "clean exit: {exited}");
    let released = leases.get("op-lease").await.unwrap().spec.unwrap();
    assert_eq!(released.holder_identity, None, "the Lease is released on shutdown");
}

#[test]
fn cli_flags_and_a_missing_election_namespace() {
    let out = Command::new(env!("CARGO_BIN_EXE_rustcd-operator"))
        .args(["--log-format", "text"])
        .env_remove("POD_NAMESPACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--leader-election-namespace"), "{stderr}");
    let help = Command::new(env!("CARGO_BIN_EXE_rustcd-operator"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--metrics-bind-address",
        "--watch-namespace",
        "--leader-elect",
        "--leader-election-namespace",
        "--leader-election-id",
        "--image",
        "--log-format",
        "RUSTCD_OPERATOR_METRICS_BIND_ADDRESS",
        "WATCH_NAMESPACE",
        "RUSTCD_OPERATOR_LEADER_ELECT",
        "POD_NAMESPACE",
        "RUSTCD_IMAGE",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
