//! Differential tests through the `etcd-client` crate: the same operation
//! sequence runs against etcd and rustcd; the Debug print of every response
//! (or error) is compared after normalising header IDs/terms, lease IDs,
//! raft indexes, sizes and versions. Plus a SIGKILL crash test for rustcd.
//!
//! etcd-vs-etcd: `RUSTCD_BIN=/usr/bin/etcd cargo test --test differential_client`

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    AlarmAction, AlarmType, CompactionOptions, Compare, CompareOp, DeleteOptions, EventType, GetOptions,
    LeaseGrantOptions, LeaseTimeToLiveOptions, Permission, PermissionType, PutOptions, SortOrder, SortTarget, Txn,
    TxnOp, WatchFilterType, WatchOptions,
};
use rand::{Rng, SeedableRng};
use testkit::client_pair::*;
use testkit::{Kind, Server};

// ---------------------------------------------------------------------------

async fn kv_scenario(ep: String) -> Rec {
    let mut rec = Rec::default();
    let mut c = connect(&ep, None).await.expect("connect");
    rec.res("put foo", c.put("foo", "bar", None).await);
    rec.res(
        "put foo prev_kv",
        c.put("foo", "bar2", Some(PutOptions::new().with_prev_key())).await,
    );
    rec.res(
        "put new prev_kv",
        c.put("new", "x", Some(PutOptions::new().with_prev_key())).await,
    );
    for (k, v) in [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
        ("d/1", "x"),
        ("d/2", "y"),
        ("e", "5"),
    ] {
        rec.res(&format!("put {k}"), c.put(k, v, None).await);
    }
    rec.res(
        "put ignore_value",
        c.put("a", "", Some(PutOptions::new().with_ignore_value())).await,
    );
    rec.res(
        "put ignore_value missing",
        c.put("zz", "", Some(PutOptions::new().with_ignore_value())).await,
    );
    rec.res("get foo", c.get("foo", None).await);
    rec.res("get missing", c.get("missing", None).await);
    let gets: Vec<(&str, &str, GetOptions)> = vec![
        ("all", "", GetOptions::new().with_all_keys()),
        ("prefix d/", "d/", GetOptions::new().with_prefix()),
        ("range a..d", "a", GetOptions::new().with_range("d")),
        ("from c", "c", GetOptions::new().with_from_key()),
        ("limit 2", "", GetOptions::new().with_all_keys().with_limit(2)),
        ("rev 2", "foo", GetOptions::new().with_revision(2)),
        ("rev 5 all", "", GetOptions::new().with_all_keys().with_revision(5)),
        ("keys only", "", GetOptions::new().with_all_keys().with_keys_only()),
        ("count only", "", GetOptions::new().with_all_keys().with_count_only()),
        (
            "serializable",
            "",
            GetOptions::new().with_all_keys().with_serializable(),
        ),
        (
            "min mod 6 max mod 8",
            "",
            GetOptions::new()
                .with_all_keys()
                .with_min_mod_revision(6)
                .with_max_mod_revision(8),
        ),
        (
            "min create 5 max create 7",
            "",
            GetOptions::new()
                .with_all_keys()
                .with_min_create_revision(5)
                .with_max_create_revision(7),
        ),
        (
            "min mod 9 limit 1",
            "",
            GetOptions::new().with_all_keys().with_min_mod_revision(9).with_limit(1),
        ),
        ("future rev", "foo", GetOptions::new().with_revision(1000)),
    ];
    for (label, key, opts) in gets {
        rec.res(&format!("get {label}"), c.get(key, Some(opts)).await);
    }
    for target in [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ] {
        for order in [SortOrder::Ascend, SortOrder::Descend] {
            let opts = GetOptions::new().with_all_keys().with_sort(target, order);
            rec.res(&format!("get sort {target:?} {order:?}"), c.get("", Some(opts)).await);
        }
    }
    let opts = GetOptions::new()
        .with_all_keys()
        .with_sort(SortTarget::Mod, SortOrder::Descend)
        .with_limit(3);
    rec.res("get sort mod desc limit 3", c.get("", Some(opts)).await);
    // deletes
    rec.res("del a", c.delete("a", None).await);
    rec.res("del a again", c.delete("a", None).await);
    rec.res(
        "del b prev",
        c.delete("b", Some(DeleteOptions::new().with_prev_key())).await,
    );
    rec.res(
        "del d/ prefix prev",
        c.delete("d/", Some(DeleteOptions::new().with_prefix().with_prev_key()))
            .await,
    );
    rec.res(
        "del range c..e",
        c.delete("c", Some(DeleteOptions::new().with_range("e"))).await,
    );
    // txn
    let t = Txn::new()
        .when([Compare::value("foo", CompareOp::Equal, "bar2")])
        .and_then([TxnOp::put("foo", "t1", None), TxnOp::get("foo", None)])
        .or_else([TxnOp::put("foo", "fail", None)]);
    rec.res("txn value success", c.txn(t).await);
    let t = Txn::new()
        .when([Compare::value("foo", CompareOp::Equal, "bar2")])
        .and_then([TxnOp::put("foo", "t1", None)])
        .or_else([
            TxnOp::get("foo", None),
            TxnOp::delete("e", Some(DeleteOptions::new().with_prev_key())),
        ]);
    rec.res("txn value failure", c.txn(t).await);
    let t = Txn::new()
        .when([
            Compare::version("foo", CompareOp::Greater, 1),
            Compare::create_revision("foo", CompareOp::Less, 100),
            Compare::mod_revision("foo", CompareOp::NotEqual, 0),
            Compare::lease("foo", CompareOp::Equal, 0),
        ])
        .and_then([
            TxnOp::put("t/a", "1", Some(PutOptions::new().with_prev_key())),
            TxnOp::get("t/", Some(GetOptions::new().with_prefix())),
            TxnOp::txn(Txn::new().and_then([TxnOp::put("t/b", "2", None)])),
        ]);
    rec.res("txn multi compare + nested", c.txn(t).await);
    let t = Txn::new()
        .when([Compare::version("t/", CompareOp::Greater, 0).with_prefix()])
        .and_then([TxnOp::get(
            "t/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )]);
    rec.res("txn compare prefix", c.txn(t).await);
    let t = Txn::new().and_then([TxnOp::put("dup", "1", None), TxnOp::put("dup", "2", None)]);
    rec.res("txn duplicate key", c.txn(t).await);
    let ops: Vec<TxnOp> = (0..129).map(|i| TxnOp::put(format!("m{i}"), "v", None)).collect();
    rec.res("txn too many ops", c.txn(Txn::new().and_then(ops)).await);
    rec.res("put empty key", c.put("", "v", None).await);
    rec.res("put too large", c.put("big", vec![b'x'; 2_000_000], None).await);
    // compaction
    let rev = c
        .get("foo", None)
        .await
        .map(|r| r.header().map(|h| h.revision()).unwrap_or(0))
        .unwrap_or(0);
    rec.add("current revision", rev);
    rec.res("compact 5", c.compact(5, None).await);
    rec.res(
        "get compacted rev 3",
        c.get("foo", Some(GetOptions::new().with_revision(3))).await,
    );
    rec.res(
        "get rev 5",
        c.get("", Some(GetOptions::new().with_all_keys().with_revision(5)))
            .await,
    );
    rec.res("compact 4 again", c.compact(4, None).await);
    rec.res("compact future", c.compact(10_000, None).await);
    rec.res(
        "compact physical",
        c.compact(rev, Some(CompactionOptions::new().with_physical())).await,
    );
    rec.res(
        "get all final",
        c.get("", Some(GetOptions::new().with_all_keys())).await,
    );
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_kv() {
    differential("kv", kv_scenario).await;
}

async fn watch_scenario(ep: String) -> Rec {
    let mut rec = Rec::default();
    let mut c = connect(&ep, None).await.expect("connect");
    c.put("w/a", "1", None).await.unwrap(); // 2
    c.put("w/b", "2", None).await.unwrap(); // 3
    c.put("w/a", "3", None).await.unwrap(); // 4
    c.delete("w/b", None).await.unwrap(); // 5
    c.put("x", "9", None).await.unwrap(); // 6

    // replay from revision 2 with prev_kv
    let opts = WatchOptions::new().with_prefix().with_start_revision(2).with_prev_key();
    let mut w1 = c.watch("w/", Some(opts)).await.expect("watch");
    match next_msg(&mut w1).await {
        Ok(r) => rec.add("w1 created", watch_meta(&r)),
        Err(e) => rec.add("w1 created", e),
    }
    collect_events(&mut rec, "w1 replay", &mut w1, 4).await;
    // filters
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(2)
        .with_filters([WatchFilterType::NoPut]);
    let mut w2 = c.watch("w/", Some(opts)).await.expect("watch");
    rec.add("w2 created", next_msg(&mut w2).await.map(|r| watch_meta(&r)));
    collect_events(&mut rec, "w2 noput replay", &mut w2, 1).await;
    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(2)
        .with_filters([WatchFilterType::NoDelete]);
    let mut w3 = c.watch("w/", Some(opts)).await.expect("watch");
    rec.add("w3 created", next_msg(&mut w3).await.map(|r| watch_meta(&r)));
    collect_events(&mut rec, "w3 nodelete replay", &mut w3, 3).await;
    // range watch, no start revision: live events only
    let mut w4 = c
        .watch("w/a", Some(WatchOptions::new().with_range("w/c")))
        .await
        .expect("watch");
    rec.add("w4 created", next_msg(&mut w4).await.map(|r| watch_meta(&r)));
    // live events
    rec.res("put w/c", c.put("w/c", "4", None).await);
    rec.res("put w/b", c.put("w/b", "5", None).await);
    rec.res("del w/a", c.delete("w/a", None).await);
    collect_events(&mut rec, "w1 live", &mut w1, 3).await;
    collect_events(&mut rec, "w2 live", &mut w2, 1).await;
    collect_events(&mut rec, "w3 live", &mut w3, 2).await;
    collect_events(&mut rec, "w4 live", &mut w4, 2).await;
    // progress request
    w1.request_progress().await.expect("progress");
    rec.add("w1 progress", next_msg(&mut w1).await.map(|r| watch_meta(&r)));
    // cancel
    w1.cancel(0).await.expect("cancel");
    rec.add("w1 cancel", next_msg(&mut w1).await.map(|r| watch_meta(&r)));
    // second watch on the same stream gets the next id
    let opts = WatchOptions::new().with_start_revision(9);
    w4.watch("w/b", Some(opts)).await.expect("watch on stream");
    rec.add(
        "w4 second watch created",
        next_msg(&mut w4).await.map(|r| watch_meta(&r)),
    );
    rec.res("put w/b again", c.put("w/b", "6", None).await);
    // two watchers on one stream: order between them is not specified
    let mut both = Rec::default();
    collect_events(&mut both, "w4 both watches", &mut w4, 2).await;
    both.lines.sort_by(|a, b| a.1.cmp(&b.1));
    for (i, (_, t)) in both.lines.into_iter().enumerate() {
        rec.lines.push((format!("w4 both watches #{i}"), t));
    }
    // watch at a compacted revision
    rec.res("compact 6", c.compact(6, None).await);
    let opts = WatchOptions::new().with_prefix().with_start_revision(3);
    let mut w5 = c.watch("w/", Some(opts)).await.expect("watch");
    for i in 0..2 {
        match next_msg(&mut w5).await {
            Ok(r) => {
                let canceled = r.canceled();
                rec.add(&format!("w5 compacted msg {i}"), watch_meta(&r));
                if canceled {
                    break;
                }
            }
            Err(e) => {
                rec.add(&format!("w5 compacted msg {i}"), e);
                break;
            }
        }
    }
    // event types summary
    let mut w6 = c
        .watch("w/", Some(WatchOptions::new().with_prefix().with_start_revision(6)))
        .await
        .expect("watch");
    let _ = next_msg(&mut w6).await;
    let mut types = Vec::new();
    while types.len() < 4 {
        match next_msg(&mut w6).await {
            Ok(r) => types.extend(
                r.events()
                    .iter()
                    .map(|e| (e.event_type() == EventType::Put, e.kv().map(|k| k.mod_revision()))),
            ),
            Err(e) => {
                rec.add("w6 error", e);
                break;
            }
        }
    }
    rec.add("w6 types", types);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_watch() {
    differential("watch", watch_scenario).await;
}

async fn lease_scenario(ep: String) -> Rec {
    let mut rec = Rec::default();
    let mut c = connect(&ep, None).await.expect("connect");
    let l1 = rec
        .res("grant 60", c.lease_grant(60, None).await)
        .map(|r| r.id())
        .unwrap_or(0);
    rec.leases.push(l1);
    let fixed = 0x1234abcd_i64;
    rec.res(
        "grant fixed id",
        c.lease_grant(120, Some(LeaseGrantOptions::new().with_id(fixed))).await,
    );
    rec.res(
        "grant duplicate id",
        c.lease_grant(120, Some(LeaseGrantOptions::new().with_id(fixed))).await,
    );
    rec.res(
        "put k1 l1",
        c.put("k1", "v", Some(PutOptions::new().with_lease(l1))).await,
    );
    rec.res(
        "put k2 l1",
        c.put("k2", "v", Some(PutOptions::new().with_lease(l1))).await,
    );
    rec.res(
        "put k3 fixed",
        c.put("k3", "v", Some(PutOptions::new().with_lease(fixed))).await,
    );
    rec.res(
        "put k3 ignore lease",
        c.put("k3", "v2", Some(PutOptions::new().with_ignore_lease())).await,
    );
    rec.res(
        "put bad lease",
        c.put("k9", "v", Some(PutOptions::new().with_lease(777))).await,
    );
    for (name, id) in [("l1", l1), ("fixed", fixed)] {
        match c
            .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
            .await
        {
            Ok(r) => {
                let mut keys: Vec<String> = r
                    .keys()
                    .iter()
                    .map(|k| String::from_utf8_lossy(k).to_string())
                    .collect();
                keys.sort();
                let ttl_ok = r.ttl() > 0 && r.ttl() <= r.granted_ttl();
                rec.add(&format!("ttl {name}"), (r.id(), r.granted_ttl(), ttl_ok, keys));
            }
            Err(e) => rec.add(&format!("ttl {name}"), err_str(&e)),
        }
    }
    match c.leases().await {
        Ok(r) => {
            let mut ids: Vec<i64> = r.leases().iter().map(|l| l.id()).collect();
            ids.sort();
            let mut named: Vec<String> = ids
                .iter()
                .map(|i| if *i == l1 { "l1".into() } else { i.to_string() })
                .collect();
            named.sort();
            rec.add("leases", named);
        }
        Err(e) => rec.add("leases", err_str(&e)),
    }
    match c.lease_keep_alive(l1).await {
        Ok((mut keeper, mut stream)) => {
            keeper.keep_alive().await.expect("keep alive send");
            match tokio::time::timeout(OP_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(r))) => rec.add("keepalive", (r.id(), r.ttl())),
                other => rec.add("keepalive", format!("{other:?}")),
            }
        }
        Err(e) => rec.add("keepalive", err_str(&e)),
    }
    rec.res("revoke l1", c.lease_revoke(l1).await);
    rec.res(
        "get k after revoke",
        c.get("k", Some(GetOptions::new().with_prefix())).await,
    );
    rec.res("ttl l1 after revoke", c.lease_time_to_live(l1, None).await);
    rec.res("revoke l1 again", c.lease_revoke(l1).await);
    match c.lease_keep_alive(l1).await {
        Ok((mut keeper, mut stream)) => {
            let _ = keeper.keep_alive().await;
            match tokio::time::timeout(OP_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(r))) => rec.add("keepalive revoked", (r.id(), r.ttl())),
                Ok(Err(e)) => rec.add("keepalive revoked", err_str(&e)),
                other => rec.add("keepalive revoked", format!("{other:?}")),
            }
        }
        Err(e) => rec.add("keepalive revoked", err_str(&e)),
    }
    // expiry: short lease, attached key disappears
    let l3 = rec
        .res("grant 2", c.lease_grant(2, None).await)
        .map(|r| r.id())
        .unwrap_or(0);
    rec.leases.push(l3);
    rec.res(
        "put short",
        c.put("short", "v", Some(PutOptions::new().with_lease(l3))).await,
    );
    let until = Instant::now() + Duration::from_secs(20);
    let mut expired = false;
    while Instant::now() < until {
        let r = c.get("short", None).await.expect("get");
        if r.kvs().is_empty() {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rec.add("short lease expired within 20s", expired);
    rec.res("ttl expired", c.lease_time_to_live(l3, None).await);
    rec.res("revoke fixed", c.lease_revoke(fixed).await);
    rec.res("get all", c.get("", Some(GetOptions::new().with_all_keys())).await);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_lease() {
    differential("lease", lease_scenario).await;
}

async fn maintenance_scenario(ep: String) -> Rec {
    let mut rec = Rec::default();
    let mut c = connect(&ep, None).await.expect("connect");
    for i in 0..5 {
        c.put(format!("m{i}"), format!("v{i}"), None).await.unwrap();
    }
    rec.res("status", c.status().await);
    rec.res("hash_kv 0", c.hash_kv(0).await);
    rec.res("hash_kv 3", c.hash_kv(3).await);
    rec.res("hash_kv future", c.hash_kv(1000).await);
    rec.res("alarm get", c.alarm(AlarmAction::Get, AlarmType::None, None).await);
    rec.res("defragment", c.defragment().await);
    rec.res("member list", c.member_list().await);
    rec.res("compact 3", c.compact(3, None).await);
    rec.res("hash_kv compacted", c.hash_kv(2).await);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_maintenance() {
    differential("maintenance", maintenance_scenario).await;
}

async fn auth_scenario(ep: String) -> Rec {
    let mut rec = Rec::default();
    let mut c = connect(&ep, None).await.expect("connect");
    rec.res("put foo", c.put("foo", "0", None).await);
    rec.res("auth enable without root", c.auth_enable().await);
    rec.res("user add root", c.user_add("root", "pw", None).await);
    rec.res("grant root", c.user_grant_role("root", "root").await);
    rec.res("role add r", c.role_add("r").await);
    rec.res("role add r again", c.role_add("r").await);
    rec.res(
        "grant read foo prefix",
        c.role_grant_permission("r", Permission::new(PermissionType::Read, "foo").with_prefix())
            .await,
    );
    rec.res(
        "grant readwrite bar",
        c.role_grant_permission("r", Permission::read_write("bar")).await,
    );
    rec.res("role get r", c.role_get("r").await);
    rec.res("role get missing", c.role_get("missing").await);
    rec.res("role list", c.role_list().await);
    rec.res("user add alice", c.user_add("alice", "apw", None).await);
    rec.res("user add alice again", c.user_add("alice", "x", None).await);
    rec.res("grant alice r", c.user_grant_role("alice", "r").await);
    rec.res("user get alice", c.user_get("alice").await);
    rec.res("user list", c.user_list().await);
    rec.res("auth enable", c.auth_enable().await);
    rec.res("anonymous get", c.get("foo", None).await);
    match connect(&ep, Some(("alice", "apw"))).await {
        Ok(mut a) => {
            rec.res("alice get foo", a.get("foo", None).await);
            rec.res("alice put foo", a.put("foo", "x", None).await);
            rec.res("alice put bar", a.put("bar", "y", None).await);
            rec.res("alice get other", a.get("other", None).await);
            rec.res("alice user list", a.user_list().await);
        }
        Err(e) => rec.add("alice connect", err_str(&e)),
    }
    match connect(&ep, Some(("alice", "wrong"))).await {
        Ok(mut a) => {
            rec.res("wrong password get", a.get("foo", None).await);
        }
        Err(e) => rec.add("wrong password connect", err_str(&e)),
    }
    match connect(&ep, Some(("root", "pw"))).await {
        Ok(mut r) => {
            rec.res("root put foo", r.put("foo", "root", None).await);
            rec.res("root revoke alice r", r.user_revoke_role("alice", "r").await);
            rec.res("root delete role", r.role_delete("r").await);
            rec.res("root delete alice", r.user_delete("alice").await);
            rec.res("root delete alice again", r.user_delete("alice").await);
            rec.res("root auth disable", r.auth_disable().await);
        }
        Err(e) => rec.add("root connect", err_str(&e)),
    }
    let mut c = connect(&ep, None).await.expect("connect");
    rec.res("anonymous get after disable", c.get("foo", None).await);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth() {
    differential("auth", auth_scenario).await;
}

/// rustcd only: 8 writers put keys while the server is SIGKILLed at a random
/// moment; after a restart on the same data dir every acknowledged put must
/// be present with its value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_acknowledged_puts_survive_sigkill() {
    if let Some(reason) = testkit::skip_reason() {
        testkit::print_skip(&reason);
        return;
    }
    const WRITERS: usize = 8;
    const MAX_PER_WRITER: usize = 5_000;
    let mut server = Server::start(Kind::Rustcd, &[]);
    let ep = server.endpoint();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let ep = ep.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            let Ok(mut c) = connect(&ep, None).await else {
                return;
            };
            for i in 0..MAX_PER_WRITER {
                let k = format!("crash/{w}/{i:05}");
                let v = format!("value-{w}-{i}-{}", "x".repeat(i % 64));
                let r = tokio::time::timeout(Duration::from_secs(5), c.put(k.clone(), v.clone(), None)).await;
                match r {
                    Ok(Ok(_)) => acked.lock().unwrap().push((k, v)),
                    _ => return,
                }
            }
        }));
    }
    // kill at a random moment once some puts were acknowledged
    let delay = Duration::from_millis(rand::rng().random_range(200..1500));
    let start = Instant::now();
    while acked.lock().unwrap().len() < 50 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(delay).await;
    let acked_before_kill = acked.lock().unwrap().len();
    server.kill9();
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked_before_kill > 0, "no put was acknowledged before the kill");
    eprintln!("crash test: {} acknowledged puts, killed after {delay:?}", acked.len());
    tokio::task::block_in_place(|| server.restart());
    let mut c = connect(&ep, None).await.expect("connect after restart");
    // one range per writer keeps each response well under 4 MiB
    let mut stored: BTreeMap<String, String> = BTreeMap::new();
    for w in 0..WRITERS {
        let r = c
            .get(format!("crash/{w}/"), Some(GetOptions::new().with_prefix()))
            .await
            .expect("get after restart");
        stored.extend(r.kvs().iter().map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).to_string(),
                String::from_utf8_lossy(kv.value()).to_string(),
            )
        }));
    }
    let missing: Vec<&(String, String)> = acked.iter().filter(|(k, v)| stored.get(k) != Some(v)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged puts lost or wrong after SIGKILL+restart, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    // the store still accepts writes after recovery
    c.put("crash/after", "ok", None).await.expect("put after restart");
}

