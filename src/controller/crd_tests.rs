//! Tests of the generated CRD: the committed file is current, and its structure is what the API needs.

use serde_json::Value;

use super::*;
use crate::spec::{
    STORAGE_IMMUTABLE_RULE, TLS_EXCLUSIVE_RULE, TLS_IMMUTABLE_RULE, TLS_OPERATOR_SECRET_RULE, VERSION_PATTERN,
};

fn committed() -> String {
    committed_at(CRD_PATH)
}

fn committed_at(relative: &str) -> String {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}; run `{REGENERATE_COMMAND}`", path.display()))
}

fn committed_json() -> Value {
    serde_norway::from_str(&committed()).expect("committed CRD is not YAML")
}

/// Follows `path` (object keys, or array indices as numbers) through `value`.
fn at<'a>(value: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(value, |v, key| match key.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[*key],
    })
}

fn schema(crd: &Value) -> &Value {
    at(crd, &["spec", "versions", "0", "schema", "openAPIV3Schema"])
}

/// The CRD and the Helm chart's copy of it are both exactly what the types generate.
#[test]
fn committed_crds_are_up_to_date() {
    for (path, generated) in crd_files().expect("serialize CRDs") {
        let committed = committed_at(path);
        if generated != committed {
            let line = generated.lines().zip(committed.lines()).position(|(a, b)| a != b);
            panic!(
                "{path} is stale (first difference at line {}): run `{REGENERATE_COMMAND}` and commit it",
                line.map_or_else(|| "end".to_string(), |l| (l + 1).to_string())
            );
        }
    }
}

#[test]
fn crd_parses_back_into_the_api_type() {
    let parsed: CustomResourceDefinition = serde_norway::from_str(&committed()).expect("not a CRD");
    assert_eq!(parsed, crd());
}

#[test]
fn names_scope_and_version() {
    let crd = committed_json();
    assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(at(&crd, &["metadata", "name"]), "etcdclusters.rustcd.io");
    assert_eq!(at(&crd, &["spec", "group"]), "rustcd.io");
    assert_eq!(at(&crd, &["spec", "scope"]), "Namespaced");
    let names = at(&crd, &["spec", "names"]);
    assert_eq!(names["kind"], "EtcdCluster");
    assert_eq!(names["plural"], "etcdclusters");
    assert_eq!(names["singular"], "etcdcluster");
    assert_eq!(names["shortNames"], serde_json::json!(["etcd"]));
    let versions = at(&crd, &["spec", "versions"]).as_array().expect("versions");
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["name"], "v1alpha1");
    assert_eq!(versions[0]["served"], true);
    assert_eq!(versions[0]["storage"], true);
}

#[test]
fn status_and_scale_subresources() {
    let crd = committed_json();
    let sub = at(&crd, &["spec", "versions", "0", "subresources"]);
    assert_eq!(sub["status"], serde_json::json!({}));
    assert_eq!(sub["scale"]["specReplicasPath"], ".spec.replicas");
    assert_eq!(sub["scale"]["statusReplicasPath"], ".status.replicas");
    assert_eq!(sub["scale"]["labelSelectorPath"], ".status.selector");
    // The paths point at fields of the right types.
    let s = schema(&crd);
    assert_eq!(
        at(s, &["properties", "spec", "properties", "replicas", "type"]),
        "integer"
    );
    assert_eq!(
        at(s, &["properties", "status", "properties", "replicas", "type"]),
        "integer"
    );
    assert_eq!(
        at(s, &["properties", "status", "properties", "selector", "type"]),
        "string"
    );
}

#[test]
fn printer_columns() {
    let crd = committed_json();
    let columns = at(&crd, &["spec", "versions", "0", "additionalPrinterColumns"])
        .as_array()
        .expect("columns");
    let got: Vec<(&str, &str, &str)> = columns
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["jsonPath"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Replicas", ".spec.replicas", "integer"),
            ("Ready", ".status.readyReplicas", "integer"),
            ("Version", ".status.currentVersion", "string"),
            ("Leader", ".status.leader", "string"),
            ("Age", ".metadata.creationTimestamp", "date"),
        ]
    );
}

