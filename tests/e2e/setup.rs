//! Whether the e2e test can run here, and what it runs with.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// Why the test cannot run against a cluster here, if it cannot: no `KUBECONFIG`, no kubectl, or no answer.
pub fn skip_reason() -> Option<String> {
    match std::env::var_os("KUBECONFIG") {
        None => {
            return Some(
                "KUBECONFIG not set (point it at a kind, k3d or real cluster to run it; see tests/e2e/README.md)"
                    .into(),
            )
        }
        Some(path) if path.is_empty() => return Some("KUBECONFIG not set (it is empty)".into()),
        Some(_) => {}
    }
    for check in [
        &["version", "--request-timeout=10s"][..],
        &["cluster-info", "--request-timeout=10s"][..],
    ] {
        match Command::new("kubectl").args(check).output() {
            Err(e) => return Some(format!("kubectl not runnable ({e})")),
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no error text");
                return Some(format!("cluster unreachable (`kubectl {}` failed: {first})", check[0]));
            }
            Ok(_) => {}
        }
    }
    None
}

/// What one run uses.
pub struct Config {
    /// A namespace of its own: the operator, its RBAC and the cluster all live there.
    pub namespace: String,
    /// Helm release of the operator.
    pub release: String,
    /// Image of the operator and the members (`E2E_IMAGE`, default `rustcd:latest`); it must be on the nodes.
    pub image: String,
    /// etcdctl on this machine (`ETCDCTL_BIN`, default `etcdctl`).
    pub etcdctl: String,
    /// Python with helm-sdkpy (`HELM_CHART_PYTHON`, default the venv scripts/setup.sh makes).
    pub python: PathBuf,
    /// Keep the namespace after the run (`E2E_KEEP=1`), for a look at what failed.
    pub keep: bool,
}

impl Config {
    pub fn from_env() -> Config {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
        Config {
            namespace: format!("rustcd-e2e-{}-{:x}", std::process::id(), nanos & 0xffff),
            release: "rustcd-operator".into(),
            image: std::env::var("E2E_IMAGE").unwrap_or_else(|_| "rustcd:latest".into()),
            etcdctl: std::env::var("ETCDCTL_BIN").unwrap_or_else(|_| "etcdctl".into()),
            python: std::env::var_os("HELM_CHART_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(root).join(".cache/helm-venv/bin/python")),
            keep: std::env::var("E2E_KEEP").is_ok_and(|v| v == "1"),
        }
    }

    /// `image.repository` and `image.tag` for the chart.
    pub fn image_parts(&self) -> (&str, &str) {
        match self.image.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (self.image.as_str(), "latest"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_reference_splits_into_repository_and_tag() {
        let with = |image: &str| Config {
            image: image.into(),
            ..Config::from_env()
        };
        assert_eq!(with("rustcd:latest").image_parts(), ("rustcd", "latest"));
        assert_eq!(
            with("localhost:5000/rustcd:0.1.0").image_parts(),
            ("localhost:5000/rustcd", "0.1.0")
        );
        assert_eq!(
            with("localhost:5000/rustcd").image_parts(),
            ("localhost:5000/rustcd", "latest")
        );
        assert_eq!(with("rustcd").image_parts(), ("rustcd", "latest"));
    }
}
