//! Shared harness for the differential tests and the `compare_etcd` bench.
//!
//! * [`Server`] starts a single-member `etcd` or `rustcd` on free loopback
//!   ports in a temp dir and waits for `GET /health` to succeed.
//! * [`etcdctl`] runs Debian's `etcdctl` (API v3) with a timeout.
//! * [`Norm`] normalises etcdctl / client output so that two different
//!   servers can be compared with `assert_eq!` (IDs, terms, raft indexes,
//!   sizes, versions and timings are masked; revisions are kept).
//!
//! Binaries: `ETCD_BIN` (default `etcd` on `PATH`), `ETCDCTL_BIN` (default
//! `etcdctl` on `PATH`), `RUSTCD_BIN` (default: the workspace's `rustcd` bin in the test's own
//! target directory, see [`built_binary`]).
//! Point `RUSTCD_BIN` at `/usr/bin/etcd` to run everything etcd-vs-etcd.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub mod client_pair;
pub mod cluster;
pub mod docker;
pub mod etcdctl_pair;
#[cfg(feature = "kube")]
pub mod kube;
pub mod kubernetes;
pub mod linearizability;
mod normalize;
pub mod objects;
pub mod pki;
pub mod s3;
pub mod workload;

pub use normalize::*;

/// How long a server may take to become healthy.
pub const START_DEADLINE: Duration = Duration::from_secs(20);
/// Upper bound for one etcdctl invocation.
pub const ETCDCTL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Etcd,
    Rustcd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Etcd => "etcd",
            Kind::Rustcd => "rustcd",
        }
    }

    pub fn binary(self) -> PathBuf {
        match self {
            Kind::Etcd => std::env::var_os("ETCD_BIN")
                .map(PathBuf::from)
                .or_else(|| which("etcd"))
                .unwrap_or_else(|| PathBuf::from("etcd")),
            Kind::Rustcd => std::env::var_os("RUSTCD_BIN")
                .map(PathBuf::from)
                .unwrap_or_else(|| built_binary("rustcd")),
        }
    }
}

/// The repository's root directory (Dockerfile, charts, examples, scripts).
pub fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The workspace binary `name` (`rustcd`, `rustcd-operator`) of the running test's own build: test
/// executables live in `target/<profile>/deps/`, binaries in `target/<profile>/`. Cargo builds a
/// package's binaries for its own integration tests; the operator's tests also need `rustcd`, which
/// `cargo test --workspace` (the README's test command) builds. Panics, saying what to run, when it
/// is missing.
pub fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in target/<profile>/deps");
    let path = profile_dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build --bin {name}`, or `cargo test --workspace`), or set RUSTCD_BIN",
        path.display()
    );
    path
}

/// Finds `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

pub fn etcdctl_bin() -> Option<PathBuf> {
    std::env::var_os("ETCDCTL_BIN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| which("etcdctl"))
}

/// `Some(reason)` when the oracle binaries (`etcd`, `etcdctl`) are missing:
/// the differential tests then print the reason and pass.
pub fn skip_reason() -> Option<String> {
    let etcd = Kind::Etcd.binary();
    if !etcd.is_file() {
        return Some(format!(
            "etcd binary not found ({}); install Debian's etcd-server or set ETCD_BIN",
            etcd.display()
        ));
    }
    if etcdctl_bin().is_none() {
        return Some("etcdctl not found; install Debian's etcd-client or set ETCDCTL_BIN".into());
    }
    None
}

/// Whether etcdctl is available for a test; prints why the test skips otherwise.
pub fn etcdctl_usable() -> bool {
    if etcdctl_bin().is_none() {
        print_skip("etcdctl not installed (scripts/setup.sh --with-etcd installs it)");
        return false;
    }
    true
}

/// Resident set size of process `pid` in KiB (Linux `/proc`).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Prints a SKIP line straight to stderr (bypassing libtest's output
/// capture, so it is visible even though the test passes).
pub fn print_skip(reason: &str) {
    let _ = writeln!(std::io::stderr(), "SKIP: {reason}");
}

/// A free TCP port on 127.0.0.1 (bind to port 0 and take what the OS gave).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = l.local_addr().unwrap().port();
    assert!(port != 2379 && port != 2380);
    port
}

/// A running single-member server.
pub struct Server {
    pub kind: Kind,
    bin: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub client_port: u16,
    pub peer_port: u16,
}

impl Server {
    /// Starts `kind` with the standard single-member flags plus `extra_flags`
    /// and waits until `/health` answers. Panics (with the server log) on failure.
    pub fn start(kind: Kind, extra_flags: &[&str]) -> Server {
        match Server::try_start(kind, extra_flags) {
            Ok(s) => s,
            Err(e) => panic!("{} failed to start: {e}", kind.name()),
        }
    }

