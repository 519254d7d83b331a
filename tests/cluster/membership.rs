//! Membership changes through the etcd Cluster API on real rustcd processes: scaling
//! 1 -> 3 -> 5 -> 3 while a client writes, replacing a member that lost its data, the
//! leader removing itself, learner rules, MoveLeader, and members pointed at the wrong
//! cluster refusing to start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use testkit::cluster::Cluster;
use testkit::{etcdctl, etcdctl_until_ok as eventually, Output};

/// The `ETCD_INITIAL_CLUSTER` value `etcdctl member add` printed.
fn initial_cluster_of(add: &Output) -> String {
    add.stdout
        .lines()
        .find_map(|l| l.strip_prefix("ETCD_INITIAL_CLUSTER=\""))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_else(|| panic!("member add printed no ETCD_INITIAL_CLUSTER: {add:?}"))
}

/// `member add` (retried while the cluster is not ready for it), then start the member.
fn add_member(c: &mut Cluster, name: &str, learner: bool) -> usize {
    let i = c.declare(name);
    let peer = format!("--peer-urls={}", c.members[i].peer);
    let mut args = vec!["member", "add", name, peer.as_str()];
    if learner {
        args.push("--learner");
    }
    let add = eventually(&c.endpoints(), &args, Duration::from_secs(30));
    assert_eq!(add.status, 0, "member add {name}: {add:?}");
    c.join(i, &initial_cluster_of(&add));
    i
}

/// Promote member `i` once it has caught up (etcd refuses before that).
fn promote(c: &Cluster, i: usize) {
    let eps = c.endpoints_except(i);
    let id = c.members[i].id_in(&eps).expect("member is listed");
    let o = eventually(&eps, &["member", "promote", &id], Duration::from_secs(30));
    assert_eq!(o.status, 0, "promote {}: {o:?}", c.members[i].name);
}

fn remove(c: &mut Cluster, i: usize) {
    let eps = c.endpoints_except(i);
    let id = c.members[i].id_in(&eps).expect("member is listed");
    let o = eventually(&eps, &["member", "remove", &id], Duration::from_secs(30));
    assert_eq!(o.status, 0, "remove {}: {o:?}", c.members[i].name);
    // The removed member notices and exits on its own.
    c.wait_exit(i, Duration::from_secs(15));
    c.kill9(i);
}

/// Waits until every running member reports the same HashKV.
fn converged(c: &Cluster) {
    let running = c.members.iter().filter(|m| m.child.is_some()).count();
    testkit::wait_hashkv_converged(&c.endpoints(), running, Duration::from_secs(20));
}

/// Writes `w<n>` keys through `endpoint` until stopped; returns the acknowledged ones.
fn writer(endpoint: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
                .await
                .expect("connect");
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{n:06}");
                if client.put(key.clone(), "x", None).await.is_ok() {
                    acked.lock().expect("lock").push(key);
                    n += 1;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
    })
}

fn member_lines(c: &Cluster) -> Vec<String> {
    let o = eventually(&c.endpoints(), &["member", "list"], Duration::from_secs(10));
    o.stdout.lines().map(str::to_string).filter(|l| !l.is_empty()).collect()
}

#[test]
fn scale_1_to_3_to_5_to_3_through_the_cluster_api_while_a_client_writes() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(1);
    c.leader(Duration::from_secs(20)).expect("a leader");
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = writer(c.members[0].client.clone(), stop.clone(), acked.clone());

    for name in ["m1", "m2", "m3", "m4"] {
        let i = add_member(&mut c, name, true);
        promote(&c, i);
    }
    assert_eq!(member_lines(&c).len(), 5);
    // Scale down: remove the two newest members, the current leader among them if it is one.
    for i in [4, 3] {
        remove(&mut c, i);
    }
    // Let the writer go on for a moment on the final membership.
    let before = acked.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < before + 20 {
        assert!(Instant::now() < deadline, "writes stopped after scaling down");
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");

    let lines = member_lines(&c);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for m in &c.members[..3] {
        let line = format!(", started, {}, {}, {}, false", m.name, m.peer, m.client);
        assert!(
            lines.iter().any(|l| l.ends_with(&line)),
            "missing {line:?} in {lines:?}"
        );
    }
    converged(&c);
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "too few writes to mean anything: {}", acked.len());
    for m in &c.members[..3] {
        let o = etcdctl(&m.client, &["get", "w", "--prefix", "--keys-only", "--consistency=s"]);
        let keys: std::collections::HashSet<&str> = o.stdout.lines().filter(|l| !l.is_empty()).collect();
        let lost: Vec<&String> = acked.iter().filter(|k| !keys.contains(k.as_str())).collect();
        assert!(lost.is_empty(), "{} lost acknowledged writes: {lost:?}", m.name);
    }
}