#[test]
fn spec_schema_constraints_and_defaults() {
    let crd = committed_json();
    let spec = at(schema(&crd), &["properties", "spec"]);
    let props = &spec["properties"];
    assert_eq!(props["replicas"]["minimum"].as_f64(), Some(1.0));
    assert_eq!(props["replicas"]["maximum"].as_f64(), Some(9.0));
    assert_eq!(props["replicas"]["default"], 3);
    assert_eq!(props["version"]["pattern"], VERSION_PATTERN);
    assert_eq!(
        props["antiAffinity"]["enum"],
        serde_json::json!(["Preferred", "Required", "None"])
    );
    assert_eq!(props["antiAffinity"]["default"], "Preferred");
    assert_eq!(
        props["pvcRetentionPolicy"]["enum"],
        serde_json::json!(["Retain", "Delete"])
    );
    assert_eq!(props["pvcRetentionPolicy"]["default"], "Retain");
    assert_eq!(props["storage"]["required"], serde_json::json!(["size"]));
    assert!(props["storage"]["properties"]["storageClassName"].is_object());
    for field in ["resources", "pod", "image", "tls"] {
        assert!(props[field].is_object(), "spec.{field} missing");
    }
    for field in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "annotations",
        "labels",
        "priorityClassName",
    ] {
        assert!(
            props["pod"]["properties"][field].is_object(),
            "spec.pod.{field} missing"
        );
    }
    let kind = at(
        props,
        &[
            "tls",
            "properties",
            "peer",
            "properties",
            "issuerRef",
            "properties",
            "kind",
        ],
    );
    assert_eq!(kind["enum"], serde_json::json!(["Issuer", "ClusterIssuer"]));
}

