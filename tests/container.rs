//! The container image: built FROM scratch by scripts/build-image.sh from the test's own
//! rustcd binary, then a 3-member cluster of containers on a private Docker network with
//! StatefulSet-like DNS names, driven from the host through ports published on 127.0.0.1.
//! Skips (saying so) where Docker is not available.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{docker, etcdctl, etcdctl_until_ok as eventually, Kind};

/// Removes the test's containers, network and image however the test ends.
struct Cleanup {
    containers: Vec<String>,
    network: String,
    image: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in &self.containers {
                let (_, logs) = docker(&["logs", "--tail", "15", c]);
                eprintln!("--- {c} ---\n{logs}");
            }
        }
        for c in &self.containers {
            docker(&["rm", "-f", c]);
        }
        docker(&["network", "rm", &self.network]);
        docker(&["image", "rm", "-f", &self.image]);
    }
}

#[test]
fn image_runs_a_three_member_cluster_on_a_docker_network() {
    if !docker(&["info"]).0 {
        support::print_skip("Docker Engine not reachable (docker info failed)");
        return;
    }
    if support::etcdctl_bin().is_none() {
        support::print_skip("etcdctl not installed (scripts/setup.sh --with-etcd installs it)");
        return;
    }
    let tag = format!("rustcd-test-{}", std::process::id());
    let image = format!("{tag}:latest");
    let mut cleanup = Cleanup {
        containers: Vec::new(),
        network: tag.clone(),
        image: image.clone(),
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let build = Command::new(format!("{root}/scripts/build-image.sh"))
        .args(["--tag", &image])
        .env("RUSTCD_BIN", Kind::Rustcd.binary())
        .output()
        .expect("run build-image.sh");
    assert!(build.status.success(), "image build failed: {build:?}");
    let (ok, out) = docker(&["network", "create", &tag]);
    assert!(ok, "network create: {out}");

    let names = ["m0", "m1", "m2"];
    let initial = names
        .iter()
        .map(|n| format!("{n}=http://{n}:2380"))
        .collect::<Vec<_>>()
        .join(",");
    let mut endpoints = Vec::new();
    for n in names {
        let container = format!("{tag}-{n}");
        cleanup.containers.push(container.clone());
        let (ok, out) = docker(&[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            &tag,
            "--network-alias",
            n,
            "-p",
            "127.0.0.1::2379",
            &image,
            "--name",
            n,
            "--listen-client-urls",
            "http://0.0.0.0:2379",
            "--advertise-client-urls",
            &format!("http://{n}:2379"),
            "--listen-peer-urls",
            "http://0.0.0.0:2380",
            "--initial-advertise-peer-urls",
            &format!("http://{n}:2380"),
            "--initial-cluster",
            &initial,
            "--initial-cluster-token",
            &tag,
        ]);
        assert!(ok, "docker run {n}: {out}");
        let (ok, port) = docker(&["port", &container, "2379/tcp"]);
        assert!(ok, "docker port: {port}");
        let addr = port
            .lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .unwrap_or_default()
            .trim()
            .to_string();
        assert!(!addr.is_empty(), "no loopback port for {n}: {port}");
        endpoints.push(addr);
    }

    let o = eventually(&endpoints[0], &["put", "from-host", "v1"], Duration::from_secs(30));
    assert_eq!(o.status, 0, "cluster did not accept a write: {o:?}");
    for ep in &endpoints {
        let o = eventually(ep, &["get", "from-host", "--print-value-only"], Duration::from_secs(10));
        assert_eq!(o.stdout.trim(), "v1", "{ep}: {o:?}");
    }
    let list = etcdctl(&endpoints[1], &["member", "list"]);
    for n in names {
        assert!(
            list.stdout
                .contains(&format!(", started, {n}, http://{n}:2380, http://{n}:2379, false")),
            "{list:?}"
        );
    }

    // Losing one member (the container is killed) leaves a working majority.
    let (ok, out) = docker(&["kill", &cleanup.containers[0]]);
    assert!(ok, "docker kill: {out}");
    let o = eventually(&endpoints[2], &["put", "after-kill", "v2"], Duration::from_secs(20));
    assert_eq!(o.status, 0, "majority stopped accepting writes: {o:?}");
    let o = etcdctl(&endpoints[1], &["get", "after-kill", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), "v2", "{o:?}");
}
