//! Differential tests: the same etcdctl command sequence is run against a
//! Debian etcd 3.4 (the oracle) and rustcd; normalised stdout, stderr and
//! exit codes must match step by step.
//!
//! Run etcd-vs-etcd (to check the tests themselves):
//! `RUSTCD_BIN=/usr/bin/etcd cargo test --test differential_etcdctl`

use std::time::Duration;
use testkit::etcdctl_pair::*;
use testkit::{mask_columns, Norm, Output};

// ---------------------------------------------------------------------------

#[test]
fn kv_put_get() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.ok(&["put", "foo", "bar"]);
    p.ok(&["put", "foo", "bar2", "--prev-kv"]);
    p.ok(&["put", "foo", "bar3", "--prev-kv", "-w", "json"]);
    p.ok(&["put", "new", "v", "--prev-kv"]);
    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d/1", "x"),
        ("d/2", "y"),
        ("e", "5"),
    ] {
        p.ok(&["put", k, v]);
    }
    p.ok(&["put", "foo", "--ignore-value"]);
    p.fail(&["put", "zz", "--ignore-value"]); // key not found
    p.ok(&["get", "foo"]);
    p.ok(&["get", "foo", "-w", "json"]);
    p.ok(&["get", "foo", "-w", "fields"]);
    p.ok(&["get", "d/", "--prefix", "--hex"]);
    p.ok(&["put", "fields", "v", "--prev-kv", "-w", "fields"]);
    p.ok(&["del", "fields", "--prev-kv", "-w", "fields"]);
    p.ok(&["get", "", "--prefix"]);
    p.ok(&["get", "a", "d"]);
    p.ok(&["get", "a", "d", "-w", "json"]);
    p.ok(&["get", "d", "--prefix"]);
    p.ok(&["get", "d/", "--prefix", "-w", "json"]);
    p.ok(&["get", "c", "--from-key"]);
    p.ok(&["get", "a", "--from-key", "--limit", "2"]);
    p.ok(&["get", "a", "--from-key", "--limit", "2", "-w", "json"]);
    for sort in ["KEY", "VERSION", "CREATE", "MODIFY", "VALUE"] {
        for order in ["ASCEND", "DESCEND"] {
            p.ok(&["get", "", "--prefix", "--sort-by", sort, "--order", order]);
        }
    }
    p.ok(&[
        "get",
        "",
        "--prefix",
        "--sort-by",
        "MODIFY",
        "--order",
        "DESCEND",
        "--limit",
        "3",
        "-w",
        "json",
    ]);
    p.ok(&["get", "", "--prefix", "--order", "DESCEND"]);
    p.ok(&["get", "", "--prefix", "--keys-only"]);
    p.ok(&["get", "", "--prefix", "--keys-only", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "--print-value-only"]);
    p.ok(&["get", "foo", "--rev", "2"]);
    p.ok(&["get", "foo", "--rev", "3", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "--rev", "5"]);
    p.ok(&["get", "", "--prefix", "--consistency", "s"]);
    p.ok(&["get", "foo", "--consistency", "s", "-w", "json"]);
    // etcdctl 3.4 has no --min/max-mod/create-rev flags: see differential_client.rs
    p.ok(&["get", "nosuchkey"]);
    p.ok(&["get", "nosuchkey", "-w", "json"]);
    p.ok(&["get", "", "--from-key", "--keys-only"]);
    p.fail(&["get", "foo", "-w", "table"]); // etcdctl rejects table for get
    p.finish();
}

#[test]
fn kv_delete() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    for k in ["a", "b", "c", "d/1", "d/2", "d/3", "e", "f", "g", "x", "y"] {
        p.ok(&["put", k, &format!("v-{k}")]);
    }
    p.ok(&["del", "a"]);
    p.ok(&["del", "a"]);
    p.ok(&["del", "b", "--prev-kv"]);
    p.ok(&["del", "c", "--prev-kv", "-w", "json"]);
    p.ok(&["del", "d/", "--prefix"]);
    p.ok(&["del", "e", "g"]);
    p.ok(&["del", "nosuch", "-w", "json"]);
    p.ok(&["del", "x", "--from-key", "--prev-kv", "-w", "json"]);
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.ok(&["put", "a", "again"]);
    p.ok(&["get", "a", "-w", "json"]);
    p.ok(&["del", "", "--prefix"]);
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.finish();
}

