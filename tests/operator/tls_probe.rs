//! What the TLS tests look at: the certificate a member presents, verified as a client would, and the
//! certificates in a TLS Secret.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

/// The first certificate of a PEM chain, as DER.
pub fn der_of(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).expect("a PEM certificate").to_vec()
}

/// Key `key` of `secret`'s data.
pub fn secret_key(secret: &Secret, key: &str) -> Vec<u8> {
    let data = secret.data.as_ref().expect("Secret data");
    data.get(key)
        .unwrap_or_else(|| panic!("no {key} in Secret {}", secret.name_any()))
        .0
        .clone()
}

/// The leaf certificate `ip:port` presents, verified against the CA `ca` (DER) for `server_name`;
/// `None` when there is no verified handshake within 3 s. No client certificate is sent: with TLS 1.3 the
/// server's certificate is verified before the server decides about the client's.
pub async fn served_leaf(ip: IpAddr, port: u16, ca: &[u8], server_name: &str) -> Option<Vec<u8>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec())).ok()?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((ip, port)).await.ok()?;
        let name = ServerName::try_from(server_name).ok()?.to_owned();
        let tls = connector.connect(name, tcp).await.ok()?;
        tls.get_ref().1.peer_certificates()?.first().map(|c| c.to_vec())
    };
    tokio::time::timeout(Duration::from_secs(3), handshake)
        .await
        .ok()
        .flatten()
}
