//! Multi-member clusters as processes on loopback: static bootstrap with
//! `--initial-cluster`, requests through followers, leader failure, restart, catch-up.

use std::time::{Duration, Instant};

use testkit::cluster::Cluster;
use testkit::{etcdctl, etcdctl_until_ok as eventually};

#[test]
fn three_members_bootstrap_replicate_and_survive_leader_loss() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(3);
    let leader = c.leader(Duration::from_secs(20)).expect("a leader is elected");
    let follower = (leader + 1) % 3;

    // member list shows all three, started, with the names and URLs they published.
    let list = eventually(&c.endpoints(), &["member", "list"], Duration::from_secs(10));
    for m in &c.members {
        let line = format!(", started, {}, {}, {}, false", m.name, m.peer, m.client);
        assert!(list.stdout.contains(&line), "missing {line:?} in {list:?}");
    }

    // A write through a follower is visible everywhere (linearizable reads on each member).
    let o = eventually(
        &c.members[follower].client,
        &["put", "k1", "v1"],
        Duration::from_secs(10),
    );
    assert_eq!(o.status, 0, "{o:?}");
    for m in &c.members {
        let o = etcdctl(&m.client, &["get", "k1", "--print-value-only"]);
        assert_eq!(o.stdout.trim(), "v1", "{} did not see k1: {o:?}", m.name);
    }

    // Leases work through a follower: keep-alive and time-to-live are forwarded to the
    // leader, whose lessor tracks expiry.
    let f = &c.members[follower].client;
    let grant = etcdctl(f, &["lease", "grant", "60"]);
    let lease = grant.stdout.split_whitespace().nth(1).expect("lease id").to_string();
    assert_eq!(etcdctl(f, &["put", "leased", "x", "--lease", &lease]).status, 0);
    let ka = etcdctl(f, &["lease", "keep-alive", "--once", &lease]);
    assert!(ka.stdout.contains("keepalived with TTL(60)"), "{ka:?}");
    let ttl = etcdctl(f, &["lease", "timetolive", &lease, "--keys"]);
    assert!(ttl.stdout.contains("attached keys([leased])"), "{ttl:?}");

    // Kill the leader: the other two elect a new one and keep accepting writes.
    c.kill9(leader);
    let started = Instant::now();
    let survivor = (leader + 1) % 3;
    let o = eventually(
        &c.members[survivor].client,
        &["put", "k2", "v2"],
        Duration::from_secs(15),
    );
    assert_eq!(o.status, 0, "writes did not resume after leader loss: {o:?}");
    eprintln!("writes resumed {:?} after the leader was killed", started.elapsed());
    let new_leader = c.leader(Duration::from_secs(10)).expect("a new leader");
    assert_ne!(new_leader, leader);

    // The old leader restarts from its data dir, catches up, and every member hashes equal.
    c.spawn(leader);
    let o = eventually(
        &c.members[leader].client,
        &["get", "k2", "--print-value-only"],
        Duration::from_secs(20),
    );
    assert_eq!(o.stdout.trim(), "v2", "{o:?}");
    testkit::wait_hashkv_converged(&c.endpoints(), 3, Duration::from_secs(10));
}

#[test]
fn follower_behind_the_leaders_log_catches_up_from_a_snapshot() {
    if !testkit::etcdctl_usable() {
        return;
    }
    // Tiny snapshot and catch-up windows: the leader compacts its log after 50 entries and
    // keeps only 10 behind, so a follower that misses 300 writes needs a snapshot.
    let mut c = Cluster::start_with(
        3,
        &[
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ],
    );
    let leader = c.leader(Duration::from_secs(20)).expect("a leader is elected");
    let lagging = (leader + 1) % 3;
    let live = (leader + 2) % 3;
    let o = eventually(
        &c.members[live].client,
        &["put", "before", "1"],
        Duration::from_secs(10),
    );
    assert_eq!(o.status, 0, "{o:?}");
    c.kill9(lagging);
    let endpoint = c.members[leader].client.clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let mut client = etcd_client::Client::connect([endpoint.as_str()], None)
            .await
            .expect("connect");
        for i in 0..300 {
            client
                // 8 KiB values: the snapshot (about 2.5 MB) travels in several chunks.
                .put(format!("k{i:03}"), format!("v{i}-{}", "x".repeat(8192)), None)
                .await
                .expect("put");
        }
    });
    c.spawn(lagging);
    let ep = c.members[lagging].client.clone();
    // A serializable read answers from the member's own state: poll until it has the data.
    let deadline = Instant::now() + Duration::from_secs(20);
    let o = loop {
        let o = etcdctl(&ep, &["get", "k299", "--print-value-only", "--consistency=s"]);
        if o.stdout.trim().starts_with("v299-") || Instant::now() > deadline {
            break o;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        o.stdout.trim().starts_with("v299-"),
        "lagging member did not catch up: {o:?}"
    );
    let o = etcdctl(&ep, &["get", "k", "--prefix", "--keys-only", "--consistency=s"]);
    assert_eq!(o.stdout.lines().filter(|l| !l.is_empty()).count(), 300, "{o:?}");
    let log = c.log(lagging);
    assert!(
        log.contains("installed a snapshot from the leader") && log.contains("received a snapshot"),
        "no snapshot was received and installed:\n{log}"
    );
}

/// The remaining TTL of `lease` as `lease timetolive` prints it.
fn remaining_ttl(ep: &str, lease: &str) -> Option<i64> {
    let o = etcdctl(ep, &["lease", "timetolive", lease]);
    let at = o.stdout.find("remaining(")? + "remaining(".len();
    o.stdout[at..].split('s').next()?.parse().ok()
}

#[test]
fn leases_survive_a_leader_change_without_reset_or_early_expiry() {
    if !testkit::etcdctl_usable() {
        return;
    }
    let mut c = Cluster::start(3);
    let leader = c.leader(Duration::from_secs(20)).expect("a leader is elected");
    let survivor = (leader + 1) % 3;
    let ep = c.members[survivor].client.clone();
    let long = etcdctl(&ep, &["lease", "grant", "60"]);
    let long = long.stdout.split_whitespace().nth(1).expect("lease id").to_string();
    let short = etcdctl(&ep, &["lease", "grant", "5"]);
    let short = short.stdout.split_whitespace().nth(1).expect("lease id").to_string();
    assert_eq!(etcdctl(&ep, &["put", "short-lived", "x", "--lease", &short]).status, 0);
    let granted = Instant::now();
    c.kill9(leader);
    let next = c.leader(Duration::from_secs(15)).expect("a new leader");
    assert_ne!(next, leader);
    // The new leader keeps the remaining TTL (plus an election timeout), never resets it.
    let ttl = remaining_ttl(&ep, &long).expect("timetolive answers");
    assert!(
        (50..=62).contains(&ttl),
        "long lease TTL after the leader change: {ttl}"
    );
    // No early expiry: the 5 s lease outlives its TTL minus what has passed.
    if granted.elapsed() < Duration::from_secs(4) {
        let o = etcdctl(&ep, &["get", "short-lived", "--print-value-only"]);
        assert_eq!(o.stdout.trim(), "x", "lease expired early: {o:?}");
    }
    // And it does expire on the new leader.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = etcdctl(&ep, &["get", "short-lived", "--print-value-only"]);
        if o.status == 0 && o.stdout.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the short lease never expired after the leader change"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(granted.elapsed() >= Duration::from_secs(5), "expired before its TTL");
}
