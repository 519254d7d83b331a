//! A real Kubernetes 1.20 control plane (`scripts/k8s.sh`) on Debian's etcd or on rustcd, for
//! differential tests through `kubectl`.
//!
//! * [`prerequisites`] says what is missing (the k8s.sh build, kubectl, etcd/etcdctl, Docker), so a
//!   test can fail with that message instead of a confusing error later.
//! * [`ControlPlane::up`] runs `k8s.sh up` into a temp dir, reads `<dir>/env`, and runs
//!   `k8s.sh down` when dropped (also while a test unwinds).
//! * [`ControlPlane::kubectl`] runs kubectl 1.32 with the cluster's KUBECONFIG and a timeout;
//!   [`ControlPlane::etcdctl`] runs etcdctl against the store with its client certificate.
//! * [`normalize`] strips from Kubernetes objects what differs between two clusters by chance
//!   (UIDs, resourceVersions, timestamps, random name suffixes, token Secret names and data), so
//!   the objects of two control planes compare with `assert_eq!`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{repo_root, which, Output};

/// Upper bound for one kubectl (or etcdctl, or k8s.sh restart-store-member) invocation.
pub const KUBECTL_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for `k8s.sh up` (store, API server, controller-manager, scheduler, token Secret).
pub const UP_TIMEOUT: Duration = Duration::from_secs(300);

/// `scripts/k8s.sh` of this repository.
pub fn k8s_script() -> PathBuf {
    repo_root().join("scripts/k8s.sh")
}

/// Where `k8s.sh build` put kube-apiserver and friends: `${RUSTCD_CACHE:-~/.cache/rustcd}/
/// k8s-<K8S_SRC_VERSION>/bin`, the version read from the script itself (one source of truth).
pub fn k8s_bin_dir() -> Result<PathBuf, String> {
    let script = k8s_script();
    let text = std::fs::read_to_string(&script).map_err(|e| format!("{}: {e}", script.display()))?;
    let version = text
        .lines()
        .find_map(|l| l.strip_prefix("K8S_SRC_VERSION=\""))
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| format!("{}: no K8S_SRC_VERSION line", script.display()))?;
    let root = match std::env::var_os("RUSTCD_CACHE") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").ok_or("HOME is not set")?).join(".cache/rustcd"),
    };
    Ok(root.join(format!("k8s-{version}")).join("bin"))
}

/// `Err(what is missing and how to get it)` unless everything `k8s.sh up` and the tests need is
/// here: the Kubernetes binaries from `k8s.sh build`, kubectl, Debian's etcd and etcdctl, and a
/// running Docker (which `k8s.sh build` needs for its images).
pub fn prerequisites() -> Result<(), String> {
    let mut missing = Vec::new();
    let bin = k8s_bin_dir()?;
    for b in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"] {
        if !bin.join(b).is_file() {
            missing.push(format!(
                "{} (run `scripts/k8s.sh build` as root)",
                bin.join(b).display()
            ));
        }
    }
    for (b, pkg) in [
        ("kubectl", "the kubectl client"),
        ("etcd", "Debian's etcd-server"),
        ("etcdctl", "Debian's etcd-client"),
        ("openssl", "openssl"),
        ("docker", "Docker Engine"),
    ] {
        if which(b).is_none() {
            missing.push(format!("{b} not on PATH (install {pkg})"));
        }
    }
    if which("docker").is_some() {
        let ok = Command::new("docker")
            .args(["info", "--format", "{{.ServerVersion}}"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            missing.push("Docker is installed but `docker info` fails: start the Docker daemon".into());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the Kubernetes test cannot run here (set RUSTCD_SKIP_KUBERNETES=1 to skip it):\n  {}",
            missing.join("\n  ")
        ))
    }
}

/// Runs `cmd` (stdout and stderr captured, `stdin` fed) and waits at most `timeout`; a command
/// that runs longer is killed and reported as status -9 with what it printed so far.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let data = data.as_bytes().to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("stdout pipe")));
    let err = reader(Box::new(child.stderr.take().expect("stderr pipe")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s.code().unwrap_or(-9),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break -9;
            }
        }
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Calls `probe` every 250 ms until it returns `Some` (that value), for at most `within` (`None`).
pub fn poll<T>(within: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// [`poll`] that must succeed: panics naming `what` after `within`.
pub fn wait_until<T>(what: &str, within: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll(within, probe).unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Which store the control plane runs on.
#[derive(Clone, Debug)]
pub enum Store {
    /// Debian's `/usr/bin/etcd` (3.4).
    Etcd,
    /// The rustcd binary at this path.
    Rustcd(PathBuf),
}

impl Store {
    pub fn name(&self) -> &'static str {
        match self {
            Store::Etcd => "etcd",
            Store::Rustcd(_) => "rustcd",
        }
    }
}

/// A running `k8s.sh up` cluster in a temp dir; dropping it runs `k8s.sh down` and removes the dir.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    store: Store,
}