#[test]
fn member_that_lost_its_data_is_refused_then_removed_and_re_added() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(3);
    c.leader(Duration::from_secs(20)).expect("a leader");
    assert_eq!(
        eventually(&c.endpoints(), &["put", "a", "1"], Duration::from_secs(10)).status,
        0
    );
    c.kill9(2);
    std::fs::remove_dir_all(&c.members[2].dir).expect("wipe data dir");
    // Started again with an empty data dir and its bootstrap flags, it must not rejoin.
    c.spawn(2);
    let status = c.wait_exit(2, Duration::from_secs(15));
    assert!(!status.success());
    assert!(c.log(2).contains("already been bootstrapped"), "{}", c.log(2));
    c.kill9(2);
    assert!(
        !c.members[2].dir.exists(),
        "the refused member must not create its data dir"
    );

    // Replace it: remove the old member, add it again, start it as a joining member.
    let eps = c.endpoints();
    let old = c.members[2].id_in(&eps).expect("listed");
    assert_eq!(
        eventually(&eps, &["member", "remove", &old], Duration::from_secs(20)).status,
        0
    );
    let peer = format!("--peer-urls={}", c.members[2].peer);
    let add = eventually(&eps, &["member", "add", "m2", &peer], Duration::from_secs(20));
    assert_eq!(add.status, 0, "{add:?}");
    c.join(2, &initial_cluster_of(&add));
    let o = eventually(
        &c.members[2].client,
        &["get", "a", "--print-value-only"],
        Duration::from_secs(20),
    );
    assert_eq!(o.stdout.trim(), "1", "{o:?}");
    let new = c.members[2].id_in(&c.endpoints()).expect("listed");
    assert_ne!(new, old, "a re-added member gets a new ID");
    converged(&c);
}

#[test]
fn leader_removes_itself_and_the_others_carry_on() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(3);
    let leader = c.leader(Duration::from_secs(20)).expect("a leader");
    assert_eq!(
        eventually(&c.endpoints(), &["put", "k", "v"], Duration::from_secs(10)).status,
        0
    );
    let id = c.members[leader].id_in(&c.endpoints()).expect("listed");
    // Ask the leader itself to remove itself.
    let o = eventually(
        &c.members[leader].client,
        &["member", "remove", &id],
        Duration::from_secs(20),
    );
    assert_eq!(o.status, 0, "{o:?}");
    c.wait_exit(leader, Duration::from_secs(15));
    assert!(c.log(leader).contains("permanently removed"), "{}", c.log(leader));
    c.kill9(leader);
    let next = c.leader(Duration::from_secs(20)).expect("the others elect a leader");
    assert_ne!(next, leader);
    assert_eq!(
        eventually(&c.endpoints(), &["put", "k2", "v2"], Duration::from_secs(10)).status,
        0
    );
    assert_eq!(member_lines(&c).len(), 2);
    // The removed member's ID is gone for good.
    let o = etcdctl(&c.endpoints(), &["member", "remove", &id]);
    assert!(o.stderr.contains("etcdserver: member not found"), "{o:?}");
}

