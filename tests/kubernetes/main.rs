//! kube-apiserver on rustcd versus kube-apiserver on Debian's etcd 3.4: the premise that Kubernetes
//! keeps all its state in the store, as a differential test.
//!
//! `scripts/k8s.sh up` starts two control planes side by side (3-member store with TLS,
//! kube-apiserver 1.20.2, controller-manager, scheduler; no kubelet, so Pods stay Pending), one on
//! each store, and the same kubectl 1.32 sequence runs on both at once. Every step records a
//! normalised JSON value; the two transcripts must be equal.
//!
//! kube-apiserver runs with `--etcd-compaction-interval=20s` (its compactor, 5 min by default) and
//! `--watch-cache-sizes=configmaps#0`: ConfigMap lists and watches then go to the store instead of
//! the API server's watch cache, so exact-revision lists, watches from a revision and their
//! compaction errors are the store's answers.
//!
//! Needs `scripts/k8s.sh build` (run as root once), kubectl, Debian's etcd and etcdctl, Docker;
//! fails saying what is missing, unless `RUSTCD_SKIP_KUBERNETES=1` (prints `SKIP:` and passes).

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::kubernetes::{item_names, normalize, prerequisites, wait_until, watch_events, ControlPlane, Store};
use testkit::Output;

const APISERVER_ARGS: &str = "--etcd-compaction-interval=20s --watch-cache-sizes=configmaps#0";
const NS: &str = "kst";
/// The image only has to be a valid name: without a kubelet no Pod runs.
const IMAGE: &str = "rustcd-k8s-busybox:1";

/// One control plane's transcript: (step, normalised result) in order.
#[derive(Default)]
struct Transcript {
    store: &'static str,
    steps: Vec<(String, Value)>,
    t0: Option<Instant>,
}

impl Transcript {
    fn record(&mut self, step: &str, v: Value) {
        let t0 = *self.t0.get_or_insert_with(Instant::now);
        eprintln!("[{} +{:>5.1}s] {step}", self.store, t0.elapsed().as_secs_f64());
        self.steps.push((step.to_string(), v));
    }
}

/// A kubectl result as the transcript keeps it: exit status and the text of stdout and stderr.
fn out_json(o: &Output) -> Value {
    json!({"status": o.status, "stdout": o.stdout.trim(), "stderr": o.stderr.trim()})
}

fn raw(cp: &ControlPlane, path: &str) -> Value {
    cp.kubectl_json(&["get", "--raw", path])
}

fn cm_list_path(query: &str) -> String {
    format!("/api/v1/namespaces/{NS}/configmaps?{query}")
}

/// The items of a ConfigMap list reduced to name -> data.
fn cm_items(list: &Value) -> Value {
    let mut m = serde_json::Map::new();
    for i in list["items"].as_array().into_iter().flatten() {
        let name = i["metadata"]["name"].as_str().unwrap_or("?").to_string();
        // kube-root-ca.crt holds the cluster's own CA: only its key is comparable.
        let data = if name == "kube-root-ca.crt" {
            json!(i["data"].as_object().map(|d| d.keys().cloned().collect::<Vec<_>>()))
        } else {
            i["data"].clone()
        };
        m.insert(name, data);
    }
    Value::Object(m)
}

fn apply_cm(cp: &ControlPlane, name: &str, data: &str, args: &[&str]) -> Output {
    let manifest =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NS}\ndata:\n  {data}\n");
    let mut a = vec!["apply", "--server-side", "-f", "-"];
    a.extend_from_slice(args);
    cp.kubectl_stdin(&a, Some(&manifest))
}

fn count(cp: &ControlPlane, kind: &str, selector: &str) -> usize {
    let list = cp.kubectl_json(&["-n", NS, "get", kind, "-l", selector, "-o", "json"]);
    list["items"].as_array().map_or(0, Vec::len)
}

/// `endpoint status` of every member: (revision, leader?) per endpoint.
fn member_status(cp: &ControlPlane) -> Option<Vec<(i64, bool)>> {
    let o = cp.etcdctl(None, &["endpoint", "status", "-w", "json"]);
    if o.status != 0 {
        return None;
    }
    let v: Value = serde_json::from_str(&o.stdout).ok()?;
    let rows = v.as_array()?;
    (rows.len() == 3).then_some(())?;
    rows.iter()
        .map(|r| {
            let s = &r["Status"];
            let rev = s["header"]["revision"].as_i64()?;
            Some((rev, s["leader"] == s["header"]["member_id"]))
        })
        .collect()
}

