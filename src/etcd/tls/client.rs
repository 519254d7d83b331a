//! Dialing other members over https: the Raft transport, snapshots and member-list
//! probes (peer URLs), and the follower-to-leader forwarding channel (client URLs).
//!
//! A [`Dialer`] connects a tonic [`Endpoint`]: http URLs as before, https URLs through a
//! tokio-rustls connector with ALPN `h2`, the side's trusted CA, and a client certificate.
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
//! - The operator builds its dialer from PEM held in Kubernetes Secrets ([`Dialer::from_pem`])
//!   and dials pod IPs while verifying the pod's DNS name ([`Dialer::connect_as`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use super::reload::ReloadingKey;
use super::server::{provider, versions};
use super::{files, TlsConfig, TlsError, TlsInfo};

/// Connects tonic endpoints, over TLS for https URLs.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("tls", &self.tls.is_some()).finish()
    }
}

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
            .with_custom_certificate_verifier(Arc::new(SelfSigned(provider.clone())))
    } else {
        builder.with_root_certificates(roots)
    };
    let mut config = match identity {
        Some(info) => builder.with_client_cert_resolver(Arc::new(ReloadingKey::load(info, provider)?)),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

impl Dialer {
    /// A dialer for http URLs only (a member without peers in unit tests).
    pub fn plain() -> Dialer {
        Dialer::default()
    }

    /// For other members' peer URLs.
    pub fn for_peers(cfg: &TlsConfig) -> Result<Dialer, TlsError> {
        let mut roots = RootCertStore::empty();
        add_roots(&mut roots, &cfg.peer)?;
        let identity = cfg.peer.has_cert().then_some(&cfg.peer);
        let config = client_config(cfg, roots, cfg.peer.self_signed, identity)?;
        Ok(Dialer {
            tls: Some(Arc::new(config)),
        })
    }

    /// For other members' client URLs (forwarding to the leader).
    pub fn for_clients(cfg: &TlsConfig) -> Result<Dialer, TlsError> {
        let mut roots = RootCertStore::empty();
        add_roots(&mut roots, &cfg.client)?;
        add_roots(&mut roots, &cfg.peer)?;
        let identity = client_url_identity(cfg);
        let config = client_config(cfg, roots, cfg.client.self_signed, identity)?;
        Ok(Dialer {
            tls: Some(Arc::new(config)),
        })
    }

    /// For a client whose CA bundle and certificate/key pair are PEM in memory (the operator's,
    /// from Secrets). The pair is fixed: a rotated Secret means a new dialer.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Dialer, TlsError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| TlsError::Config(format!("{what}: {e}"));
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            roots
                .add(c.map_err(|e| bad("CA bundle", &e))?)
                .map_err(|e| bad("CA bundle", &e))?;
        }
        if roots.is_empty() {
            return Err(TlsError::Config("CA bundle: no CERTIFICATE block found".into()));
        }
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate", &e))?;
        if chain.is_empty() {
            return Err(TlsError::Config("certificate: no CERTIFICATE block found".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("private key", &e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("certificate and key", &e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Dialer {
            tls: Some(Arc::new(config)),
        })
    }

    /// Connects to `url` with the endpoint settings `configure` adds (timeouts): plain for
    /// http, TLS for https.
    ///
    /// For https, tonic is handed the URL with an `http` scheme and this connector does the
    /// TLS: tonic built with one of its own TLS features would otherwise insist on its own
    /// TLS configuration for https URIs (feature unification can turn one on, e.g. a
    /// dev-dependency on a TLS-enabled gRPC client).
    pub async fn connect(
        &self,
        url: &str,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        self.connect_as(url, None, configure).await
    }

    /// [`connect`](Self::connect), verifying the server's certificate for `server_name`
    /// instead of the URL's host (the operator dials a pod's IP, whose certificate names
    /// the pod's DNS name).
    pub async fn connect_as(
        &self,
        url: &str,
        server_name: Option<&str>,
        configure: impl FnOnce(Endpoint) -> Endpoint,
    ) -> Result<Channel, tonic::transport::Error> {
        match (&self.tls, url.strip_prefix("https://")) {
            (Some(tls), Some(rest)) => {
                let endpoint = configure(Endpoint::from_shared(format!("http://{rest}"))?);
                let connector = TlsConnector {
                    config: tls.clone(),
                    server_name: server_name.map(str::to_string),
                };
                endpoint.connect_with_connector(connector).await
            }
            _ => configure(Endpoint::from_shared(url.to_string())?).connect().await,
        }
    }
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

/// An error with its sources (tonic's transport errors say only "transport error"),
/// leaving out a source that only repeats the previous text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// tower connector: TCP, then the TLS handshake with the URL's host as server name.
#[derive(Clone)]
struct TlsConnector {
    config: Arc<ClientConfig>,
    /// Name to verify instead of the URL's host.
    server_name: Option<String>,
}

type Io = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

fn io_error(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)
}

impl tower::Service<Uri> for TlsConnector {
    type Response = Io;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Io, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = self.config.clone();
        let expected = self.server_name.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| io_error(format!("{uri}: no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(expected.unwrap_or_else(|| host.clone()))
                .map_err(|e| io_error(format!("{uri}: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(TokioIo::new(tls))
        })
    }
}

/// Accepts any server certificate (self-signed ones of `--auto-tls`), still checking the
/// handshake signatures so that the peer holds the certificate's key.
#[derive(Debug)]
struct SelfSigned(Arc<CryptoProvider>);

impl ServerCertVerifier for SelfSigned {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::{client_url_identity, error_chain, Dialer};
    use crate::etcd::tls::{TlsConfig, TlsInfo};
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

    #[test]
    fn from_pem_names_what_is_wrong() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let (ca_pem, cert, key) = (ca.cert.pem(), leaf.cert.pem(), leaf.signing_key.serialize_pem());
        assert!(Dialer::from_pem(ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes()).is_ok());
        let e = |r: Result<Dialer, super::TlsError>| r.unwrap_err().to_string();
        assert_eq!(
            e(Dialer::from_pem(b"", cert.as_bytes(), key.as_bytes())),
            "CA bundle: no CERTIFICATE block found"
        );
        assert_eq!(
            e(Dialer::from_pem(ca_pem.as_bytes(), b"junk", key.as_bytes())),
            "certificate: no CERTIFICATE block found"
        );
        assert!(e(Dialer::from_pem(ca_pem.as_bytes(), cert.as_bytes(), b"junk")).starts_with("private key: "));
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let mismatch = e(Dialer::from_pem(
            ca_pem.as_bytes(),
            cert.as_bytes(),
            other.signing_key.serialize_pem().as_bytes(),
        ));
        assert!(mismatch.starts_with("certificate and key: "), "{mismatch}");
    }

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
        }
    }

    #[test]
    fn error_chain_names_every_distinct_cause() {
        let alert = E("received fatal alert: UnknownCA", None);
        let e = E(
            "transport error",
            Some(Box::new(E("transport error", Some(Box::new(alert))))),
        );
        assert_eq!(error_chain(&e), "transport error: received fatal alert: UnknownCA");
        assert_eq!(error_chain(&E("alone", None)), "alone");
    }
}