    /// Like [`Server::start`] but returns the error (with the log tail).
    /// Retries on fresh ports if the chosen ones were taken in the meantime.
    pub fn try_start(kind: Kind, extra_flags: &[&str]) -> Result<Server, String> {
        let mut last_err = String::new();
        for _attempt in 0..3 {
            let dir = tempfile::Builder::new()
                .prefix(&format!("difftest-{}-", kind.name()))
                .tempdir()
                .map_err(|e| format!("tempdir: {e}"))?;
            let client_port = free_port();
            let mut peer_port = free_port();
            while peer_port == client_port {
                peer_port = free_port();
            }
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let mut args: Vec<String> = vec![
                "--name".into(),
                "default".into(),
                "--data-dir".into(),
                dir.path().join("data").display().to_string(),
                "--listen-client-urls".into(),
                client.clone(),
                "--advertise-client-urls".into(),
                client,
                "--listen-peer-urls".into(),
                peer.clone(),
                "--initial-advertise-peer-urls".into(),
                peer.clone(),
                "--initial-cluster".into(),
                format!("default={peer}"),
            ];
            args.extend(extra_flags.iter().map(|s| s.to_string()));
            let mut server = Server {
                kind,
                bin: kind.binary(),
                args,
                child: None,
                dir: Some(dir),
                client_port,
                peer_port,
            };
            match server.spawn_and_wait() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    let retry = e.contains("address already in use");
                    last_err = e;
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_err)
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// `http://127.0.0.1:<client port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:<peer port>`
    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Resident set size in KiB, from `/proc/<pid>/status`.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib_of(self.pid()?)
    }

    fn log_path(&self, which: &str) -> PathBuf {
        self.dir().join(format!("{which}.log"))
    }

    /// Captured stdout+stderr of all runs of this server (last 200 lines each).
    pub fn logs(&self) -> String {
        self.logs_tail(200)
    }

    pub fn logs_tail(&self, n: usize) -> String {
        let mut out = String::new();
        for which in ["stdout", "stderr"] {
            let text = std::fs::read_to_string(self.log_path(which)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            out.push_str(&format!(
                "----- {} {which} ({}) -----\n",
                self.kind.name(),
                self.log_path(which).display()
            ));
            for l in &lines[start..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let open = |p: PathBuf| -> Result<File, String> {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .map_err(|e| format!("open {}: {e}", p.display()))
        };
        let stdout = open(self.log_path("stdout"))?;
        let stderr = open(self.log_path("stderr"))?;
        let child = Command::new(&self.bin)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        self.child = Some(child);
        self.wait_ready(START_DEADLINE)
    }

    /// Polls `GET /health` until it returns 200 with `"health":"true"`.
    pub fn wait_ready(&mut self, deadline: Duration) -> Result<(), String> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    return Err(format!(
                        "{} exited early with {status}\n{}",
                        self.bin.display(),
                        self.logs()
                    ));
                }
            }
            if let Some((code, body)) = http_get(self.client_port, "/health") {
                if code == 200 && body.contains("true") {
                    // make sure it is our process answering (not another
                    // server that grabbed the port after ours failed to bind)
                    let alive = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)));
                    if alive {
                        return Ok(());
                    }
                    continue;
                }
            }
            if Instant::now() > until {
                return Err(format!(
                    "{} not healthy after {deadline:?} (GET /health on {})\n{}",
                    self.bin.display(),
                    self.endpoint(),
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILLs the server and reaps it (data dir is kept).
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again with the same data dir, ports and flags.
    pub fn restart(&mut self) {
        self.kill9();
        if let Err(e) = self.spawn_and_wait() {
            panic!("{} failed to restart: {e}", self.kind.name());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("{}", self.logs_tail(40));
        }
        // TempDir removes the directory when dropped.
        self.dir.take();
    }
}

/// Minimal HTTP/1.1 GET on 127.0.0.1:port; returns (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&buf[..split]).to_string();
    let body = &buf[split + 4..];
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    let body = if chunked { dechunk(body) } else { body.to_vec() };
    Some((code, String::from_utf8_lossy(&body).to_string()))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size_line = String::from_utf8_lossy(&body[..eol]).to_string();
        let rest = &body[eol + 2..];
        let size_hex = size_line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            break;
        };
        let take = size.min(rest.len());
        out.extend_from_slice(&rest[..take]);
        if size == 0 || take < size {
            break;
        }
        body = rest[size..].strip_prefix(b"\r\n").unwrap_or(&rest[size..]);
    }
    out
}