impl ControlPlane {
    /// `k8s.sh up <tmp> --store ...`, with `apiserver_args` passed through
    /// `K8S_APISERVER_EXTRA_ARGS`. On failure the error holds the tail of k8s.sh's output.
    pub fn up(store: Store, apiserver_args: &str) -> Result<ControlPlane, String> {
        Self::start(store, apiserver_args, false)
    }

    /// `k8s.sh up <tmp> --store ... --with-kubelet`: a one-node cluster whose pods run in Docker,
    /// with cluster DNS, a default StorageClass, and the API server where in-cluster clients find
    /// it (see k8s.sh). One per Docker daemon: a second one fails saying the first one runs.
    pub fn up_with_node(store: Store) -> Result<ControlPlane, String> {
        Self::start(store, "", true)
    }

    fn start(store: Store, apiserver_args: &str, node: bool) -> Result<ControlPlane, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("rustcd-k8s-{}-", store.name()))
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let mut cmd = Command::new("bash");
        cmd.arg(k8s_script())
            .arg("up")
            .arg(dir.path())
            .args(["--store", store.name()])
            .env("K8S_APISERVER_EXTRA_ARGS", apiserver_args);
        if let Store::Rustcd(bin) = &store {
            cmd.arg("--store-bin").arg(bin);
        }
        if node {
            cmd.arg("--with-kubelet");
        }
        let mut cp = ControlPlane {
            dir,
            env: BTreeMap::new(),
            store,
        };
        let out = run_with_timeout(cmd, None, UP_TIMEOUT);
        if out.status != 0 {
            // `cp` is dropped here: `down` stops whatever `up` left running.
            return Err(format!(
                "k8s.sh up --store {} failed (status {}):\n{}",
                cp.store.name(),
                out.status,
                tail(&out.stderr, 40)
            ));
        }
        let env_file = cp.dir.path().join("env");
        let text = std::fs::read_to_string(&env_file).map_err(|e| format!("{}: {e}", env_file.display()))?;
        cp.env = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(cp)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A value of `<dir>/env` (panics when the key is missing).
    pub fn env(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{} has no {key}", self.dir().join("env").display()))
    }

    /// `kubectl <args>` with this cluster's KUBECONFIG.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    /// `kubectl <args>` feeding `stdin` (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", self.env("KUBECONFIG"))
            .arg("--request-timeout=30s")
            .args(args);
        let out = run_with_timeout(cmd, stdin, KUBECTL_TIMEOUT);
        assert!(
            out.status != -9,
            "kubectl {args:?} timed out after {KUBECTL_TIMEOUT:?}: {out:?}"
        );
        out
    }

    /// `kubectl <args>` that must succeed; its stdout parsed as JSON.
    pub fn kubectl_json(&self, args: &[&str]) -> Value {
        let out = self.kubectl(args);
        assert_eq!(
            out.status,
            0,
            "[{}] kubectl {args:?} failed: {}",
            self.store.name(),
            out.stderr
        );
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("kubectl {args:?}: not JSON ({e}): {}", out.stdout))
    }

    /// `etcdctl <args>` (API v3) against `endpoints` (None: all three members) with the store's
    /// CA and client certificate.
    pub fn etcdctl(&self, endpoints: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!(
                "--endpoints={}",
                endpoints.unwrap_or(self.env("STORE_ENDPOINTS"))
            ))
            .arg(format!("--cacert={}", self.env("STORE_CA_FILE")))
            .arg(format!("--cert={}", self.env("STORE_CERT_FILE")))
            .arg(format!("--key={}", self.env("STORE_KEY_FILE")))
            .args(["--dial-timeout=5s", "--command-timeout=10s"])
            .args(args);
        run_with_timeout(cmd, None, KUBECTL_TIMEOUT)
    }

    /// The store's client URLs, member 0 first.
    pub fn store_endpoints(&self) -> Vec<String> {
        self.env("STORE_ENDPOINTS").split(',').map(str::to_string).collect()
    }

    /// The PID `k8s.sh` recorded for `name` (`store-s0`, `kube-apiserver`, ...).
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        let pids = std::fs::read_to_string(self.env("PIDS_FILE")).ok()?;
        pids.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(name)).then(|| f.next()?.parse().ok()).flatten()
        })
    }

    /// SIGKILLs store member `n` and waits until its process is gone.
    pub fn kill_store_member(&self, n: usize) {
        let name = format!("store-s{n}");
        let pid = self.pid_of(&name).unwrap_or_else(|| panic!("no PID for {name}"));
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -KILL {pid} ({name}) failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `k8s.sh restart-store-member <dir> n`: the member's own command line on its data dir; returns
    /// once it is healthy.
    pub fn restart_store_member(&self, n: usize) {
        let mut cmd = Command::new("bash");
        cmd.arg(k8s_script())
            .arg("restart-store-member")
            .arg(self.dir())
            .arg(n.to_string());
        let out = run_with_timeout(cmd, None, Duration::from_secs(90));
        assert_eq!(
            out.status,
            0,
            "[{}] restart-store-member {n} failed: {}\nmember log:\n{}",
            self.store.name(),
            out.stderr,
            self.log_tail(&format!("store-s{n}"), 30)
        );
    }

    /// The last `n` lines of `<dir>/logs/<name>.log`.
    pub fn log_tail(&self, name: &str, n: usize) -> String {
        let path = Path::new(self.env("LOG_DIR")).join(format!("{name}.log"));
        tail(&std::fs::read_to_string(path).unwrap_or_default(), n)
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let mut cmd = Command::new("bash");
        cmd.arg(k8s_script()).arg("down").arg(self.dir.path());
        let out = run_with_timeout(cmd, None, Duration::from_secs(120));
        if out.status != 0 {
            let _ = writeln!(
                std::io::stderr(),
                "k8s.sh down {} failed ({}): {}",
                self.dir.path().display(),
                out.status,
                out.stderr
            );
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------------
// Normalisation
// ---------------------------------------------------------------------------------------------

/// Keys dropped wherever they occur: they differ between any two clusters (or runs).
const DROPPED_KEYS: &[&str] = &[
    "uid",
    "resourceVersion",
    "selfLink",
    "creationTimestamp",
    // managedFields[].time, and the timestamps of conditions and statuses
    "time",
    "lastTransitionTime",
    "lastProbeTime",
    "lastUpdateTime",
    "lastHeartbeatTime",
    "startTime",
];

/// The characters of apimachinery's `utilrand.String` (generateName and token Secret suffixes): no
/// vowels, no 0/1/3.
const RANDOM_ALPHABET: &str = "bcdfghjklmnpqrstvwxz2456789";

/// Masks `<prefix>-token-<5 random chars>` (a ServiceAccount's token Secret) in a string.
fn mask_token_names(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("-token-") {
        let (head, tail) = rest.split_at(i + "-token-".len());
        out.push_str(head);
        let suffix: String = tail.chars().take(5).collect();
        let after = &tail[suffix.len()..];
        let boundary = after.chars().next().is_none_or(|c| !c.is_ascii_alphanumeric());
        if suffix.len() == 5 && suffix.chars().all(|c| RANDOM_ALPHABET.contains(c)) && boundary {
            out.push_str("<random>");
            rest = after;
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// A Kubernetes object (or list, or watch event) with everything chance-dependent removed:
/// - `uid`, `resourceVersion`, `selfLink`, `creationTimestamp`, `managedFields[].time` and condition
///   timestamps are dropped; `deletionTimestamp` becomes `"<set>"`;
/// - a name made from `generateName` keeps the prefix and gets `<random>` for the suffix (in
///   `metadata.name` and in owner references, which are reduced to kind/name/controller);
/// - token Secret names (`<sa>-token-xxxxx`) are masked everywhere;
/// - a `kubernetes.io/service-account-token` Secret's data values are masked except `namespace`
///   (token and ca.crt are per-cluster), and its `service-account.uid` annotation.
pub fn normalize(v: &Value) -> Value {
    let mut v = v.clone();
    let generated = collect_generated_names(&v);
    norm_in_place(&mut v, &generated);
    v
}

/// The (name, generateName) pairs in `v`, so that the same random names are masked wherever they
/// are referenced (owner references of the Pods name their ReplicaSet, which has no
/// generateName, so only real generated names are here).
fn collect_generated_names(v: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(name)), Some(Value::String(prefix))) = (m.get("name"), m.get("generateName"))
                {
                    if name.starts_with(prefix.as_str()) {
                        out.push((name.clone(), format!("{prefix}<random>")));
                    }
                }
                m.values().for_each(|c| walk(c, out));
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

fn norm_in_place(v: &mut Value, generated: &[(String, String)]) {
    match v {
        Value::Object(m) => {
            for k in DROPPED_KEYS {
                m.remove(*k);
            }
            if let Some(ts) = m.get_mut("deletionTimestamp") {
                *ts = Value::String("<set>".into());
            }
            if let Some(Value::Array(refs)) = m.get_mut("ownerReferences") {
                for r in refs.iter_mut() {
                    if let Value::Object(o) = r {
                        o.retain(|k, _| matches!(k.as_str(), "kind" | "name" | "controller" | "apiVersion"));
                    }
                }
            }
            let is_token_secret = m.get("type").and_then(Value::as_str) == Some("kubernetes.io/service-account-token");
            if is_token_secret {
                if let Some(Value::Object(data)) = m.get_mut("data") {
                    for (k, val) in data.iter_mut() {
                        if k != "namespace" {
                            *val = Value::String("<masked>".into());
                        }
                    }
                }
            }
            if let Some(Value::Object(ann)) = m.get_mut("annotations") {
                if let Some(u) = ann.get_mut("kubernetes.io/service-account.uid") {
                    *u = Value::String("<uid>".into());
                }
            }
            for c in m.values_mut() {
                norm_in_place(c, generated);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| norm_in_place(c, generated)),
        Value::String(s) => {
            for (name, masked) in generated {
                if s == name {
                    *s = masked.clone();
                }
            }
            if s.contains("-token-") {
                *s = mask_token_names(s);
            }
        }
        _ => {}
    }
}

/// The events of a `?watch=1` response (newline-separated JSON objects) as `"TYPE name"` lines;
/// an ERROR event as `"ERROR <code> <reason>: <message>"`.
pub fn watch_events(body: &str) -> Vec<String> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let ev: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("watch event is not JSON ({e}): {l}"));
            let ty = ev["type"].as_str().unwrap_or("?");
            let obj = &ev["object"];
            if ty == "ERROR" {
                format!(
                    "ERROR {} {}: {}",
                    obj["code"],
                    obj["reason"].as_str().unwrap_or(""),
                    obj["message"].as_str().unwrap_or("")
                )
            } else {
                format!("{ty} {}", obj["metadata"]["name"].as_str().unwrap_or("?"))
            }
        })
        .collect()
}

/// The `metadata.name`s of a list's items.
pub fn item_names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn masks_generated_names_and_owner_uids() {
        let pod = json!({"metadata": {"name": "web-5d4b-abcde", "generateName": "web-5d4b-", "uid": "u1",
            "resourceVersion": "7", "creationTimestamp": "t", "deletionTimestamp": "t2",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d4b", "uid": "u2", "controller": true,
                "blockOwnerDeletion": true, "apiVersion": "apps/v1"}],
            "managedFields": [{"manager": "m", "time": "t"}]},
            "spec": {"volumes": [{"name": "default-token-x7k2p", "secret": {"secretName": "default-token-x7k2p"}}]}});
        assert_eq!(
            normalize(&pod),
            json!({"metadata": {"name": "web-5d4b-<random>", "generateName": "web-5d4b-", "deletionTimestamp": "<set>",
                "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d4b", "controller": true, "apiVersion": "apps/v1"}],
                "managedFields": [{"manager": "m"}]},
                "spec": {"volumes": [{"name": "default-token-<random>", "secret": {"secretName": "default-token-<random>"}}]}})
        );
    }

    #[test]
    fn token_names_need_five_random_chars() {
        assert_eq!(mask_token_names("robot-token-x7k2p"), "robot-token-<random>");
        assert_eq!(mask_token_names("my-token-store"), "my-token-store");
        assert_eq!(mask_token_names("a-token-bcdfgh"), "a-token-bcdfgh");
    }

    #[test]
    fn watch_events_by_type_and_name() {
        let body = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n\
                    {\"type\":\"ERROR\",\"object\":{\"code\":410,\"reason\":\"Expired\",\"message\":\"too old\"}}\n";
        assert_eq!(watch_events(body), vec!["ADDED a", "ERROR 410 Expired: too old"]);
    }
}
