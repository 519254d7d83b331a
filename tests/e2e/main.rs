//! End-to-end test of the operator on a real Kubernetes cluster, the scenario users run: install the chart,
//! apply `examples/etcdcluster.yaml` (as one member), wait for `Available`, `etcdctl member list` through
//! the client Service, scale 1 -> 3 -> 5 -> 3 under a writing client (the operator's pod deleted in the
//! middle of the 3 -> 5 step), delete a member pod and watch it rejoin, check that no acknowledged write is
//! lost; where cert-manager is installed, also apply `examples/etcdcluster-tls.yaml` and list its members
//! over TLS; then remove everything.
//!
//! With `KUBECONFIG` it runs on that cluster (kind, k3d or real; `e2e: skipped: <why>` when it does not
//! answer), and the image (`E2E_IMAGE`, default `rustcd:latest`) must already be on the nodes. Without it,
//! it runs on a one-node Kubernetes 1.20 of this machine (`scripts/k8s.sh up --with-kubelet`, rustcd as
//! its store) with an image it builds from this build's binaries. See tests/e2e/README.md.

mod backups;
mod etcd;
mod helm;
mod kubectl;
mod setup;
mod writer;

use std::time::Duration;

use serde_json::Value;

use etcd::{etcdctl, settled_members};
use kubectl::{get_json, kubectl, kubectl_with_input, log, wait_until};
use setup::{Config, Target};
use writer::Writer;

/// Name of the EtcdCluster in `examples/etcdcluster.yaml`.
const CLUSTER: &str = "example";
/// How long one step (start, one scaling, a rejoin) may take.
const STEP: Duration = Duration::from_secs(300);

#[test]
fn operator_runs_scales_and_heals_an_etcd_cluster() {
    let target = match setup::target() {
        Ok(target) => target,
        Err(reason) => {
            log(&format!("skipped: {reason}"));
            return;
        }
    };
    let mut config = Config::from_env();
    if let Target::Local(local) = &target {
        kubectl::use_kubeconfig(std::path::Path::new(local.plane.env("KUBECONFIG")));
        if std::env::var_os("E2E_IMAGE").is_none() {
            config.image = local.image.0.clone();
        }
        if config.next_image.is_none() {
            config.next_image = Some(local.next_image.0.clone());
        }
        if config.host_for_pods.is_none() {
            config.host_for_pods = Some(local.plane.env("K8S_CLUSTER_DNS").to_string()).filter(|h| !h.is_empty());
        }
        log(&format!(
            "on this machine's Kubernetes 1.20 ({})",
            local.plane.dir().display()
        ));
    }
    log(&format!("namespace {}, image {}", config.namespace, config.image));
    let _cleanup = Cleanup(&config);
    let ns = config.namespace.as_str();

    helm::install_operator(&config).unwrap_or_else(|e| panic!("installing the chart failed: {e}"));
    log("operator installed");
    apply_example(&config);
    kubectl(&[
        "wait",
        "-n",
        ns,
        &format!("etcdcluster/{CLUSTER}"),
        "--for=condition=Available",
        "--timeout=300s",
    ])
    .unwrap_or_else(|e| panic!("the cluster did not become Available: {e}"));
    let service = wait_until("client Service", STEP, || client_service(ns));
    wait_for_members(&config, &service, 1);
    etcdctl(&config.etcdctl, ns, &service, &["put", "e2e/key", ns]).unwrap_or_else(|e| panic!("put: {e}"));
    let writer = Writer::start(&config.etcdctl, ns, &service);

    for replicas in [3, 5, 3] {
        kubectl(&[
            "scale",
            "-n",
            ns,
            &format!("etcdcluster/{CLUSTER}"),
            &format!("--replicas={replicas}"),
        ])
        .unwrap_or_else(|e| panic!("kubectl scale: {e}"));
        if replicas == 5 {
            restart_operator_mid_step(ns);
        }
        wait_for_members(&config, &service, replicas);
    }

    // A deleted pod comes back (StatefulSet), keeps its volume and rejoins as the same member.
    let before = wait_for_members(&config, &service, 3);
    let pod = pods(ns).unwrap_or_else(|e| panic!("{e}"))[0].clone();
    let (name, uid) = (
        pod["metadata"]["name"].as_str().unwrap_or_default(),
        pod["metadata"]["uid"].clone(),
    );
    kubectl(&["delete", "pod", "-n", ns, name, "--wait=true", "--timeout=120s"]).unwrap_or_else(|e| panic!("{e}"));
    log(&format!("deleted pod {name}"));
    wait_until(&format!("pod {name} replaced and Ready"), STEP, || {
        let pod = get_json(ns, &["pod", name])?;
        let ready = pod["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        if pod["metadata"]["uid"] != uid && ready {
            Ok(())
        } else {
            Err(format!("pod {name} not replaced or not Ready yet"))
        }
    });
    let after = wait_for_members(&config, &service, 3);
    let ids = |members: &[etcd::Member]| {
        let mut ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&after),
        ids(&before),
        "the member set changed when a pod was replaced"
    );

    rolling_change(&config, &service, &ids(&after));
    match config.next_image.clone() {
        Some(next) => upgrade(&config, &service, &next, &ids(&after), &writer),
        None => log("upgrade step skipped: E2E_IMAGE_NEXT (a second image tag on the nodes) is not set"),
    }
    backups::backups_and_restores(&config, &service);

    let value = etcdctl(&config.etcdctl, ns, &service, &["get", "e2e/key", "--print-value-only"])
        .unwrap_or_else(|e| panic!("get: {e}"));
    assert_eq!(value.trim(), ns, "the key written before scaling is gone");
    let written = writer.stop();
    log(&format!(
        "writer: {} writes acknowledged, {} failed (longest run of failures {:.1?})",
        written.acknowledged.len(),
        written.failed,
        written.longest_outage
    ));
    assert!(
        written.acknowledged.len() >= 10,
        "too few acknowledged writes to mean anything: {written:?}"
    );
    let stored = wait_until("the writer's keys", STEP, || {
        etcdctl(
            &config.etcdctl,
            ns,
            &service,
            &["get", writer::PREFIX, "--prefix", "--keys-only"],
        )
    });
    let lost = written.lost(&stored);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    quorum_lost_for_good(&config);
    delete_with_claims(ns);
    secure_cluster(&config);
    log("passed");
}

