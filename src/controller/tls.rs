//! `spec.tls` turned into decisions, purely: which Secret holds each side's certificate, where it is
//! mounted, which member flags use it, which cert-manager `Certificate`s the operator requests, and which
//! Secrets the operator reads to dial the members.
//!
//! Layout in the pod: each TLS side's Secret (`tls.crt`, `tls.key`, `ca.crt`, as cert-manager writes
//! them) is a secret volume mounted read-only at `/etc/rustcd/tls/<side>`. The pod template names only
//! the Secret, never its content, so a rotated certificate reaches running members through the kubelet's
//! in-place update of the volume (rustcd re-reads `--cert-file`/`--key-file` when they change) and the
//! StatefulSet's template, and with it every pod, stays as it is.
//!
//! Secret names: a side with `secretName` uses that Secret; a side with `issuerRef` uses
//! `<cluster>-<side>-tls`, written by cert-manager from the `Certificate` of the same name. The operator's
//! own client certificate is `spec.tls.operatorSecretName`, else `<cluster>-operator-tls` (issued when the
//! client side has an `issuerRef`), else the client side's member Secret.

use k8s_openapi::api::core::v1::{SecretVolumeSource, Volume, VolumeMount};

use super::names::Identity;
use super::spec::{EtcdClusterSpec, IssuerRef, TlsEndpoint};

/// Where the Secret of side `side` is mounted.
pub fn mount_path(side: Side) -> String {
    format!("/etc/rustcd/tls/{}", side.name())
}

/// One TLS side of the members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client port (2379).
    Client,
    /// The peer port (2380).
    Peer,
}

impl Side {
    /// `client` or `peer`.
    pub fn name(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Peer => "peer",
        }
    }

    /// The prefix of this side's etcd flags: none for the client side, `peer-` for the peer side.
    fn flag_prefix(self) -> &'static str {
        match self {
            Side::Client => "",
            Side::Peer => "peer-",
        }
    }
}

/// The certificate of one side: the Secret the members mount, and the issuer when the operator has it
/// issued.
#[derive(Clone, Debug, PartialEq)]
pub struct SideTls {
    /// Which side.
    pub side: Side,
    /// Secret with `tls.crt`, `tls.key` and `ca.crt`.
    pub secret: String,
    /// cert-manager issuer of a Certificate the operator requests; `None` for a user's Secret.
    pub issuer: Option<IssuerRef>,
}

/// A cert-manager `Certificate` the operator requests (built into an object by
/// [`crate::objects::certificate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CertificateRequest {
    /// Name of the Certificate and of the Secret cert-manager writes.
    pub name: String,
    /// The issuer.
    pub issuer: IssuerRef,
    /// `spec.commonName`.
    pub common_name: Option<String>,
    /// `spec.dnsNames`.
    pub dns_names: Vec<String>,
    /// `spec.ipAddresses`.
    pub ip_addresses: Vec<String>,
    /// `spec.usages`.
    pub usages: Vec<String>,
}

/// User a certificate issued for the operator names as its common name: with etcd auth enabled, the
/// client certificate's CN is the user, and membership changes need `root`.
pub const OPERATOR_COMMON_NAME: &str = "root";

/// The TLS decisions for one cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TlsLayout {
    /// Client side, when `spec.tls.client` is set.
    pub client: Option<SideTls>,
    /// Peer side, when `spec.tls.peer` is set.
    pub peer: Option<SideTls>,
    /// Secret with the client certificate the operator presents (only with client TLS).
    pub operator_secret: Option<String>,
    /// Issuer of the operator's certificate when the operator requests it.
    pub operator_issuer: Option<IssuerRef>,
}

fn side(id: &Identity, side: Side, endpoint: Option<&TlsEndpoint>) -> Option<SideTls> {
    let endpoint = endpoint?;
    Some(match (&endpoint.secret_name, &endpoint.issuer_ref) {
        (Some(secret), _) => SideTls {
            side,
            secret: secret.clone(),
            issuer: None,
        },
        (None, issuer) => SideTls {
            side,
            secret: format!("{}-{}-tls", id.name, side.name()),
            // `validate` refuses an endpoint with neither; such a spec never reaches this point.
            issuer: issuer.clone(),
        },
    })
}

impl TlsLayout {
    /// The layout `spec` asks for (no TLS at all when `spec.tls` is absent).
    pub fn of(id: &Identity, spec: &EtcdClusterSpec) -> TlsLayout {
        let Some(tls) = &spec.tls else {
            return TlsLayout::default();
        };
        let client = side(id, Side::Client, tls.client.as_ref());
        let peer = side(id, Side::Peer, tls.peer.as_ref());
        let (operator_secret, operator_issuer) = match (&tls.operator_secret_name, &client) {
            (_, None) => (None, None),
            (Some(secret), Some(_)) => (Some(secret.clone()), None),
            (None, Some(c)) => match &c.issuer {
                Some(issuer) => (Some(format!("{}-operator-tls", id.name)), Some(issuer.clone())),
                None => (Some(c.secret.clone()), None),
            },
        };
        TlsLayout {
            client,
            peer,
            operator_secret,
            operator_issuer,
        }
    }

