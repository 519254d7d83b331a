//! A small, faithful Kubernetes API server on 127.0.0.1 for the operator's tests: a real `kube::Client`
//! talks HTTP to it. It serves any namespaced resource generically (core `/api/v1/...` and
//! `/apis/<group>/<version>/...` paths): create, get, list and watch (label and field selectors,
//! resourceVersion replay), update with resourceVersion preconditions (409 Conflict), merge, JSON and
//! (as merge) strategic-merge patches, server-side apply with field managers and `force`, the status
//! subresource, delete (graceful for pods bound to a node: they stay, with a `deletionTimestamp`, until
//! their kubelet deletes them with grace 0). Not implemented: discovery, admission, defaulting, garbage
//! collection, `managedFields` in responses, bookmarks.

mod patch;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

pub use patch::PatchError;
use store::{error, not_found, Key, Resource, Store};

/// A running fake API server; stops when dropped.
pub struct FakeApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> FakeApiServer {
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            down: AtomicBool::new(false),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake API server");
        let addr = listener.local_addr().expect("local addr");
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeApiServer { addr, shared, task }
    }

    /// From now on every request fails with 503 (an API server that is down; open connections stay
    /// open, as they would behind a load balancer).
    pub fn stop(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("url");
        kube::Client::try_from(kube::Config::new(url)).expect("kube client")
    }
}

/// What the handlers share.
struct Shared {
    store: Mutex<Store>,
    down: AtomicBool,
}

/// A parsed request path.
#[derive(Debug)]
struct Target {
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: String,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (version.to_string(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, ""),
        [plural, name] => (plural, Some(name.to_string()), ""),
        [plural, name, sub] => (plural, Some(name.to_string()), *sub),
        _ => return None,
    };
    Some(Target {
        resource: Resource {
            api_version,
            plural: plural.to_string(),
        },
        namespace,
        name,
        subresource: subresource.to_string(),
    })
}

fn query(uri: &Uri) -> BTreeMap<String, String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn status_response(e: &PatchError) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": e.message, "reason": e.reason, "code": e.code,
    });
    let code = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, [("content-type", "application/json")], body.to_string()).into_response()
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, [("content-type", "application/json")], value.to_string()).into_response()
}

/// One `key=value`, `key==value`, `key!=value`, `key` or `!key` requirement.
fn matches_labels(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|r| !r.is_empty()).all(|req| {
        let label = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = req.split_once("!=") {
            label(k) != Some(v.trim())
        } else if let Some((k, v)) = req.split_once("==").or_else(|| req.split_once('=')) {
            label(k) == Some(v.trim())
        } else if let Some(k) = req.strip_prefix('!') {
            label(k).is_none()
        } else {
            label(req).is_some()
        }
    })
}

fn matches_fields(selector: &str, object: &Value) -> bool {
    selector
        .split(',')
        .filter(|r| !r.is_empty())
        .all(|req| match req.split_once('=') {
            Some((path, value)) => {
                let pointer = format!("/{}", path.trim().replace('.', "/"));
                let actual = object.pointer(&pointer).and_then(Value::as_str).unwrap_or("");
                actual == value.trim_start_matches('=')
            }
            None => true,
        })
}

struct Filter {
    labels: String,
    fields: String,
}

impl Filter {
    fn of(q: &BTreeMap<String, String>) -> Filter {
        Filter {
            labels: q.get("labelSelector").cloned().unwrap_or_default(),
            fields: q.get("fieldSelector").cloned().unwrap_or_default(),
        }
    }

    fn matches(&self, object: &Value) -> bool {
        matches_labels(&self.labels, &object["metadata"]["labels"]) && matches_fields(&self.fields, object)
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        return status_response(&error(503, "ServiceUnavailable", "the API server is down"));
    }
    let Some(target) = parse_path(uri.path()) else {
        return status_response(&error(404, "NotFound", format!("no route for {}", uri.path())));
    };
    let q = query(&uri);
    if method == Method::GET && target.name.is_none() && q.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch(&shared.store, target, &q);
    }
    let result = {
        let mut store = shared.store.lock();
        dispatch(&mut store, &method, &target, &q, &headers, &body)
    };
    match result {
        Ok((code, value)) => json_response(code, &value),
        Err(e) => status_response(&e),
    }
}

fn key_of(target: &Target, name: &str) -> Key {
    Key {
        resource: target.resource.clone(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.to_string(),
    }
}

fn parse_body(body: &Bytes) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| error(400, "BadRequest", format!("body is not JSON: {e}")))
}

