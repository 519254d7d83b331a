//! Connecting tonic channels to etcd members: plain for http URLs, TLS (rustls with the ring
//! provider, ALPN `h2`) for https URLs. Shared by the server (peer transport, snapshots, member
//! discovery, forwarding to the leader) and the operator (dialing pod IPs with certificates from
//! Kubernetes Secrets); each side builds the rustls [`ClientConfig`] it needs and hands it to
//! [`Dialer::tls`].
//!
//! For https, tonic is handed the URL with an `http` scheme and this crate's connector does the
//! TLS: tonic built with one of its own TLS features (feature unification can turn one on, e.g.
//! a dev-dependency on a TLS-enabled gRPC client) would otherwise insist on its own TLS
//! configuration for https URIs.

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
use thiserror::Error;
use tokio::net::TcpStream;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

/// PEM material or a TLS setting that cannot be used.
#[derive(Debug, Error)]
pub enum DialError {
    /// What is wrong, naming the piece (`CA bundle: ...`, `private key: ...`).
    #[error("{0}")]
    Pem(String),
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

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

impl Dialer {
    /// A dialer for http URLs only.
    pub fn plain() -> Dialer {
        Dialer::default()
    }

    /// A dialer that uses `config` for https URLs (ALPN is set to `h2` here).
    pub fn tls(mut config: ClientConfig) -> Dialer {
        config.alpn_protocols = vec![b"h2".to_vec()];
        Dialer {
            tls: Some(Arc::new(config)),
        }
    }

    /// For a client whose CA bundle and certificate/key pair are PEM in memory (the operator's,
    /// from Secrets). The pair is fixed: a rotated Secret means a new dialer.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<Dialer, DialError> {
        Dialer::from_pem_parts(ca, Some((cert, key)))
    }

    /// [`from_pem`](Self::from_pem) with the client certificate/key pair optional (a server that
    /// does not ask for one).
    pub fn from_pem_parts(ca: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Dialer, DialError> {
        let bad = |what: &str, e: &dyn std::fmt::Display| DialError::Pem(format!("{what}: {e}"));
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca) {
            roots
                .add(c.map_err(|e| bad("CA bundle", &e))?)
                .map_err(|e| bad("CA bundle", &e))?;
        }
        if roots.is_empty() {
            return Err(DialError::Pem("CA bundle: no CERTIFICATE block found".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots);
        let Some((cert, key)) = identity else {
            return Ok(Dialer::tls(builder.with_no_client_auth()));
        };
        let chain = CertificateDer::pem_slice_iter(cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad("certificate", &e))?;
        if chain.is_empty() {
            return Err(DialError::Pem("certificate: no CERTIFICATE block found".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| bad("private key", &e))?;
        let config = builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("certificate and key", &e))?;
        Ok(Dialer::tls(config))
    }

    /// Connects to `url` with the endpoint settings `configure` adds (timeouts): plain for
    /// http, TLS for https (see the crate doc).
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

/// A verifier that accepts any server certificate (the self-signed ones of etcd's
/// `--auto-tls`), still checking the handshake signatures so that the peer holds the
/// certificate's key.
pub fn accept_any_certificate(provider: Arc<CryptoProvider>) -> Arc<dyn ServerCertVerifier> {
    Arc::new(SelfSigned(provider))
}

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
    use super::{error_chain, DialError, Dialer};

    #[test]
    fn from_pem_names_what_is_wrong() {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        let leaf = rcgen::generate_simple_self_signed(vec!["client".into()]).unwrap();
        let (ca_pem, cert, key) = (ca.cert.pem(), leaf.cert.pem(), leaf.signing_key.serialize_pem());
        assert!(Dialer::from_pem(ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes()).is_ok());
        let e = |r: Result<Dialer, DialError>| r.unwrap_err().to_string();
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