#[test]
fn txn() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.ok(&["put", "a", "1"]);
    p.ok(&["put", "b", "2"]);
    // success branch
    p.stdin(
        &["txn"],
        "value(\"a\") = \"1\"\n\nput a 2\nget a\nget b\n\nput c 3\n\n",
        Expect::Ok,
    );
    // failure branch
    p.stdin(
        &["txn"],
        "value(\"a\") = \"1\"\n\nput a 2\n\nput c 3\nget c\n\n",
        Expect::Ok,
    );
    p.stdin(
        &["txn", "-w", "json"],
        "value(\"a\") = \"2\"\n\nput a 3\nget a\n\nput b 1\n\n",
        Expect::Ok,
    );
    p.stdin(
        &["txn", "-w", "json"],
        "mod(\"a\") > \"0\"\nversion(\"a\") = \"3\"\ncreate(\"a\") < \"100\"\n\nput x 1\ndel b\n\ndel a\n\n",
        Expect::Ok,
    );
    p.stdin(
        &["txn"],
        "version(\"a\") = \"3\"\nvalue(\"b\") != \"2\"\n\nput y 1\n\nput z 1\nget a\n\n",
        Expect::Ok,
    );
    p.stdin(&["txn"], "create(\"nosuch\") = \"0\"\n\nput nosuch 1\n\n\n", Expect::Ok);
    p.stdin(
        &["txn"],
        "mod(\"nosuch\") < \"5\"\n\nget --prefix x\n\ndel --prefix a\n\n",
        Expect::Ok,
    );
    p.stdin(
        &["txn", "-w", "json"],
        "\nput t1 1\nput t2 2\nget t --prefix\n\n\n",
        Expect::Ok,
    );
    p.stdin(&["txn", "-w", "json"], "\ndel --prev-kv t1\n\n\n", Expect::Ok);
    p.stdin(
        &["txn", "-i"],
        "value(\"t2\") = \"2\"\n\nput t2 3\n\nput t2 4\n\n",
        Expect::Ok,
    );
    p.stdin(
        &["txn", "-i", "-w", "json"],
        "value(\"t2\") = \"2\"\n\nput t2 3\n\nput t2 4\n\n",
        Expect::Ok,
    );
    // duplicate key in txn
    p.stdin(&["txn"], "\nput d 1\nput d 2\n\n\n", Expect::Fail);
    // malformed
    p.stdin(&["txn"], "bogus(\"a\") = \"1\"\n\n\n\n", Expect::Fail);
    p.ok(&["get", "", "--prefix", "-w", "json"]);
    p.finish();
}

#[test]
fn compaction_and_revisions() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    for i in 1..=6 {
        p.ok(&["put", "k", &format!("v{i}")]);
    }
    p.ok(&["get", "k", "--rev", "3"]);
    p.ok(&["compaction", "4"]);
    p.fail(&["get", "k", "--rev", "3"]);
    p.fail(&["get", "k", "--rev", "3", "-w", "json"]);
    p.ok(&["get", "k", "--rev", "4", "-w", "json"]);
    p.fail(&["get", "k", "--rev", "100"]);
    p.fail(&["compaction", "2"]);
    p.fail(&["compaction", "4"]);
    p.fail(&["compaction", "100"]);
    p.ok(&["compaction", "5", "--physical"]);
    p.ok(&["get", "k", "-w", "json"]);
    p.ok(&["get", "k", "--rev", "5"]);
    p.ok(&["endpoint", "hashkv", "-w", "json"]);
    p.ok(&["del", "k"]);
    p.ok(&["compaction", "8"]);
    p.ok(&["get", "k", "-w", "json"]);
    p.fail(&["get", "k", "--rev", "7"]);
    p.finish();
}

