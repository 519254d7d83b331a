//! Docker helpers for the full-loop tests: one private network, image and label per test, and a guard
//! that removes every container, volume, network and image carrying that label however the test ends.

pub use crate::docker::docker;

/// Why the Docker tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    let (ok, out) = docker(&["info", "--format", "{{.ServerVersion}}"]);
    (!ok).then(|| format!("Docker Engine not reachable (docker info: {})", out.trim()))
}

/// Everything one test creates in Docker, all labelled `rustcd-operator-test=<tag>`.
pub struct Sandbox {
    /// Unique per test: network name, image repository, label value, container prefix.
    pub tag: String,
    pub image: String,
}

impl Sandbox {
    /// Builds the rustcd image from the test's own binary and creates the network.
    pub fn create(test: &str) -> Sandbox {
        let tag = format!("rustcd-op-{}-{test}", std::process::id());
        let image = format!("{tag}:latest");
        let sandbox = Sandbox {
            tag: tag.clone(),
            image: image.clone(),
        };
        crate::docker::build_image(&image);
        let (ok, out) = docker(&["network", "create", "--label", &sandbox.label(), &tag]);
        assert!(ok, "network create: {out}");
        sandbox
    }

    pub fn label(&self) -> String {
        format!("rustcd-operator-test={}", self.tag)
    }

    fn labelled(&self, kind: &[&str]) -> Vec<String> {
        let filter = format!("label={}", self.label());
        let mut args = kind.to_vec();
        args.extend(["-q", "--filter", &filter]);
        let (_, out) = docker(&args);
        out.split_whitespace().map(str::to_string).collect()
    }

    /// The last log lines of every container (printed when a test fails).
    pub fn dump_logs(&self) {
        for id in self.labelled(&["ps", "-a"]) {
            let (_, name) = docker(&["inspect", "-f", "{{.Name}}", &id]);
            let (_, logs) = docker(&["logs", "--tail", "20", &id]);
            eprintln!("--- container {} ---\n{logs}", name.trim());
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        // A `docker run` the fake kubelet started just before it stopped may still create a container:
        // sweep again until the network could be removed.
        for attempt in 0..5 {
            let containers = self.labelled(&["ps", "-a"]);
            if !containers.is_empty() {
                let mut args = vec!["rm", "-f", "-v"];
                args.extend(containers.iter().map(String::as_str));
                docker(&args);
            }
            let (removed, _) = docker(&["network", "rm", &self.tag]);
            if removed || attempt == 4 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        let volumes = self.labelled(&["volume", "ls"]);
        if !volumes.is_empty() {
            let mut args = vec!["volume", "rm", "-f"];
            args.extend(volumes.iter().map(String::as_str));
            docker(&args);
        }
        docker(&["image", "rm", "-f", &self.image]);
    }
}