/// Seeded random sequence of puts/deletes/ranges/txns/compactions; both
/// servers must answer identically. Seed: DIFFTEST_SEED (default 1),
/// length: DIFFTEST_RANDOM_OPS (default 300).
async fn random_ops_scenario(ep: String) -> Rec {
    let seed: u64 = std::env::var("DIFFTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let n: usize = std::env::var("DIFFTEST_RANDOM_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rec = Rec::default();
    rec.add("seed", seed);
    let mut c = connect(&ep, None).await.expect("connect");
    let key = |rng: &mut rand::rngs::StdRng| format!("r/{}", rng.random_range(0..20u8));
    let mut rev: i64 = 1;
    for i in 0..n {
        let label = format!("op {i}");
        match rng.random_range(0..100u8) {
            0..=39 => {
                let k = key(&mut rng);
                let v = format!("v{}", rng.random_range(0..1000u32));
                let opts = if rng.random_bool(0.3) {
                    Some(PutOptions::new().with_prev_key())
                } else {
                    None
                };
                let r = c.put(k.clone(), v.clone(), opts).await;
                if let Ok(r) = &r {
                    rev = r.header().map(|h| h.revision()).unwrap_or(rev);
                }
                rec.res(&format!("{label} put {k}={v}"), r);
            }
            40..=49 => {
                let k = key(&mut rng);
                let opts = match rng.random_range(0..3u8) {
                    0 => DeleteOptions::new().with_prev_key(),
                    1 => DeleteOptions::new().with_range(key(&mut rng)),
                    _ => DeleteOptions::new().with_prefix().with_prev_key(),
                };
                rec.res(&format!("{label} delete {k} {opts:?}"), c.delete(k, Some(opts)).await);
            }
            50..=79 => {
                let k = key(&mut rng);
                let mut opts = match rng.random_range(0..4u8) {
                    0 => GetOptions::new(),
                    1 => GetOptions::new().with_prefix(),
                    2 => GetOptions::new().with_range(key(&mut rng)),
                    _ => GetOptions::new().with_from_key(),
                };
                if rng.random_bool(0.3) {
                    opts = opts.with_limit(rng.random_range(1..5));
                }
                if rng.random_bool(0.3) {
                    opts = opts.with_revision(rng.random_range(1..=rev + 1));
                }
                if rng.random_bool(0.2) {
                    opts = opts.with_keys_only();
                }
                if rng.random_bool(0.2) {
                    opts = opts.with_count_only();
                }
                if rng.random_bool(0.2) {
                    opts = opts.with_sort(SortTarget::Mod, SortOrder::Descend);
                }
                rec.res(&format!("{label} get {k} {opts:?}"), c.get(k, Some(opts)).await);
            }
            80..=94 => {
                let k = key(&mut rng);
                let cmp = match rng.random_range(0..4u8) {
                    0 => Compare::value(
                        k.clone(),
                        CompareOp::Equal,
                        format!("v{}", rng.random_range(0..1000u32)),
                    ),
                    1 => Compare::version(k.clone(), CompareOp::Greater, rng.random_range(0..3)),
                    2 => Compare::mod_revision(k.clone(), CompareOp::Less, rng.random_range(0..=rev)),
                    _ => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
                };
                let t = Txn::new()
                    .when([cmp])
                    .and_then([
                        TxnOp::put(k.clone(), format!("t{i}"), None),
                        TxnOp::get(k.clone(), None),
                    ])
                    .or_else([TxnOp::get(key(&mut rng), Some(GetOptions::new().with_prefix()))]);
                rec.res(&format!("{label} txn on {k}"), c.txn(t).await);
            }
            _ => {
                let target = rng.random_range(1..=rev + 1);
                rec.res(&format!("{label} compact {target}"), c.compact(target, None).await);
            }
        }
    }
    rec.res("final", c.get("", Some(GetOptions::new().with_all_keys())).await);
    rec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_random_ops() {
    differential("random ops", random_ops_scenario).await;
}