#[test]
fn watch() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.ok(&["put", "foo", "1"]); // rev 2
    p.ok(&["put", "foo", "2"]); // rev 3
    p.ok(&["put", "foo/a", "x"]); // rev 4
    p.ok(&["del", "foo"]); // rev 5
    p.ok(&["put", "fop", "y"]); // rev 6
                                // history replay
    p.watch(&["watch", "foo", "--rev", "2"], 3);
    p.watch(&["watch", "foo", "--rev", "3", "-w", "json"], 2);
    p.watch(&["watch", "foo", "--prefix", "--rev", "2", "--prev-kv"], 4);
    p.watch(
        &["watch", "foo", "--prefix", "--rev", "1", "--prev-kv", "-w", "json"],
        4,
    );
    p.watch(&["watch", "foo", "fop", "--rev", "2"], 4);
    // live events (start revision pinned so there is no race with the puts)
    let args = ["watch", "live", "--prefix", "--rev", "7", "--prev-kv"];
    let bgs = p.start_watch(&args);
    let args_json = ["watch", "live/", "--prefix", "--rev", "7", "-w", "json"];
    let bgs_json = p.start_watch(&args_json);
    p.ok(&["put", "live/1", "a"]);
    p.ok(&["put", "live/2", "b"]);
    p.ok(&["put", "live/1", "c"]);
    p.ok(&["del", "live", "--prefix"]);
    p.finish_watch(&args, bgs, 5, true);
    p.finish_watch(&args_json, bgs_json, 5, true);
    // watch at a compacted revision: etcdctl exits by itself with an error
    p.ok(&["compaction", "8"]);
    p.exec(&["watch", "foo", "--rev", "2"], None, FULL, Expect::Fail);
    p.watch(&["watch", "live", "--prefix", "--rev", "8"], 4);
    p.finish();
}

#[test]
fn lease() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.ok(&["lease", "grant", "100"]); // L1
    p.ok(&["lease", "grant", "200", "-w", "json"]); // L2
    p.ok(&["lease", "grant", "300"]); // L3
    p.ok(&["put", "k1", "v", "--lease={L1}"]);
    p.ok(&["put", "k2", "v", "--lease={L1}"]);
    p.ok(&["put", "k3", "v", "--lease={L2}"]);
    p.ok(&["put", "k3", "v2", "--ignore-lease"]);
    p.ok(&["put", "k3", "--ignore-value", "--lease={L3}"]);
    p.ok(&["get", "k", "--prefix", "-w", "json"]);
    p.ok(&["get", "k", "--prefix", "-w", "fields"]);
    p.ok(&["lease", "timetolive", "{L1}"]);
    p.ok(&["lease", "timetolive", "{L1}", "--keys"]);
    p.ok(&["lease", "timetolive", "{L1}", "--keys", "-w", "json"]);
    p.ok(&["lease", "timetolive", "{L2}", "--keys"]);
    p.ok(&["lease", "list"]);
    p.ok(&["lease", "list", "-w", "json"]);
    p.ok(&["lease", "keep-alive", "--once", "{L1}"]);
    p.ok(&["lease", "keep-alive", "--once", "{L2}", "-w", "json"]);
    p.ok(&["lease", "revoke", "{L1}"]);
    p.ok(&["get", "k", "--prefix", "-w", "json"]);
    p.ok(&["get", "k", "--prefix", "-w", "fields"]);
    p.ok(&["lease", "timetolive", "{L1}"]);
    p.ok(&["lease", "timetolive", "{L1}", "-w", "json"]);
    p.fail(&["lease", "revoke", "{L1}"]);
    p.fail(&["lease", "keep-alive", "--once", "{L1}"]);
    p.fail(&["put", "k9", "v", "--lease={L1}"]);
    p.fail(&["put", "k9", "v", "--lease=1234abcd"]);
    p.ok(&["lease", "revoke", "{L3}", "-w", "json"]);
    p.ok(&["get", "k", "--prefix"]);
    p.ok(&["lease", "list"]);
    p.fail(&["put", "k4", "--ignore-lease"]);
    p.finish();
}

