//! The three patch kinds on plain JSON: RFC 7386 merge patch, RFC 6902 JSON patch, and the part of
//! server-side apply the fake needs (field ownership per manager, removal of fields a manager stopped
//! applying, conflicts between managers unless forced). Lists are atomic in apply (no merge keys): the
//! operator always applies whole lists.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A patch that cannot be applied, with the HTTP status it maps to.
#[derive(Debug)]
pub struct PatchError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> PatchError {
    PatchError {
        code: 422,
        reason: "Invalid",
        message: message.into(),
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(map) = target else { return };
    for (key, value) in patch {
        if value.is_null() {
            map.remove(key);
        } else {
            merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), PatchError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| invalid(format!("bad JSON pointer {path:?}")))?;
    Ok((parent.to_string(), unescape(last)))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => {
            map.insert(last, value);
            Ok(())
        }
        Some(Value::Array(list)) => {
            let index = if last == "-" {
                list.len()
            } else {
                last.parse().map_err(|_| invalid(format!("bad index in {path}")))?
            };
            if index > list.len() {
                return Err(invalid(format!("index out of range in {path}")));
            }
            list.insert(index, value);
            Ok(())
        }
        _ => Err(invalid(format!("no parent for {path}"))),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let (parent, last) = split_pointer(path)?;
    let missing = || invalid(format!("nothing at {path}"));
    match doc.pointer_mut(&parent) {
        Some(Value::Object(map)) => map.remove(&last).ok_or_else(missing),
        Some(Value::Array(list)) => {
            let index: usize = last.parse().map_err(|_| missing())?;
            if index < list.len() {
                Ok(list.remove(index))
            } else {
                Err(missing())
            }
        }
        _ => Err(missing()),
    }
}

/// RFC 6902 operations: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), PatchError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| invalid("a JSON patch is a list of operations"))?;
    for op in ops {
        let path = op["path"].as_str().ok_or_else(|| invalid("operation without path"))?;
        let from = || op["from"].as_str().ok_or_else(|| invalid("operation without from"));
        match op["op"].as_str() {
            Some("add") => add(doc, path, op["value"].clone())?,
            Some("remove") => drop(remove(doc, path)?),
            Some("replace") => {
                remove(doc, path)?;
                add(doc, path, op["value"].clone())?;
            }
            Some("move") => {
                let value = remove(doc, from()?)?;
                add(doc, path, value)?;
            }
            Some("copy") => {
                let value = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| invalid("nothing to copy"))?;
                add(doc, path, value)?;
            }
            Some("test") => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(invalid(format!("test failed at {path}")));
                }
            }
            other => return Err(invalid(format!("unknown operation {other:?}"))),
        }
    }
    Ok(())
}

/// Leaf paths of an applied configuration (objects recurse; lists and scalars are leaves).
fn leaves(value: &Value, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ => out.push((prefix.clone(), value.clone())),
    }
}

fn leaf_paths(config: &Value) -> Vec<(Vec<String>, Value)> {
    let mut out = Vec::new();
    leaves(config, &mut Vec::new(), &mut out);
    out
}

fn get<'a>(value: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(key))
}

fn remove_path(value: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = value;
    for key in parents {
        match node.get_mut(key) {
            Some(child) => node = child,
            None => return,
        }
    }
    if let Value::Object(map) = node {
        map.remove(last);
    }
}

/// The applied configuration as ownership is tracked: without the identity and bookkeeping fields.
pub fn owned_part(config: &Value) -> Value {
    let mut owned = config.clone();
    if let Value::Object(map) = &mut owned {
        map.remove("apiVersion");
        map.remove("kind");
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            for key in [
                "name",
                "namespace",
                "resourceVersion",
                "uid",
                "managedFields",
                "creationTimestamp",
            ] {
                meta.remove(key);
            }
        }
    }
    owned
}

/// Server-side apply of `config` by `manager` onto `object`, given every manager's previously applied
/// configuration (`managers`, updated in place). Fields `manager` applied before but no longer applies
/// are removed unless another manager applies them too; a field another manager applies with a different
/// value is a conflict unless `force`.
pub fn server_side_apply(
    object: &mut Value,
    config: &Value,
    manager: &str,
    force: bool,
    managers: &mut BTreeMap<String, Value>,
) -> Result<(), PatchError> {
    let owned = owned_part(config);
    let new_leaves = leaf_paths(&owned);
    if !force {
        for (other, applied) in managers.iter().filter(|(m, _)| m.as_str() != manager) {
            for (path, value) in &new_leaves {
                if get(applied, path).is_some_and(|theirs| theirs != value) {
                    return Err(PatchError {
                        code: 409,
                        reason: "Conflict",
                        message: format!(
                            "Apply failed with 1 conflict: conflict with \"{other}\": .{}",
                            path.join(".")
                        ),
                    });
                }
            }
        }
    }
    if let Some(previous) = managers.get(manager) {
        for (path, _) in leaf_paths(previous) {
            let still_applied = get(&owned, &path).is_some();
            let shared = managers
                .iter()
                .any(|(m, applied)| m.as_str() != manager && get(applied, &path).is_some());
            if !still_applied && !shared {
                remove_path(object, &path);
                // As the real server does, a map the manager no longer applies goes with its last
                // field (`status.x: {}` is never left behind).
                for end in (1..path.len()).rev() {
                    let parent = &path[..end];
                    let empty = get(object, parent).is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
                    if empty && get(&owned, parent).is_none() {
                        remove_path(object, parent);
                    }
                }
            }
        }
    }
    merge_apply(object, &owned);
    managers.insert(manager.to_string(), owned);
    Ok(())
}

/// Objects merge; lists and scalars replace (atomic).
fn merge_apply(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(target), Value::Object(config)) => {
            for (key, value) in config {
                match target.get_mut(key) {
                    Some(existing) if existing.is_object() && value.is_object() => merge_apply(existing, value),
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, config) => *target = config.clone(),
    }
}
