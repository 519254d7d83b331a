//! The fake API server's storage: objects by resource, namespace and name, one global resourceVersion
//! counter (as etcd's revision backs the real one), an event log for watches, and the rules the real
//! registry applies on writes: uid/creationTimestamp/generation on create, 409 on a stale
//! resourceVersion, generation bumped only when something besides metadata and status changed, status
//! changes only through the status subresource, and no write (no new resourceVersion, no event) when
//! an update changes nothing; graceful deletion of pods that are bound to a node.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use super::patch::PatchError;

/// A resource collection: `apiVersion` ("v1", "apps/v1", ...) and plural name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Resource {
    pub api_version: String,
    pub plural: String,
}

/// Resources whose `.status` is only written through `/status`.
const STATUS_SUBRESOURCE: &[&str] = &[
    "etcdclusters",
    "pods",
    "statefulsets",
    "services",
    "poddisruptionbudgets",
    "persistentvolumeclaims",
    "certificates",
    "etcdbackups",
    "jobs",
];

impl Resource {
    pub fn has_status_subresource(&self) -> bool {
        STATUS_SUBRESOURCE.contains(&self.plural.as_str())
    }
}

/// Key of one object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub resource: Resource,
    pub namespace: String,
    pub name: String,
}

/// One stored object and, per subresource ("" or "status"), each apply manager's last configuration.
#[derive(Clone, Debug)]
struct Stored {
    object: Value,
    managers: BTreeMap<String, BTreeMap<String, Value>>,
}

/// A watch event as the API server streams it.
#[derive(Clone, Debug)]
pub struct WatchEvent {
    pub resource_version: u64,
    pub key: Key,
    pub kind: &'static str,
    pub object: Value,
}

impl WatchEvent {
    pub fn to_line(&self) -> String {
        format!("{}\n", json!({"type": self.kind, "object": self.object}))
    }
}

/// Everything the fake stores.
pub struct Store {
    objects: BTreeMap<Key, Stored>,
    revision: u64,
    uids: u64,
    log: Vec<WatchEvent>,
    events: broadcast::Sender<WatchEvent>,
}

pub fn error(code: u16, reason: &'static str, message: impl Into<String>) -> PatchError {
    PatchError {
        code,
        reason,
        message: message.into(),
    }
}

/// 404 for `key`, worded as the API server words it.
pub fn not_found(key: &Key) -> PatchError {
    error(
        404,
        "NotFound",
        format!("{} {:?} not found", key.resource.plural, key.name),
    )
}