#[test]
fn cluster_and_maintenance() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.ok(&["put", "a", "1"]);
    p.ok(&["put", "b", "2"]);
    p.ok(&["member", "list"]);
    p.ok(&["member", "list", "-w", "table"]);
    p.ok(&["member", "list", "-w", "json"]);
    // ENDPOINT, ID, VERSION, DB SIZE, IS LEADER, IS LEARNER, RAFT TERM, RAFT INDEX, RAFT APPLIED INDEX, ERRORS
    p.ok_masked(&["endpoint", "status"], &[2, 3, 6, 7, 8]);
    p.ok_masked(&["endpoint", "status", "-w", "table"], &[2, 3, 6, 7, 8]);
    p.ok(&["endpoint", "status", "-w", "json"]);
    p.ok(&["endpoint", "status", "-w", "fields"]);
    p.ok(&["endpoint", "hashkv", "-w", "fields"]);
    p.ok(&["member", "list", "-w", "fields"]);
    p.ok(&["endpoint", "health"]);
    p.ok(&["endpoint", "health", "-w", "json"]);
    p.ok_masked(&["endpoint", "health", "-w", "table"], &[2]);
    p.ok_masked(&["endpoint", "hashkv"], &[1]);
    p.ok_masked(&["endpoint", "hashkv", "-w", "table"], &[1]);
    p.ok(&["endpoint", "hashkv", "-w", "json"]);
    p.ok(&["endpoint", "hashkv", "--rev", "2", "-w", "json"]);
    p.ok(&["alarm", "list"]);
    p.ok(&["alarm", "list", "-w", "json"]);
    p.ok(&["alarm", "disarm"]);
    p.ok(&["defrag"]);
    p.ok(&["get", "", "--prefix"]);
    p.fail(&["move-leader", "12345"]);
    p.ok(&["lock", "mylock", "echo", "locked"]);
    p.ok(&["get", "mylock", "--prefix", "--keys-only"]);
    // snapshot file formats may differ: only the save's success is compared
    let cmp = Cmp {
        stdout: false,
        stderr: false,
        ..FULL
    };
    let outs = p.exec(&["snapshot", "save", "{DIR}/snap.db"], None, cmp, Expect::Ok);
    assert!(outs[0].stdout.contains("Snapshot saved at"), "{:?}", outs[0]);
    let etcd_snap = p.sides[0].server.dir().join("snap.db");
    let st = testkit::etcdctl(
        &p.sides[0].server.endpoint(),
        &["snapshot", "status", &etcd_snap.display().to_string(), "-w", "json"],
    );
    assert_eq!(st.status, 0, "snapshot status of etcd's own snapshot: {st:?}");
    p.finish();
}

#[test]
fn auth() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.ok(&["put", "foo", "0"]);
    p.fail(&["auth", "enable"]); // no root user
    p.ok(&["user", "add", "root:pw"]);
    p.ok(&["user", "grant-role", "root", "root"]);
    p.ok(&["role", "add", "reader"]);
    p.fail(&["role", "add", "reader"]);
    p.ok(&["role", "grant-permission", "reader", "read", "foo", "--prefix"]);
    p.ok(&["role", "grant-permission", "reader", "readwrite", "bar"]);
    p.ok(&["role", "grant-permission", "reader", "write", "w1", "w9"]);
    p.ok(&["role", "get", "reader"]);
    p.ok(&["role", "get", "reader", "-w", "json"]);
    p.fail(&["role", "get", "nosuch"]);
    p.ok(&["role", "list"]);
    p.ok(&["role", "list", "-w", "json"]);
    p.ok(&["user", "add", "alice:apw"]);
    p.fail(&["user", "add", "alice:other"]);
    p.ok(&["user", "add", "bob:bpw"]);
    p.ok(&["user", "grant-role", "alice", "reader"]);
    p.fail(&["user", "grant-role", "alice", "nosuch"]);
    p.ok(&["user", "get", "alice"]);
    p.ok(&["user", "get", "alice", "--detail"]);
    p.ok(&["user", "get", "alice", "-w", "json"]);
    p.fail(&["user", "get", "nosuch"]);
    p.ok(&["user", "list"]);
    p.ok(&["user", "list", "-w", "json"]);
    p.ok(&["auth", "enable"]);
    p.fail(&["get", "foo"]); // no user
    p.ok(&["get", "foo", "--user", "alice:apw"]);
    p.ok(&["get", "foo", "--user", "alice:apw", "-w", "json"]);
    p.fail(&["put", "foo", "x", "--user", "alice:apw"]);
    p.ok(&["put", "bar", "y", "--user", "alice:apw"]);
    p.fail(&["get", "bar2", "--user", "alice:apw"]);
    p.fail(&["get", "foo", "--user", "alice:bad"]);
    p.fail(&["get", "foo", "--user", "nobody:pw"]);
    p.fail(&["get", "foo", "--user", "bob:bpw"]);
    p.fail(&["user", "list", "--user", "alice:apw"]);
    // Maintenance etcd keeps for root (its authMaintenanceServer): refused to alice by both. etcd 3.4
    // says `auth: permission denied` (code Unknown), etcd 3.5 and rustcd `etcdserver: permission
    // denied`, so only the outcome is compared; status and member list stay open to her.
    let outcome_only = Cmp {
        stdout: false,
        stderr: false,
        ..FULL
    };
    for args in [
        &["defrag", "--user", "alice:apw"][..],
        &["endpoint", "hashkv", "--user", "alice:apw"][..],
        &["snapshot", "save", "{DIR}/alice.db", "--user", "alice:apw"][..],
    ] {
        p.exec(args, None, outcome_only, Expect::Fail);
    }
    p.exec(
        &["endpoint", "status", "--user", "alice:apw"],
        None,
        outcome_only,
        Expect::Ok,
    );
    p.exec(
        &["member", "list", "--user", "alice:apw"],
        None,
        outcome_only,
        Expect::Ok,
    );
    // ... and to anyone: no user at all.
    for args in [
        &["endpoint", "status"][..],
        &["member", "list"][..],
        &["alarm", "list"][..],
    ] {
        p.exec(args, None, outcome_only, Expect::Ok);
    }
    p.ok(&["put", "foo", "x", "--user", "root:pw"]);
    p.stdin(
        &["user", "passwd", "bob", "--interactive=false", "--user", "root:pw"],
        "newbpw\n",
        Expect::Ok,
    );
    p.fail(&["get", "foo", "--user", "bob:bpw"]);
    p.ok(&["user", "grant-role", "bob", "reader", "--user", "root:pw"]);
    p.ok(&["get", "foo", "--user", "bob:newbpw"]);
    p.ok(&["get", "foo", "--user", "bob", "--password", "newbpw"]);
    p.ok(&["get", "", "--prefix", "--user", "root:pw", "-w", "json"]);
    p.stdin(
        &["txn", "--user", "alice:apw"],
        "\nput bar z\nget foo\n\n\n",
        Expect::Ok,
    );
    p.stdin(&["txn", "--user", "alice:apw"], "\nput foo z\n\n\n", Expect::Fail);
    p.ok(&["user", "revoke-role", "alice", "reader", "--user", "root:pw"]);
    p.fail(&["get", "foo", "--user", "alice:apw"]);
    p.ok(&[
        "role",
        "revoke-permission",
        "reader",
        "foo",
        "--prefix",
        "--user",
        "root:pw",
    ]);
    p.fail(&["role", "revoke-permission", "reader", "nosuch", "--user", "root:pw"]);
    p.ok(&["role", "get", "reader", "--user", "root:pw"]);
    p.ok(&["role", "delete", "reader", "--user", "root:pw"]);
    p.ok(&["user", "delete", "alice", "--user", "root:pw"]);
    p.fail(&["user", "delete", "alice", "--user", "root:pw"]);
    p.ok(&["user", "list", "--user", "root:pw"]);
    p.fail(&["auth", "disable"]);
    p.ok(&["auth", "disable", "--user", "root:pw"]);
    p.ok(&["get", "foo"]);
    p.ok(&["user", "delete", "bob"]);
    p.finish();
}

