//! `--config-file` against Debian's etcd: the same YAML file (etcd's keys, a nested
//! `peer-transport-security`-style section left out) starts both with the file's settings, a
//! conflicting flag and `ETCD_*` variable ignored; a missing file, a file that is not YAML and a
//! value of the wrong type make both exit non-zero, naming the problem.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{etcdctl_until_ok, free_port, print_skip, skip_reason, Kind};

fn config(dir: &Path, extra: &str) -> (std::path::PathBuf, String) {
    let (client, peer) = (
        format!("http://127.0.0.1:{}", free_port()),
        format!("http://127.0.0.1:{}", free_port()),
    );
    let text = format!(
        "name: cfgnode\ndata-dir: {}\nlisten-client-urls: {client}\nadvertise-client-urls: {client}\n\
         listen-peer-urls: {peer}\ninitial-advertise-peer-urls: {peer}\ninitial-cluster: cfgnode={peer}\n\
         initial-cluster-token: from-file\nsnapshot-count: 5000\nstrict-reconfig-check: true\n{extra}",
        dir.join("data").display()
    );
    let path = dir.join("etcd.yaml");
    std::fs::write(&path, text).expect("write config");
    (path, client)
}

/// Runs `kind --config-file <path> args...` until it exits or `within` passes; (exited, stderr).
fn run_briefly(kind: Kind, path: &Path, within: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(kind.binary())
        .arg("--config-file")
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + within;
    let code = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    (code, stderr)
}

#[test]
fn config_file_settings_win_and_bad_files_are_refused_like_etcd() {
    if let Some(r) = skip_reason() {
        return print_skip(&r);
    }
    for kind in [Kind::Etcd, Kind::Rustcd] {
        let dir = tempfile::tempdir().unwrap();
        let (path, client) = config(dir.path(), "unknown-key: ignored\n");
        let mut child = Command::new(kind.binary())
            .arg("--config-file")
            .arg(&path)
            .args(["--name", "from-flag"])
            .env("ETCD_NAME", "from-env")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start");
        let list = etcdctl_until_ok(&client, &["member", "list"], Duration::from_secs(20));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(list.status, 0, "{}: {list:?}", kind.name());
        assert!(
            list.stdout.contains(", started, cfgnode, "),
            "{}: the file's name is not the member's: {}",
            kind.name(),
            list.stdout
        );

        for (what, file, needle) in [
            ("a missing file", dir.path().join("missing.yaml"), "no such file"),
            (
                "a file that is not YAML",
                write(dir.path(), "bad.yaml", "name: [unclosed\n"),
                "bad.yaml",
            ),
            (
                "a value of the wrong type",
                write(dir.path(), "type.yaml", "snapshot-count: abc\n"),
                "snapshot-count",
            ),
        ] {
            let (code, stderr) = run_briefly(kind, &file, Duration::from_secs(10));
            assert!(
                code.is_some_and(|c| c != 0),
                "{}: {what} was accepted: {stderr}",
                kind.name()
            );
            assert!(
                stderr.to_lowercase().contains(needle),
                "{}: {what}: the error does not say {needle:?}: {stderr}",
                kind.name()
            );
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}
