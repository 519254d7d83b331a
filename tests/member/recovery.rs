//! Durability and bad-input tests for rustcd alone (no etcd needed): restart from
//! snapshot + WAL, torn WAL tails, corrupted files refused with the file named, and
//! bad command lines refused before anything is touched.

use std::path::{Path, PathBuf};
use std::process::Command;

use testkit::{etcdctl, Kind, Server};

fn rustcd_bin() -> PathBuf {
    Kind::Rustcd.binary()
}

/// Runs rustcd in the foreground on a data dir that should make it refuse to start;
/// returns (exit success, stderr).
fn start_expecting_failure(s: &Server) -> (bool, String) {
    let client = format!("http://127.0.0.1:{}", s.client_port);
    let peer = format!("http://127.0.0.1:{}", s.peer_port);
    let data = s.data_dir();
    let out = Command::new(rustcd_bin())
        .args(["--name", "default", "--data-dir"])
        .arg(&data)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .arg("--initial-cluster")
        .arg(format!("default={peer}"))
        .output()
        .expect("run rustcd");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

fn put_n(s: &Server, prefix: &str, n: usize) {
    for i in 0..n {
        let o = etcdctl(&s.endpoint(), &["put", &format!("{prefix}{i:03}"), &format!("v{i}")]);
        assert!(o.status == 0, "put failed: {o:?}");
    }
}

fn count(s: &Server, prefix: &str) -> usize {
    let o = etcdctl(&s.endpoint(), &["get", prefix, "--prefix", "--keys-only"]);
    assert_eq!(o.status, 0, "{o:?}");
    o.stdout.lines().filter(|l| !l.is_empty()).count()
}

#[test]
fn restart_recovers_from_snapshots_and_wal() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut s = Server::start(Kind::Rustcd, &["--snapshot-count", "20"]);
    put_n(&s, "k", 75);
    let lease = etcdctl(&s.endpoint(), &["lease", "grant", "600"]);
    let lease_id = lease.stdout.split_whitespace().nth(1).expect("lease id").to_string();
    let o = etcdctl(&s.endpoint(), &["put", "leased", "x", "--lease", &lease_id]);
    assert_eq!(o.status, 0, "{o:?}");
    let snaps = files_with_ext(&s.data_dir().join("member/snap"), "snap");
    assert!(!snaps.is_empty(), "--snapshot-count 20 should have written snapshots");
    s.kill9();
    s.restart();
    assert_eq!(count(&s, "k"), 75);
    let o = etcdctl(&s.endpoint(), &["get", "k074", "--print-value-only"]);
    assert_eq!(o.stdout.trim(), "v74");
    let o = etcdctl(&s.endpoint(), &["lease", "timetolive", &lease_id, "--keys"]);
    assert!(o.stdout.contains("leased"), "lease lost its key across restart: {o:?}");
    // Writes continue at the next revision after a restart.
    let o = etcdctl(&s.endpoint(), &["put", "after", "1", "-w", "json"]);
    assert!(o.stdout.contains("\"revision\":78"), "{o:?}");
}

#[test]
fn torn_wal_tail_is_truncated_and_earlier_writes_survive() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut s = Server::start(Kind::Rustcd, &[]);
    put_n(&s, "t", 10);
    s.kill9();
    let wal = files_with_ext(&s.data_dir().join("member/wal"), "wal");
    let last = wal.last().expect("a wal segment");
    let len = std::fs::metadata(last).expect("stat").len();
    // Append half of a record, as a crash in the middle of a write leaves it.
    let mut bytes = std::fs::read(last).expect("read wal");
    bytes.extend_from_slice(&[0x40, 0, 0, 0, 0xde, 0xad]);
    std::fs::write(last, &bytes).expect("write wal");
    s.restart();
    assert_eq!(count(&s, "t"), 10);
    assert!(std::fs::metadata(last).expect("stat").len() >= len);
    put_n(&s, "u", 3);
    assert_eq!(count(&s, "u"), 3);
}

/// Flips `mask` into the byte at `offset` (computed from the file length) of `file`,
/// then checks that rustcd refuses to start and names the file in its error.
fn corrupt_and_expect_refusal(s: &Server, file: &Path, offset: impl Fn(usize) -> usize, mask: u8, what: &str) {
    let mut bytes = std::fs::read(file).expect("read file to corrupt");
    let at = offset(bytes.len());
    bytes[at] ^= mask;
    std::fs::write(file, &bytes).expect("write corrupted file");
    let (ok, stderr) = start_expecting_failure(s);
    assert!(!ok, "rustcd started on a corrupted {what}");
    let name = file
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    assert!(stderr.contains(&name), "error does not name {name}: {stderr}");
}

#[test]
fn corrupted_wal_refuses_to_start_and_names_the_file() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut s = Server::start(Kind::Rustcd, &[]);
    put_n(&s, "c", 20);
    s.kill9();
    let wal = files_with_ext(&s.data_dir().join("member/wal"), "wal");
    let last = wal.last().expect("a wal segment").clone();
    corrupt_and_expect_refusal(&s, &last, |len| len / 2, 0xff, "WAL");
}