#[test]
fn error_paths() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    p.fail(&["put", "", "v"]);
    p.fail(&["get", ""]);
    p.fail(&["del", ""]);
    // 2 MB value via stdin (too large for one argv string)
    let big = "a".repeat(2_000_000);
    p.stdin(&["put", "big"], &big, Expect::Fail);
    // 1 KB value is fine
    let small = "b".repeat(1024);
    p.stdin(&["put", "small"], &small, Expect::Ok);
    // too many operations (default --max-txn-ops 128)
    let mut ops = String::from("\n");
    for i in 0..129 {
        ops.push_str(&format!("put k{i} v\n"));
    }
    ops.push_str("\n\n");
    p.stdin(&["txn"], &ops, Expect::Fail);
    let mut ok_ops = String::from("\n");
    for i in 0..128 {
        ok_ops.push_str(&format!("put k{i} v\n"));
    }
    ok_ops.push_str("\n\n");
    p.exec(
        &["txn"],
        Some(ok_ops.as_bytes()),
        Cmp { stdout: true, ..FULL },
        Expect::Ok,
    );
    p.fail(&["get", "k1", "--rev", "1000"]);
    p.fail(&["lease", "revoke", "1234"]);
    p.fail(&["lease", "keep-alive", "--once", "1234"]);
    p.ok(&["lease", "timetolive", "1234"]);
    p.fail(&["put", "x", "v", "--lease=1234"]);
    p.fail(&["get", "k", "--prefix", "--sort-by", "BOGUS"]);
    p.ok(&["compaction", "0"]);
    p.ok(&["get", "k1", "--rev", "0"]);
    p.ok(&["get", "", "--prefix", "--keys-only"]);
    p.finish();
}

