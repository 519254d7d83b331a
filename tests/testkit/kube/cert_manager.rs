//! A fake cert-manager for the operator's TLS tests. Every 250 ms it lists the `cert-manager.io/v1`
//! Certificates of one namespace and, for each whose `spec.issuerRef` names one of its issuers, issues
//! a certificate from its in-memory CA as cert-manager would: `spec.commonName`, `dnsNames` (wildcards
//! too), `ipAddresses`, `usages` (default `digital signature, key encipherment`) and `duration` (a Go
//! duration, default 90 days), into the Secret `spec.secretName` (type `kubernetes.io/tls`, keys
//! `tls.crt`, `tls.key`, `ca.crt`, the `cert-manager.io/*` annotations), and reports Ready=True,
//! `notBefore`, `notAfter`, `renewalTime` and `revision` through the status subresource. A Certificate
//! for an unknown issuer gets Ready=False (reason `Pending`) and no Secret.
//!
//! It re-issues (new key, new serial, `revision` + 1) only when the Certificate's spec changed (a hash
//! of the spec is kept in the Secret's `test.rustcd.io/spec-hash` annotation), when the Secret is gone
//! or was not written for this Certificate, or after [`FakeCertManager::renew`]; never otherwise.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::chrono::DateTime;
use k8s_openapi::ByteString;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt};
use rcgen::{ExtendedKeyUsagePurpose as Eku, KeyUsagePurpose as Ku};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::pki::{Authority, IssuedPem, Request, Usage};

/// Where the hash of the spec a Secret was issued for is kept.
pub const SPEC_HASH_ANNOTATION: &str = "test.rustcd.io/spec-hash";
const NOT_BEFORE_ANNOTATION: &str = "test.rustcd.io/not-before";
const NOT_AFTER_ANNOTATION: &str = "test.rustcd.io/not-after";

/// The Certificate resource (`cert-manager.io/v1`, namespaced).
pub fn certificate_resource() -> ApiResource {
    ApiResource {
        group: "cert-manager.io".into(),
        version: "v1".into(),
        api_version: "cert-manager.io/v1".into(),
        kind: "Certificate".into(),
        plural: "certificates".into(),
    }
}

/// The Certificates of `namespace`.
pub fn certificates(client: Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &certificate_resource())
}

