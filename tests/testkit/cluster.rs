//! Multi-member rustcd clusters as processes on loopback, for the cluster and membership
//! tests: start with a static `--initial-cluster`, add members that join with
//! `--initial-cluster-state existing`, kill, restart, find the leader.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{etcdctl, free_port, Kind};

impl Member {
    fn new(root: &std::path::Path, name: &str) -> Member {
        Member::with_scheme(root, name, "http")
    }

    /// A member whose client and peer URLs use `scheme` (`http` or `https`).
    fn with_scheme(root: &std::path::Path, name: &str, scheme: &str) -> Member {
        Member {
            name: name.to_string(),
            client: format!("{scheme}://127.0.0.1:{}", free_port()),
            peer: format!("{scheme}://127.0.0.1:{}", free_port()),
            dir: root.join(name),
            child: None,
            initial: String::new(),
            state: "new",
        }
    }

    /// Member ID as `member list` prints it (hex), from any endpoint of the cluster.
    pub fn id_in(&self, endpoints: &str) -> Option<String> {
        let o = etcdctl(endpoints, &["member", "list"]);
        o.stdout
            .lines()
            .find(|l| l.contains(&format!(", {}, ", self.peer)))
            .and_then(|l| l.split(',').next())
            .map(|s| s.trim().to_string())
    }
}

impl Cluster {
    /// Declares a new member `name` (not started): run `member add` for its peer URL, then
    /// [`Cluster::join`] it.
    pub fn declare(&mut self, name: &str) -> usize {
        let m = Member::new(self.tmp.path(), name);
        self.members.push(m);
        self.members.len() - 1
    }

    /// Starts member `i` with `--initial-cluster-state existing` and the `ETCD_INITIAL_CLUSTER`
    /// that `member add` printed.
    pub fn join(&mut self, i: usize, initial_cluster: &str) {
        self.members[i].initial = initial_cluster.to_string();
        self.members[i].state = "existing";
        self.spawn(i);
    }

    /// Endpoints of the running members except `except`.
    pub fn endpoints_except(&self, except: usize) -> String {
        self.members
            .iter()
            .enumerate()
            .filter(|(i, m)| *i != except && m.child.is_some())
            .map(|(_, m)| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether member `i`'s process has exited; returns its exit status if so.
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.members[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The largest resident set size among the running members (KiB).
    pub fn rss_kib(&self) -> Option<u64> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref())
            .filter_map(|c| super::rss_kib_of(c.id()))
            .max()
    }

    /// Waits (up to `within`) for member `i`'s process to exit by itself; panics if it keeps
    /// running.
    pub fn wait_exit(&mut self, i: usize, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.exited(i) {
                return s;
            }
            assert!(Instant::now() < deadline, "{} kept running", self.members[i].name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The member's log so far.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.members[i].dir.with_extension("log")).unwrap_or_default()
    }
}

pub struct Member {
    pub name: String,
    pub client: String,
    pub peer: String,
    pub dir: std::path::PathBuf,
    pub child: Option<Child>,
    /// `--initial-cluster` and `--initial-cluster-state` this member starts with.
    pub initial: String,
    pub state: &'static str,
}

pub struct Cluster {
    pub kind: Kind,
    pub members: Vec<Member>,
    pub extra: Vec<String>,
    /// etcdctl flags the helpers pass (e.g. `--cacert --cert --key` for a TLS cluster).
    pub ctl_flags: Vec<String>,
    tmp: tempfile::TempDir,
}

impl Cluster {
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, &[])
    }

    pub fn start_with(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_kind(Kind::Rustcd, n, extra)
    }

    /// `n` members of `kind` (rustcd, or Debian's etcd as the reference) bootstrapped together.
    pub fn start_kind(kind: Kind, n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_secure(kind, n, extra, "http", &[])
    }

    /// Like [`Cluster::start_kind`] with client and peer URLs of `scheme`, and `ctl_flags`
    /// for the etcdctl calls the helpers make (a TLS cluster: `https` and the client
    /// certificate flags).
    pub fn start_secure(kind: Kind, n: usize, extra: &[&str], scheme: &str, ctl_flags: &[&str]) -> Cluster {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut members = Vec::new();
        for i in 0..n {
            members.push(Member::with_scheme(tmp.path(), &format!("m{i}"), scheme));
        }
        let initial = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial = initial.clone();
        }
        let mut c = Cluster {
            kind,
            members,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            ctl_flags: ctl_flags.iter().map(|s| s.to_string()).collect(),
            tmp,
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_started(Duration::from_secs(30));
        c
    }

    /// Waits (up to `within`) until `member list` shows every member started, i.e. each has
    /// published its name: a leader alone does not mean the others have. Returns whether they
    /// all did (a test that starts a cluster meant to fail goes on either way).
    pub fn wait_started(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut args: Vec<&str> = self.ctl_flags.iter().map(String::as_str).collect();
        args.extend(["member", "list"]);
        loop {
            let o = etcdctl(&self.endpoints(), &args);
            if o.status == 0 && o.stdout.matches(", started, ").count() >= self.members.len() {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn spawn(&mut self, i: usize) {
        let m = &mut self.members[i];
        let log = std::fs::File::create(m.dir.with_extension("log")).expect("log file");
        let child = Command::new(self.kind.binary())
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.dir)
            .args(["--listen-client-urls", &m.client, "--advertise-client-urls", &m.client])
            .args(["--listen-peer-urls", &m.peer, "--initial-advertise-peer-urls", &m.peer])
            .args([
                "--initial-cluster",
                &m.initial,
                "--initial-cluster-state",
                m.state,
                "--initial-cluster-token",
                "test-cluster",
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rustcd");
        m.child = Some(child);
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Index of the member that reports itself as leader, waiting up to `d`.
    pub fn leader(&self, d: Duration) -> Option<usize> {
        let endpoints: Vec<Option<&str>> = self
            .members
            .iter()
            .map(|m| m.child.as_ref().map(|_| m.client.as_str()))
            .collect();
        let flags: Vec<&str> = self.ctl_flags.iter().map(String::as_str).collect();
        find_leader(&endpoints, &flags, d)
    }
}

/// Index of the endpoint whose member reports itself as leader (`None` entries are skipped),
/// asking each with `etcdctl <ctl_flags> endpoint status` until `d` has passed.
pub fn find_leader(endpoints: &[Option<&str>], ctl_flags: &[&str], d: Duration) -> Option<usize> {
    let deadline = Instant::now() + d;
    let mut args = ctl_flags.to_vec();
    args.extend(["endpoint", "status", "-w", "json"]);
    while Instant::now() < deadline {
        for (i, ep) in endpoints.iter().enumerate() {
            let Some(ep) = ep else { continue };
            let o = etcdctl(ep, &args);
            if o.status == 0 && o.stdout.contains("\"leader\"") {
                let id = json_u64(&o.stdout, "\"member_id\":");
                let leader = json_u64(&o.stdout, "\"leader\":");
                if id.is_some() && id == leader {
                    return Some(i);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
        if std::thread::panicking() {
            for m in &self.members {
                let log = std::fs::read_to_string(m.dir.with_extension("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                eprintln!("--- {} log tail ---", m.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

pub fn json_u64(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits: String = text[at..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}