// ---------------------------------------------------------------------------
// etcdctl
// ---------------------------------------------------------------------------

/// Result of one etcdctl run. `status` is the exit code, or -9 if it was killed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

fn exit_code(s: ExitStatus) -> i32 {
    s.code().unwrap_or(-9)
}

fn etcdctl_command(endpoint: &str, args: &[&str]) -> Command {
    let bin = etcdctl_bin().unwrap_or_else(|| PathBuf::from("etcdctl"));
    let mut cmd = Command::new(bin);
    cmd.env("ETCDCTL_API", "3")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_USER")
        .arg(format!("--endpoints={endpoint}"))
        .arg("--command-timeout=10s")
        .arg("--dial-timeout=5s")
        .args(args);
    cmd
}

/// Runs etcdctl until it exits 0 or `within` has passed; returns the last attempt.
pub fn etcdctl_until_ok(endpoint: &str, args: &[&str], within: Duration) -> Output {
    let deadline = Instant::now() + within;
    loop {
        let o = etcdctl(endpoint, args);
        if o.status == 0 || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `etcdctl --endpoints=<endpoint> <args>` (API v3) with a timeout.
pub fn etcdctl(endpoint: &str, args: &[&str]) -> Output {
    etcdctl_stdin(endpoint, args, None)
}

/// Like [`etcdctl`], feeding `stdin` to the process.
pub fn etcdctl_stdin(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut bg = Background::spawn(endpoint, args, stdin);
    match bg.wait_exit(ETCDCTL_TIMEOUT) {
        Some(out) => out,
        None => {
            let out = bg.kill();
            panic!("etcdctl {args:?} timed out after {ETCDCTL_TIMEOUT:?}: {out:?}");
        }
    }
}

/// An etcdctl process running in the background (e.g. `watch`), its output
/// going to temp files. Dropping it kills the process.
pub struct Background {
    child: Option<Child>,
    dir: tempfile::TempDir,
    stdin_writer: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    pub fn spawn(endpoint: &str, args: &[&str], stdin: Option<&[u8]>) -> Background {
        let dir = tempfile::Builder::new()
            .prefix("difftest-etcdctl-")
            .tempdir()
            .expect("tempdir");
        let out = File::create(dir.path().join("stdout")).unwrap();
        let err = File::create(dir.path().join("stderr")).unwrap();
        let mut cmd = etcdctl_command(endpoint, args);
        cmd.stdout(out).stderr(err);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = cmd.spawn().expect("spawn etcdctl");
        let stdin_writer = stdin.map(|data| {
            let mut pipe = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = pipe.write_all(&data);
            })
        });
        Background {
            child: Some(child),
            dir,
            stdin_writer,
        }
    }

    pub fn stdout_so_far(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default()
    }

    fn output(&self, status: i32) -> Output {
        Output {
            status,
            stdout: self.stdout_so_far(),
            stderr: std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default(),
        }
    }

    /// Polls until stdout satisfies `cond` (true) or the deadline passes (false).
    pub fn wait_for(&mut self, deadline: Duration, cond: impl Fn(&str) -> bool) -> bool {
        let until = Instant::now() + deadline;
        loop {
            if cond(&self.stdout_so_far()) {
                return true;
            }
            let exited = matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(Some(_))));
            if exited {
                return cond(&self.stdout_so_far());
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<Output> {
        let until = Instant::now() + deadline;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                if let Some(h) = self.stdin_writer.take() {
                    let _ = h.join();
                }
                return Some(self.output(exit_code(status)));
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Kills the process (if still running) and returns what it printed.
    pub fn kill(&mut self) -> Output {
        let mut status = -9;
        if let Some(mut child) = self.child.take() {
            match child.try_wait() {
                Ok(Some(s)) => status = exit_code(s),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        if let Some(h) = self.stdin_writer.take() {
            let _ = h.join();
        }
        self.output(status)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `n` members behind `endpoints` (comma-separated) report the same HashKV.
pub fn wait_hashkv_converged(endpoints: &str, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let o = etcdctl(endpoints, &["endpoint", "hashkv", "-w", "json"]);
        let hashes: Vec<&str> = o
            .stdout
            .split("\"hash\":")
            .skip(1)
            .map(|s| &s[..s.find(['}', ',']).unwrap_or(s.len())])
            .collect();
        if o.status == 0 && hashes.len() == n && hashes.iter().all(|h| *h == hashes[0]) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members did not converge (HashKV differs): {o:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