    fn sides(&self) -> impl Iterator<Item = &SideTls> {
        self.client.iter().chain(self.peer.iter())
    }

    /// The member flags for the certificates (etcd's secure deployment: client-certificate
    /// authentication on every TLS side).
    pub fn member_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for s in self.sides() {
            let (prefix, dir) = (s.side.flag_prefix(), mount_path(s.side));
            args.push(format!("--{prefix}cert-file={dir}/tls.crt"));
            args.push(format!("--{prefix}key-file={dir}/tls.key"));
            args.push(format!("--{prefix}trusted-ca-file={dir}/ca.crt"));
            args.push(format!("--{prefix}client-cert-auth"));
        }
        args
    }

    /// The pod's secret volumes.
    pub fn volumes(&self) -> Vec<Volume> {
        self.sides()
            .map(|s| Volume {
                name: volume_name(s.side),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(s.secret.clone()),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            })
            .collect()
    }

    /// The member container's mounts of those volumes.
    pub fn mounts(&self) -> Vec<VolumeMount> {
        self.sides()
            .map(|s| VolumeMount {
                name: volume_name(s.side),
                mount_path: mount_path(s.side),
                read_only: Some(true),
                ..VolumeMount::default()
            })
            .collect()
    }

    /// The Certificates the operator requests from cert-manager.
    pub fn certificates(&self, id: &Identity) -> Vec<CertificateRequest> {
        let member_usages = ["server auth", "client auth", "digital signature", "key encipherment"];
        let mut requests: Vec<CertificateRequest> = self
            .sides()
            .filter_map(|s| {
                Some(CertificateRequest {
                    name: s.secret.clone(),
                    issuer: s.issuer.clone()?,
                    common_name: None,
                    dns_names: member_dns_names(id, s.side),
                    ip_addresses: match s.side {
                        Side::Client => vec!["127.0.0.1".into(), "::1".into()],
                        Side::Peer => Vec::new(),
                    },
                    usages: member_usages.iter().map(|u| u.to_string()).collect(),
                })
            })
            .collect();
        if let (Some(secret), Some(issuer)) = (&self.operator_secret, &self.operator_issuer) {
            requests.push(CertificateRequest {
                name: secret.clone(),
                issuer: issuer.clone(),
                common_name: Some(OPERATOR_COMMON_NAME.into()),
                dns_names: Vec::new(),
                ip_addresses: Vec::new(),
                usages: ["client auth", "digital signature", "key encipherment"]
                    .iter()
                    .map(|u| u.to_string())
                    .collect(),
            });
        }
        requests
    }

    /// The Secrets the operator reads to dial the members: the client side's (for `ca.crt`) and its own
    /// certificate's; empty without client TLS.
    pub fn operator_secrets(&self) -> Option<(String, String)> {
        Some((self.client.as_ref()?.secret.clone(), self.operator_secret.clone()?))
    }
}

fn volume_name(side: Side) -> String {
    format!("tls-{}", side.name())
}

