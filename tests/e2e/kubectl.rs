//! Running `kubectl`, waiting for conditions, and port-forwarding to a Service.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Upper bound for one kubectl call that does not wait on purpose.
const REQUEST_TIMEOUT: &str = "--request-timeout=30s";

/// The kubeconfig of the cluster the run made for itself (none: `KUBECONFIG` from the environment).
static KUBECONFIG: OnceLock<PathBuf> = OnceLock::new();

/// Points every later kubectl (and Helm) call at `path`, set once before the scenario starts.
pub fn use_kubeconfig(path: &Path) {
    let _ = KUBECONFIG.set(path.to_path_buf());
}

/// `program` with `KUBECONFIG` set to the run's own cluster, if it made one.
pub fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    if let Some(path) = KUBECONFIG.get() {
        cmd.env("KUBECONFIG", path);
    }
    cmd
}

/// Runs `kubectl ARGS` (with `stdin` piped in when given): its stdout, or a message with its stderr.
pub fn kubectl_with_input(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = command("kubectl")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run kubectl: {e}"))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| format!("kubectl {args:?}: cannot write stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("kubectl {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `kubectl ARGS`: its stdout, or a message with its stderr.
pub fn kubectl(args: &[&str]) -> Result<String, String> {
    kubectl_with_input(args, None)
}

/// `kubectl get ... -o json`, parsed.
pub fn get_json(namespace: &str, what: &[&str]) -> Result<Value, String> {
    let mut args = vec!["get", "-n", namespace, "-o", "json", REQUEST_TIMEOUT];
    args.extend_from_slice(what);
    let out = kubectl(&args)?;
    serde_json::from_str(&out).map_err(|e| format!("kubectl get {what:?}: not JSON: {e}"))
}

/// Calls `check` every two seconds until it returns `Ok`, and panics with its last error after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => {
                log(&format!("{what}: ok after {:.0?}", start.elapsed()));
                return value;
            }
            Err(e) if start.elapsed() >= timeout => panic!("{what}: not done after {timeout:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_secs(2)),
        }
    }
}

/// Progress lines on stderr, outside the test harness's capture, so a long run shows where it is.
pub fn log(line: &str) {
    let _ = writeln!(std::io::stderr(), "e2e: {line}");
}

/// `kubectl port-forward` to a Service, stopped on drop.
pub struct PortForward {
    child: Child,
    /// The local port on 127.0.0.1.
    pub port: u16,
}

impl PortForward {
    /// Forwards a free local port to `remote_port` of `service` and waits until kubectl says it listens.
    pub fn start(namespace: &str, service: &str, remote_port: u16) -> Result<Self, String> {
        let target = format!("svc/{service}");
        let ports = format!(":{remote_port}");
        let mut child = command("kubectl")
            .args([
                "port-forward",
                "-n",
                namespace,
                "--address",
                "127.0.0.1",
                &target,
                &ports,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run kubectl port-forward: {e}"))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err("kubectl port-forward: no stdout".into());
        };
        // "Forwarding from 127.0.0.1:43567 -> 2379"
        let mut lines = BufReader::new(stdout).lines();
        let port = lines.by_ref().map_while(Result::ok).find_map(|line| {
            let rest = line.strip_prefix("Forwarding from 127.0.0.1:")?;
            rest.split_whitespace().next()?.parse::<u16>().ok()
        });
        // kubectl prints "Handling connection for <port>" per connection: keep reading, or the
        // closed pipe kills it (SIGPIPE) at the first connection.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
        let mut forward = PortForward { child, port: 0 };
        match port {
            Some(port) => {
                forward.port = port;
                Ok(forward)
            }
            None => Err(format!("kubectl port-forward {target} exited without forwarding")),
        }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