fn now() -> String {
    k8s_openapi::chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The object without the fields that do not count as a change of its spec.
fn spec_part(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Value::Object(map) = &mut rest {
        map.remove("metadata");
        map.remove("status");
    }
    rest
}

/// The object without the fields the server maintains (for "did anything change").
fn content(object: &Value) -> Value {
    let mut rest = object.clone();
    if let Some(Value::Object(meta)) = rest.get_mut("metadata") {
        meta.remove("resourceVersion");
        meta.remove("generation");
        meta.remove("managedFields");
    }
    rest
}

impl Store {
    pub fn new() -> Store {
        Store {
            objects: BTreeMap::new(),
            revision: 1,
            uids: 0,
            log: Vec::new(),
            events: broadcast::channel(4096).0,
        }
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    /// Logged events after `revision`.
    pub fn events_after(&self, revision: u64) -> Vec<WatchEvent> {
        self.log
            .iter()
            .filter(|e| e.resource_version > revision)
            .cloned()
            .collect()
    }

    fn record(&mut self, key: Key, kind: &'static str, object: Value) {
        let event = WatchEvent {
            resource_version: self.revision,
            key,
            kind,
            object,
        };
        self.log.push(event.clone());
        // Nobody listening is fine.
        let _ = self.events.send(event);
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        self.objects.get(key).map(|s| s.object.clone())
    }

    /// Objects of `resource`, in `namespace` if given.
    pub fn list(&self, resource: &Resource, namespace: Option<&str>) -> Vec<(Key, Value)> {
        self.objects
            .iter()
            .filter(|(k, _)| &k.resource == resource && namespace.is_none_or(|ns| k.namespace == ns))
            .map(|(k, s)| (k.clone(), s.object.clone()))
            .collect()
    }

    pub fn create(&mut self, key: Key, mut object: Value) -> Result<Value, PatchError> {
        if self.objects.contains_key(&key) {
            return Err(error(
                409,
                "AlreadyExists",
                format!("{} {:?} already exists", key.resource.plural, key.name),
            ));
        }
        self.revision += 1;
        self.uids += 1;
        if key.resource.has_status_subresource() {
            if let Value::Object(map) = &mut object {
                map.remove("status");
            }
        }
        let meta = object
            .as_object_mut()
            .ok_or_else(|| error(400, "BadRequest", "object expected"))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        merge_meta(
            meta,
            json!({
                "name": key.name,
                "uid": format!("00000000-0000-4000-8000-{:012}", self.uids),
                "creationTimestamp": now(),
                "resourceVersion": self.revision.to_string(),
                "generation": 1,
            }),
        );
        if !key.namespace.is_empty() {
            meta["namespace"] = json!(key.namespace);
        }
        self.objects.insert(
            key.clone(),
            Stored {
                object: object.clone(),
                managers: BTreeMap::new(),
            },
        );
        self.record(key, "ADDED", object.clone());
        Ok(object)
    }

    /// Writes `new` over the stored object, as an update of `subresource` ("" or "status"): checks the
    /// `resourceVersion` precondition `expected_rv`, keeps what the subresource may not change, bumps the
    /// generation on spec changes, and skips the write when nothing changed.
    pub fn update(
        &mut self,
        key: &Key,
        mut new: Value,
        subresource: &str,
        expected_rv: Option<&str>,
    ) -> Result<Value, PatchError> {
        let stored = self.objects.get(key).ok_or_else(|| not_found(key))?;
        let old = stored.object.clone();
        let current_rv = old["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(rv) = expected_rv.filter(|rv| !rv.is_empty()) {
            if rv != current_rv {
                return Err(error(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} {:?}: the object has been modified; please apply your changes to the latest version and try again",
                        key.resource.plural, key.name
                    ),
                ));
            }
        }
        if subresource == "status" {
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            new = merged;
        } else if key.resource.has_status_subresource() {
            match old.get("status") {
                Some(status) => new["status"] = status.clone(),
                None => drop(new.as_object_mut().map(|m| m.remove("status"))),
            }
        }
        // Identity fields are the server's.
        for field in ["name", "namespace", "uid", "creationTimestamp"] {
            match old["metadata"].get(field) {
                Some(v) => new["metadata"][field] = v.clone(),
                None => drop(new["metadata"].as_object_mut().map(|m| m.remove(field))),
            }
        }
        if content(&new) == content(&old) {
            return Ok(old);
        }
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bump = i64::from(spec_part(&new) != spec_part(&old));
        self.revision += 1;
        new["metadata"]["generation"] = json!(generation + bump);
        new["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        if let Some(stored) = self.objects.get_mut(key) {
            stored.object = new.clone();
        }
        self.record(key.clone(), "MODIFIED", new.clone());
        Ok(new)
    }

    /// The apply managers of `key`'s `subresource`, for a patch to update.
    pub fn managers(&self, key: &Key, subresource: &str) -> BTreeMap<String, Value> {
        self.objects
            .get(key)
            .and_then(|s| s.managers.get(subresource).cloned())
            .unwrap_or_default()
    }

    pub fn set_managers(&mut self, key: &Key, subresource: &str, managers: BTreeMap<String, Value>) {
        if let Some(stored) = self.objects.get_mut(key) {
            stored.managers.insert(subresource.to_string(), managers);
        }
    }

    /// Deletes `key`. A pod bound to a node is deleted gracefully unless `grace_seconds` is 0: it gets
    /// a `deletionTimestamp` and stays until its kubelet (having stopped its containers) deletes it
    /// again with grace 0, as on a real cluster.
    pub fn delete(&mut self, key: &Key, grace_seconds: Option<u64>) -> Result<Value, PatchError> {
        let current = self.objects.get(key).ok_or_else(|| not_found(key))?.object.clone();
        let bound = current["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        if key.resource.plural == "pods" && bound && grace_seconds != Some(0) {
            if current["metadata"].get("deletionTimestamp").is_some() {
                return Ok(current);
            }
            let mut terminating = current;
            terminating["metadata"]["deletionTimestamp"] = json!(now());
            terminating["metadata"]["deletionGracePeriodSeconds"] = json!(grace_seconds.unwrap_or(30));
            self.revision += 1;
            terminating["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            if let Some(stored) = self.objects.get_mut(key) {
                stored.object = terminating.clone();
            }
            self.record(key.clone(), "MODIFIED", terminating.clone());
            return Ok(terminating);
        }
        let stored = self.objects.remove(key).ok_or_else(|| not_found(key))?;
        self.revision += 1;
        let mut object = stored.object;
        object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
        self.record(key.clone(), "DELETED", object.clone());
        Ok(object)
    }
}

fn merge_meta(meta: &mut Value, server: Value) {
    if let (Value::Object(meta), Value::Object(server)) = (meta, server) {
        for (k, v) in server {
            meta.insert(k, v);
        }
    }
}
