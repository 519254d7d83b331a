//! The operator on a real Kubernetes 1.20.2 control plane (`scripts/k8s.sh`: kube-apiserver,
//! controller-manager and scheduler, with a 3-member rustcd cluster as the API server's store), as a
//! new user installs it: the chart through Helm's Install action (the CRD unchanged), the operator
//! running with the chart's ServiceAccount token (RBAC enforced, not admin), `kubectl apply` of the
//! example, `kubectl get etcdclusters`, `kubectl scale`, and a refused change of an immutable field.
//! There is no kubelet here, so member pods stay Pending: the test checks what the API server and
//! the operator do, not the members (the fake-kubelet tests in `tests/operator/` run those).
//!
//! Needs the control plane built (`scripts/setup.sh --with-kubernetes`, which the README's test command
//! runs); without it the test fails saying so. `RUSTCD_SKIP_KUBERNETES=1` skips it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NAMESPACE: &str = "rustcd-system";
const RELEASE: &str = "rustcd";
const WITHIN: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    testkit::repo_root()
}

/// A control plane started by `k8s.sh up`, stopped (by PID, in `k8s.sh down`) when dropped.
struct ControlPlane {
    dir: tempfile::TempDir,
}

impl ControlPlane {
    fn up() -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix("rustcd-k8s-")
            .tempdir()
            .expect("tempdir");
        let out = Command::new(root().join("scripts/k8s.sh"))
            .arg("up")
            .arg(dir.path())
            .args(["--store", "rustcd", "--store-bin"])
            .arg(testkit::built_binary("rustcd"))
            .output()
            .expect("run scripts/k8s.sh up");
        let plane = ControlPlane { dir };
        assert!(
            out.status.success(),
            "scripts/k8s.sh up failed (is the control plane built? scripts/setup.sh --with-kubernetes):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        plane
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(root().join("scripts/k8s.sh"))
            .arg("down")
            .arg(self.dir.path())
            .output();
    }
}

/// kubectl with `kubeconfig`: (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(["--request-timeout", "20s"])
        .args(args)
        .output()
        .expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// kubectl that must succeed: its stdout.
fn kubectl_ok(kubeconfig: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, args);
    assert!(ok, "kubectl {args:?}: {err}");
    out
}

/// Polls `probe` until it returns `Some` (or `WITHIN` passes: `None`).
fn eventually<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + WITHIN;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A kubeconfig for the chart's ServiceAccount: its token Secret (1.20 creates one per ServiceAccount).
fn service_account_kubeconfig(admin: &Path, dir: &Path) -> PathBuf {
    let account = format!("{RELEASE}-rustcd-operator");
    let secret = eventually(|| {
        let (ok, out, _) = kubectl(
            admin,
            &[
                "-n",
                NAMESPACE,
                "get",
                "sa",
                &account,
                "-o",
                "jsonpath={.secrets[0].name}",
            ],
        );
        (ok && !out.is_empty()).then_some(out)
    })
    .expect("the ServiceAccount's token Secret");
    let token = kubectl_ok(
        admin,
        &[
            "-n",
            NAMESPACE,
            "get",
            "secret",
            &secret,
            "-o",
            "jsonpath={.data.token}",
        ],
    );
    let token = Command::new("base64")
        .arg("-d")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(token.as_bytes())?;
            c.wait_with_output()
        })
        .expect("base64 -d");
    let token = String::from_utf8(token.stdout).expect("token");
    let path = dir.join("operator.kubeconfig");
    let raw = kubectl_ok(admin, &["config", "view", "--raw", "--minify", "--flatten"]);
    std::fs::write(&path, raw).expect("write kubeconfig");
    kubectl_ok(
        &path,
        &["config", "set-credentials", "operator", &format!("--token={token}")],
    );
    kubectl_ok(&path, &["config", "set-context", "--current", "--user=operator"]);
    path
}

/// The operator binary, killed when dropped.
struct Operator(Child, PathBuf);