/// `examples/etcdcluster-tls.yaml` where cert-manager is installed: the cluster becomes Available with
/// certificates the operator requested, and etcdctl with the example's client certificate lists three
/// started members on https URLs. (The namespace's deletion removes it.)
fn secure_cluster(config: &Config) {
    if let Err(e) = kubectl(&["get", "crd", "certificates.cert-manager.io"]) {
        log(&format!("TLS part skipped: cert-manager is not installed ({e})"));
        return;
    }
    let ns = config.namespace.as_str();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/etcdcluster-tls.yaml");
    let text = std::fs::read_to_string(path).expect("read examples/etcdcluster-tls.yaml");
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let mut object: Value = serde::Deserialize::deserialize(doc).expect("examples/etcdcluster-tls.yaml is YAML");
        if object["kind"] == "EtcdCluster" {
            object["spec"]["image"] = Value::from(config.image.clone());
        }
        docs.push(object.to_string());
    }
    kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&docs.join("\n---\n")))
        .unwrap_or_else(|e| panic!("applying examples/etcdcluster-tls.yaml failed: {e}"));
    log("examples/etcdcluster-tls.yaml applied");
    kubectl(&[
        "wait",
        "-n",
        ns,
        "etcdcluster/secure",
        "--for=condition=Available",
        "--timeout=300s",
    ])
    .unwrap_or_else(|e| panic!("the TLS cluster did not become Available: {e}"));
    let secret = wait_until("the etcdctl certificate", STEP, || {
        get_json(ns, &["secret", "secure-etcdctl"])
    });
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(secret).expect("a Secret");
    let data = secret.data.unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("{ns}-tls"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut flags = Vec::new();
    for (key, flag) in [("ca.crt", "--cacert"), ("tls.crt", "--cert"), ("tls.key", "--key")] {
        let pem = data.get(key).unwrap_or_else(|| panic!("secure-etcdctl has no {key}"));
        let file = dir.join(key);
        std::fs::write(&file, &pem.0).expect("write a PEM file");
        flags.push(format!("{flag}={}", file.display()));
    }
    let listed = wait_until("3 started voters over TLS", STEP, || {
        let out = etcd::etcdctl_over(&config.etcdctl, ns, "secure", Some(&flags), &["member", "list"])?;
        let members = etcd::parse_member_list(&out)?;
        let settled = members.len() == 3 && members.iter().all(|m| m.started && !m.learner);
        if settled && out.contains("https://") {
            Ok(out)
        } else {
            Err(format!("member list: {out}"))
        }
    });
    log(&format!("TLS cluster:\n{listed}"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `kubectl patch --type merge` of the EtcdCluster, which must succeed.
fn patch_cluster(ns: &str, patch: &str) {
    kubectl(&[
        "patch",
        "-n",
        ns,
        "etcdcluster",
        CLUSTER,
        "--type",
        "merge",
        "-p",
        patch,
    ])
    .unwrap_or_else(|e| panic!("kubectl patch {patch}: {e}"));
}

/// `pvcDeletionPolicy: Delete`, then `kubectl delete`: the cluster goes, and with it every claim (the
/// operator's finalizer deletes them; the default, `Retain`, keeps them).
fn delete_with_claims(ns: &str) {
    let selector = get_json(ns, &["etcdcluster", CLUSTER]).unwrap_or_else(|e| panic!("{e}"))["status"]["selector"]
        .as_str()
        .map(str::to_string)
        .expect("status.selector");
    patch_cluster(ns, r#"{"spec":{"pvcDeletionPolicy":"Delete"}}"#);
    wait_until("the claims' finalizer", STEP, || {
        let cluster = get_json(ns, &["etcdcluster", CLUSTER])?;
        let finalizers = cluster["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if finalizers.iter().any(|f| f == "rustcd.io/delete-pvcs") {
            Ok(())
        } else {
            Err(format!("finalizers: {finalizers:?}"))
        }
    });
    kubectl(&["delete", "-n", ns, &format!("etcdcluster/{CLUSTER}"), "--timeout=120s"])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_until("no claim left", STEP, || {
        let claims = get_json(ns, &["pvc", "-l", &selector])?;
        match claims["items"].as_array().map_or(0, Vec::len) {
            0 => Ok(()),
            n => Err(format!("{n} claims left")),
        }
    });
    log("deleted with its claims");
}

/// A changed `spec.resources` reaches every pod, one member at a time (`status.updatedReplicas` counts
/// them), and the members stay who they were: each restarts on its own volume.
fn rolling_change(config: &Config, service: &str, members_before: &[String]) {
    let ns = config.namespace.as_str();
    patch_cluster(ns, r#"{"spec":{"resources":{"requests":{"cpu":"60m"}}}}"#);
    log("spec.resources changed");
    wait_rolled_out(ns, "the new resources", |p| {
        p["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "60m"
    });
    assert_same_members(config, service, members_before, "the rolling change");
}

/// Waits until all 3 pods satisfy `rolled` (run the new template) and `status.updatedReplicas` is 3.
fn wait_rolled_out(ns: &str, what: &str, rolled: impl Fn(&Value) -> bool) {
    wait_until(&format!("{what} rolled out to 3 pods"), STEP, || {
        let pods = pods(ns)?;
        let n = pods.iter().filter(|p| rolled(p)).count();
        let status = get_json(ns, &["etcdcluster", CLUSTER])?["status"].clone();
        if n == 3 && pods.len() == 3 && status["updatedReplicas"] == 3 {
            Ok(())
        } else {
            Err(format!(
                "{n} of {} pods rolled, status.updatedReplicas {}",
                pods.len(),
                status["updatedReplicas"]
            ))
        }
    });
}

/// The 3 started voters are the members of `members_before` (sorted IDs): `what` restarted them on
/// their own volumes instead of replacing them.
fn assert_same_members(config: &Config, service: &str, members_before: &[String], what: &str) {
    let members = wait_for_members(config, service, 3);
    let mut ids: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    ids.sort();
    assert_eq!(
        ids, members_before,
        "{what} replaced members instead of restarting them"
    );
}

/// The condition `type_` of `object` (any object with `status.conditions`), or `null`.
pub fn condition(object: &Value, type_: &str) -> Value {
    object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_).cloned())
        .unwrap_or_default()
}

/// Waits until EtcdCluster `cluster` is `Degraded` with `reason`; the condition.
pub fn wait_degraded(ns: &str, cluster: &str, reason: &str) -> Value {
    wait_until(&format!("{cluster} reports {reason}"), STEP, || {
        let d = condition(&get_json(ns, &["etcdcluster", cluster])?, "Degraded");
        (d["reason"] == reason)
            .then_some(d.clone())
            .ok_or_else(|| format!("Degraded is {d}"))
    })
}

/// The raft term `etcdctl endpoint status` reports through `service`.
fn raft_term(config: &Config, service: &str) -> u64 {
    let out = wait_until("endpoint status", STEP, || {
        etcdctl(
            &config.etcdctl,
            &config.namespace,
            service,
            &["endpoint", "status", "-w", "json"],
        )
    });
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("endpoint status JSON {out:?}: {e}"));
    v[0]["Status"]["header"]["raft_term"]
        .as_u64()
        .unwrap_or_else(|| panic!("no raft_term in {out}"))
}

/// `spec.image` moved to another tag under the writer: every pod is replaced one at a time onto the new
/// image, the members stay who they were, and the raft term moves at most once (the MoveLeader before
/// the leader restarts; restarted followers cause no election).
fn upgrade(config: &Config, service: &str, next: &str, members_before: &[String], writer: &Writer) {
    let ns = config.namespace.as_str();
    let term_before = raft_term(config, service);
    let failed_before = writer.failed_so_far();
    let started = std::time::Instant::now();
    patch_cluster(ns, &serde_json::json!({"spec": {"image": next}}).to_string());
    log(&format!("spec.image changed to {next}"));
    wait_rolled_out(ns, "the new image", |p| p["spec"]["containers"][0]["image"] == next);
    assert_same_members(config, service, members_before, "the upgrade");
    let elapsed = started.elapsed();
    let term_after = raft_term(config, service);
    log(&format!(
        "upgrade: 3 members in {elapsed:.1?} ({:.1?} per member), raft term {term_before} -> {term_after}, \
         {} puts failed through port-forward meanwhile",
        elapsed / 3,
        writer.failed_so_far() - failed_before
    ));
    assert!(
        term_after <= term_before + 1,
        "the upgrade changed the leader more than once (term {term_before} -> {term_after})"
    );
}

/// Two of the three members lose their disks while the operator is stopped (its Deployment scaled to 0,
/// the StatefulSet to 1, their claims deleted, the StatefulSet back to 3: new, empty claims). The
/// restarted operator must report `Degraded`/`Stalled` with reason `QuorumLost` and change nothing;
/// the way back is a new cluster from a backup (done above with `spec.bootstrap.fromBackup`).
fn quorum_lost_for_good(config: &Config) {
    let ns = config.namespace.as_str();
    let operator = format!("deployment/{}", config.release);
    let scale = |what: &str, n: u32| {
        kubectl(&["scale", "-n", ns, what, &format!("--replicas={n}")]).unwrap_or_else(|e| panic!("scale {what}: {e}"));
    };
    scale(&operator, 0);
    wait_until("the operator stopped", STEP, || {
        let pods = get_json(ns, &["pods", "-l", "app.kubernetes.io/name=rustcd-operator"])?;
        match pods["items"].as_array().map_or(0, Vec::len) {
            0 => Ok(()),
            n => Err(format!("{n} operator pods")),
        }
    });
    let sts = format!("statefulset/{CLUSTER}");
    scale(&sts, 1);
    wait_until("members 1 and 2 gone", STEP, || match pods(ns)?.len() {
        1 => Ok(()),
        n => Err(format!("{n} member pods")),
    });
    for k in [1, 2] {
        kubectl(&[
            "delete",
            "pvc",
            "-n",
            ns,
            &format!("data-{CLUSTER}-{k}"),
            "--wait=true",
            "--timeout=120s",
        ])
        .unwrap_or_else(|e| panic!("delete claim {k}: {e}"));
    }
    scale(&sts, 3);
    scale(&operator, 1);
    log("two of three members' claims replaced with empty ones; operator restarted");
    let degraded = wait_degraded(ns, CLUSTER, "QuorumLost");
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(message.starts_with("2 of 3 members lost their data"), "{message}");
    log(&format!("quorum loss: {message}"));
}

/// Once the 3 -> 5 step has begun (a fourth pod exists), deletes the operator's pod: its Deployment starts
/// a new one, which must pick the step up where the old one left it.
fn restart_operator_mid_step(ns: &str) {
    wait_until("the 3 -> 5 step under way", STEP, || match pods(ns)?.len() {
        n if n > 3 => Ok(()),
        n => Err(format!("{n} member pods")),
    });
    let selector = "app.kubernetes.io/name=rustcd-operator";
    kubectl(&["delete", "pod", "-n", ns, "-l", selector, "--wait=false"]).unwrap_or_else(|e| panic!("{e}"));
    log("deleted the operator's pod mid-step");
}

/// Applies `examples/etcdcluster.yaml` in the run's namespace, with the run's image, as one member (the
/// scenario grows it).
fn apply_example(config: &Config) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/etcdcluster.yaml");
    let text = std::fs::read_to_string(path).expect("read examples/etcdcluster.yaml");
    let mut cluster: Value = serde_norway::from_str(&text).expect("examples/etcdcluster.yaml is YAML");
    cluster["spec"]["image"] = Value::from(config.image.clone());
    cluster["spec"]["replicas"] = Value::from(1);
    kubectl_with_input(
        &["apply", "-n", &config.namespace, "-f", "-"],
        Some(&cluster.to_string()),
    )
    .unwrap_or_else(|e| panic!("applying the example failed: {e}"));
    log("examples/etcdcluster.yaml applied");
}

/// The cluster's client Service: the Service the EtcdCluster owns that has a cluster IP and port 2379.
fn client_service(ns: &str) -> Result<String, String> {
    client_service_of(ns, CLUSTER)
}

/// The client Service of EtcdCluster `cluster`.
fn client_service_of(ns: &str, cluster: &str) -> Result<String, String> {
    let services = get_json(ns, &["services"])?;
    services["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            let owned = s["metadata"]["ownerReferences"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o["kind"] == "EtcdCluster" && o["name"] == cluster));
            let headless = s["spec"]["clusterIP"] == "None";
            let client_port = s["spec"]["ports"]
                .as_array()
                .is_some_and(|p| p.iter().any(|p| p["port"] == 2379));
            owned && !headless && client_port
        })
        .and_then(|s| s["metadata"]["name"].as_str().map(str::to_string))
        .ok_or_else(|| format!("no client Service owned by etcdcluster/{cluster} yet"))
}

/// The cluster's pods, by the selector the EtcdCluster publishes for the scale subresource, sorted by name.
fn pods(ns: &str) -> Result<Vec<Value>, String> {
    let cluster = get_json(ns, &["etcdcluster", CLUSTER])?;
    let selector = cluster["status"]["selector"]
        .as_str()
        .ok_or("the EtcdCluster has no status.selector")?;
    let list = get_json(ns, &["pods", "-l", selector])?;
    let mut pods = list["items"].as_array().cloned().unwrap_or_default();
    pods.sort_by_key(|p| p["metadata"]["name"].as_str().unwrap_or_default().to_string());
    Ok(pods)
}

/// Waits until `etcdctl member list` shows `replicas` started voters and the status agrees; the members.
fn wait_for_members(config: &Config, service: &str, replicas: usize) -> Vec<etcd::Member> {
    let ns = config.namespace.as_str();
    wait_until(&format!("{replicas} started voters"), STEP, || {
        let members = settled_members(&config.etcdctl, ns, service, replicas)?;
        let status = get_json(ns, &["etcdcluster", CLUSTER])?["status"].clone();
        let ready = status["readyReplicas"].as_u64().unwrap_or(0);
        let pod_count = pods(ns)?.len();
        if ready == replicas as u64 && pod_count == replicas {
            Ok(members)
        } else {
            Err(format!(
                "status.readyReplicas {ready}, {pod_count} pods, want {replicas}"
            ))
        }
    })
}

/// Removes what the run created, however it ends; on a failure, first prints what the cluster looked like.
struct Cleanup<'a>(&'a Config);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let ns = self.0.namespace.as_str();
        if std::thread::panicking() {
            for args in [
                &[
                    "get",
                    "-n",
                    ns,
                    "etcdcluster,statefulset,pod,service,pdb,pvc",
                    "-o",
                    "wide",
                ][..],
                &["describe", "-n", ns, "etcdcluster", CLUSTER][..],
                &["get", "-n", ns, "events", "--sort-by=.lastTimestamp"][..],
                &["logs", "-n", ns, "deployment/rustcd-operator", "--tail=200"][..],
            ] {
                let out = kubectl(args).unwrap_or_else(|e| e);
                log(&format!("kubectl {}:\n{out}", args.join(" ")));
            }
        }
        if self.0.keep {
            log(&format!("E2E_KEEP=1: namespace {ns} kept"));
            return;
        }
        // The cluster goes first, while the operator still runs to handle it; then the operator; then the rest.
        let cluster = format!("etcdcluster/{CLUSTER}");
        let deleted = kubectl(&["delete", "-n", ns, &cluster, "--ignore-not-found", "--timeout=120s"]);
        report("delete the EtcdCluster", deleted.map(drop));
        report("uninstall the chart", helm::uninstall_operator(self.0));
        let deleted = kubectl(&["delete", "namespace", ns, "--ignore-not-found", "--timeout=180s"]);
        report("delete the namespace", deleted.map(drop));
    }
}

fn report(what: &str, result: Result<(), String>) {
    if let Err(e) = result {
        log(&format!("cleanup: cannot {what}: {e}"));
    }
}
