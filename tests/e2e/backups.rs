//! Backups and restores on the real control plane: an on-demand `EtcdBackup` to a PVC and to an S3
//! server (moto, listening where the pods can reach it), a scheduled backup through `spec.backup`,
//! and new clusters restored from each on-demand backup, whose HashKV at the backup's revision must
//! be the backed-up cluster's.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use testkit::s3::S3Server;

use super::etcd::etcdctl;
use super::kubectl::{get_json, kubectl, kubectl_with_input, log, wait_until};
use super::setup::Config;
use super::{client_service_of, condition, wait_degraded, CLUSTER, STEP};

fn apply(ns: &str, object: &Value) {
    kubectl_with_input(&["apply", "-n", ns, "-f", "-"], Some(&object.to_string()))
        .unwrap_or_else(|e| panic!("kubectl apply {}: {e}", object["metadata"]["name"]));
}

/// Waits until EtcdBackup `name` has finished; panics with its status if it failed.
fn wait_backup(ns: &str, name: &str) -> Value {
    let started = Instant::now();
    let backup = wait_until(&format!("EtcdBackup {name} finished"), STEP, || {
        let b = get_json(ns, &["etcdbackup", name])?;
        match b["status"]["phase"].as_str() {
            Some("Succeeded" | "Failed") => Ok(b),
            other => Err(format!("phase {other:?}")),
        }
    });
    assert_eq!(
        backup["status"]["phase"], "Succeeded",
        "EtcdBackup {name} failed: {:#}",
        backup["status"]
    );
    log(&format!(
        "EtcdBackup {name}: {} bytes at revision {} in {:.1?} -> {}",
        backup["status"]["size"],
        backup["status"]["revision"],
        started.elapsed(),
        backup["status"]["location"]
    ));
    backup["status"].clone()
}

/// `etcdctl endpoint hashkv --rev` through `service`.
fn hashkv(config: &Config, service: &str, rev: i64) -> u64 {
    let out = wait_until(&format!("hashkv of {service}"), STEP, || {
        etcdctl(
            &config.etcdctl,
            &config.namespace,
            service,
            &["endpoint", "hashkv", &format!("--rev={rev}"), "-w", "json"],
        )
    });
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("hashkv JSON {out:?}: {e}"));
    v[0]["HashKV"]["hash"]
        .as_u64()
        .unwrap_or_else(|| panic!("no hash in {out}"))
}

fn backup_object(name: &str, destination: Value) -> Value {
    json!({
        "apiVersion": "rustcd.io/v1alpha1",
        "kind": "EtcdBackup",
        "metadata": {"name": name},
        "spec": {"clusterName": CLUSTER, "destination": destination}
    })
}

fn restored_cluster(config: &Config, name: &str, source: Value) -> Value {
    json!({
        "apiVersion": "rustcd.io/v1alpha1",
        "kind": "EtcdCluster",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "image": config.image,
            "imagePullPolicy": "IfNotPresent",
            "storage": {"size": "1Gi"},
            "bootstrap": {"fromBackup": source}
        }
    })
}