/// Membership changes that keep a single voting member: add/promote/update/
/// remove a learner (which never starts), update our own peer URLs.
#[test]
fn cluster_membership() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    let members = Cmp {
        unordered_members: true,
        ..FULL
    };
    p.exec(
        &[
            "member",
            "add",
            "newmember",
            "--peer-urls=http://127.0.0.1:1",
            "--learner",
        ],
        None,
        members,
        Expect::Ok,
    );
    // etcd's member ID hashes the peer URLs with the current time: within the
    // same second the error is "member ID already exist", later "Peer URLs
    // already exists"; only the failure itself is compared
    let exit_only = Cmp {
        stdout: false,
        stderr: false,
        ..FULL
    };
    p.exec(
        &["member", "add", "other", "--peer-urls=http://127.0.0.1:1", "--learner"],
        None,
        exit_only,
        Expect::Fail,
    );
    p.exec(&["member", "list"], None, members, Expect::Ok);
    p.exec(&["member", "list", "-w", "json"], None, members, Expect::Ok);
    p.exec(&["member", "list", "-w", "table"], None, members, Expect::Ok);
    p.fail(&["member", "promote", "{NEWMEMBER}"]);
    p.ok(&["member", "update", "{NEWMEMBER}", "--peer-urls=http://127.0.0.1:2"]);
    // etcd 3.4 forgets that an updated member is a learner (etcd-io/etcd#21694, fixed in
    // 3.5 and 3.6 in 2026): its list says `false` while Raft still has a learner. rustcd
    // keeps the flag, as fixed etcd does; only the exit status is compared here.
    p.exec(&["member", "list"], None, exit_only, Expect::Ok);
    p.ok(&["member", "remove", "{NEWMEMBER}"]);
    p.fail(&["member", "remove", "{NEWMEMBER}"]);
    p.fail(&["member", "promote", "{MEMBER}"]);
    p.ok(&["member", "update", "{MEMBER}", "--peer-urls={PEER}"]);
    p.exec(&["member", "list", "-w", "json"], None, members, Expect::Ok);
    p.ok(&["put", "still", "works"]);
    p.ok(&["get", "still", "-w", "json"]);
    p.finish();
}

/// `elect`: campaign in the background, observe with `elect -l`.
#[test]
fn elect() {
    let Some(mut p) = Pair::start(&[]) else {
        return;
    };
    let args = ["elect", "myelection", "p1"];
    let mut leaders = p.start_watch(&args);
    for bg in leaders.iter_mut() {
        bg.wait_for(Duration::from_secs(10), |out| out.lines().count() >= 2);
    }
    let observe = ["elect", "-l", "myelection"];
    let mut observers = p.start_watch(&observe);
    for bg in observers.iter_mut() {
        bg.wait_for(Duration::from_secs(10), |out| out.lines().count() >= 2);
    }
    for (args, bgs) in [(&args[..], &mut leaders), (&observe[..], &mut observers)] {
        p.step += 1;
        let label = format!("step {}: etcdctl {} (background)", p.step, args.join(" "));
        let outs: Vec<Output> = bgs
            .iter_mut()
            .map(|b| {
                let mut o = b.kill();
                // the election key embeds the session's lease ID
                o.stdout = o
                    .stdout
                    .lines()
                    .map(|l| match l.split_once('/') {
                        Some(("myelection", _)) => "myelection/<SESSION_LEASE>\n".to_string(),
                        _ => format!("{l}\n"),
                    })
                    .collect();
                o
            })
            .collect();
        if outs[0].stdout.lines().count() < 2 {
            panic!("scenario bug: etcd {args:?} printed {:?}", outs[0]);
        }
        let cmp = Cmp { status: false, ..FULL };
        p.compare(&label, &outs, cmp, Expect::Any);
    }
    p.ok(&["get", "myelection", "--prefix", "--print-value-only"]);
    p.finish();
}

