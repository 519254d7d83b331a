//! The container image: built FROM scratch by scripts/build-image.sh from the test's own
//! rustcd binary, then a 3-member cluster of containers on a private Docker network with
//! StatefulSet-like DNS names (`testkit::docker::DockerCluster`), driven from the host.
//! Skips (saying so) where Docker is not available.

use std::time::Duration;

use testkit::docker::{docker, DockerCluster};
use testkit::{etcdctl, etcdctl_until_ok as eventually};

#[test]
fn image_runs_a_three_member_cluster_on_a_docker_network() {
    if !testkit::docker::usable() {
        return;
    }
    let c = DockerCluster::start(3);
    let endpoints = c.endpoints();
    let o = eventually(&endpoints[0], &["put", "from-host", "v1"], Duration::from_secs(30));
    assert_eq!(o.status, 0, "cluster did not accept a write: {o:?}");
    for ep in &endpoints {
        let o = eventually(ep, &["get", "from-host", "--print-value-only"], Duration::from_secs(10));
        assert_eq!(o.stdout.trim(), "v1", "{ep}: {o:?}");
    }
    let list = etcdctl(&endpoints[1], &["member", "list"]);
    for i in 0..3 {
        let (pod, alias) = (c.pod(i), c.alias(i));
        let line = format!(", started, {pod}, http://{alias}:2380, http://{alias}:2379, false");
        assert!(list.stdout.contains(&line), "missing {line:?}: {list:?}");
    }

    // Losing one member (the container is killed) leaves a working majority.
    let (ok, out) = docker(&["kill", &c.containers[0]]);
    assert!(ok, "docker kill: {out}");
    let o = eventually(&endpoints[2], &["put", "after-kill", "v2"], Duration::from_secs(20));
    assert_eq!(o.status, 0, "majority stopped accepting writes: {o:?}");
    let o = etcdctl(&endpoints[1], &["get", "after-kill", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), "v2", "{o:?}");
}
