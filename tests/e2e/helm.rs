//! Installing and removing the operator's chart with Helm's Go library (scripts/helm_chart.py).

use serde_json::json;

use super::kubectl::command;
use super::setup::Config;

fn helm_chart(config: &Config, action: &str, values: &serde_json::Value, timeout_secs: u32) -> Result<String, String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = command(&config.python)
        .arg(format!("{root}/scripts/helm_chart.py"))
        .args([action, &format!("{root}/charts/rustcd-operator")])
        .args(["--values", &values.to_string(), "--release", &config.release])
        .args(["--namespace", &config.namespace, "--timeout", &timeout_secs.to_string()])
        .output()
        .map_err(|e| {
            format!(
                "cannot run {} (run scripts/setup.sh, which installs helm-sdkpy): {e}",
                config.python.display()
            )
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `helm install --create-namespace --wait` of the chart into the run's namespace, managing that namespace
/// only (a namespaced Role: another operator in the cluster is left alone, and this one leaves others alone).
pub fn install_operator(config: &Config) -> Result<(), String> {
    let (repository, tag) = config.image_parts();
    let values = json!({
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "watchNamespace": config.namespace,
        "rbac": {"namespaced": true},
        "logFormat": "text",
    });
    helm_chart(config, "install", &values, 300).map(drop)
}

/// `helm uninstall --wait` of the run's release.
pub fn uninstall_operator(config: &Config) -> Result<(), String> {
    helm_chart(config, "uninstall", &json!({}), 120).map(drop)
}
