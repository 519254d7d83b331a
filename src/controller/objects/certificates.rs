//! cert-manager `Certificate` objects (`cert-manager.io/v1`), built from the operator's
//! [`CertificateRequest`]s. They are dynamic objects: the operator does not depend on cert-manager's
//! types, and a cluster without cert-manager only fails when a spec asks for an issuer.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;

use crate::names::Identity;
use crate::spec::IssuerKind;
use crate::tls::CertificateRequest;

/// `cert-manager.io/v1` `Certificate`, plural `certificates`.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"),
        "certificates",
    )
}

/// The Certificate for `request`, owned by the cluster. The key is ECDSA P-256 and re-generated on
/// every renewal (cert-manager's `rotationPolicy: Always`).
pub fn certificate(id: &Identity, request: &CertificateRequest) -> DynamicObject {
    let kind = match request.issuer.kind {
        IssuerKind::Issuer => "Issuer",
        IssuerKind::ClusterIssuer => "ClusterIssuer",
    };
    let mut spec = json!({
        "secretName": request.name,
        "issuerRef": {"name": request.issuer.name, "kind": kind, "group": "cert-manager.io"},
        "usages": request.usages,
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "secretTemplate": {"labels": id.labels()},
    });
    if let Some(cn) = &request.common_name {
        spec["commonName"] = json!(cn);
    }
    if !request.dns_names.is_empty() {
        spec["dnsNames"] = json!(request.dns_names);
    }
    if !request.ip_addresses.is_empty() {
        spec["ipAddresses"] = json!(request.ip_addresses);
    }
    let mut object = DynamicObject::new(&request.name, &certificate_resource()).within(&id.namespace);
    object.metadata = super::metadata(id, &request.name);
    object.data = json!({ "spec": spec });
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::test_identity;
    use crate::spec::IssuerRef;

    #[test]
    fn a_certificate_carries_the_request() {
        let id = test_identity();
        let request = CertificateRequest {
            name: "demo-operator-tls".into(),
            issuer: IssuerRef {
                name: "ca".into(),
                kind: IssuerKind::ClusterIssuer,
            },
            common_name: Some("root".into()),
            dns_names: Vec::new(),
            ip_addresses: vec!["127.0.0.1".into()],
            usages: vec!["client auth".into()],
        };
        let cert = certificate(&id, &request);
        let value = serde_json::to_value(&cert).unwrap();
        assert_eq!(value["apiVersion"], "cert-manager.io/v1");
        assert_eq!(value["kind"], "Certificate");
        assert_eq!(value["metadata"]["name"], "demo-operator-tls");
        assert_eq!(value["metadata"]["namespace"], "ns");
        assert_eq!(value["metadata"]["ownerReferences"][0]["uid"], "u-1");
        let spec = &value["spec"];
        assert_eq!(spec["secretName"], "demo-operator-tls");
        assert_eq!(
            spec["issuerRef"],
            json!({"name": "ca", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        );
        assert_eq!(spec["commonName"], "root");
        assert_eq!(spec["ipAddresses"], json!(["127.0.0.1"]));
        assert!(spec.get("dnsNames").is_none(), "empty lists are left out: {spec}");
        assert_eq!(spec["usages"], json!(["client auth"]));
        assert_eq!(spec["privateKey"]["rotationPolicy"], "Always");
    }
}