/// A running fake cert-manager; stops when dropped.
pub struct FakeCertManager {
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl Drop for FakeCertManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the handle and the loop share.
struct Shared {
    ca: Authority,
    /// Certificates to re-issue on the next round (`renew`).
    renewals: Mutex<BTreeSet<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssuerRef {
    #[serde(default)]
    name: String,
    kind: Option<String>,
    group: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CertificateSpec {
    #[serde(default)]
    secret_name: String,
    common_name: Option<String>,
    #[serde(default)]
    dns_names: Vec<String>,
    #[serde(default)]
    ip_addresses: Vec<String>,
    #[serde(default)]
    usages: Vec<String>,
    duration: Option<String>,
    #[serde(default)]
    issuer_ref: IssuerRef,
}

/// A Go duration (`2160h`, `1h30m`, `90m0s`, `1.5h`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// cert-manager's usage names as rcgen key usages and extended key usages.
fn usages(names: &[String]) -> Result<(Vec<Ku>, Vec<Eku>), String> {
    let defaults = ["digital signature".to_string(), "key encipherment".to_string()];
    let names = if names.is_empty() { &defaults[..] } else { names };
    let (mut ku, mut eku) = (Vec::new(), Vec::new());
    for name in names {
        match name.as_str() {
            "signing" | "digital signature" => ku.push(Ku::DigitalSignature),
            "content commitment" => ku.push(Ku::ContentCommitment),
            "key encipherment" => ku.push(Ku::KeyEncipherment),
            "key agreement" => ku.push(Ku::KeyAgreement),
            "data encipherment" => ku.push(Ku::DataEncipherment),
            "cert sign" => ku.push(Ku::KeyCertSign),
            "crl sign" => ku.push(Ku::CrlSign),
            "encipher only" => ku.push(Ku::EncipherOnly),
            "decipher only" => ku.push(Ku::DecipherOnly),
            "server auth" => eku.push(Eku::ServerAuth),
            "client auth" => eku.push(Eku::ClientAuth),
            "code signing" => eku.push(Eku::CodeSigning),
            "email protection" => eku.push(Eku::EmailProtection),
            "timestamping" => eku.push(Eku::TimeStamping),
            "ocsp signing" => eku.push(Eku::OcspSigning),
            other => return Err(format!("unknown usage {other:?}")),
        }
    }
    Ok((ku, eku))
}

/// JSON with object keys sorted at every level (what the spec hash is taken over).
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => format!("[{}]", items.iter().map(canonical).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn spec_hash(spec: &Value) -> String {
    format!("{:x}", Sha256::digest(canonical(spec).as_bytes()))
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    DateTime::from_timestamp(t.unix_timestamp(), 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

fn now() -> String {
    k8s_openapi::chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret.metadata.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The Ready condition as it stands, without its timestamp: (status, reason, message).
fn ready_condition(cert: &DynamicObject) -> Option<(String, String, String)> {
    let conditions = cert.data["status"]["conditions"].as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    let text = |k: &str| ready[k].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

impl FakeCertManager {
    /// Starts serving the Certificates of `namespace` for `issuers` (kind `Issuer` or
    /// `ClusterIssuer`, name), all of group `cert-manager.io`.
    pub fn start(client: Client, namespace: &str, issuers: &[(&str, &str)]) -> FakeCertManager {
        let shared = Arc::new(Shared {
            ca: Authority::new("fake cert-manager CA"),
            renewals: Mutex::new(BTreeSet::new()),
        });
        let controller = Controller {
            certificates: certificates(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            issuers: issuers.iter().map(|(k, n)| (k.to_string(), n.to_string())).collect(),
            shared: shared.clone(),
        };
        let task = tokio::spawn(async move {
            loop {
                if let Err(e) = controller.sync().await {
                    eprintln!("fake cert-manager: {e}");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        FakeCertManager { task, shared }
    }

    /// The CA certificate every Secret's `ca.crt` holds (PEM).
    pub fn ca_pem(&self) -> String {
        self.shared.ca.pem()
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> Vec<u8> {
        self.shared.ca.der()
    }

    /// A clientAuth certificate for `cn` from the same CA (a test acting as etcdctl): (cert, key) PEM.
    pub fn issue_client(&self, cn: &str) -> (String, String) {
        let issued = self.shared.ca.sign(&Request::new(cn, &[], Usage::Client, 30));
        (issued.cert_pem, issued.key_pem)
    }

    /// Any certificate from the same CA (say, for a Secret a test writes itself).
    pub fn issue(&self, request: &Request) -> IssuedPem {
        self.shared.ca.sign(request)
    }

    /// Re-issues Certificate `name` on the next round (within ~250 ms) with a new key and serial, as
    /// `cmctl renew` does.
    pub fn renew(&self, name: &str) {
        self.shared
            .renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string());
    }
}

/// The loop's side.
struct Controller {
    certificates: Api<DynamicObject>,
    secrets: Api<Secret>,
    /// (kind, name).
    issuers: BTreeSet<(String, String)>,
    shared: Arc<Shared>,
}

impl Controller {
    async fn sync(&self) -> Result<(), kube::Error> {
        for cert in self.certificates.list(&ListParams::default()).await?.items {
            if cert.metadata.deletion_timestamp.is_none() {
                self.reconcile(&cert).await?;
            }
        }
        Ok(())
    }

    async fn reconcile(&self, cert: &DynamicObject) -> Result<(), kube::Error> {
        let name = cert.name_any();
        let spec_value = cert.data.get("spec").cloned().unwrap_or(Value::Null);
        let spec: CertificateSpec = match serde_json::from_value(spec_value.clone()) {
            Ok(spec) => spec,
            Err(e) => return self.not_ready(cert, "Failed", &format!("invalid spec: {e}")).await,
        };
        if spec.secret_name.is_empty() {
            return self.not_ready(cert, "Failed", "spec.secretName: Required value").await;
        }
        let issuer = &spec.issuer_ref;
        let kind = issuer
            .kind
            .clone()
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| "Issuer".into());
        let group = issuer
            .group
            .clone()
            .filter(|g| !g.is_empty())
            .unwrap_or_else(|| "cert-manager.io".into());
        if group != "cert-manager.io" || !self.issuers.contains(&(kind.clone(), issuer.name.clone())) {
            let message = format!(
                "Referenced {kind:?} not found: {}.{group} {:?} not found",
                kind.to_lowercase(),
                issuer.name
            );
            return self.not_ready(cert, "Pending", &message).await;
        }
        let (key_usages, extended_key_usages) = match usages(&spec.usages) {
            Ok(u) => u,
            Err(e) => return self.not_ready(cert, "Failed", &e).await,
        };
        let hash = spec_hash(&spec_value);
        let existing = self.secrets.get_opt(&spec.secret_name).await?;
        let current = existing.as_ref().filter(|s| {
            annotation(s, SPEC_HASH_ANNOTATION) == Some(hash.as_str())
                && annotation(s, "cert-manager.io/certificate-name") == Some(name.as_str())
                && s.data.as_ref().is_some_and(|d| d.contains_key("tls.crt"))
        });
        let renew = self
            .shared
            .renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&name);
        if let (Some(secret), false) = (current, renew) {
            // Up to date: only make sure the status says so (after a lost status write, say).
            if ready_condition(cert).is_some_and(|c| c.0 == "True") {
                return Ok(());
            }
            let times = |k| annotation(secret, k).unwrap_or_default().to_string();
            let revision = cert.data["status"]["revision"].as_i64().unwrap_or(1);
            return self
                .ready(
                    cert,
                    &times(NOT_BEFORE_ANNOTATION),
                    &times(NOT_AFTER_ANNOTATION),
                    revision,
                )
                .await;
        }
        let ip_addresses = match spec.ip_addresses.iter().map(|ip| ip.parse::<IpAddr>()).collect() {
            Ok(ips) => ips,
            Err(e) => return self.not_ready(cert, "Failed", &format!("spec.ipAddresses: {e}")).await,
        };
        let valid_for = match spec.duration.as_deref() {
            None | Some("") => Duration::from_secs(90 * 24 * 3600),
            Some(text) => match parse_go_duration(text) {
                Some(d) => d,
                None => {
                    return self
                        .not_ready(cert, "Failed", &format!("invalid duration {text:?}"))
                        .await
                }
            },
        };
        let request = Request {
            common_name: spec.common_name.clone().unwrap_or_default(),
            dns_names: spec.dns_names.clone(),
            ip_addresses,
            key_usages,
            extended_key_usages,
            not_before: time::Duration::ZERO,
            valid_for: time::Duration::try_from(valid_for).unwrap_or(time::Duration::days(90)),
        };
        let issued = self.shared.ca.sign(&request);
        let (not_before, not_after) = (rfc3339(issued.not_before), rfc3339(issued.not_after));
        let mut secret = existing.unwrap_or_else(|| Secret {
            metadata: ObjectMeta {
                name: Some(spec.secret_name.clone()),
                ..ObjectMeta::default()
            },
            ..Secret::default()
        });
        secret.type_ = Some("kubernetes.io/tls".into());
        let data = secret.data.get_or_insert_with(Default::default);
        data.insert("tls.crt".into(), ByteString(issued.cert_pem.into_bytes()));
        data.insert("tls.key".into(), ByteString(issued.key_pem.into_bytes()));
        data.insert("ca.crt".into(), ByteString(self.shared.ca.pem().into_bytes()));
        let annotations = secret.metadata.annotations.get_or_insert_with(Default::default);
        for (k, v) in [
            ("cert-manager.io/certificate-name", name.clone()),
            ("cert-manager.io/issuer-name", issuer.name.clone()),
            ("cert-manager.io/issuer-kind", kind),
            ("cert-manager.io/issuer-group", group),
            ("cert-manager.io/common-name", request.common_name.clone()),
            ("cert-manager.io/alt-names", spec.dns_names.join(",")),
            ("cert-manager.io/ip-sans", spec.ip_addresses.join(",")),
            (SPEC_HASH_ANNOTATION, hash),
            (NOT_BEFORE_ANNOTATION, not_before.clone()),
            (NOT_AFTER_ANNOTATION, not_after.clone()),
        ] {
            annotations.insert(k.into(), v);
        }
        secret
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("controller.cert-manager.io/fao".into(), "true".into());
        let written = if secret.metadata.resource_version.is_some() {
            // A conflict (someone wrote the Secret meanwhile) is retried on the next round.
            self.secrets
                .replace(&spec.secret_name, &PostParams::default(), &secret)
                .await
        } else {
            self.secrets.create(&PostParams::default(), &secret).await
        };
        if let Err(e) = written {
            return match e {
                kube::Error::Api(ref s) if s.code == 409 => Ok(()),
                e => Err(e),
            };
        }
        self.shared
            .renewals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&name);
        let revision = cert.data["status"]["revision"].as_i64().unwrap_or(0) + 1;
        self.ready(cert, &not_before, &not_after, revision).await
    }

    /// Ready=True with the issued certificate's validity and `revision`.
    async fn ready(
        &self,
        cert: &DynamicObject,
        not_before: &str,
        not_after: &str,
        revision: i64,
    ) -> Result<(), kube::Error> {
        // cert-manager renews at 2/3 of the lifetime by default.
        let renewal = match (
            DateTime::parse_from_rfc3339(not_before),
            DateTime::parse_from_rfc3339(not_after),
        ) {
            (Ok(b), Ok(a)) => Some((b + (a - b) * 2 / 3).format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            _ => None,
        };
        let status = json!({
            "conditions": [self.condition(cert, "True", "Ready", "Certificate is up to date and has not expired")],
            "notBefore": not_before,
            "notAfter": not_after,
            "renewalTime": renewal,
            "revision": revision,
        });
        self.write_status(cert, status).await
    }

    /// Ready=False with `reason` and `message` (written only when that is news).
    async fn not_ready(&self, cert: &DynamicObject, reason: &str, message: &str) -> Result<(), kube::Error> {
        let wanted = ("False".to_string(), reason.to_string(), message.to_string());
        if ready_condition(cert).as_ref() == Some(&wanted) {
            return Ok(());
        }
        let status = json!({"conditions": [self.condition(cert, "False", reason, message)]});
        self.write_status(cert, status).await
    }

    fn condition(&self, cert: &DynamicObject, status: &str, reason: &str, message: &str) -> Value {
        let transition = match ready_condition(cert) {
            Some((s, _, _)) if s == status => cert.data["status"]["conditions"]
                .as_array()
                .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                .map_or_else(|| json!(now()), |c| c["lastTransitionTime"].clone()),
            _ => json!(now()),
        };
        json!({
            "type": "Ready", "status": status, "reason": reason, "message": message,
            "lastTransitionTime": transition, "observedGeneration": cert.metadata.generation,
        })
    }

    async fn write_status(&self, cert: &DynamicObject, status: Value) -> Result<(), kube::Error> {
        let patch = json!({"status": status});
        match self
            .certificates
            .patch_status(&cert.name_any(), &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            // Deleted meanwhile: nothing to report.
            Ok(_) | Err(kube::Error::Api(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