/// The whole sequence on one control plane.
fn scenario(cp: &ControlPlane) -> Transcript {
    let mut t = Transcript {
        store: cp.store().name(),
        ..Default::default()
    };
    let k = |args: &[&str]| cp.kubectl(args);

    // --- namespaces ---------------------------------------------------------------------------
    t.record(
        "create namespaces",
        json!([
            out_json(&k(&["create", "namespace", NS])),
            out_json(&k(&["create", "namespace", "kst-gone"]))
        ]),
    );
    t.record(
        "namespace object",
        normalize(&cp.kubectl_json(&["get", "namespace", NS, "-o", "json"])),
    );
    // The root CA publisher and the ServiceAccount controller fill a new namespace.
    wait_until(
        "kube-root-ca.crt and the default ServiceAccount",
        Duration::from_secs(60),
        || {
            (k(&["-n", NS, "get", "configmap", "kube-root-ca.crt"]).status == 0
                && k(&["-n", NS, "get", "serviceaccount", "default"]).status == 0)
                .then_some(())
        },
    );

    // --- ConfigMaps: create, stale update, delete; exact list and watch from a revision --------
    let created: Vec<Value> = (1..=5)
        .map(|i| {
            out_json(&k(&[
                "-n",
                NS,
                "create",
                "configmap",
                &format!("cm{i}"),
                &format!("--from-literal=k=v{i}"),
            ]))
        })
        .collect();
    t.record("create configmaps", json!(created));
    let before = raw(cp, &cm_list_path(""));
    let rv = before["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_string();
    t.record("list after creates", cm_items(&before));
    let stale = cp.kubectl_json(&["-n", NS, "get", "configmap", "cm1", "-o", "json"]);
    t.record(
        "patch cm1",
        out_json(&k(&[
            "-n",
            NS,
            "patch",
            "configmap",
            "cm1",
            "-p",
            r#"{"data":{"k":"patched"}}"#,
        ])),
    );
    let mut stale_edit = stale.clone();
    stale_edit["data"]["k"] = json!("stale");
    let replace = cp.kubectl_stdin(&["replace", "-f", "-"], Some(&stale_edit.to_string()));
    t.record(
        "replace cm1 with a stale resourceVersion (conflict)",
        out_json(&replace),
    );
    t.record("delete cm5", out_json(&k(&["-n", NS, "delete", "configmap", "cm5"])));
    // Right away (the compactor keeps at least 20 s of history): the store's view at `rv`.
    let exact = raw(
        cp,
        &cm_list_path(&format!("resourceVersion={rv}&resourceVersionMatch=Exact")),
    );
    t.record(
        "exact list at the revision after the creates",
        json!({"items": cm_items(&exact), "same resourceVersion": exact["metadata"]["resourceVersion"] == json!(rv)}),
    );
    let w = k(&[
        "get",
        "--raw",
        &cm_list_path(&format!("watch=1&resourceVersion={rv}&timeoutSeconds=3")),
    ]);
    assert_eq!(w.status, 0, "watch: {w:?}");
    t.record("watch from that revision", json!(watch_events(&w.stdout)));
    t.record("list now", cm_items(&raw(cp, &cm_list_path(""))));

    // --- chunked list --------------------------------------------------------------------------
    let mut pages = Vec::new();
    let mut query = "limit=2".to_string();
    loop {
        let page = raw(cp, &cm_list_path(&query));
        let cont = page["metadata"]["continue"].as_str().unwrap_or("").to_string();
        pages.push(json!({
            "items": item_names(&page),
            "remainingItemCount": page["metadata"]["remainingItemCount"],
            "has continue": !cont.is_empty(),
        }));
        if cont.is_empty() || pages.len() > 10 {
            break;
        }
        query = format!("limit=2&continue={cont}");
    }
    t.record("chunked list, limit=2", json!(pages));

    // --- Deployment -> ReplicaSet -> Pods --------------------------------------------------------
    t.record(
        "create deployment",
        out_json(&k(&[
            "-n",
            NS,
            "create",
            "deployment",
            "web",
            &format!("--image={IMAGE}"),
            "--replicas=2",
            "--",
            "/bin/sleep",
            "3600",
        ])),
    );
    wait_until("2 Pods of Deployment web", Duration::from_secs(90), || {
        (count(cp, "pods", "app=web") == 2).then_some(())
    });
    let rs = cp.kubectl_json(&["-n", NS, "get", "replicasets", "-l", "app=web", "-o", "json"]);
    let pods = cp.kubectl_json(&["-n", NS, "get", "pods", "-l", "app=web", "-o", "json"]);
    let rs_names = item_names(&rs);
    let chain: Vec<Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let owner = &p["metadata"]["ownerReferences"][0];
            let rs_obj = rs["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|r| r["metadata"]["name"] == owner["name"]);
            json!({
                "pod owner": [owner["kind"], owner["controller"], rs_names.iter().any(|n| *n == owner["name"])],
                "replicaset owner": rs_obj.map(|r| normalize(&r["metadata"]["ownerReferences"])),
                "phase": p["status"]["phase"],
            })
        })
        .collect();
    t.record(
        "owner chain Pod -> ReplicaSet -> Deployment",
        json!({"replicasets": rs_names.len(), "pods": chain}),
    );
    let mut pod_specs: Vec<Value> = pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| json!({"metadata": normalize(&p["metadata"]), "spec": normalize(&p["spec"])}))
        .collect();
    pod_specs.sort_by_key(|v| v.to_string());
    t.record("pods (metadata and spec)", json!(pod_specs));
    let mut rs_obj = normalize(&rs["items"][0]);
    rs_obj.as_object_mut().map(|o| o.remove("status"));
    t.record("replicaset (without status)", rs_obj);

    // --- server-side apply with a field-manager conflict ----------------------------------------
    t.record(
        "apply as alice",
        out_json(&apply_cm(cp, "ssa", "a: \"1\"", &["--field-manager=alice"])),
    );
    t.record(
        "apply as bob (conflict)",
        out_json(&apply_cm(cp, "ssa", "a: \"2\"", &["--field-manager=bob"])),
    );
    t.record(
        "apply as bob --force-conflicts",
        out_json(&apply_cm(
            cp,
            "ssa",
            "a: \"2\"",
            &["--field-manager=bob", "--force-conflicts"],
        )),
    );
    t.record(
        "ssa object",
        normalize(&cp.kubectl_json(&[
            "-n",
            NS,
            "get",
            "configmap",
            "ssa",
            "-o",
            "json",
            "--show-managed-fields",
        ])),
    );

    // --- finalizers ------------------------------------------------------------------------------
    let fin = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: {NS}\n  finalizers: [example.com/hold]\ndata: {{k: v}}\n");
    t.record(
        "create held (with a finalizer)",
        out_json(&cp.kubectl_stdin(&["create", "-f", "-"], Some(&fin))),
    );
    t.record(
        "delete held --wait=false",
        out_json(&k(&["-n", NS, "delete", "configmap", "held", "--wait=false"])),
    );
    std::thread::sleep(Duration::from_secs(2));
    let held = cp.kubectl_json(&["-n", NS, "get", "configmap", "held", "-o", "json"]);
    t.record("held is terminating", json!({"metadata": normalize(&held["metadata"])}));
    t.record(
        "remove the finalizer",
        out_json(&k(&[
            "-n",
            NS,
            "patch",
            "configmap",
            "held",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":null}}"#,
        ])),
    );
    let gone = wait_until("held to be gone", Duration::from_secs(30), || {
        let o = k(&["-n", NS, "get", "configmap", "held"]);
        (o.status != 0).then_some(o)
    });
    t.record("held is gone", out_json(&gone));
    // A namespace with content: the namespace controller empties it, then its finalizer goes.
    k(&["-n", "kst-gone", "create", "configmap", "inside", "--from-literal=a=b"]);
    t.record(
        "delete namespace kst-gone",
        out_json(&k(&["delete", "namespace", "kst-gone", "--wait=false"])),
    );
    let ns_gone = wait_until("namespace kst-gone to be gone", Duration::from_secs(90), || {
        let o = k(&["get", "namespace", "kst-gone"]);
        (o.status != 0).then_some(o)
    });
    t.record("namespace kst-gone is gone", out_json(&ns_gone));

    // --- garbage collection ----------------------------------------------------------------------
    t.record(
        "delete deployment web",
        out_json(&k(&["-n", NS, "delete", "deployment", "web"])),
    );
    wait_until(
        "the ReplicaSet and Pods of web to be collected",
        Duration::from_secs(90),
        || (count(cp, "replicasets", "app=web") == 0 && count(cp, "pods", "app=web") == 0).then_some(()),
    );
    t.record("garbage collected", json!({"replicasets": 0, "pods": 0}));

    // --- a ServiceAccount gets its token Secret ----------------------------------------------------
    t.record(
        "create serviceaccount robot",
        out_json(&k(&["-n", NS, "create", "serviceaccount", "robot"])),
    );
    let secret = wait_until("robot's token Secret", Duration::from_secs(60), || {
        let sa = cp.kubectl_json(&["-n", NS, "get", "serviceaccount", "robot", "-o", "json"]);
        sa["secrets"][0]["name"].as_str().map(str::to_string)
    });
    t.record(
        "serviceaccount robot",
        normalize(&cp.kubectl_json(&["-n", NS, "get", "serviceaccount", "robot", "-o", "json"])),
    );
    t.record(
        "robot's token Secret",
        normalize(&cp.kubectl_json(&["-n", NS, "get", "secret", &secret, "-o", "json"])),
    );

    // --- compaction: the revision of the first list is compacted away ------------------------------
    let expired = wait_until(
        "kube-apiserver's compactor to compact the first list's revision",
        Duration::from_secs(90),
        || {
            let o = k(&[
                "get",
                "--raw",
                &cm_list_path(&format!("resourceVersion={rv}&resourceVersionMatch=Exact")),
            ]);
            (o.status != 0).then_some(o)
        },
    );
    t.record("exact list at a compacted revision", out_json(&expired));
    let w = k(&[
        "get",
        "--raw",
        &cm_list_path(&format!("watch=1&resourceVersion={rv}&timeoutSeconds=3")),
    ]);
    t.record(
        "watch from a compacted revision",
        json!({"status": w.status, "events": watch_events(&w.stdout)}),
    );

    // --- a store member SIGKILLed and restarted while the API server keeps serving -----------------
    let status = wait_until("endpoint status of all members", Duration::from_secs(30), || {
        member_status(cp)
    });
    let victim = status.iter().position(|(_, leader)| !leader).expect("a follower");
    cp.kill_store_member(victim);
    let write = k(&["-n", NS, "create", "configmap", "while-down", "--from-literal=k=v"]);
    t.record("write while a member is down", out_json(&write));
    t.record("read while a member is down", cm_items(&raw(cp, &cm_list_path(""))));
    cp.restart_store_member(victim);
    // Revisions equal on all three members, then the same HashKV at that revision.
    let converged = wait_until("the restarted member to catch up", Duration::from_secs(60), || {
        let s = member_status(cp)?;
        let rev = s[0].0;
        if s.iter().any(|(r, _)| *r != rev) {
            return None;
        }
        let o = cp.etcdctl(None, &["endpoint", "hashkv", "-w", "json", &format!("--rev={rev}")]);
        let v: Value = serde_json::from_str(&o.stdout).ok()?;
        let hashes: Vec<&Value> = v.as_array()?.iter().map(|r| &r["HashKV"]["hash"]).collect();
        (hashes.len() == 3 && hashes.iter().all(|h| *h == hashes[0])).then_some(true)
    });
    t.record("members converged (revision and hashkv)", json!(converged));
    t.record(
        "write after the restart",
        out_json(&k(&[
            "-n",
            NS,
            "create",
            "configmap",
            "after-restart",
            "--from-literal=k=v",
        ])),
    );
    t.record("readyz", out_json(&k(&["get", "--raw", "/readyz"])));
    t.record("final configmaps", cm_items(&raw(cp, &cm_list_path(""))));
    t
}

