//! Fail-stop on a full disk: a member whose data directory is on a small tmpfs is written to until
//! the WAL cannot grow. It must exit non-zero, naming the file and the error (as etcd does), instead
//! of staying up and answering `server stopped`; after space is freed and it restarts, every
//! acknowledged write is there. In a 3-member cluster the other two keep serving meanwhile and the
//! restarted member catches up. Needs root (mount); prints SKIP otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use testkit::{etcdctl, etcdctl_until_ok, free_port, Kind};

/// A tmpfs of `mb` MiB, unmounted and removed on drop.
struct Tmpfs(PathBuf);

/// A tmpfs of `mb` MiB with all but `room` MiB taken by a filler file, which [`free_space`] removes;
/// `None` (after printing why) where no tmpfs can be mounted.
fn nearly_full(mb: u32, room: u32) -> Option<Tmpfs> {
    let fs = match Tmpfs::mount(mb) {
        Ok(fs) => fs,
        Err(e) => {
            testkit::print_skip(&e);
            return None;
        }
    };
    std::fs::write(fs.0.join("filler"), vec![0u8; ((mb - room) as usize) << 20]).expect("filler");
    Some(fs)
}

/// Removes [`nearly_full`]'s filler.
fn free_space(fs: &Tmpfs) {
    std::fs::remove_file(fs.0.join("filler")).expect("remove the filler");
}

impl Tmpfs {
    fn mount(mb: u32) -> Result<Tmpfs, String> {
        let dir = std::env::temp_dir().join(format!("rustcd-failstop-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "cannot mount a tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Member {
    name: String,
    client: String,
    peer: String,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Member {
    fn new(name: &str, dir: &Path, log_dir: &Path) -> Member {
        Member {
            name: name.into(),
            client: format!("http://127.0.0.1:{}", free_port()),
            peer: format!("http://127.0.0.1:{}", free_port()),
            dir: dir.join(format!("{name}.rustcd")),
            log: log_dir.join(format!("{name}.log")),
            child: None,
        }
    }

    fn spawn(&mut self, initial: &str) {
        let log = std::fs::File::create(&self.log).expect("log");
        let child = Command::new(Kind::Rustcd.binary())
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &self.client,
                "--advertise-client-urls",
                &self.client,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer,
                "--initial-advertise-peer-urls",
                &self.peer,
            ])
            .args(["--initial-cluster", initial, "--initial-cluster-token", "fail-stop"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start rustcd");
        self.child = Some(child);
    }

    fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut()?.try_wait().ok().flatten() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Puts 100 kB values through `endpoint` (keys `fill/<first + i>`) until one fails, `done` says
/// so, or `max` are written; the acknowledged keys.
fn fill(endpoint: &str, first: usize, max: usize, mut done: impl FnMut() -> bool) -> Vec<String> {
    let value = "x".repeat(100_000);
    let mut acked = Vec::new();
    for i in first..first + max {
        if done() {
            break;
        }
        let key = format!("fill/{i:04}");
        let o = etcdctl(endpoint, &["put", &key, &value]);
        if o.status != 0 {
            break;
        }
        acked.push(key);
    }
    acked
}

fn stored(endpoint: &str) -> Vec<String> {
    let o = etcdctl_until_ok(
        endpoint,
        &["get", "fill/", "--prefix", "--keys-only"],
        Duration::from_secs(30),
    );
    assert_eq!(o.status, 0, "{o:?}");
    o.stdout.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

fn assert_fail_stopped(m: &mut Member, tmpfs: &Path) {
    let status = m
        .wait_exit(Duration::from_secs(20))
        .unwrap_or_else(|| panic!("{} kept running after its disk filled up:\n{}", m.name, m.logs()));
    assert!(!status.success(), "{} exited with {status}", m.name);
    let logs = m.logs();
    let last = logs.lines().last().unwrap_or_default();
    assert!(
        last.contains("No space left on device"),
        "the last line names the error: {last}"
    );
    assert!(
        last.contains(&tmpfs.display().to_string()),
        "the last line names the file: {last}"
    );
}

#[test]
fn a_full_disk_stops_a_single_member_and_loses_no_acknowledged_write() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let Some(fs) = nearly_full(16, 6) else { return };
    let logs = tempfile::tempdir().unwrap();
    let mut m = Member::new("m0", &fs.0, logs.path());
    let initial = format!("m0={}", m.peer);
    m.spawn(&initial);
    assert_eq!(
        etcdctl_until_ok(&m.client, &["put", "first", "1"], Duration::from_secs(20)).status,
        0
    );
    let acked = fill(&m.client, 0, 400, || false);
    assert!(acked.len() < 400, "the disk never filled up");
    assert_fail_stopped(&mut m, &fs.0);

    free_space(&fs);
    m.spawn(&initial);
    let keys = stored(&m.client);
    let lost: Vec<_> = acked.iter().filter(|k| !keys.contains(k)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}

#[test]
fn a_full_disk_stops_one_of_three_members_the_others_serve_and_it_catches_up() {
    if !testkit::etcdctl_usable() {
        return;
    }
    // Room for about 8 MB of m0's WAL; freed, room for all it then has to catch up on.
    let Some(fs) = nearly_full(64, 8) else { return };
    let others = tempfile::tempdir().unwrap();
    let mut members = vec![
        Member::new("m0", &fs.0, others.path()),
        Member::new("m1", others.path(), others.path()),
        Member::new("m2", others.path(), others.path()),
    ];
    let initial = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut members {
        m.spawn(&initial);
    }
    let healthy = members[1].client.clone();
    assert_eq!(
        etcdctl_until_ok(&healthy, &["put", "first", "1"], Duration::from_secs(20)).status,
        0
    );
    // Writes go through a member with room; every member's WAL gets them, so m0's disk fills.
    let m0 = &mut members[0];
    let acked = fill(&healthy, 0, 400, || {
        m0.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_some())
    });
    assert!(acked.len() < 400, "m0's disk never filled up");
    assert_fail_stopped(m0, &fs.0);
    // Quorum remains: the two others keep taking writes.
    let more = fill(&healthy, acked.len(), 5, || false);
    assert_eq!(more.len(), 5, "the two remaining members stopped serving");
    free_space(&fs);
    m0.spawn(&initial);
    let expected: Vec<String> = acked.iter().chain(&more).cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = etcdctl(
            &m0.client,
            &["get", "fill/", "--prefix", "--keys-only", "--consistency=s"],
        );
        let keys: Vec<String> = o.stdout.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
        let missing = expected.iter().filter(|k| !keys.contains(k)).count();
        if missing == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m0 did not catch up: {missing} of {} keys missing\n{}",
            expected.len(),
            m0.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