/// `/health`, `/version` and `/metrics` on the client URL.
#[test]
fn http_endpoints() {
    let Some(p) = Pair::start(&[]) else { return };
    let mut failures = Vec::new();
    let mut bodies = Vec::new();
    for side in &p.sides {
        let port = side.server.client_port;
        let health = testkit::http_get(port, "/health");
        let version = testkit::http_get(port, "/version");
        let metrics = testkit::http_get(port, "/metrics");
        bodies.push((side.name, health, version, metrics));
    }
    let (_, eh, ev, em) = &bodies[0];
    let (_, rh, rv, rm) = &bodies[1];
    // /health: same status and "health" value. rustcd answers in etcd 3.5's shape, which
    // adds "reason" (documented in the README); 3.4 has only "health".
    let json = |r: &Option<(u16, String)>| {
        r.as_ref().map(|(c, b)| {
            let v: serde_json::Value = serde_json::from_str(b.trim()).unwrap_or_default();
            (*c, v.get("health").cloned())
        })
    };
    if json(eh) != json(rh) || json(rh).is_none_or(|(_, h)| h.is_none()) {
        failures.push(format!("/health: etcd {eh:?} rustcd {rh:?}"));
    }
    if !rh.as_ref().is_some_and(|(_, b)| b.contains("\"reason\"")) {
        failures.push(format!("/health: rustcd lacks etcd 3.5's reason field: {rh:?}"));
    }
    // /version: same status and every etcd key present (values are versions; rustcd adds
    // its own "rustcd" key).
    let keys = |r: &Option<(u16, String)>| {
        r.as_ref().map(|(c, b)| {
            let v: serde_json::Value = serde_json::from_str(b.trim()).unwrap_or_default();
            let keys: Vec<String> = v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            (*c, keys)
        })
    };
    let (ekeys, rkeys) = (keys(ev), keys(rv));
    let same_code = ekeys.as_ref().map(|k| k.0) == rkeys.as_ref().map(|k| k.0);
    let covered = ekeys
        .as_ref()
        .is_some_and(|(_, e)| rkeys.as_ref().is_some_and(|(_, r)| e.iter().all(|k| r.contains(k))));
    if !same_code || !covered {
        failures.push(format!("/version: etcd {ev:?} rustcd {rv:?}"));
    }
    // /metrics: Prometheus text with the core etcd series
    let (ecode, _) = em.clone().unwrap_or_default();
    let (rcode, rbody) = rm.clone().unwrap_or_default();
    assert_eq!(ecode, 200, "etcd /metrics");
    if rcode != 200 {
        failures.push(format!("/metrics status: rustcd {rcode}"));
    }
    for metric in [
        "etcd_server_has_leader",
        "etcd_server_is_leader",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_debugging_mvcc_keys_total",
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        "grpc_server_handled_total",
    ] {
        if !em
            .as_ref()
            .is_some_and(|(_, b)| b.lines().any(|l| l.starts_with(metric)))
        {
            panic!("scenario bug: etcd /metrics lacks {metric}");
        }
        if !rbody.lines().any(|l| l.starts_with(metric)) {
            failures.push(format!("/metrics: rustcd lacks {metric}"));
        }
    }
    assert!(failures.is_empty(), "HTTP endpoints differ:\n{}", failures.join("\n"));
}

