//! The operator scaling a real rustcd cluster 1 -> 3 -> 5 -> 3 while a client writes through the
//! member that stays throughout. Every acknowledged write must be present at the end, and no write
//! may fail: each step keeps a quorum of healthy voters (the planner's rule, checked exhaustively by
//! its property tests), and leadership is moved off a member before it is removed.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;

use crate::harness::{Harness, NS};
use crate::loop_tests::{running_demo, running_with};

/// Puts `w<n>` keys through `endpoint` until stopped, recording the acknowledged ones and
/// counting failures (a failed put is retried with a new key).
async fn write_until(endpoint: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>, failed: Arc<AtomicU64>) {
    let opts = ConnectOptions::new()
        .with_timeout(Duration::from_secs(3))
        .with_connect_timeout(Duration::from_secs(2));
    let mut client: Option<Client> = None;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = client.as_mut() else {
            client = Client::connect([endpoint.as_str()], Some(opts.clone())).await.ok();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let key = format!("w{n:06}");
        n += 1;
        match c.put(key.clone(), "x", None).await {
            Ok(_) => acked.lock().expect("lock").push(key),
            Err(_) => {
                failed.fetch_add(1, Ordering::Relaxed);
                client = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn pod_ip(h: &Harness, pod: &str) -> String {
    let pods = Api::<Pod>::namespaced(h.client.clone(), NS);
    pods.get(pod)
        .await
        .ok()
        .and_then(|p| p.status)
        .and_then(|s| s.pod_ip)
        .unwrap_or_else(|| panic!("{pod} has no pod IP"))
}

#[tokio::test]
async fn scale_1_3_5_3_while_a_client_writes_loses_nothing() {
    let Some((h, _)) = running_demo("scale135", 1).await else {
        return;
    };
    let endpoint = format!("http://{}:2379", pod_ip(&h, "demo-0").await);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failed = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(write_until(
        endpoint.clone(),
        stop.clone(),
        acked.clone(),
        failed.clone(),
    ));
    let start = std::time::Instant::now();
    for voters in [3usize, 5, 3] {
        h.scale("demo", voters as i32).await;
        h.wait_status("demo", Duration::from_secs(180), running_with(voters))
            .await;
        eprintln!(
            "scaled to {voters} after {:?}: {} writes acknowledged, {} failed so far",
            start.elapsed(),
            acked.lock().expect("lock").len(),
            failed.load(Ordering::Relaxed)
        );
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    assert_eq!(failed.load(Ordering::Relaxed), 0, "writes failed while scaling");
    // A step the server refused (e.g. etcd's "unhealthy cluster" while a new peer has not been
    // connected for 5 s) is a Warning event and is retried; it is reported, not an error.
    eprintln!("warnings during scaling: {:?}", h.warnings().await);

    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 50, "too few writes to mean anything: {}", acked.len());
    let mut c = Client::connect([endpoint.as_str()], None).await.expect("connect");
    let resp = c
        .get("w", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .expect("read back");
    let present: HashSet<String> = resp
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
}