fn rules(node: &Value) -> Vec<&str> {
    node["x-kubernetes-validations"]
        .as_array()
        .map(|rules| rules.iter().filter_map(|r| r["rule"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn cel_validations_are_attached_where_they_apply() {
    let crd = committed_json();
    let spec = at(schema(&crd), &["properties", "spec"]);
    assert_eq!(rules(spec), [STORAGE_IMMUTABLE_RULE, TLS_IMMUTABLE_RULE]);
    for field in ["storage", "tls"] {
        assert!(spec["properties"][field].is_object(), "the rule refers to spec.{field}");
    }
    let tls = at(spec, &["properties", "tls"]);
    assert_eq!(rules(tls), [TLS_OPERATOR_SECRET_RULE]);
    for field in ["operatorSecretName", "client"] {
        assert!(tls["properties"][field].is_object(), "the rule refers to tls.{field}");
    }
    for endpoint in ["client", "peer"] {
        let node = at(spec, &["properties", "tls", "properties", endpoint]);
        assert_eq!(rules(node), [TLS_EXCLUSIVE_RULE], "tls.{endpoint}");
        for field in ["secretName", "issuerRef"] {
            assert!(
                node["properties"][field].is_object(),
                "the rule refers to tls.{endpoint}.{field}"
            );
        }
    }
    let conditions = at(schema(&crd), &["properties", "status", "properties", "conditions"]);
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
}

/// Walks every schema node: each must be structural (typed or int-or-string / preserve-unknown, no
/// references or combinators that the API server would reject in a structural schema).
fn assert_structural(node: &Value, path: &str) {
    let obj = node
        .as_object()
        .unwrap_or_else(|| panic!("{path}: schema is not an object"));
    for forbidden in [
        "$ref",
        "$schema",
        "definitions",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
    ] {
        assert!(!obj.contains_key(forbidden), "{path}: has {forbidden}");
    }
    let typed = obj.get("type").and_then(Value::as_str).is_some()
        || obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    assert!(typed, "{path}: no type");
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        assert_eq!(
            obj.get("type"),
            Some(&Value::from("object")),
            "{path}: properties on a non-object"
        );
        assert!(
            !obj.contains_key("additionalProperties"),
            "{path}: properties and additionalProperties"
        );
        for (name, child) in props {
            assert_structural(child, &format!("{path}.{name}"));
        }
    }
    if let Some(items) = obj.get("items") {
        assert_structural(items, &format!("{path}[]"));
    }
    if let Some(extra) = obj.get("additionalProperties").filter(|v| v.is_object()) {
        assert_structural(extra, &format!("{path}{{}}"));
    }
    if let Some(required) = obj.get("required").and_then(Value::as_array) {
        for name in required {
            let name = name.as_str().expect("required name");
            assert!(
                obj["properties"][name].is_object(),
                "{path}: required {name} is not a property"
            );
        }
    }
}

#[test]
fn schema_is_structural() {
    let crd = committed_json();
    assert_structural(schema(&crd), "openAPIV3Schema");
    let backup: Value = serde_norway::from_str(&committed_at(BACKUP_CRD_PATHS[0])).expect("YAML");
    assert_structural(schema(&backup), "EtcdBackup.openAPIV3Schema");
}

/// Every `default` in the schema, with its path.
fn defaults<'a>(node: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match node {
        Value::Object(map) => {
            if let Some(d) = map.get("default") {
                out.push((path.clone(), d));
            }
            for (key, child) in map {
                if key != "default" {
                    defaults(child, format!("{path}.{key}"), out);
                }
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                defaults(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Kubernetes 1.20 reads an empty-string (or null) default as null and refuses the whole CRD
/// (`default: Invalid value: "null": in body must be of type string`), seen on the real 1.20.2.
#[test]
fn no_default_is_empty_or_null() {
    let crd = committed_json();
    let backup: Value = serde_norway::from_str(&committed_at(BACKUP_CRD_PATHS[0])).expect("YAML");
    let mut found = Vec::new();
    defaults(schema(&crd), String::new(), &mut found);
    defaults(schema(&backup), "EtcdBackup".into(), &mut found);
    assert!(!found.is_empty(), "the walk finds the schema's defaults");
    let empty: Vec<_> = found
        .iter()
        .filter(|(_, d)| d.is_null() || d.as_str() == Some(""))
        .map(|(p, _)| p.as_str())
        .collect();
    assert!(empty.is_empty(), "empty or null defaults at {empty:?}");
}

/// Every CEL rule of the schema.
fn all_rules<'a>(node: &'a Value, out: &mut Vec<&'a serde_json::Map<String, Value>>) {
    match node {
        Value::Object(map) => {
            if let Some(Value::Array(rules)) = map.get("x-kubernetes-validations") {
                out.extend(rules.iter().filter_map(Value::as_object));
            }
            map.values().for_each(|child| all_rules(child, out));
        }
        Value::Array(items) => items.iter().for_each(|child| all_rules(child, out)),
        _ => {}
    }
}

/// The rules use only what Kubernetes 1.25 (the first to run CEL by default) knows: `rule` and
/// `message`. `fieldPath` and `reason` (1.28) or `messageExpression` (1.27) would make a 1.25-1.27 API
/// server refuse the CRD under kubectl's strict field validation.
#[test]
fn cel_rules_use_only_what_kubernetes_1_25_knows() {
    let crd = committed_json();
    let backup: Value = serde_norway::from_str(&committed_at(BACKUP_CRD_PATHS[0])).expect("YAML");
    let mut rules = Vec::new();
    all_rules(schema(&crd), &mut rules);
    all_rules(schema(&backup), &mut rules);
    assert!(rules.len() >= 4, "{rules:?}");
    for rule in rules {
        let keys: Vec<&str> = rule.keys().map(String::as_str).collect();
        assert!(keys.iter().all(|k| ["rule", "message"].contains(k)), "{keys:?}");
    }
}
