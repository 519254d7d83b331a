//! Where the e2e test runs, and what it runs with.

use std::path::PathBuf;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use testkit::kubernetes::{prerequisites, ControlPlane, Store};

/// Where the scenario runs.
pub enum Target {
    /// The cluster `KUBECONFIG` names; the image must already be on its nodes.
    Given,
    /// No `KUBECONFIG`: a one-node Kubernetes 1.20 on this machine (`scripts/k8s.sh up
    /// --with-kubelet`, rustcd as its store), and an image of this build's binaries.
    Local(LocalCluster),
}

/// The run's own cluster; dropped in field order: the cluster (its pods' containers with it), then
/// the image.
pub struct LocalCluster {
    pub plane: ControlPlane,
    pub image: LocalImage,
    /// The same image under a second tag: what the upgrade step moves the members to.
    pub next_image: LocalImage,
}

/// An image built for the run, removed when dropped.
pub struct LocalImage(pub String);

impl Drop for LocalImage {
    fn drop(&mut self) {
        testkit::docker::docker(&["image", "rm", "-f", &self.0]);
    }
}

/// The target, or why the test is skipped: `KUBECONFIG` names a cluster that does not answer, or it
/// is unset and `RUSTCD_SKIP_KUBERNETES` is set. Without `KUBECONFIG` the local cluster must be
/// buildable here (`scripts/setup.sh --with-kubernetes`): if it is not, this panics saying what is
/// missing.
pub fn target() -> Result<Target, String> {
    match std::env::var_os("KUBECONFIG") {
        None => local(),
        Some(path) if path.is_empty() => Err("KUBECONFIG is set but empty".into()),
        Some(_) => reachable().map(|()| Target::Given),
    }
}

fn local() -> Result<Target, String> {
    if std::env::var_os("RUSTCD_SKIP_KUBERNETES").is_some() {
        return Err("KUBECONFIG not set and RUSTCD_SKIP_KUBERNETES is set".into());
    }
    if let Err(missing) = prerequisites() {
        panic!("KUBECONFIG is not set, so e2e runs on a local Kubernetes, and {missing}");
    }
    let plane = ControlPlane::up_with_node(Store::Rustcd(testkit::built_binary("rustcd")))
        .unwrap_or_else(|e| panic!("the local Kubernetes did not start: {e}"));
    // Not `latest`: the kubelet would try to pull it (imagePullPolicy Always), and nothing can be
    // pulled here.
    let image = LocalImage(format!("rustcd-e2e-{}:local", std::process::id()));
    testkit::docker::build_image(&image.0);
    let next_image = LocalImage(format!("rustcd-e2e-{}:next", std::process::id()));
    testkit::docker::docker(&["tag", &image.0, &next_image.0]);
    Ok(Target::Local(LocalCluster {
        plane,
        image,
        next_image,
    }))
}

/// `Err(why)` unless kubectl reaches the cluster `KUBECONFIG` names.
fn reachable() -> Result<(), String> {
    for check in [
        &["version", "--request-timeout=10s"][..],
        &["cluster-info", "--request-timeout=10s"][..],
    ] {
        match Command::new("kubectl").args(check).output() {
            Err(e) => return Err(format!("kubectl not runnable ({e})")),
            Ok(out) if !out.status.success() => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let first = stderr.lines().find(|l| !l.trim().is_empty()).unwrap_or("no error text");
                return Err(format!("cluster unreachable (`kubectl {}` failed: {first})", check[0]));
            }
            Ok(_) => {}
        }
    }
    Ok(())
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
    /// The image the upgrade step moves the members to (`E2E_IMAGE_NEXT`; on the local cluster, the
    /// run's image under a second tag). Unset: no upgrade step.
    pub next_image: Option<String>,
    /// An address of this machine the pods reach (`E2E_HOST_FOR_PODS`; on the local cluster, the
    /// Docker bridge's): where the S3 server for the backup tests listens. Unset: no S3 part.
    pub host_for_pods: Option<String>,
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
            host_for_pods: std::env::var("E2E_HOST_FOR_PODS").ok().filter(|s| !s.is_empty()),
            next_image: std::env::var("E2E_IMAGE_NEXT").ok().filter(|s| !s.is_empty()),
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