/// The scenario; `service` is the backed-up cluster's client Service.
pub fn backups_and_restores(config: &Config, service: &str) {
    let ns = config.namespace.as_str();
    apply(
        ns,
        &json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "backups"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }),
    );
    // A destination that does not exist: refused before anything runs.
    apply(ns, &backup_object("no-claim", json!({"pvc": {"claimName": "missing"}})));
    let refused = wait_until("EtcdBackup no-claim refused", STEP, || {
        let b = get_json(ns, &["etcdbackup", "no-claim"])?;
        (b["status"]["phase"] == "Failed")
            .then_some(b)
            .ok_or("not failed yet".to_string())
    });
    let failed = condition(&refused, "Failed");
    assert_eq!(failed["reason"], "DestinationNotFound", "{refused:#}");

    apply(
        ns,
        &backup_object("to-pvc", json!({"pvc": {"claimName": "backups", "path": "example"}})),
    );
    let s3 = config.host_for_pods.as_ref().map(|host| {
        let server = S3Server::start_on(host, testkit::free_port()).unwrap_or_else(|e| panic!("moto on {host}: {e}"));
        server.create_bucket("e2e");
        apply(
            ns,
            &json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
                "stringData": {"AWS_ACCESS_KEY_ID": "e2e", "AWS_SECRET_ACCESS_KEY": "e2e-secret"}
            }),
        );
        let destination = json!({"s3": {
            "bucket": "e2e", "prefix": "example/", "endpoint": server.endpoint, "credentialsSecret": "s3-creds"
        }});
        apply(ns, &backup_object("to-s3", destination));
        server
    });
    let to_pvc = wait_backup(ns, "to-pvc");
    let rev = to_pvc["revision"].as_i64().expect("revision");
    assert_eq!(
        hashkv(config, service, rev),
        to_pvc["hash"].as_u64().expect("hash"),
        "the backup's HashKV is the cluster's at its revision"
    );
    let to_s3 = s3.as_ref().map(|server| {
        let status = wait_backup(ns, "to-s3");
        let key = status["location"]
            .as_str()
            .and_then(|l| l.strip_prefix("s3://e2e/"))
            .expect("an s3://e2e/ location")
            .to_string();
        assert!(server.keys("e2e").contains(&key), "{key} not in the bucket");
        (status, key)
    });
    if s3.is_none() {
        log("S3 part skipped: E2E_HOST_FOR_PODS (an address of this machine the pods reach) is not set");
    }

    // A schedule: every minute, keeping one.
    let patch = json!({"spec": {"backup": {
        "schedule": "* * * * *", "keep": 1,
        "destination": {"pvc": {"claimName": "backups", "path": "scheduled"}}
    }}});
    kubectl(&[
        "patch",
        "-n",
        ns,
        &format!("etcdcluster/{CLUSTER}"),
        "--type",
        "merge",
        "-p",
        &patch.to_string(),
    ])
    .unwrap_or_else(|e| panic!("patch spec.backup: {e}"));
    let scheduled = wait_until("a scheduled backup succeeded", Duration::from_secs(180), || {
        let c = get_json(ns, &["etcdcluster", CLUSTER])?;
        let last = &c["status"]["backup"]["lastSuccessful"];
        match last["name"].as_str() {
            Some(n) if n.starts_with(&format!("{CLUSTER}-")) => Ok(last.clone()),
            other => Err(format!("last successful backup {other:?}")),
        }
    });
    log(&format!(
        "scheduled backup {} -> {}",
        scheduled["name"], scheduled["location"]
    ));
    kubectl(&[
        "patch",
        "-n",
        ns,
        &format!("etcdcluster/{CLUSTER}"),
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"backup":null}}"#,
    ])
    .unwrap_or_else(|e| panic!("unset spec.backup: {e}"));

    // New clusters from the on-demand backups (the PVC's newest, the S3 object by key).
    let started = Instant::now();
    apply(
        ns,
        &restored_cluster(
            config,
            "from-pvc",
            json!({"pvc": {"claimName": "backups", "path": "example/"}}),
        ),
    );
    if let Some((_, key)) = &to_s3 {
        let server = s3.as_ref().expect("server");
        let source = json!({"s3": {"bucket": "e2e", "prefix": key, "endpoint": server.endpoint, "credentialsSecret": "s3-creds"}});
        apply(ns, &restored_cluster(config, "from-s3", source));
    }
    let mut restored = vec![("from-pvc", to_pvc.clone())];
    if let Some((status, _)) = &to_s3 {
        restored.push(("from-s3", status.clone()));
    }
    for (name, backup) in restored {
        kubectl(&[
            "wait",
            "-n",
            ns,
            &format!("etcdcluster/{name}"),
            "--for=condition=Available",
            "--timeout=300s",
        ])
        .unwrap_or_else(|e| panic!("{name} did not become Available: {e}"));
        log(&format!(
            "{name} Available {:.1?} after it was applied",
            started.elapsed()
        ));
        let svc = wait_until(&format!("{name}'s client Service"), STEP, || {
            client_service_of(ns, name)
        });
        let rev = backup["revision"].as_i64().expect("revision");
        assert_eq!(
            hashkv(config, &svc, rev),
            backup["hash"].as_u64().expect("hash"),
            "{name}: the restored key space differs from the backup's"
        );
        let value = etcdctl(&config.etcdctl, ns, &svc, &["get", "e2e/key", "--print-value-only"])
            .unwrap_or_else(|e| panic!("get from {name}: {e}"));
        assert_eq!(value.trim(), ns, "{name}: the key written before the backup");
        kubectl(&[
            "delete",
            "-n",
            ns,
            &format!("etcdcluster/{name}"),
            "--wait=true",
            "--timeout=120s",
        ])
        .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    // A restore source with no backup in it: the first member never starts, and the cluster says why.
    apply(
        ns,
        &restored_cluster(
            config,
            "from-nowhere",
            json!({"pvc": {"claimName": "backups", "path": "nothing-here/"}}),
        ),
    );
    let degraded = wait_degraded(ns, "from-nowhere", "RestoreFailed");
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("backup directory /backup-source/nothing-here does not exist"),
        "{message}"
    );
    log(&format!("from-nowhere: {message}"));
    kubectl(&[
        "delete",
        "-n",
        ns,
        "etcdcluster/from-nowhere",
        "--wait=true",
        "--timeout=120s",
    ])
    .unwrap_or_else(|e| panic!("delete from-nowhere: {e}"));
}
