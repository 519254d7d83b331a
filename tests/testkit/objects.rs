//! Checks that a YAML/JSON document is a valid object of a Rust API type: it deserializes, and nothing in it is
//! ignored (serde and k8s-openapi skip unknown fields silently, so a misspelt or misplaced field would pass a
//! plain parse). Included with `#[path]` by the tests that need it.
#![allow(dead_code)]

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Appends to `out` every path of `written` that `typed` (the document after a trip through a Rust type)
/// lacks or holds with another value. Fields only `typed` has (defaults the type fills in) are not reported.
pub fn field_differences(written: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (key, value) in w {
                match t.get(key) {
                    Some(tv) => field_differences(value, tv, &format!("{path}.{key}"), out),
                    None => out.push(format!("{path}.{key}")),
                }
            }
        }
        (Value::Array(w), Value::Array(t)) if w.len() == t.len() => {
            for (i, (wv, tv)) in w.iter().zip(t).enumerate() {
                field_differences(wv, tv, &format!("{path}[{i}]"), out);
            }
        }
        _ if written != typed => out.push(format!("{path}: {written} became {typed}")),
        _ => {}
    }
}

/// Parses `doc` as a `T` and serializes it back: `Ok` with the typed value when nothing was dropped or changed
/// on the way (with `exact`, also when the type added nothing).
pub fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value, exact: bool) -> Result<T, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| format!("does not parse: {e}"))?;
    let back = serde_json::to_value(&typed).map_err(|e| format!("does not serialize: {e}"))?;
    let mut problems = Vec::new();
    field_differences(doc, &back, "", &mut problems);
    let dropped = problems.len();
    if exact {
        field_differences(&back, doc, "", &mut problems);
    }
    if problems.is_empty() {
        return Ok(typed);
    }
    let (lost, added) = problems.split_at(dropped);
    Err(format!(
        "fields the type ignores or changes: {lost:?}; fields the type adds: {added:?}"
    ))
}
