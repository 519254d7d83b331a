//! rustcd members as Docker containers, like StatefulSet pods: the image is built FROM
//! scratch by scripts/build-image.sh from the test's own binary; members talk to each other
//! on a private "peer" network under DNS names `<name>-<i>.<name>-peer`; the host reaches
//! them on a second "client" network, so cutting a member off its peers
//! (`docker network disconnect`) leaves it reachable for clients.

use std::process::Command;

use super::Kind;

/// Runs `docker <args>`; returns success and the combined output.
pub fn docker(args: &[&str]) -> (bool, String) {
    match Command::new("docker").args(args).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Whether a Docker Engine answers.
pub fn available() -> bool {
    docker(&["info"]).0
}

/// Whether the Docker tests can run here (Docker Engine and etcdctl); prints why not.
pub fn usable() -> bool {
    if !available() {
        super::print_skip("Docker Engine not reachable (docker info failed)");
        return false;
    }
    super::etcdctl_usable()
}

/// A cluster of rustcd containers; removed (containers, networks, image) when dropped.
pub struct DockerCluster {
    pub name: String,
    pub image: String,
    pub peer_net: String,
    pub client_net: String,
    pub containers: Vec<String>,
    /// Client-network IP of each member.
    pub ips: Vec<String>,
}

impl DockerCluster {
    /// Builds the image and starts `n` members bootstrapped together. Names (image, networks,
    /// containers) are unique per process and per cluster, so the tests of one binary can run
    /// clusters side by side.
    pub fn start(n: usize) -> DockerCluster {
        static CLUSTERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("rc{}-{seq}", std::process::id());
        let mut c = DockerCluster {
            image: format!("{name}:latest"),
            peer_net: format!("{name}-peer"),
            client_net: format!("{name}-client"),
            containers: Vec::new(),
            ips: Vec::new(),
            name,
        };
        build_image(&c.image);
        for net in [&c.peer_net, &c.client_net] {
            let (ok, out) = docker(&["network", "create", net]);
            assert!(ok, "network create {net}: {out}");
        }
        let initial = (0..n)
            .map(|i| format!("{}={}", c.pod(i), c.peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        for i in 0..n {
            let container = c.pod(i);
            c.containers.push(container.clone());
            let (ok, out) = docker(&[
                "run",
                "-d",
                "--name",
                &container,
                "--network",
                &c.peer_net,
                "--network-alias",
                &c.alias(i),
                &c.image,
                "--name",
                &container,
                "--listen-client-urls",
                "http://0.0.0.0:2379",
                "--advertise-client-urls",
                &format!("http://{}:2379", c.alias(i)),
                "--listen-peer-urls",
                "http://0.0.0.0:2380",
                "--initial-advertise-peer-urls",
                &c.peer_url(i),
                "--initial-cluster",
                &initial,
                "--initial-cluster-token",
                &c.name,
            ]);
            assert!(ok, "docker run {container}: {out}");
            let (ok, out) = docker(&["network", "connect", &c.client_net, &container]);
            assert!(ok, "connect {container} to the client network: {out}");
            let ip = c.client_ip(i);
            c.ips.push(ip);
        }
        c
    }

    /// The pod name of member `i`.
    pub fn pod(&self, i: usize) -> String {
        format!("{}-{i}", self.name)
    }

    /// The member's DNS name on the peer network (`<pod>.<service>`).
    pub fn alias(&self, i: usize) -> String {
        format!("{}.{}-peer", self.pod(i), self.name)
    }

    fn peer_url(&self, i: usize) -> String {
        format!("http://{}:2380", self.alias(i))
    }

    fn client_ip(&self, i: usize) -> String {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            self.client_net
        );
        let (ok, out) = docker(&["inspect", "-f", &format, &self.containers[i]]);
        assert!(
            ok && !out.trim().is_empty(),
            "no client IP for {}: {out}",
            self.containers[i]
        );
        out.trim().to_string()
    }

    /// Client URL of member `i` as the host reaches it.
    pub fn endpoint(&self, i: usize) -> String {
        format!("http://{}:2379", self.ips[i])
    }

    pub fn endpoints(&self) -> Vec<String> {
        (0..self.containers.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Cuts member `i` off its peers (it stays reachable for clients).
    pub fn cut(&self, i: usize) {
        let (ok, out) = docker(&["network", "disconnect", &self.peer_net, &self.containers[i]]);
        assert!(ok, "disconnect: {out}");
    }

    /// Reconnects member `i` to its peers under its DNS name.
    pub fn heal(&self, i: usize) {
        let (ok, out) = docker(&[
            "network",
            "connect",
            "--alias",
            &self.alias(i),
            &self.peer_net,
            &self.containers[i],
        ]);
        assert!(ok, "reconnect: {out}");
    }

    /// SIGKILLs member `i`'s container, then starts it again (same data, same addresses).
    pub fn kill_and_restart(&mut self, i: usize) {
        let (ok, out) = docker(&["kill", &self.containers[i]]);
        assert!(ok, "docker kill: {out}");
        let (ok, out) = docker(&["start", &self.containers[i]]);
        assert!(ok, "docker start: {out}");
        self.ips[i] = self.client_ip(i);
    }
}

impl Drop for DockerCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for c in &self.containers {
                let (_, logs) = docker(&["logs", "--tail", "20", c]);
                eprintln!("--- {c} ---\n{logs}");
            }
        }
        for c in &self.containers {
            docker(&["rm", "-f", c]);
        }
        docker(&["network", "rm", &self.peer_net, &self.client_net]);
        docker(&["image", "rm", "-f", &self.image]);
    }
}

/// `scripts/build-image.sh` writes its rootfs into the repository: one build at a time.
static IMAGE_BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the FROM-scratch image `tag` from the test's own `rustcd` binary ([`Kind::binary`]; the
/// operator binary beside it goes in too, as in the released image).
pub fn build_image(tag: &str) {
    let _one_build = IMAGE_BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let build = Command::new(crate::repo_root().join("scripts/build-image.sh"))
        .args(["--debug", "--tag", tag])
        .env("RUSTCD_BIN", Kind::Rustcd.binary())
        .output()
        .expect("run build-image.sh");
    assert!(build.status.success(), "image build failed: {build:?}");
}
