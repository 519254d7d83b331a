//! The Helm chart `charts/rustcd-operator`, checked with Helm's own Go library (the `helm-sdkpy` wheel that
//! `scripts/setup.sh` installs into `.cache/helm-venv`) through `scripts/helm_chart.py`:
//! - `helm lint` (Helm's Lint action) with the default values and with non-default ones;
//! - rendering: Helm's Install action against the script's in-memory fake API server, i.e. what
//!   `helm install --dry-run` would print, with values schema validation, the chart's CRD and every object
//!   built through discovery's REST mapping as a real install does;
//! - every rendered document parses into its `k8s-openapi` type with no field ignored or changed;
//! - what the objects say: the operator's CLI contract, least-privilege RBAC, security context, probes;
//! - values the schema forbids are refused by lint and by install.
//!
//! Without helm-sdkpy these tests fail (they are part of CI): run `scripts/setup.sh`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{json, Value};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
const RELEASE: &str = "ops";
const NAMESPACE: &str = "rustcd-system";
/// The full name of the release's objects (`<release>-<chart>`).
const FULLNAME: &str = "ops-rustcd-operator";

/// The Python that has helm-sdkpy: `HELM_CHART_PYTHON`, or the venv `scripts/setup.sh` creates.
fn python() -> PathBuf {
    let path = std::env::var_os("HELM_CHART_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(ROOT).join(".cache/helm-venv/bin/python"));
    assert!(
        path.exists(),
        "{} does not exist: helm-sdkpy is not installed. Run scripts/setup.sh (it creates .cache/helm-venv with \
         `pip install --ignore-requires-python helm-sdkpy pyyaml`), or set HELM_CHART_PYTHON to a Python that has them",
        path.display()
    );
    path
}

/// Runs `scripts/helm_chart.py ACTION` on the chart: its JSON output, or its error text.
fn helm(action: &str, values: &Value) -> Result<Value, String> {
    helm_with(action, values, &[])
}

/// [`helm`] with more arguments for the script.
fn helm_with(action: &str, values: &Value, extra: &[&str]) -> Result<Value, String> {
    let out = Command::new(python())
        .arg(format!("{ROOT}/scripts/helm_chart.py"))
        .args([action, &format!("{ROOT}/charts/rustcd-operator")])
        .args([
            "--values",
            &values.to_string(),
            "--release",
            RELEASE,
            "--namespace",
            NAMESPACE,
        ])
        .args(extra)
        .output()
        .expect("run scripts/helm_chart.py");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => serde_json::from_slice(&out.stdout).map_err(|e| format!("helm_chart.py printed no JSON: {e}")),
        Some(2) => panic!("helm-sdkpy is missing (run scripts/setup.sh): {stderr}"),
        _ => Err(stderr),
    }
}

