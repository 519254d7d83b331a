//! The operator on a real Kubernetes 1.20.2 control plane (`scripts/k8s.sh`: kube-apiserver,
//! controller-manager and scheduler, with a 3-member rustcd cluster as the API server's store), as a
//! new user installs it: the chart through Helm's Install action (the CRD unchanged), the operator
//! running with the chart's ServiceAccount token (RBAC enforced, not admin), `kubectl apply` of the
//! example, `kubectl get etcdclusters`, `kubectl scale`, and a refused change of an immutable field.
//! There is no kubelet here, so member pods stay Pending: the test checks what the API server and
//! the operator do, not the members. `tests/e2e` runs the members, on a one-node cluster with the
//! real kubelet (and the fake-kubelet tests in `tests/operator/` run them on the fake API server).
//!
//! Needs the control plane built (`scripts/setup.sh --with-kubernetes`, which the README's test command
//! runs); without it the test fails saying so. `RUSTCD_SKIP_KUBERNETES=1` skips it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;
use testkit::kubernetes::{poll, prerequisites, ControlPlane, Store};

const NAMESPACE: &str = "rustcd-system";
const RELEASE: &str = "rustcd";
const WITHIN: Duration = Duration::from_secs(60);

fn root() -> &'static Path {
    testkit::repo_root()
}

/// `kubectl <args>` as the admin, which must succeed: its stdout.
fn kubectl_ok(plane: &ControlPlane, args: &[&str]) -> String {
    let out = plane.kubectl(args);
    assert_eq!(out.status, 0, "kubectl {args:?}: {}", out.stderr);
    out.stdout
}

/// `kubectl get <args> -o json` as the admin, when it succeeds.
fn get_json(plane: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["-o", "json"]);
    let out = plane.kubectl(&all);
    (out.status == 0).then(|| serde_json::from_str(&out.stdout).expect("kubectl JSON"))
}

/// A kubeconfig for the chart's ServiceAccount, from its token Secret (1.20 creates one per
/// ServiceAccount).
fn service_account_kubeconfig(plane: &ControlPlane) -> PathBuf {
    let account = format!("{RELEASE}-rustcd-operator");
    let secret = poll(WITHIN, || {
        let sa = get_json(plane, &["-n", NAMESPACE, "sa", &account])?;
        sa["secrets"][0]["name"].as_str().map(str::to_string)
    })
    .expect("the ServiceAccount's token Secret");
    let secret = get_json(plane, &["-n", NAMESPACE, "secret", &secret]).expect("token Secret");
    // The typed Secret decodes its base64 data.
    let secret: Secret = serde_json::from_value(secret).expect("a Secret");
    let token = secret.data.unwrap_or_default().remove("token").expect("token").0;
    let path = plane.dir().join("operator.kubeconfig");
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
         users:\n- name: operator\n  user:\n    token: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: operator\n\
         current-context: c\n",
        plane.env("K8S_APISERVER_URL"),
        plane.env("K8S_CA_FILE"),
        String::from_utf8(token).expect("token text"),
    );
    std::fs::write(&path, kubeconfig).expect("write kubeconfig");
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
    if let Err(missing) = prerequisites() {
        panic!("{missing}");
    }
    let store = Store::Rustcd(testkit::built_binary("rustcd"));
    let plane = ControlPlane::up(store, "").unwrap_or_else(|e| panic!("{e}"));

    // Helm's Install action installs the CRD from the chart unchanged, then the chart (no kubelet:
    // the operator's own Deployment never becomes ready, so Helm does not wait for it).
    let python = root().join(".cache/helm-venv/bin/python");
    let values = serde_json::json!({"logFormat": "text"}).to_string();
    let helm = Command::new(&python)
        .env("KUBECONFIG", plane.env("KUBECONFIG"))
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
    let crd = kubectl_ok(&plane, &["get", "crd", "etcdclusters.rustcd.io", "-o", "json"]);
    let crd: Value = serde_json::from_str(&crd).expect("CRD JSON");
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");

    // The operator as the chart runs it: the ServiceAccount's token and the chart's RBAC.
    let operator_config = service_account_kubeconfig(&plane);
    let operator = Operator::start(&operator_config, plane.dir().join("operator.log"));

    kubectl_ok(&plane, &["create", "namespace", "demo"]);
    let example = root().join("examples/etcdcluster.yaml");
    let example = example.to_str().expect("path");
    // kubectl 1.32's client-side validation does not know the CRD's x-kubernetes-validations on a
    // 1.20 server (README: "Kubernetes 1.20-1.24"); the custom resource itself validates fine.
    kubectl_ok(&plane, &["-n", "demo", "apply", "-f", example]);

    // The objects the operator owns, the PodDisruptionBudget as policy/v1beta1 (1.20 has no v1).
    for kind in ["statefulset/example", "service/example", "service/example-peer"] {
        let found = poll(WITHIN, || {
            (plane.kubectl(&["-n", "demo", "get", kind]).status == 0).then_some(())
        });
        assert!(found.is_some(), "{kind} not created; operator log:\n{}", operator.log());
    }
    let pdb = poll(WITHIN, || {
        get_json(
            &plane,
            &["-n", "demo", "poddisruptionbudgets.v1beta1.policy", "example"],
        )
    })
    .expect("PodDisruptionBudget created");
    assert_eq!(pdb["spec"]["minAvailable"], 2, "quorum of 3");
    assert_eq!(pdb["metadata"]["ownerReferences"][0]["kind"], "EtcdCluster");

    // `kubectl get etcdclusters`: the printer columns.
    let table = kubectl_ok(&plane, &["-n", "demo", "get", "etcdclusters"]);
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
    kubectl_ok(&plane, &["-n", "demo", "scale", "etcdcluster/example", "--replicas=5"]);
    let replicas = kubectl_ok(
        &plane,
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
    let recorded = poll(WITHIN, || {
        let out = kubectl_ok(&plane, &["-n", "demo", "get", "etcdcluster", "example", "-o", "json"]);
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
        &plane,
        &["-n", "demo", "get", "statefulset", "example", "-o", "jsonpath={.spec}"],
    );
    kubectl_ok(
        &plane,
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
    let refused = poll(WITHIN, || {
        let out = kubectl_ok(&plane, &["-n", "demo", "get", "etcdcluster", "example", "-o", "json"]);
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
    let described = kubectl_ok(&plane, &["-n", "demo", "describe", "etcdcluster", "example"]);
    assert!(
        described.contains("InvalidSpec"),
        "kubectl describe shows the Warning Event:\n{described}"
    );
    let after = kubectl_ok(
        &plane,
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
