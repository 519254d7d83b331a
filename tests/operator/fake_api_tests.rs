//! The fake API server behaves like the real one where the operator depends on it: a real
//! `kube::Client` drives every call.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use rustcd_operator::{EtcdCluster, EtcdClusterSpec};
use serde_json::json;

use testkit::kube::fake_api::FakeApiServer;

fn config_map(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    cm.data = Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    cm
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn create_get_list_update_conflict_delete() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let created = api
        .create(&PostParams::default(), &config_map("a", &[("app", "x")], &[("k", "1")]))
        .await
        .unwrap();
    assert!(created.uid().is_some() && created.creation_timestamp().is_some());
    assert_eq!(created.namespace().as_deref(), Some("ns"));
    let rv = created.resource_version().unwrap();
    assert_eq!(
        code(api.create(&PostParams::default(), &created).await.unwrap_err()),
        409
    );
    api.create(&PostParams::default(), &config_map("b", &[("app", "y")], &[]))
        .await
        .unwrap();
    let other_ns: Api<ConfigMap> = Api::namespaced(server.client(), "other");
    other_ns
        .create(&PostParams::default(), &config_map("c", &[("app", "x")], &[]))
        .await
        .unwrap();

    let names = |list: kube::core::ObjectList<ConfigMap>| list.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    assert_eq!(names(api.list(&ListParams::default()).await.unwrap()), ["a", "b"]);
    assert_eq!(
        names(api.list(&ListParams::default().labels("app=x")).await.unwrap()),
        ["a"]
    );
    assert_eq!(
        names(api.list(&ListParams::default().labels("app!=x")).await.unwrap()),
        ["b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    let all: Api<ConfigMap> = Api::all(server.client());
    assert_eq!(
        names(all.list(&ListParams::default().labels("app=x")).await.unwrap()),
        ["a", "c"]
    );

    // Update with the current resourceVersion succeeds; with a stale one it is a 409 Conflict.
    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("k".to_string(), "2".to_string())]));
    let updated = api.replace("a", &PostParams::default(), &changed).await.unwrap();
    assert_ne!(updated.resource_version().unwrap(), rv);
    assert_eq!(
        code(api.replace("a", &PostParams::default(), &changed).await.unwrap_err()),
        409
    );
    // An update that changes nothing is no write.
    let same = api.replace("a", &PostParams::default(), &updated).await.unwrap();
    assert_eq!(same.resource_version(), updated.resource_version());

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert_eq!(code(api.get("a").await.unwrap_err()), 404);
    assert_eq!(code(api.delete("a", &DeleteParams::default()).await.unwrap_err()), 404);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    api.create(
        &PostParams::default(),
        &config_map("a", &[], &[("k", "1"), ("gone", "x")]),
    )
    .await
    .unwrap();
    let merged = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "2", "gone": null}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data, Some(BTreeMap::from([("k".to_string(), "2".to_string())])));
    // kube's typed JSON patch needs its `jsonpatch` feature; the raw request is the same HTTP call.
    let client = server.client();
    let json_patch = |ops: serde_json::Value| {
        axum::http::Request::builder()
            .method("PATCH")
            .uri("/api/v1/namespaces/ns/configmaps/a")
            .header("content-type", "application/json-patch+json")
            .body(ops.to_string().into_bytes())
            .unwrap()
    };
    let patched: ConfigMap = client
        .request(json_patch(json!([
            {"op": "test", "path": "/data/k", "value": "2"},
            {"op": "add", "path": "/data/n", "value": "3"},
            {"op": "replace", "path": "/data/k", "value": "4"}
        ])))
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "4");
    let failing = client
        .request::<ConfigMap>(json_patch(json!([{"op": "test", "path": "/data/k", "value": "nope"}])))
        .await;
    assert_eq!(code(failing.unwrap_err()), 422);
    // A merge patch carrying a stale resourceVersion is a conflict.
    let stale = json!({"metadata": {"resourceVersion": "1"}, "data": {"k": "5"}});
    assert_eq!(
        code(
            api.patch("a", &PatchParams::default(), &Patch::Merge(stale))
                .await
                .unwrap_err()
        ),
        409
    );
}