/// What `helm lint` reports beyond INFO (as "SEVERITY" "path"), and a line for a non-zero error count.
fn lint_findings(values: &Value) -> Vec<String> {
    let result = helm("lint", values).unwrap_or_else(|e| panic!("helm lint could not run: {e}"));
    let mut findings: Vec<String> = result["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["severity"] != "INFO")
        .map(|m| format!("{} {}", m["severity"], m["path"]))
        .collect();
    if result["errors"].as_u64() != Some(0) {
        findings.push(format!("{} lint errors", result["errors"]));
    }
    findings
}

/// A rendered release: its documents, NOTES.txt, and what Helm sent to the API server.
struct Rendered {
    docs: Vec<Value>,
    notes: String,
    crds: Vec<Value>,
}

impl Rendered {
    fn of(values: Value) -> Self {
        Self::of_with(values, &[])
    }

    /// [`Rendered::of`] with more `helm_chart.py render` flags.
    fn of_with(values: Value, extra: &[&str]) -> Self {
        let out = helm_with("render", &values, extra).unwrap_or_else(|e| panic!("render with {values} failed: {e}"));
        let manifest = out["manifest"].as_str().expect("manifest");
        let docs: Vec<Value> = manifest
            .split("\n---")
            .filter_map(|doc| serde_norway::from_str::<Value>(doc).ok())
            .filter(|doc| !doc.is_null())
            .collect();
        assert_eq!(
            docs.len(),
            manifest.matches("# Source:").count(),
            "a rendered document is not YAML:\n{manifest}"
        );
        // Helm built and created every rendered object through the fake API server's REST mapping.
        let ids = |objects: &[Value]| -> BTreeSet<String> {
            objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect()
        };
        let created = out["created"].as_array().expect("created");
        assert_eq!(
            ids(created),
            ids(&docs),
            "Helm did not create exactly the rendered objects"
        );
        for doc in &docs {
            if let Err(e) = validate(doc) {
                panic!("{} {}: {e}\n{doc:#}", doc["kind"], doc["metadata"]["name"]);
            }
        }
        Rendered {
            docs,
            notes: out["notes"].as_str().expect("notes").to_string(),
            crds: out["crds"].as_array().expect("crds").clone(),
        }
    }

    fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .docs
            .iter()
            .map(|d| d["kind"].as_str().unwrap_or("").to_string())
            .collect();
        kinds.sort();
        kinds
    }

    fn get<T: serde::de::DeserializeOwned>(&self, kind: &str, name: &str) -> T {
        let doc = self
            .docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in {:?}", self.kinds()));
        serde_json::from_value(doc.clone()).expect("validated already")
    }

    fn operator(&self) -> (Deployment, Container) {
        let deployment: Deployment = self.get("Deployment", FULLNAME);
        let pod = deployment
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec");
        assert_eq!(pod.containers.len(), 1);
        let container = pod.containers[0].clone();
        (deployment, container)
    }
}

/// The document is a valid object of the `k8s-openapi` type of its kind, with no field ignored or changed.
fn validate(doc: &Value) -> Result<(), String> {
    let api_kind = (
        doc["apiVersion"].as_str().unwrap_or(""),
        doc["kind"].as_str().unwrap_or(""),
    );
    match api_kind {
        ("v1", "ServiceAccount") => testkit::objects::round_trip::<ServiceAccount>(doc, true).map(drop),
        ("v1", "Service") => testkit::objects::round_trip::<Service>(doc, true).map(drop),
        ("apps/v1", "Deployment") => testkit::objects::round_trip::<Deployment>(doc, true).map(drop),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            testkit::objects::round_trip::<ClusterRole>(doc, true).map(drop)
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            testkit::objects::round_trip::<ClusterRoleBinding>(doc, true).map(drop)
        }
        ("rbac.authorization.k8s.io/v1", "Role") => testkit::objects::round_trip::<Role>(doc, true).map(drop),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            testkit::objects::round_trip::<RoleBinding>(doc, true).map(drop)
        }
        // No k8s-openapi types for the Prometheus operator's CRDs: the fields the chart sets.
        ("monitoring.coreos.com/v1", kind @ ("ServiceMonitor" | "PodMonitor")) => {
            let endpoints = if kind == "ServiceMonitor" {
                "endpoints"
            } else {
                "podMetricsEndpoints"
            };
            let selected = doc["spec"]["selector"]["matchLabels"]
                .as_object()
                .is_some_and(|m| !m.is_empty());
            let scraped = doc["spec"][endpoints]
                .as_array()
                .is_some_and(|e| !e.is_empty() && e.iter().all(|e| e["port"] == "metrics" && e["path"] == "/metrics"));
            (selected && scraped && doc["metadata"]["namespace"].is_string())
                .then_some(())
                .ok_or_else(|| format!("{kind} without a selector, a namespace or metrics endpoints"))
        }
        (api_version, kind) => Err(format!("the test knows no type for {api_version} {kind}")),
    }
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    let var = container.env.as_ref()?.iter().find(|e| e.name == name)?;
    match (&var.value, &var.value_from) {
        (Some(value), None) => Some(value.clone()),
        (None, Some(from)) => from.field_ref.as_ref().map(|f| format!("fieldRef:{}", f.field_path)),
        _ => None,
    }
}