#[test]
fn corrupted_snapshot_refuses_to_start_and_names_the_file() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut s = Server::start(Kind::Rustcd, &["--snapshot-count", "5"]);
    put_n(&s, "s", 12);
    s.kill9();
    let snaps = files_with_ext(&s.data_dir().join("member/snap"), "snap");
    let newest = snaps.last().expect("a snapshot").clone();
    corrupt_and_expect_refusal(&s, &newest, |len| len - 3, 0x55, "snapshot");
}

#[test]
fn bad_command_lines_fail_before_touching_the_data_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("d");
    let cases: &[(&[&str], &str)] = &[
        (&["--no-such-flag"], "--no-such-flag"),
        (
            &["--heartbeat-interval=500", "--election-timeout=1000"],
            "election-timeout",
        ),
        (&["--initial-cluster-state=sideways"], "initial-cluster-state"),
        (
            &["--name=a", "--initial-cluster=b=http://127.0.0.1:1"],
            "couldn't find local name",
        ),
        (
            &[
                "--cert-file=/nonexistent",
                "--key-file=/nonexistent-key",
                "--listen-client-urls=https://127.0.0.1:1",
                "--advertise-client-urls=https://127.0.0.1:1",
            ],
            "cannot read --cert-file /nonexistent",
        ),
        (
            &[
                "--listen-client-urls=https://127.0.0.1:1",
                "--advertise-client-urls=https://127.0.0.1:1",
            ],
            "TLS key/cert (--cert-file, --key-file) must be provided",
        ),
        (&["--enable-v2"], "not supported yet"),
        (&["--listen-client-urls=http://127.0.0.1:1"], "advertise-client-urls"),
    ];
    for (args, needle) in cases {
        let out = Command::new(rustcd_bin())
            .arg("--data-dir")
            .arg(&data)
            .args(*args)
            .output()
            .expect("run rustcd");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!data.exists(), "{args:?} created the data dir");
    }
}

#[test]
fn etcd_style_env_vars_configure_the_server() {
    let out = Command::new(rustcd_bin())
        .env("ETCD_HEARTBEAT_INTERVAL", "500")
        .env("ETCD_ELECTION_TIMEOUT", "1000")
        .output()
        .expect("run rustcd");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--election-timeout[1000ms]"));
}

#[test]
fn snapshot_save_then_restore_into_a_new_member() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let s = Server::start(Kind::Rustcd, &[]);
    put_n(&s, "b", 25);
    let o = etcdctl(&s.endpoint(), &["compaction", "10"]);
    assert_eq!(o.status, 0, "{o:?}");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.db");
    let file_s = file.display().to_string();
    let o = etcdctl(&s.endpoint(), &["snapshot", "save", &file_s]);
    assert_eq!(o.status, 0, "snapshot save: {o:?}");
    // A corrupted copy is refused with the file named, and nothing is created.
    let bad = dir.path().join("bad.db");
    let mut bytes = std::fs::read(&file).expect("read backup");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&bad, &bytes).expect("write bad copy");
    let bad_target = dir.path().join("never");
    let out = Command::new(rustcd_bin())
        .args(["snapshot", "restore"])
        .arg(&bad)
        .arg("--data-dir")
        .arg(&bad_target)
        .output()
        .expect("run restore");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.db"), "{out:?}");
    assert!(!bad_target.exists());
    // The good copy restores into a fresh member that serves the same data and history.
    let restored = dir.path().join("restored");
    let peer_port = testkit::free_port();
    let client_port = testkit::free_port();
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client = format!("http://127.0.0.1:{client_port}");
    let out = Command::new(rustcd_bin())
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .args(["--name", "r1", "--initial-cluster", &format!("r1={peer}")])
        .args(["--initial-advertise-peer-urls", &peer])
        .output()
        .expect("run restore");
    assert!(out.status.success(), "restore failed: {out:?}");
    let mut child = Command::new(rustcd_bin())
        .args(["--name", "r1", "--data-dir"])
        .arg(&restored)
        .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("r1={peer}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start restored member");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut listing = testkit::Output::default();
    while std::time::Instant::now() < deadline {
        listing = etcdctl(&client, &["get", "b", "--prefix", "--keys-only"]);
        if listing.status == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let members = etcdctl(&client, &["member", "list"]);
    let old_rev = etcdctl(&client, &["get", "b000", "--rev", "5"]);
    let compacted = etcdctl(&client, &["get", "b000", "--rev", "9"]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        listing.stdout.lines().filter(|l| !l.is_empty()).count(),
        25,
        "{listing:?}"
    );
    assert!(
        members.stdout.contains("r1") && members.stdout.contains(&peer),
        "{members:?}"
    );
    assert_eq!(
        old_rev.status, 1,
        "revision 5 was compacted before the backup: {old_rev:?}"
    );
    assert!(
        compacted.stderr.contains("required revision has been compacted"),
        "{compacted:?}"
    );
}