fn run_on(store: Store) -> Transcript {
    let t0 = Instant::now();
    let name = store.name();
    let cp = ControlPlane::up(store, APISERVER_ARGS).unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "[{name}] control plane up in {:.1}s ({})",
        t0.elapsed().as_secs_f64(),
        cp.dir().display()
    );
    let t = scenario(&cp);
    eprintln!("[{name}] scenario done at {:.1}s", t0.elapsed().as_secs_f64());
    t
}

#[test]
fn kube_apiserver_on_rustcd_matches_etcd() {
    if std::env::var("RUSTCD_SKIP_KUBERNETES").as_deref() == Ok("1") {
        testkit::print_skip("RUSTCD_SKIP_KUBERNETES=1: kube-apiserver on rustcd versus etcd not run");
        return;
    }
    if let Err(e) = prerequisites() {
        panic!("{e}");
    }
    let rustcd = std::path::PathBuf::from(env!("CARGO_BIN_EXE_rustcd"));
    let t0 = Instant::now();
    // Side by side (both together: about 1.2 GiB RSS, measured); running both halves the waits.
    let etcd = std::thread::spawn(|| run_on(Store::Etcd));
    let ours = std::thread::spawn(move || run_on(Store::Rustcd(rustcd)));
    let (etcd, ours) = (etcd.join(), ours.join());
    let (etcd, ours) = match (etcd, ours) {
        (Ok(e), Ok(o)) => (e, o),
        (Err(p), _) | (_, Err(p)) => std::panic::resume_unwind(p),
    };
    eprintln!("both transcripts in {:.1}s", t0.elapsed().as_secs_f64());
    // What was compared (visible with --nocapture, and on failure).
    for (step, v) in &ours.steps {
        eprintln!("rustcd | {step}: {v}");
    }
    for ((step_e, v_e), (step_o, v_o)) in etcd.steps.iter().zip(&ours.steps) {
        assert_eq!(step_e, step_o);
        assert_eq!(
            v_o,
            v_e,
            "step {step_e:?}: rustcd (left) differs from etcd (right)\nrustcd: {}\netcd:   {}",
            serde_json::to_string_pretty(v_o).unwrap(),
            serde_json::to_string_pretty(v_e).unwrap()
        );
    }
    assert_eq!(etcd.steps.len(), ours.steps.len());
    eprintln!("{} steps equal", etcd.steps.len());
}