impl Operator {
    fn start(kubeconfig: &Path, log: PathBuf) -> Operator {
        let file = std::fs::File::create(&log).expect("operator log");
        let child = Command::new(testkit::built_binary("rustcd-operator"))
            .env("KUBECONFIG", kubeconfig)
            .args([
                "--leader-election-namespace",
                NAMESPACE,
                "--metrics-bind-address",
                "127.0.0.1:0",
            ])
            .args(["--log-format", "text"])
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start rustcd-operator");
        Operator(child, log)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.1).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn condition<'a>(cluster: &'a Value, type_: &str) -> Option<&'a Value> {
    cluster["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[test]
fn the_chart_and_the_operator_on_kubernetes_1_20_with_rustcd_as_its_store() {
    if std::env::var_os("RUSTCD_SKIP_KUBERNETES").is_some() {
        testkit::print_skip("RUSTCD_SKIP_KUBERNETES is set");
        return;
    }
    let plane = ControlPlane::up();
    let admin = plane.kubeconfig();

    // Helm's Install action installs the CRD from the chart unchanged, then the chart (no kubelet:
    // the operator's own Deployment never becomes ready, so Helm does not wait for it).
    let python = root().join(".cache/helm-venv/bin/python");
    let values = serde_json::json!({"logFormat": "text"}).to_string();
    let helm = Command::new(&python)
        .env("KUBECONFIG", &admin)
        .arg(root().join("scripts/helm_chart.py"))
        .arg("install")
        .arg(root().join("charts/rustcd-operator"))
        .args([
            "--values",
            &values,
            "--release",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--no-wait",
        ])
        .args(["--timeout", "60"])
        .output()
        .expect("run scripts/helm_chart.py (scripts/setup.sh installs helm-sdkpy)");
    assert!(
        helm.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&helm.stderr)
    );
    let crd = kubectl_ok(&admin, &["get", "crd", "etcdclusters.rustcd.io", "-o", "json"]);
    let crd: Value = serde_json::from_str(&crd).expect("CRD JSON");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");

    // The operator as the chart runs it: the ServiceAccount's token and the chart's RBAC.
    let operator_config = service_account_kubeconfig(&admin, plane.dir.path());
    let operator = Operator::start(&operator_config, plane.dir.path().join("operator.log"));

    kubectl_ok(&admin, &["create", "namespace", "demo"]);
    let example = root().join("examples/etcdcluster.yaml");
    let example = example.to_str().expect("path");
    // kubectl 1.32's client-side validation does not know the CRD's x-kubernetes-validations on a
    // 1.20 server (README: "Kubernetes 1.20-1.24"); the custom resource itself validates fine.
    kubectl_ok(&admin, &["-n", "demo", "apply", "-f", example]);

    // The objects the operator owns, the PodDisruptionBudget as policy/v1beta1 (1.20 has no v1).
    for kind in ["statefulset/example", "service/example", "service/example-peer"] {
        let found = eventually(|| kubectl(&admin, &["-n", "demo", "get", kind]).0.then_some(()));
        assert!(found.is_some(), "{kind} not created; operator log:\n{}", operator.log());
    }
    let pdb = eventually(|| {
        let (ok, out, _) = kubectl(
            &admin,
            &[
                "-n",
                "demo",
                "get",
                "poddisruptionbudgets.v1beta1.policy",
                "example",
                "-o",
                "json",
            ],
        );
        ok.then(|| serde_json::from_str::<Value>(&out).expect("PDB JSON"))
    })
    .expect("PodDisruptionBudget created");
    assert_eq!(pdb["spec"]["minAvailable"], 2, "quorum of 3");
    assert_eq!(pdb["metadata"]["ownerReferences"][0]["kind"], "EtcdCluster");

    // `kubectl get etcdclusters`: the printer columns.
    let table = kubectl_ok(&admin, &["-n", "demo", "get", "etcdclusters"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "REPLICAS", "READY", "VERSION", "LEADER", "AGE"],
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap_or_default().starts_with("example"),
        "{table}"
    );

    // The scale subresource.
    kubectl_ok(&admin, &["-n", "demo", "scale", "etcdcluster/example", "--replicas=5"]);
    let replicas = kubectl_ok(
        &admin,
        &[
            "-n",
            "demo",
            "get",
            "etcdcluster",
            "example",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas, "5");

    // The status the operator writes, including the record of the immutable fields.
    let recorded = eventually(|| {
        let out = kubectl_ok(&admin, &["-n", "demo", "get", "etcdcluster", "example", "-o", "json"]);
        let cluster: Value = serde_json::from_str(&out).expect("cluster JSON");
        cluster["status"]["createdWith"].is_object().then_some(cluster)
    })
    .unwrap_or_else(|| panic!("status.createdWith not written; operator log:\n{}", operator.log()));
    assert_eq!(recorded["status"]["createdWith"]["storage"]["size"], "1Gi");
    assert!(
        condition(&recorded, "Progressing").is_some(),
        "{:#}",
        recorded["status"]
    );

    // 1.20 ignores the CRD's CEL transition rules: the API server accepts the change, the operator
    // refuses it (Degraded/Stalled InvalidSpec, a Warning Event) and changes nothing.
    let before = kubectl_ok(
        &admin,
        &["-n", "demo", "get", "statefulset", "example", "-o", "jsonpath={.spec}"],
    );
    kubectl_ok(
        &admin,
        &[
            "-n",
            "demo",
            "patch",
            "etcdcluster",
            "example",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"storage":{"size":"2Gi"}}}"#,
        ],
    );
    let refused = eventually(|| {
        let out = kubectl_ok(&admin, &["-n", "demo", "get", "etcdcluster", "example", "-o", "json"]);
        let cluster: Value = serde_json::from_str(&out).expect("cluster JSON");
        let degraded = condition(&cluster, "Degraded")?.clone();
        (degraded["reason"] == "InvalidSpec").then_some(degraded)
    })
    .unwrap_or_else(|| panic!("the change was not refused; operator log:\n{}", operator.log()));
    assert!(
        refused["message"]
            .as_str()
            .unwrap_or_default()
            .contains("spec.storage is immutable"),
        "{refused}"
    );
    let described = kubectl_ok(&admin, &["-n", "demo", "describe", "etcdcluster", "example"]);
    assert!(
        described.contains("InvalidSpec"),
        "kubectl describe shows the Warning Event:\n{described}"
    );
    let after = kubectl_ok(
        &admin,
        &["-n", "demo", "get", "statefulset", "example", "-o", "jsonpath={.spec}"],
    );
    assert_eq!(after, before, "nothing acted on");

    let log = operator.log();
    assert!(
        !log.contains("forbidden"),
        "the chart's RBAC refused the operator something:\n{log}"
    );
    assert!(
        log.contains("policy/v1beta1"),
        "the operator discovered policy/v1beta1:\n{log}"
    );
}