/// DNS names a member certificate of `side` carries: every member through the headless peer Service
/// (one wildcard), and for the client side the client Service and `localhost`.
pub fn member_dns_names(id: &Identity, side: Side) -> Vec<String> {
    let members = format!("*.{}.{}.svc", id.peer_service(), id.namespace);
    let mut names = vec![members.clone(), format!("{members}.cluster.local")];
    if side == Side::Client {
        let service = id.client_service();
        names.extend([
            service.clone(),
            format!("{service}.{}", id.namespace),
            id.client_service_host(),
            format!("{}.cluster.local", id.client_service_host()),
            "localhost".to_string(),
        ]);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::test_identity;
    use crate::spec::{IssuerKind, TlsSpec};

    fn issuer(name: &str) -> IssuerRef {
        IssuerRef {
            name: name.into(),
            kind: IssuerKind::ClusterIssuer,
        }
    }

    fn spec(tls: TlsSpec) -> EtcdClusterSpec {
        EtcdClusterSpec {
            tls: Some(tls),
            ..EtcdClusterSpec::default()
        }
    }

    fn from_secret(name: &str) -> Option<TlsEndpoint> {
        Some(TlsEndpoint {
            secret_name: Some(name.into()),
            issuer_ref: None,
        })
    }

    fn from_issuer(name: &str) -> Option<TlsEndpoint> {
        Some(TlsEndpoint {
            secret_name: None,
            issuer_ref: Some(issuer(name)),
        })
    }

    #[test]
    fn no_tls_means_nothing() {
        let layout = TlsLayout::of(&test_identity(), &EtcdClusterSpec::default());
        assert_eq!(layout, TlsLayout::default());
        assert!(layout.member_args().is_empty());
        assert!(layout.volumes().is_empty() && layout.mounts().is_empty());
        assert!(layout.certificates(&test_identity()).is_empty());
        assert_eq!(layout.operator_secrets(), None);
    }

    #[test]
    fn user_secrets_are_mounted_and_the_operator_reuses_the_client_one() {
        let id = test_identity();
        let layout = TlsLayout::of(
            &id,
            &spec(TlsSpec {
                client: from_secret("srv"),
                peer: from_secret("peer"),
                operator_secret_name: None,
            }),
        );
        assert_eq!(
            layout.member_args(),
            [
                "--cert-file=/etc/rustcd/tls/client/tls.crt",
                "--key-file=/etc/rustcd/tls/client/tls.key",
                "--trusted-ca-file=/etc/rustcd/tls/client/ca.crt",
                "--client-cert-auth",
                "--peer-cert-file=/etc/rustcd/tls/peer/tls.crt",
                "--peer-key-file=/etc/rustcd/tls/peer/tls.key",
                "--peer-trusted-ca-file=/etc/rustcd/tls/peer/ca.crt",
                "--peer-client-cert-auth",
            ]
        );
        let volumes = layout.volumes();
        let secrets: Vec<_> = volumes
            .iter()
            .map(|v| {
                (
                    v.name.as_str(),
                    v.secret.as_ref().unwrap().secret_name.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(secrets, [("tls-client", "srv"), ("tls-peer", "peer")]);
        let mounts = layout.mounts();
        assert!(mounts.iter().all(|m| m.read_only == Some(true)));
        assert_eq!(mounts[1].mount_path, "/etc/rustcd/tls/peer");
        assert!(layout.certificates(&id).is_empty(), "nothing to request");
        assert_eq!(layout.operator_secrets(), Some(("srv".into(), "srv".into())));
    }

    #[test]
    fn an_explicit_operator_secret_wins() {
        let layout = TlsLayout::of(
            &test_identity(),
            &spec(TlsSpec {
                client: from_issuer("ca"),
                peer: None,
                operator_secret_name: Some("mine".into()),
            }),
        );
        assert_eq!(
            layout.operator_secrets(),
            Some(("demo-client-tls".into(), "mine".into()))
        );
        let names: Vec<_> = layout
            .certificates(&test_identity())
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["demo-client-tls"], "no operator certificate requested");
    }

    #[test]
    fn issuers_get_certificates_with_the_members_names() {
        let id = test_identity();
        let layout = TlsLayout::of(
            &id,
            &spec(TlsSpec {
                client: from_issuer("ca"),
                peer: from_issuer("peer-ca"),
                operator_secret_name: None,
            }),
        );
        let certs = layout.certificates(&id);
        let names: Vec<_> = certs.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["demo-client-tls", "demo-peer-tls", "demo-operator-tls"]);
        let client = &certs[0];
        assert_eq!(client.issuer, issuer("ca"));
        assert!(client.dns_names.contains(&"*.demo-peer.ns.svc".to_string()));
        assert!(client.dns_names.contains(&"demo.ns.svc".to_string()));
        assert!(client.usages.contains(&"server auth".to_string()) && client.usages.contains(&"client auth".into()));
        let peer = &certs[1];
        assert_eq!(peer.issuer, issuer("peer-ca"));
        assert_eq!(
            peer.dns_names,
            ["*.demo-peer.ns.svc", "*.demo-peer.ns.svc.cluster.local"]
        );
        assert!(peer.ip_addresses.is_empty());
        let operator = &certs[2];
        assert_eq!(operator.issuer, issuer("ca"), "signed by the client side's issuer");
        assert_eq!(operator.common_name.as_deref(), Some("root"));
        assert!(!operator.usages.contains(&"server auth".to_string()));
        assert_eq!(
            layout.operator_secrets(),
            Some(("demo-client-tls".into(), "demo-operator-tls".into()))
        );
    }

    #[test]
    fn peer_only_tls_leaves_the_operator_on_plain_client_traffic() {
        let layout = TlsLayout::of(
            &test_identity(),
            &spec(TlsSpec {
                client: None,
                peer: from_secret("p"),
                operator_secret_name: None,
            }),
        );
        assert_eq!(layout.operator_secrets(), None);
        assert_eq!(layout.member_args().len(), 4);
        assert!(layout.member_args().iter().all(|a| a.starts_with("--peer-")));
    }
}