/// `(apiGroup, resource, verb)` triples a set of rules grants.
fn grants(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        assert!(
            rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
            "{rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert_ne!(verb, "*", "wildcard verb in {rule:?}");
                    out.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    out
}

fn expected_grants(table: &[(&str, &[&str], &[&str])]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in table {
        for resource in *resources {
            for verb in *verbs {
                out.insert((group.to_string(), resource.to_string(), verb.to_string()));
            }
        }
    }
    out
}

/// Exactly what the operator needs on the objects of its clusters.
fn manager_grants() -> BTreeSet<(String, String, String)> {
    const OWNED: &[&str] = &["get", "list", "watch", "create", "patch", "update", "delete"];
    expected_grants(&[
        (
            "rustcd.io",
            &["etcdclusters"],
            &["get", "list", "watch", "patch", "update"],
        ),
        ("rustcd.io", &["etcdclusters/status"], &["get", "patch", "update"]),
        ("rustcd.io", &["etcdclusters/scale"], &["get"]),
        (
            "rustcd.io",
            &["etcdbackups"],
            &["get", "list", "watch", "create", "delete"],
        ),
        ("rustcd.io", &["etcdbackups/status"], &["get", "patch", "update"]),
        ("batch", &["jobs"], OWNED),
        ("apps", &["statefulsets"], OWNED),
        ("", &["services"], OWNED),
        ("policy", &["poddisruptionbudgets"], OWNED),
        (
            "",
            &["pods", "persistentvolumeclaims"],
            &["get", "list", "watch", "delete"],
        ),
        ("", &["events"], &["create", "patch"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
        ("", &["secrets"], &["get"]),
        ("cert-manager.io", &["certificates"], &["get", "create", "patch"]),
    ])
}

fn lease_grants() -> BTreeSet<(String, String, String)> {
    expected_grants(&[(
        "coordination.k8s.io",
        &["leases"],
        &["get", "list", "watch", "create", "update", "patch"],
    )])
}

/// A binding gives the role `role` of kind `kind` to the chart's ServiceAccount, and nothing else.
fn assert_binds(
    role_ref: &k8s_openapi::api::rbac::v1::RoleRef,
    subjects: Option<&Vec<k8s_openapi::api::rbac::v1::Subject>>,
    kind: &str,
    role: &str,
) {
    assert_eq!((role_ref.kind.as_str(), role_ref.name.as_str()), (kind, role));
    let subjects = subjects.expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, FULLNAME);
    assert_eq!(subjects[0].namespace.as_deref(), Some(NAMESPACE));
}

#[test]
fn helm_lint_passes_with_default_and_custom_values() {
    assert_eq!(lint_findings(&json!({})), Vec::<String>::new(), "default values");
    let custom = json!({
        "watchNamespace": "team-a", "rbac": {"namespaced": true}, "metrics": {"service": {"enabled": false}},
        "replicaCount": 2, "logFormat": "text"
    });
    assert_eq!(lint_findings(&custom), Vec::<String>::new(), "values {custom}");
}

#[test]
fn values_the_schema_forbids_are_refused() {
    // Lint reports which file is wrong (the library drops the text); install says why.
    let findings = lint_findings(&json!({"replicaCount": "x"}));
    assert!(
        findings.contains(&"\"ERROR\" \"values.yaml\"".to_string()),
        "{findings:?}"
    );
    for (values, expected) in [
        (json!({"replicaCount": "x"}), "replicaCount"),
        (json!({"image": {"pullPolicy": "Sometimes"}}), "pullPolicy"),
        (json!({"logFormat": "xml"}), "logFormat"),
        (json!({"replicas": 2}), "replicas"),
        (json!({"rbac": {"namespaced": true}}), "watchNamespace"),
        (
            json!({"leaderElection": {"enabled": false}, "replicaCount": 2}),
            "replicaCount",
        ),
        (json!({"watchNamespace": "Not_A_Namespace"}), "watchNamespace"),
    ] {
        match helm("render", &values) {
            Ok(_) => panic!("values {values} were accepted"),
            Err(e) => assert!(
                e.contains("schema") && e.contains(expected),
                "values {values}: the error does not name the schema and {expected}: {e}"
            ),
        }
    }
}

#[test]
fn chart_refuses_kubernetes_older_than_the_crd_needs() {
    // 1.20 is the oldest version the operator is tested on; the CRD's CEL rules use nothing newer than
    // 1.25 has (no `fieldPath`), and older servers ignore them.
    let old = helm_with("render", &json!({}), &["--kube-version", "1.19"]);
    match old {
        Ok(_) => panic!("the chart installed on Kubernetes 1.19"),
        Err(e) => assert!(e.contains("kubeVersion: >=1.20.0-0"), "{e}"),
    }
    for version in ["1.20", "1.25", "1.32"] {
        assert!(
            helm_with("render", &json!({}), &["--kube-version", version]).is_ok(),
            "{version}"
        );
    }
}

#[test]
fn default_render_is_a_least_privilege_operator() {
    let r = Rendered::of(json!({}));
    assert_eq!(
        r.kinds(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // Helm installed the chart's CRDs first: exactly the ones the Rust types generate.
    let mut crds: Vec<CustomResourceDefinition> = r
        .crds
        .iter()
        .map(|c| serde_json::from_value(c.clone()).expect("CRD"))
        .collect();
    crds.sort_by_key(|c| c.metadata.name.clone());
    assert_eq!(
        crds,
        vec![rustcd_operator::crd::backup_crd(), rustcd_operator::crd::crd()]
    );

    let cluster_scoped = format!("{FULLNAME}-{NAMESPACE}");
    let role: ClusterRole = r.get("ClusterRole", &cluster_scoped);
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), manager_grants());
    let binding: ClusterRoleBinding = r.get("ClusterRoleBinding", &cluster_scoped);
    assert_binds(
        &binding.role_ref,
        binding.subjects.as_ref(),
        "ClusterRole",
        &cluster_scoped,
    );
    let leader = format!("{FULLNAME}-leader-election");
    let lease_role: Role = r.get("Role", &leader);
    assert_eq!(lease_role.metadata.namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(grants(lease_role.rules.as_deref().unwrap_or_default()), lease_grants());
    let lease_binding: RoleBinding = r.get("RoleBinding", &leader);
    assert_binds(
        &lease_binding.role_ref,
        lease_binding.subjects.as_ref(),
        "Role",
        &leader,
    );
    let account: ServiceAccount = r.get("ServiceAccount", FULLNAME);
    assert_eq!(account.metadata.namespace.as_deref(), Some(NAMESPACE));

    let (deployment, c) = r.operator();
    let spec = deployment.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(1));
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    let selector = spec.selector.match_labels.clone().expect("selector");
    assert!(
        selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)),
        "selector {selector:?} misses the pods"
    );
    let pod = spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(FULLNAME));
    let pod_security = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );

    assert_eq!(c.image.as_deref(), Some("rustcd:latest"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.command.as_deref(),
        Some(&["/usr/local/bin/rustcd-operator".to_string()][..])
    );
    let args = c.args.clone().unwrap_or_default();
    assert_eq!(args, ["--leader-election-id=rustcd-operator", "--log-format=json"]);
    for (name, value) in [
        ("POD_NAME", "fieldRef:metadata.name"),
        ("POD_NAMESPACE", "fieldRef:metadata.namespace"),
        ("WATCH_NAMESPACE", ""),
        ("RUSTCD_OPERATOR_LEADER_ELECT", "true"),
        ("RUSTCD_OPERATOR_METRICS_BIND_ADDRESS", "0.0.0.0:8080"),
        ("RUSTCD_IMAGE", "rustcd:latest"),
    ] {
        assert_eq!(env_value(&c, name).as_deref(), Some(value), "env {name}");
    }
    let security = c.security_context.as_ref().expect("container securityContext");
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let drop = security.capabilities.as_ref().and_then(|caps| caps.drop.clone());
    assert_eq!(drop.as_deref(), Some(&["ALL".to_string()][..]));
    let port = c.ports.as_ref().and_then(|p| p.first()).expect("metrics port");
    assert_eq!((port.name.as_deref(), port.container_port), (Some("metrics"), 8080));
    for (probe, path) in [(&c.liveness_probe, "/healthz"), (&c.readiness_probe, "/readyz")] {
        let get = probe.as_ref().and_then(|p| p.http_get.as_ref()).expect("httpGet probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("metrics".into())
        );
    }

    let service: Service = r.get("Service", &format!("{FULLNAME}-metrics"));
    let service_spec = service.spec.expect("service spec");
    assert_eq!(service_spec.selector.as_ref(), Some(&selector));
    let service_port = &service_spec.ports.expect("ports")[0];
    assert_eq!(service_port.port, 8080);
    assert_eq!(
        service_port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(
            "metrics".into()
        ))
    );

    assert!(
        r.notes.contains(&format!("release {RELEASE} in namespace {NAMESPACE}")),
        "{}",
        r.notes
    );
    assert!(r.notes.contains("in every namespace"), "{}", r.notes);
}