fn dispatch(
    store: &mut Store,
    method: &Method,
    target: &Target,
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(StatusCode, Value), PatchError> {
    match (method, &target.name) {
        (&Method::GET, None) => {
            let filter = Filter::of(q);
            let items: Vec<Value> = store
                .list(&target.resource, target.namespace.as_deref())
                .into_iter()
                .map(|(_, o)| o)
                .filter(|o| filter.matches(o))
                .collect();
            Ok((
                StatusCode::OK,
                json!({"apiVersion": target.resource.api_version, "kind": "List",
                       "metadata": {"resourceVersion": store.revision().to_string()}, "items": items}),
            ))
        }
        (&Method::GET, Some(name)) => {
            let key = key_of(target, name);
            store
                .get(&key)
                .map(|o| (StatusCode::OK, o))
                .ok_or_else(|| not_found(&key))
        }
        (&Method::POST, None) => {
            let object = parse_body(body)?;
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if name.is_empty() {
                return Err(error(422, "Invalid", "metadata.name: Required value"));
            }
            store
                .create(key_of(target, &name), object)
                .map(|o| (StatusCode::CREATED, o))
        }
        (&Method::PUT, Some(name)) => {
            let object = parse_body(body)?;
            let rv = object["metadata"]["resourceVersion"].as_str().map(str::to_string);
            store
                .update(&key_of(target, name), object, &target.subresource, rv.as_deref())
                .map(|o| (StatusCode::OK, o))
        }
        (&Method::PATCH, Some(name)) => patch_object(store, target, name, q, headers, body),
        (&Method::DELETE, Some(name)) => {
            // DeleteOptions come in the body (kube) or the query (kubectl).
            let options: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let grace = options["gracePeriodSeconds"]
                .as_u64()
                .or_else(|| q.get("gracePeriodSeconds").and_then(|g| g.parse().ok()));
            store.delete(&key_of(target, name), grace).map(|o| (StatusCode::OK, o))
        }
        _ => Err(error(405, "MethodNotAllowed", format!("{method} not supported here"))),
    }
}

fn patch_object(
    store: &mut Store,
    target: &Target,
    name: &str,
    q: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(StatusCode, Value), PatchError> {
    let key = key_of(target, name);
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();
    let patch = parse_body(body)?;
    let existing = store.get(&key);
    if content_type == "application/apply-patch+yaml" {
        let manager = q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .ok_or_else(|| error(422, "Invalid", "fieldManager is required for apply patch"))?;
        let force = q.get("force").is_some_and(|f| f == "true");
        let created = existing.is_none();
        let mut object = match existing {
            Some(o) => o,
            None if target.subresource.is_empty() => {
                let mut skeleton = json!({"apiVersion": patch["apiVersion"], "kind": patch["kind"], "metadata": {}});
                skeleton["metadata"]["name"] = json!(name);
                store.create(key.clone(), skeleton)?
            }
            None => return Err(not_found(&key)),
        };
        let mut managers = store.managers(&key, &target.subresource);
        patch::server_side_apply(&mut object, &patch, manager, force, &mut managers)?;
        store.set_managers(&key, &target.subresource, managers);
        let updated = store.update(&key, object, &target.subresource, None)?;
        return Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, updated));
    }
    let mut object = existing.ok_or_else(|| not_found(&key))?;
    match content_type.as_str() {
        "application/json-patch+json" => patch::json_patch(&mut object, &patch)?,
        "application/merge-patch+json" | "application/strategic-merge-patch+json" => {
            patch::merge_patch(&mut object, &patch)
        }
        other => return Err(error(415, "UnsupportedMediaType", format!("patch type {other:?}"))),
    }
    let precondition = patch["metadata"]["resourceVersion"].as_str().map(str::to_string);
    store
        .update(&key, object, &target.subresource, precondition.as_deref())
        .map(|o| (StatusCode::OK, o))
}

/// Streams watch events: a replay of the log after `resourceVersion` (or ADDED for every current object
/// when it is absent or "0"), then live events, each a JSON line.
fn watch(store: &Mutex<Store>, target: Target, q: &BTreeMap<String, String>) -> Response {
    let filter = Filter::of(q);
    let since: Option<u64> = q
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .filter(|rv| *rv > 0);
    let (backlog, live, last) = {
        let store = store.lock();
        let live = store.subscribe();
        let backlog: Vec<String> = match since {
            Some(rv) => store
                .events_after(rv)
                .into_iter()
                .filter(|e| e.key.resource == target.resource)
                .filter(|e| target.namespace.as_ref().is_none_or(|ns| &e.key.namespace == ns))
                .filter(|e| filter.matches(&e.object))
                .map(|e| e.to_line())
                .collect(),
            None => store
                .list(&target.resource, target.namespace.as_deref())
                .into_iter()
                .filter(|(_, o)| filter.matches(o))
                .map(|(_, o)| format!("{}\n", json!({"type": "ADDED", "object": o})))
                .collect(),
        };
        (backlog, live, store.revision())
    };
    let resource = target.resource.clone();
    let namespace = target.namespace.clone();
    let live_lines = futures::stream::unfold((live, last), move |(mut live, mut last)| {
        let resource = resource.clone();
        let namespace = namespace.clone();
        let labels = filter.labels.clone();
        let fields = filter.fields.clone();
        async move {
            let filter = Filter { labels, fields };
            loop {
                match live.recv().await {
                    Ok(event) => {
                        if event.resource_version <= last || event.key.resource != resource {
                            continue;
                        }
                        last = event.resource_version;
                        if namespace.as_ref().is_some_and(|ns| &event.key.namespace != ns)
                            || !filter.matches(&event.object)
                        {
                            continue;
                        }
                        return Some((event.to_line(), (live, last)));
                    }
                    // A slow watcher lost events: end the stream, the client re-lists.
                    Err(_) => return None,
                }
            }
        }
    });
    let events = futures::stream::iter(backlog)
        .chain(live_lines)
        .map(|line| Ok::<_, std::io::Error>(Bytes::from(line)));
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(events))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