#[tokio::test]
async fn server_side_apply_owns_fields_per_manager() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    let apply = |manager: &str, force: bool| {
        let mut p = PatchParams::apply(manager);
        p.force = force;
        p
    };
    let first = config_map("a", &[("x", "1"), ("y", "1")], &[("k", "1")]);
    let created = api.patch("a", &apply("op", true), &Patch::Apply(&first)).await.unwrap();
    assert_eq!(created.labels().len(), 2);
    // Another writer adds a label with a merge patch: apply leaves it alone.
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"z": "1"}}})),
    )
    .await
    .unwrap();
    // The manager stops applying label y: the server removes it.
    let second = config_map("a", &[("x", "1")], &[("k", "1")]);
    let applied = api
        .patch("a", &apply("op", true), &Patch::Apply(&second))
        .await
        .unwrap();
    let labels: Vec<_> = applied.labels().keys().cloned().collect();
    assert_eq!(labels, ["x", "z"]);
    // Applying the same configuration again is no write.
    let again = api
        .patch("a", &apply("op", true), &Patch::Apply(&second))
        .await
        .unwrap();
    assert_eq!(again.resource_version(), applied.resource_version());
    // A second manager setting the same field differently conflicts, unless it forces.
    let rival = config_map("a", &[("x", "2")], &[]);
    assert_eq!(
        code(
            api.patch("a", &apply("rival", false), &Patch::Apply(&rival))
                .await
                .unwrap_err()
        ),
        409
    );
    let forced = api
        .patch("a", &apply("rival", true), &Patch::Apply(&rival))
        .await
        .unwrap();
    assert_eq!(forced.labels()["x"], "2");
    assert_eq!(forced.data.unwrap()["k"], "1", "fields of the first manager stay");
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let server = FakeApiServer::start().await;
    let api: Api<EtcdCluster> = Api::namespaced(server.client(), "ns");
    let mut cluster = EtcdCluster::new("demo", EtcdClusterSpec::default());
    cluster.status = Some(Default::default());
    let created = api.create(&PostParams::default(), &cluster).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.status.is_none(), "status is dropped on create");
    let status = json!({"apiVersion": "rustcd.io/v1alpha1", "kind": "EtcdCluster",
                        "spec": {"replicas": 7}, "status": {"phase": "Running", "readyReplicas": 3}});
    let written = api
        .patch_status("demo", &PatchParams::apply("op").force(), &Patch::Apply(&status))
        .await
        .unwrap();
    assert_eq!(written.status.as_ref().unwrap().ready_replicas, 3);
    assert_eq!(written.spec.replicas, 3, "the status subresource ignores spec");
    assert_eq!(
        written.metadata.generation,
        Some(1),
        "a status write does not bump the generation"
    );
    let scaled = api
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}, "status": null})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.replicas, 5);
    assert_eq!(scaled.metadata.generation, Some(2));
    assert_eq!(
        scaled.status.unwrap().ready_replicas,
        3,
        "the main resource ignores status"
    );
    let labelled = api
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        labelled.metadata.generation,
        Some(2),
        "metadata changes do not bump the generation"
    );
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_streams_live_events() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    api.create(&PostParams::default(), &config_map("before", &[("w", "1")], &[]))
        .await
        .unwrap();
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &config_map("a", &[("w", "1")], &[]))
        .await
        .unwrap();
    api.create(&PostParams::default(), &config_map("unselected", &[], &[]))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("w=1"), &rv)
        .await
        .unwrap()
        .boxed();
    let writer = api.clone();
    tokio::spawn(async move {
        writer
            .patch("a", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "v"}})))
            .await
            .unwrap();
        writer.delete("a", &DeleteParams::default()).await.unwrap();
    });
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open");
        seen.push(match event {
            WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
            WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
            WatchEvent::Deleted(o) => format!("DELETED {}", o.name_any()),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(seen, ["ADDED a", "MODIFIED a", "DELETED a"]);
}

#[tokio::test]
async fn kube_runtime_watcher_lists_then_watches() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "ns");
    api.create(&PostParams::default(), &config_map("old", &[], &[]))
        .await
        .unwrap();
    let mut events = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    let mut initial = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::InitApply(o) => initial.push(o.name_any()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["old"]);
    api.create(&PostParams::default(), &config_map("new", &[], &[]))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .expect("event in time")
        .unwrap()
        .unwrap();
    assert!(matches!(next, watcher::Event::Apply(o) if o.name_any() == "new"));
}

#[tokio::test]
async fn bound_pods_are_deleted_gracefully() {
    use k8s_openapi::api::core::v1::{Pod, PodSpec};
    let server = FakeApiServer::start().await;
    let pods: Api<Pod> = Api::namespaced(server.client(), "ns");
    let pod = |name: &str, node: Option<&str>| Pod {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(str::to_string),
            ..Default::default()
        }),
        status: None,
    };
    pods.create(&PostParams::default(), &pod("bound", Some("node")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("pending", None))
        .await
        .unwrap();
    pods.delete("pending", &DeleteParams::default()).await.unwrap();
    assert!(
        pods.get_opt("pending").await.unwrap().is_none(),
        "an unscheduled pod goes at once"
    );
    pods.delete("bound", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("bound").await.unwrap();
    assert!(
        terminating.metadata.deletion_timestamp.is_some(),
        "a bound pod waits for its kubelet"
    );
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    pods.delete("bound", &now).await.unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());
}
