//! The server's dialers for other members, built from its TLS flags (the connecting itself
//! is `rustcd_dial`'s [`Dialer`]): the Raft transport, snapshots and member-list probes (peer
//! URLs), and the follower-to-leader forwarding channel (client URLs).
//!
//! - Peer URLs: `--peer-trusted-ca-file`, identity `--peer-cert-file`/`--peer-key-file`.
//! - Client URLs (LeaderLink): trusted CAs `--trusted-ca-file` plus `--peer-trusted-ca-file`;
//!   identity `--cert-file`/`--key-file` when that certificate is valid for client
//!   authentication against `--trusted-ca-file` (what the leader's client port checks, so
//!   client and peer certificates may come from different CAs), else the peer certificate
//!   if there is one (in etcd's standard deployment it carries the client-auth usage; a
//!   server certificate may not), else `--cert-file`/`--key-file` anyway.
//! - With `--auto-tls`/`--peer-auto-tls` the other members' certificates are self-signed,
//!   so, as etcd does, they are not verified.

use std::sync::Arc;

use rustcd_dial::{accept_any_certificate, Dialer};
use rustls::pki_types::UnixTime;
use rustls::{ClientConfig, RootCertStore};

use super::reload::ReloadingKey;
use super::server::{provider, versions};
use super::{files, TlsConfig, TlsError, TlsInfo};

/// Adds the certificates of a CA file to `store`.
fn add_roots(store: &mut RootCertStore, info: &TlsInfo) -> Result<(), TlsError> {
    if let Some(ca) = &info.trusted_ca_file {
        store
            .roots
            .extend(files::roots(&info.flag("trusted-ca-file"), ca)?.roots);
    }
    Ok(())
}

fn client_config(
    cfg: &TlsConfig,
    roots: RootCertStore,
    skip_verify: bool,
    identity: Option<&TlsInfo>,
) -> Result<ClientConfig, TlsError> {
    let provider = provider(&cfg.options);
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions(&cfg.options))?;
    let builder = if skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(accept_any_certificate(provider.clone()))
    } else {
        builder.with_root_certificates(roots)
    };
    let config = match identity {
        Some(info) => builder.with_client_cert_resolver(Arc::new(ReloadingKey::load(info, provider)?)),
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// A dialer for other members' peer URLs.
pub fn peer_dialer(cfg: &TlsConfig) -> Result<Dialer, TlsError> {
    let mut roots = RootCertStore::empty();
    add_roots(&mut roots, &cfg.peer)?;
    let identity = cfg.peer.has_cert().then_some(&cfg.peer);
    Ok(Dialer::tls(client_config(cfg, roots, cfg.peer.self_signed, identity)?))
}

/// A dialer for other members' client URLs (forwarding to the leader).
pub fn client_dialer(cfg: &TlsConfig) -> Result<Dialer, TlsError> {
    let mut roots = RootCertStore::empty();
    add_roots(&mut roots, &cfg.client)?;
    add_roots(&mut roots, &cfg.peer)?;
    let identity = client_url_identity(cfg);
    Ok(Dialer::tls(client_config(
        cfg,
        roots,
        cfg.client.self_signed,
        identity,
    )?))
}

/// The certificate a member presents to another member's client port (see the module doc).
pub fn client_url_identity(cfg: &TlsConfig) -> Option<&TlsInfo> {
    let algorithms = provider(&cfg.options).signature_verification_algorithms.all;
    if passes_client_auth(&cfg.client, algorithms) {
        return Some(&cfg.client);
    }
    [&cfg.peer, &cfg.client].into_iter().find(|i| i.has_cert())
}

/// Whether the side's certificate is accepted for client authentication by a server trusting
/// the side's CA file (chain, validity now, and the client-auth extended key usage).
fn passes_client_auth(
    info: &TlsInfo,
    algorithms: &[&'static dyn rustls::pki_types::SignatureVerificationAlgorithm],
) -> bool {
    let (Some(cert), Some(ca)) = (&info.cert_file, &info.trusted_ca_file) else {
        return false;
    };
    let (Ok(chain), Ok(roots)) = (
        files::certs(&info.flag("cert-file"), cert),
        files::roots(&info.flag("trusted-ca-file"), ca),
    ) else {
        return false;
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return false;
    };
    let Ok(leaf) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    leaf.verify_for_usage(
        algorithms,
        &roots.roots,
        intermediates,
        UnixTime::now(),
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .is_ok()
}

#[cfg(test)]
mod tests {
    use super::client_url_identity;
    use crate::tls::{TlsConfig, TlsInfo};
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

    /// A CA, and a certificate it signs with `usages`, as PEM files in `dir` named after `name`.
    fn issue(dir: &std::path::Path, name: &str, usages: Vec<ExtendedKeyUsagePurpose>) -> (String, String, String) {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let mut leaf = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        leaf.extended_key_usages = usages;
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let write = |suffix: &str, pem: String| {
            let path = dir.join(format!("{name}-{suffix}.pem"));
            std::fs::write(&path, pem).unwrap();
            path.display().to_string()
        };
        (
            write("cert", cert.pem()),
            write("key", key.serialize_pem()),
            write("ca", ca_cert.pem()),
        )
    }

    #[test]
    fn the_client_certificate_goes_to_client_ports_when_the_client_ca_accepts_it() {
        use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let dir = tempfile::tempdir().unwrap();
        let (pc, pk, pca) = issue(dir.path(), "peer", vec![ServerAuth, ClientAuth]);
        let peer = TlsInfo::peer(&pc, &pk, &pca, true, "", false, "");
        let side = |name: &str, usages| {
            let (c, k, ca) = issue(dir.path(), name, usages);
            TlsInfo::client(&c, &k, &ca, true, "", false)
        };
        let config = |client: TlsInfo| TlsConfig {
            client,
            peer: peer.clone(),
            ..TlsConfig::default()
        };
        // Client and peer certificates from different CAs: the leader's client port trusts the
        // client CA only, so the client certificate must be presented.
        let both = config(side("both", vec![ServerAuth, ClientAuth]));
        assert_eq!(client_url_identity(&both).map(|i| i.prefix), Some(""));
        // A server-only certificate would be refused as a client: the peer one is tried.
        let server_only = config(side("server", vec![ServerAuth]));
        assert_eq!(client_url_identity(&server_only).map(|i| i.prefix), Some("peer-"));
        // No client CA: nothing to check against; the peer certificate as before.
        let mut no_ca = config(side("no-ca", vec![ServerAuth, ClientAuth]));
        no_ca.client.trusted_ca_file = None;
        assert_eq!(client_url_identity(&no_ca).map(|i| i.prefix), Some("peer-"));
        // No peer certificate either way: the client one.
        let mut client_only = server_only.clone();
        client_only.peer = TlsInfo::default();
        assert_eq!(client_url_identity(&client_only).map(|i| i.prefix), Some(""));
    }
}
