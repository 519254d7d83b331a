//! The full-loop harness: fake API server + in-process operator (+ fake kubelet and Docker members).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use rustcd_operator::backup::run_backups;
use rustcd_operator::metrics::OperatorMetrics;
use rustcd_operator::spec::StorageSpec;
use rustcd_operator::{run, Context, EtcdCluster, EtcdClusterSpec, EtcdClusterStatus, Settings};
use tokio::task::JoinHandle;

use testkit::kube::fake_api::FakeApiServer;
use testkit::kube::kubelet::FakeKubelet;
use testkit::kube::sandbox::{self as docker, Sandbox};

pub const NS: &str = "ns";

pub struct Harness {
    _server: FakeApiServer,
    pub client: Client,
    pub image: String,
    operator: Option<JoinHandle<()>>,
    // Dropped in this order: kubelet stops creating containers, then the sandbox removes them.
    pub kubelet: Option<FakeKubelet>,
    pub sandbox: Option<Sandbox>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.crash_operator();
        self.kubelet.take();
        self.sandbox.take();
    }
}

impl Harness {
    /// API server only: pods never start.
    pub async fn without_pods() -> Harness {
        let server = FakeApiServer::start().await;
        Harness {
            client: server.client(),
            _server: server,
            image: "rustcd:test".into(),
            operator: None,
            kubelet: None,
            sandbox: None,
        }
    }

    /// API server, Docker sandbox and fake kubelet; `None` (after printing why) without Docker.
    pub async fn with_members(test: &str) -> Option<Harness> {
        if let Some(reason) = docker::unavailable() {
            eprintln!("SKIP: {reason}");
            return None;
        }
        let mut h = Harness::without_pods().await;
        let test = test.to_string();
        let sandbox = tokio::task::spawn_blocking(move || Sandbox::create(&test))
            .await
            .expect("sandbox");
        h.image = sandbox.image.clone();
        h.kubelet = Some(FakeKubelet::start(h.client.clone(), NS, &sandbox.tag, &sandbox.label()));
        h.sandbox = Some(sandbox);
        Some(h)
    }

    /// Starts an operator (a new process would do the same: nothing survives but the API's state).
    pub fn start_operator(&mut self) {
        assert!(self.operator.is_none(), "one operator at a time");
        let settings = Settings {
            busy_requeue: Duration::from_millis(300),
            idle_requeue: Duration::from_secs(2),
            error_requeue: Duration::from_millis(500),
            instance: Some("test-operator".into()),
            ..Settings::new(&self.image)
        };
        let ctx = Arc::new(Context::new(
            self.client.clone(),
            settings,
            OperatorMetrics::new().expect("metrics"),
        ));
        self.operator = Some(tokio::spawn(async move {
            tokio::join!(
                run(ctx.clone(), std::future::pending()),
                run_backups(ctx, std::future::pending())
            );
        }));
    }

    /// Stops the operator abruptly, wherever it is (a crash: reconciles in flight are dropped).
    pub fn crash_operator(&mut self) {
        if let Some(task) = self.operator.take() {
            task.abort();
        }
    }

    pub fn clusters(&self) -> Api<EtcdCluster> {
        Api::namespaced(self.client.clone(), NS)
    }

    pub async fn create_cluster(&self, name: &str, replicas: i32, storage: bool) -> EtcdCluster {
        let spec = EtcdClusterSpec {
            replicas,
            storage: storage.then(|| StorageSpec {
                size: k8s_openapi::apimachinery::pkg::api::resource::Quantity("1Gi".into()),
                storage_class_name: None,
            }),
            ..EtcdClusterSpec::default()
        };
        self.clusters()
            .create(&PostParams::default(), &EtcdCluster::new(name, spec))
            .await
            .expect("create EtcdCluster")
    }

    /// Sets `spec.replicas` of cluster `name`.
    pub async fn scale(&self, name: &str, replicas: i32) {
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        self.clusters()
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(patch),
            )
            .await
            .expect("scale");
    }

    /// Waits until the cluster's status satisfies `done`; panics with the last status after `within`.
    pub async fn wait_status(
        &self,
        name: &str,
        within: Duration,
        done: impl Fn(&EtcdClusterStatus) -> bool,
    ) -> EtcdCluster {
        let api = self.clusters();
        let done = &done;
        let found = eventually(within, || {
            let api = api.clone();
            async move {
                let cluster = api.get(name).await.ok()?;
                done(cluster.status.as_ref()?).then_some(cluster)
            }
        })
        .await;
        match found {
            Some(cluster) => cluster,
            None => {
                let last = api.get(name).await.ok().and_then(|c| c.status);
                panic!("status not reached in {within:?}; last: {last:#?}")
            }
        }
    }

    /// How often the operator reported each executed step (Normal Events by reason; an Event repeated
    /// within the recorder's cache window is one object with a `series.count`, as on a real cluster).
    pub async fn event_counts(&self) -> BTreeMap<String, i32> {
        let mut counts = BTreeMap::new();
        for e in self.events_of_type("Normal").await {
            let n = e.series.map_or(1, |s| s.count);
            *counts.entry(e.reason.unwrap_or_default()).or_insert(0) += n;
        }
        counts
    }

    /// Notes of the Warning Events (failed steps).
    pub async fn warnings(&self) -> Vec<String> {
        self.events_of_type("Warning")
            .await
            .into_iter()
            .map(|e| e.note.unwrap_or_default())
            .collect()
    }

    async fn events_of_type(&self, type_: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), NS);
        let list = events.list(&ListParams::default()).await.expect("events").items;
        list.into_iter().filter(|e| e.type_.as_deref() == Some(type_)).collect()
    }

    /// Occurrences of Event `reason`.
    pub async fn events_of(&self, reason: &str) -> i32 {
        self.event_counts().await.get(reason).copied().unwrap_or(0)
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `within`.
pub async fn eventually<T, F, Fut>(within: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
