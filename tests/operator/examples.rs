//! The files under `examples/` are real, valid objects: each parses into its Rust type without dropping a
//! field (a misspelt or removed field would otherwise be ignored silently) and passes the CRD's validation.

use rustcd_operator::backup_spec::EtcdBackup;
use rustcd_operator::EtcdCluster;
use serde_json::{json, Value};
use testkit::objects::{field_differences, round_trip};

#[test]
fn example_etcdcluster_is_a_valid_three_member_cluster() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/etcdcluster.yaml");
    let text = std::fs::read_to_string(path).expect("read examples/etcdcluster.yaml");
    let written: Value = serde_norway::from_str(&text).expect("examples/etcdcluster.yaml is not YAML");
    // Not exact: the type fills in defaults the example leaves out.
    let cluster: EtcdCluster = round_trip(&written, false).unwrap_or_else(|e| panic!("examples/etcdcluster.yaml: {e}"));

    assert_eq!(written["apiVersion"], "rustcd.io/v1alpha1");
    assert_eq!(written["kind"], "EtcdCluster");
    assert_eq!(cluster.metadata.name.as_deref(), Some("example"));
    assert!(
        cluster.metadata.namespace.is_none(),
        "the example goes where `kubectl -n` says"
    );
    assert_eq!(cluster.spec.replicas, 3);
    cluster.spec.validate().expect("the example fails the CRD's validation");
}

#[test]
fn example_tls_cluster_uses_the_issuer_it_defines() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/etcdcluster-tls.yaml");
    let text = std::fs::read_to_string(path).expect("read examples/etcdcluster-tls.yaml");
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("examples/etcdcluster-tls.yaml is not YAML"))
        .collect();
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["Issuer", "Certificate", "Issuer", "EtcdCluster", "Certificate"]);
    let cluster: EtcdCluster = round_trip(&docs[3], false).unwrap_or_else(|e| panic!("the EtcdCluster: {e}"));
    cluster.spec.validate().expect("the example fails the CRD's validation");
    let tls = cluster.spec.tls.as_ref().expect("spec.tls");
    // Both sides name the CA Issuer the file creates, which signs with the CA certificate's Secret.
    for side in [&tls.client, &tls.peer] {
        let issuer = side.as_ref().and_then(|s| s.issuer_ref.as_ref()).expect("issuerRef");
        assert_eq!(issuer.name, docs[2]["metadata"]["name"]);
    }
    assert_eq!(docs[2]["spec"]["ca"]["secretName"], docs[1]["spec"]["secretName"]);
    assert_eq!(docs[1]["spec"]["issuerRef"]["name"], docs[0]["metadata"]["name"]);
    // etcdctl's certificate comes from the same CA, for client authentication only.
    assert_eq!(docs[4]["spec"]["issuerRef"]["name"], docs[2]["metadata"]["name"]);
    assert_eq!(docs[4]["spec"]["usages"][0], "client auth");
}

fn docs_of(file: &str) -> Vec<Value> {
    let path = format!("{}/../../examples/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_norway::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{file} is not YAML: {e}")))
        .collect()
}

#[test]
fn example_backups_name_the_example_cluster_and_what_they_create() {
    let docs = docs_of("etcdbackup.yaml");
    let kinds: Vec<_> = docs.iter().map(|d| d["kind"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "EtcdBackup", "Secret", "EtcdBackup"]);
    let to_pvc: EtcdBackup = round_trip(&docs[1], false).unwrap_or_else(|e| panic!("the PVC backup: {e}"));
    let to_s3: EtcdBackup = round_trip(&docs[3], false).unwrap_or_else(|e| panic!("the S3 backup: {e}"));
    for b in [&to_pvc, &to_s3] {
        assert_eq!(b.spec.cluster_name, "example");
        b.spec
            .destination
            .validate("spec.destination")
            .expect("a valid destination");
    }
    assert_eq!(
        to_pvc.spec.destination.pvc.as_ref().unwrap().claim_name,
        docs[0]["metadata"]["name"]
    );
    assert_eq!(
        to_s3.spec.destination.s3.as_ref().unwrap().credentials_secret,
        docs[2]["metadata"]["name"]
    );
}

#[test]
fn example_restore_reads_the_backups_claim_and_schedules_its_own() {
    let docs = docs_of("etcdcluster-restore.yaml");
    let cluster: EtcdCluster = round_trip(&docs[0], false).unwrap_or_else(|e| panic!("the EtcdCluster: {e}"));
    cluster.spec.validate().expect("the example fails the CRD's validation");
    let source = &cluster.spec.bootstrap.as_ref().expect("spec.bootstrap").from_backup;
    let claim = &docs_of("etcdbackup.yaml")[0]["metadata"]["name"];
    assert_eq!(source.pvc.as_ref().unwrap().claim_name, *claim);
    assert_eq!(cluster.spec.backup.as_ref().expect("spec.backup").keep, 7);
}

#[test]
fn field_differences_catches_unknown_and_changed_fields() {
    let typed = json!({"spec": {"replicas": 3, "antiAffinity": "Preferred"}, "items": [1, 2]});
    let mut out = Vec::new();
    field_differences(&json!({"spec": {"replicas": 3}}), &typed, "", &mut out);
    assert!(out.is_empty(), "defaults added by the type are fine: {out:?}");
    field_differences(
        &json!({"spec": {"replica": 3, "replicas": 5}, "items": [1, 3]}),
        &typed,
        "",
        &mut out,
    );
    assert_eq!(
        out,
        [".items[1]: 3 became 2", ".spec.replica", ".spec.replicas: 5 became 3"]
    );
}

#[test]
fn round_trip_rejects_a_misspelt_field_and_exact_rejects_added_ones() {
    let with_typo = json!({"apiVersion": "rustcd.io/v1alpha1", "kind": "EtcdCluster",
        "metadata": {"name": "x"}, "spec": {"replicas": 3, "storage": {"size": "1Gi", "storageClass": "fast"}}});
    let err = round_trip::<EtcdCluster>(&with_typo, false).unwrap_err();
    assert!(err.contains(".spec.storage.storageClass"), "{err}");
    let minimal = json!({"apiVersion": "rustcd.io/v1alpha1", "kind": "EtcdCluster",
        "metadata": {"name": "x"}, "spec": {"replicas": 3}});
    assert!(round_trip::<EtcdCluster>(&minimal, false).is_ok());
    let err = round_trip::<EtcdCluster>(&minimal, true).unwrap_err();
    assert!(err.contains(".spec.antiAffinity"), "{err}");
}