/// etcd's MVCC operation counters count the same operations on both: puts, delete-ranges and ranges
/// (also inside txns), and txns of more than one operation; and the version gauges carry their label.
#[test]
fn mvcc_operation_counters_and_version_gauges() {
    let Some(mut p) = Pair::start(&[]) else { return };
    p.ok(&["put", "a", "1"]);
    p.ok(&["put", "b", "2"]);
    p.ok(&["get", "a"]);
    p.ok(&["get", "", "--prefix", "--keys-only"]);
    p.ok(&["del", "a"]);
    p.ok(&["del", "nothing"]);
    p.stdin(&["txn"], "\nput c 3\nget b\ndel b\n\n\n", Expect::Ok);
    p.stdin(&["txn"], "\nput d 4\n\n\n", Expect::Ok);
    let value = |body: &str, name: &str| -> Option<String> {
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
    };
    let bodies: Vec<String> = p
        .sides
        .iter()
        .map(|side| {
            testkit::http_get(side.server.client_port, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default()
        })
        .collect();
    for name in [
        "etcd_mvcc_put_total",
        "etcd_mvcc_delete_total",
        "etcd_mvcc_range_total",
        "etcd_mvcc_txn_total",
    ] {
        let etcd = value(&bodies[0], name);
        assert!(etcd.is_some(), "scenario bug: etcd has no {name}");
        assert_eq!(value(&bodies[1], name), etcd, "{name}: rustcd differs from etcd");
    }
    for (name, label) in [
        ("etcd_server_version", "server_version"),
        ("etcd_cluster_version", "cluster_version"),
    ] {
        for (side, body) in p.sides.iter().zip(&bodies) {
            let line = body.lines().find(|l| l.starts_with(&format!("{name}{{{label}=\"")));
            assert!(
                line.is_some_and(|l| l.ends_with("} 1")),
                "{}: no {name}{{{label}=...}} 1 in /metrics",
                side.name
            );
        }
    }
    p.finish();
}

/// The normaliser itself (no servers needed).
#[test]
fn normalizer_self_test() {
    let mut n = Norm::new("http://127.0.0.1:40001", "http://127.0.0.1:40002");
    n.learn_header(15118495548433857066, 13668033151171901709);
    n.learn_leases("lease 390da2164fc3ed20 granted with TTL(100s)\n");
    n.learn_leases(
        "{\"cluster_id\":1,\"member_id\":2,\"revision\":6,\"raft_term\":2,\"ID\":7,\"TTL\":100,\"Error\":\"\"}\n",
    );
    assert_eq!(n.leases, vec![0x390da2164fc3ed20, 7]);
    let text = "bdae9bbc11dd390d, started, default, http://127.0.0.1:40002, http://127.0.0.1:40001, false\n\
        lease 390da2164fc3ed20 granted with TTL(100s), remaining(99s), attached keys([b a])\n\
        lease 0000000000000007 keepalived with TTL(100)\n\
        http://127.0.0.1:40001 is healthy: successfully committed proposal: took = 1.8ms\n\
        {\"header\":{\"cluster_id\":15118495548433857066,\"member_id\":13668033151171901709,\"revision\":5,\"raft_term\":2},\"kvs\":[{\"key\":\"Zm9v\",\"create_revision\":4,\"mod_revision\":5,\"version\":2,\"value\":\"YmF6\",\"lease\":7}],\"count\":1}\n\
        {\"level\":\"warn\",\"ts\":\"2026-01-01T00:00:00Z\",\"msg\":\"retrying\",\"error\":\"rpc error: code = NotFound desc = x\"}\n\
        header: Some(ResponseHeader { cluster_id: 15118495548433857066, member_id: 13668033151171901709, revision: 3, raft_term: 9 }), id: 7, ttl: 60\n";
    let want = "<MEMBER>, started, default, <PEER_URL>, <CLIENT_URL>, false\n\
        lease <LEASE1> granted with TTL(100s), remaining(<TTL>), attached keys([a b])\n\
        lease <LEASE2> keepalived with TTL(100)\n\
        <CLIENT_URL> is healthy: successfully committed proposal: took = <TOOK>\n\
        {\"count\":1,\"header\":{\"cluster_id\":\"<CLUSTER>\",\"member_id\":\"<MEMBER>\",\"raft_term\":\"<raft_term>\",\"revision\":5},\"kvs\":[{\"create_revision\":4,\"key\":\"Zm9v\",\"lease\":\"<LEASE2>\",\"mod_revision\":5,\"value\":\"YmF6\",\"version\":2}]}\n\
        LOG warn retrying: rpc error: code = NotFound desc = x\n\
        header: Some(ResponseHeader { cluster_id: <CLUSTER>, member_id: <MEMBER>, revision: 3, raft_term: <T> }), id: <LEASE2>, ttl: 60\n";
    assert_eq!(n.normalize(text), want);
    // %16x pads IDs with leading zero nibbles with spaces
    let mut m = Norm::new("http://127.0.0.1:40001", "http://127.0.0.1:40002");
    m.learn_header(0x0bcd_ef01_2345_6789, 0x0123_4567_89ab_cdef);
    assert_eq!(
        m.normalize("Member  123456789abcdef updated in cluster  bcdef0123456789\n"),
        "Member <MEMBER> updated in cluster <CLUSTER>\n"
    );
    // ...but where etcdctl prints the same short ID with %x after ", ", the separator stays.
    assert_eq!(
        m.normalize("http://127.0.0.1:40001, 123456789abcdef, 3.5.0\n"),
        "<CLIENT_URL>, <MEMBER>, 3.5.0\n"
    );
    let status = "http://127.0.0.1:40001, bdae9bbc11dd390d, 3.4.23, 20 kB, true, false, 2, 21, 21, \n";
    assert_eq!(
        mask_columns(&n.normalize(status), &[2, 3, 6, 7, 8]),
        "<CLIENT_URL>, <MEMBER>, <*>, <*>, true, false, <*>, <*>, <*>, \n"
    );
}
