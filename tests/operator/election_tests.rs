//! Lease leader election against the fake API server: exclusivity, expiry and takeover, release, and a
//! holder noticing it was deposed.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::PostParams;
use kube::Api;
use rustcd_operator::leader_election::{ElectionConfig, LeaderElector};

use testkit::kube::fake_api::FakeApiServer;

fn config(lease: &str, identity: &str) -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(700),
        retry_period: Duration::from_millis(100),
        ..ElectionConfig::new("ns", lease, identity)
    }
}

async fn holder(api: &Api<Lease>, name: &str) -> (Option<String>, Option<i32>) {
    let spec = api.get(name).await.unwrap().spec.unwrap_or_default();
    (spec.holder_identity, spec.lease_transitions)
}

#[tokio::test]
async fn one_holder_at_a_time_until_the_lease_expires() {
    let server = FakeApiServer::start().await;
    let a = LeaderElector::new(server.client(), config("op", "a"));
    let b = LeaderElector::new(server.client(), config("op", "b"));
    let leases: Api<Lease> = Api::namespaced(server.client(), "ns");
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    assert_eq!(holder(&leases, "op").await, (Some("a".into()), Some(0)));
    // a stops renewing: b takes over only after the lease duration.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!b.try_acquire_or_renew().await.unwrap());
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(b.try_acquire_or_renew().await.unwrap());
    assert_eq!(holder(&leases, "op").await, (Some("b".into()), Some(1)));
    assert!(!a.try_acquire_or_renew().await.unwrap(), "the old holder follows now");
}

#[tokio::test]
async fn racing_candidates_never_both_win() {
    let server = FakeApiServer::start().await;
    for round in 0..10 {
        let name = format!("race-{round}");
        let a = LeaderElector::new(server.client(), config(&name, "a"));
        let b = LeaderElector::new(server.client(), config(&name, "b"));
        let (won_a, won_b) = tokio::join!(a.try_acquire_or_renew(), b.try_acquire_or_renew());
        let (won_a, won_b) = (won_a.unwrap(), won_b.unwrap());
        assert!(won_a ^ won_b, "round {round}: a={won_a} b={won_b}");
    }
}

#[tokio::test]
async fn release_hands_over_at_once() {
    let server = FakeApiServer::start().await;
    let a = LeaderElector::new(server.client(), config("op", "a"));
    let b = LeaderElector::new(server.client(), config("op", "b"));
    a.acquire().await;
    b.release().await.unwrap();
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b's release of a's lease changes nothing"
    );
    a.release().await.unwrap();
    assert!(
        b.try_acquire_or_renew().await.unwrap(),
        "no wait for the expiry after a release"
    );
}

#[tokio::test]
async fn a_deposed_holder_stops_holding() {
    let server = FakeApiServer::start().await;
    let a = LeaderElector::new(server.client(), config("op", "a"));
    a.acquire().await;
    let leases: Api<Lease> = Api::namespaced(server.client(), "ns");
    let writer = leases.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut lease = writer.get("op").await.unwrap();
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = Some("intruder".into());
        }
        writer.replace("op", &PostParams::default(), &lease).await.unwrap();
    });
    tokio::time::timeout(Duration::from_secs(5), a.hold())
        .await
        .expect("hold() returns once another replica holds the lease");
    assert_eq!(holder(&leases, "op").await.0.as_deref(), Some("intruder"));
}

#[tokio::test]
async fn an_unreachable_api_server_deposes_the_holder_within_the_renew_deadline() {
    let server = FakeApiServer::start().await;
    let a = LeaderElector::new(server.client(), config("op", "a"));
    a.acquire().await;
    server.stop();
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), a.hold())
        .await
        .expect("hold() gives up when renewals keep failing");
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "not before the renew deadline"
    );
}