#[test]
fn learner_rules_promotion_and_move_leader() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(3);
    c.leader(Duration::from_secs(20)).expect("a leader");
    // A learner that never started is not caught up: promotion is refused with etcd's error.
    let ghost = c.declare("ghost");
    let peer = format!("--peer-urls={}", c.members[ghost].peer);
    let add = eventually(
        &c.endpoints(),
        &["member", "add", "ghost", &peer, "--learner"],
        Duration::from_secs(20),
    );
    assert_eq!(add.status, 0, "{add:?}");
    let gid = c.members[ghost].id_in(&c.endpoints()).expect("listed");
    assert!(member_lines(&c)
        .iter()
        .any(|l| l.starts_with(&format!("{gid}, unstarted, , "))));
    let o = etcdctl(&c.endpoints(), &["member", "promote", &gid]);
    assert!(
        o.stderr
            .contains("etcdserver: can only promote a learner member which is in sync with leader"),
        "{o:?}"
    );
    // Only one learner at a time.
    let other = c.declare("other");
    let peer2 = format!("--peer-urls={}", c.members[other].peer);
    // (Retried while a peer connection is younger than etcd's 5 s health interval: the strict
    // reconfig check refuses with "unhealthy cluster" then.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let o = loop {
        let o = etcdctl(&c.endpoints(), &["member", "add", "other", &peer2, "--learner"]);
        if !o.stderr.contains("etcdserver: unhealthy cluster") || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(
        o.stderr.contains("etcdserver: too many learner members in cluster"),
        "{o:?}"
    );

    // Started, the learner serves serializable reads only.
    assert_eq!(
        eventually(&c.endpoints(), &["put", "seen", "yes"], Duration::from_secs(10)).status,
        0
    );
    c.join(ghost, &initial_cluster_of(&add));
    let o = eventually(
        &c.members[ghost].client,
        &["get", "seen", "--print-value-only", "--consistency=s"],
        Duration::from_secs(20),
    );
    assert_eq!(o.stdout.trim(), "yes", "{o:?}");
    let o = etcdctl(&c.members[ghost].client, &["put", "no", "way"]);
    assert!(o.stderr.contains("etcdserver: rpc not supported for learner"), "{o:?}");
    promote(&c, ghost);
    assert_eq!(
        eventually(&c.members[ghost].client, &["put", "now", "ok"], Duration::from_secs(10)).status,
        0
    );

    // MoveLeader hands leadership to the member named.
    let leader = c.leader(Duration::from_secs(10)).expect("a leader");
    let target = (0..c.members.len())
        .find(|&i| i != leader && c.members[i].child.is_some())
        .expect("a follower");
    let tid = c.members[target].id_in(&c.endpoints()).expect("listed");
    let o = etcdctl(&c.endpoints(), &["move-leader", &tid]);
    assert_eq!(o.status, 0, "{o:?}");
    assert_eq!(c.leader(Duration::from_secs(10)), Some(target));
}

#[test]
fn members_pointed_at_the_wrong_cluster_refuse_to_start() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(3);
    c.leader(Duration::from_secs(20)).expect("a leader");
    eventually(&c.endpoints(), &["member", "list"], Duration::from_secs(10));
    // Same peers, another token: another cluster ID.
    let stray = c.declare("m0x");
    c.members[stray].initial = format!(
        "m1={},m2={},m0x={}",
        c.members[1].peer, c.members[2].peer, c.members[stray].peer
    );
    c.extra = vec!["--initial-cluster-token".into(), "another-token".into()];
    c.spawn(stray);
    assert!(!c.wait_exit(stray, Duration::from_secs(20)).success());
    assert!(c.log(stray).contains("belongs to cluster"), "{}", c.log(stray));
    c.kill9(stray);
    c.extra.clear();

    // Joining with an --initial-cluster that does not list the running members.
    let joiner = c.declare("j");
    let wrong = format!("m0={},j={}", c.members[0].peer, c.members[joiner].peer);
    c.join(joiner, &wrong);
    assert!(!c.wait_exit(joiner, Duration::from_secs(20)).success());
    assert!(c.log(joiner).contains("member count is unequal"), "{}", c.log(joiner));
    c.kill9(joiner);
    // The cluster is unharmed.
    assert_eq!(member_lines(&c).len(), 3);
}