#[test]
fn watch_namespace_with_namespaced_rbac_and_no_metrics_service() {
    let r = Rendered::of(json!({
        "watchNamespace": "team-a", "rbac": {"namespaced": true}, "metrics": {"service": {"enabled": false}}
    }));
    assert_eq!(
        r.kinds(),
        [
            "Deployment",
            "Role",
            "Role",
            "RoleBinding",
            "RoleBinding",
            "ServiceAccount"
        ]
    );
    let role: Role = r.get("Role", FULLNAME);
    assert_eq!(role.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(grants(role.rules.as_deref().unwrap_or_default()), manager_grants());
    let binding: RoleBinding = r.get("RoleBinding", FULLNAME);
    assert_eq!(binding.metadata.namespace.as_deref(), Some("team-a"));
    assert_binds(&binding.role_ref, binding.subjects.as_ref(), "Role", FULLNAME);
    let (_, c) = r.operator();
    assert_eq!(env_value(&c, "WATCH_NAMESPACE").as_deref(), Some("team-a"));
    assert!(r.notes.contains("EtcdClusters of namespace team-a"), "{}", r.notes);
    assert!(
        r.notes.contains("kubectl -n team-a apply -f examples/etcdcluster.yaml"),
        "{}",
        r.notes
    );
    assert!(!r.notes.contains("port-forward"), "{}", r.notes);

    // A watch namespace with the default cluster-wide RBAC keeps the ClusterRole.
    let cluster_wide = Rendered::of(json!({"watchNamespace": "team-a"}));
    assert!(cluster_wide.kinds().contains(&"ClusterRole".to_string()));
}

#[test]
fn non_default_values_reach_the_operator() {
    let r = Rendered::of(json!({
        "replicaCount": 2,
        "image": {"repository": "registry.local/rustcd", "tag": "0.1.0", "pullPolicy": "Always"},
        "memberImage": "registry.local/rustcd:member",
        "logFormat": "text",
        "leaderElection": {"id": "my-lease"},
        "metrics": {"port": 9090, "service": {"port": 9100}},
        "extraArgs": ["--some-flag"],
        "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
        "nodeSelector": {"disk": "ssd"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "podAnnotations": {"a": "b"},
        "serviceAccount": {"name": "custom-sa"},
        "fullnameOverride": FULLNAME
    }));
    let (deployment, c) = r.operator();
    let spec = deployment.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(c.image.as_deref(), Some("registry.local/rustcd:0.1.0"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        c.args.clone().unwrap_or_default(),
        ["--leader-election-id=my-lease", "--log-format=text", "--some-flag"]
    );
    assert_eq!(
        env_value(&c, "RUSTCD_IMAGE").as_deref(),
        Some("registry.local/rustcd:member")
    );
    assert_eq!(
        env_value(&c, "RUSTCD_OPERATOR_METRICS_BIND_ADDRESS").as_deref(),
        Some("0.0.0.0:9090")
    );
    assert_eq!(env_value(&c, "RUST_LOG").as_deref(), Some("debug"));
    assert_eq!(c.ports.expect("ports")[0].container_port, 9090);
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some("custom-sa"));
    assert_eq!(pod.node_selector.expect("nodeSelector")["disk"], "ssd");
    assert_eq!(pod.tolerations.expect("tolerations").len(), 1);
    let account: ServiceAccount = r.get("ServiceAccount", "custom-sa");
    assert_eq!(account.metadata.name.as_deref(), Some("custom-sa"));
    let service: Service = r.get("Service", &format!("{FULLNAME}-metrics"));
    assert_eq!(service.spec.expect("spec").ports.expect("ports")[0].port, 9100);

    // Without leader election: no Lease permissions, and the operator is told.
    let single = Rendered::of(json!({"leaderElection": {"enabled": false}}));
    assert_eq!(
        single.kinds(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "Service",
            "ServiceAccount"
        ]
    );
    let (_, c) = single.operator();
    assert_eq!(env_value(&c, "RUSTCD_OPERATOR_LEADER_ELECT").as_deref(), Some("false"));
}

#[test]
fn monitors_only_when_asked_and_where_the_prometheus_operator_is() {
    let monitors = |r: &Rendered| -> Vec<Value> {
        r.docs
            .iter()
            .filter(|d| d["apiVersion"] == "monitoring.coreos.com/v1")
            .cloned()
            .collect()
    };
    assert!(monitors(&Rendered::of(json!({}))).is_empty(), "off by default");
    let on = json!({"metrics": {"monitors": {"enabled": true, "labels": {"release": "prom"}}}});
    assert!(
        monitors(&Rendered::of_with(on.clone(), &["--no-monitoring-api"])).is_empty(),
        "nothing where monitoring.coreos.com/v1 is not served"
    );
    let r = Rendered::of(on);
    let mut found = monitors(&r);
    // ServiceMonitor first (Helm orders documents by kind).
    found.sort_by_key(|d| d["kind"] != "ServiceMonitor");
    let kinds: Vec<&str> = found.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(kinds, ["ServiceMonitor", "PodMonitor"]);
    for m in &found {
        assert_eq!(m["metadata"]["labels"]["release"], "prom");
        assert_eq!(
            m["spec"]["endpoints"]
                .as_array()
                .or(m["spec"]["podMetricsEndpoints"].as_array())
                .map(Vec::len),
            Some(1)
        );
    }
    // The ServiceMonitor selects the operator's metrics Service.
    let service = r
        .docs
        .iter()
        .find(|d| d["kind"] == "Service")
        .expect("the metrics Service");
    let service: Service = serde_json::from_value(service.clone()).expect("validated already");
    let service_labels = service.metadata.labels.unwrap_or_default();
    let selector = found[0]["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("matchLabels");
    for (k, v) in selector {
        assert_eq!(service_labels.get(k).map(String::as_str), v.as_str(), "label {k}");
    }
    // The PodMonitor selects the member pods by the labels the operator gives them, in any namespace
    // (the operator watches all), on the container port the members serve /metrics on.
    let pod_monitor = &found[1];
    assert_eq!(
        pod_monitor["spec"]["selector"]["matchLabels"],
        json!({
            rustcd_operator::names::LABEL_NAME: "rustcd",
            rustcd_operator::names::LABEL_MANAGED_BY: rustcd_operator::names::FIELD_MANAGER,
        })
    );
    assert_eq!(pod_monitor["spec"]["namespaceSelector"], json!({"any": true}));
    let scoped = Rendered::of(json!({
        "metrics": {"monitors": {"enabled": true}},
        "watchNamespace": "team-a",
        "rbac": {"namespaced": true},
    }));
    let scoped = monitors(&scoped);
    let scoped_pods = scoped.iter().find(|d| d["kind"] == "PodMonitor").expect("PodMonitor");
    assert_eq!(
        scoped_pods["spec"]["namespaceSelector"],
        json!({"matchNames": ["team-a"]})
    );
}
