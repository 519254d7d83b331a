//! https listeners: the rustls server configuration of one side (client or peer) and the
//! accept loop that runs the TLS handshake before handing the stream to
//! [`listen::serve_io`], so the `:authority` repair and
//! hyper's HTTP/1.1 + HTTP/2 serving work unchanged inside TLS.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::identity::{check_allowed_cn, check_allowed_hostname, common_name, ClientIdentity};
use super::reload::ReloadingKey;
use super::{files, TlsError, TlsInfo, TlsOptions, TlsVersion};
use crate::listen;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused connection is drained before it is closed (see [`linger`]).
const LINGER: Duration = Duration::from_secs(1);

/// The ring provider limited to the configured TLS 1.2 suites (TLS 1.3 suites stay: Go,
/// and so etcd, does not let them be configured either).
pub fn provider(opts: &TlsOptions) -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    if !opts.cipher_suites.is_empty() {
        p.cipher_suites
            .retain(|s| matches!(s, SupportedCipherSuite::Tls13(_)) || opts.cipher_suites.contains(&s.suite()));
    }
    Arc::new(p)
}

/// The protocol versions between `--tls-min-version` and `--tls-max-version`.
pub fn versions(opts: &TlsOptions) -> Vec<&'static SupportedProtocolVersion> {
    [
        (TlsVersion::Tls13, &rustls::version::TLS13),
        (TlsVersion::Tls12, &rustls::version::TLS12),
    ]
    .into_iter()
    .filter(|(v, _)| (opts.min_version..=opts.max_version).contains(v))
    .map(|(_, p)| p)
    .collect()
}

/// Whether a side's listeners demand a client certificate: with `--client-cert-auth`, and
/// (as etcd's `TLSInfo.ServerConfig` does) whenever a trusted CA file is given. Only
/// `--client-cert-auth` makes the certificate's CN a user for auth.
pub fn requires_client_cert(info: &TlsInfo) -> bool {
    info.client_cert_auth || info.trusted_ca_file.is_some()
}

/// The rustls server configuration of one side: its (reloading) certificate, ALPN `h2`
/// and `http/1.1`, and client certificates verified against `--trusted-ca-file` (and the
/// CRL file, if any) when [`requires_client_cert`].
pub fn server_config(info: &TlsInfo, opts: &TlsOptions) -> Result<rustls::ServerConfig, TlsError> {
    let provider = provider(opts);
    let builder =
        rustls::ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(&versions(opts))?;
    let builder = if requires_client_cert(info) {
        let ca = info.trusted_ca_file.as_ref().ok_or_else(|| {
            TlsError::Config(format!(
                "--{} needs --{}: the CA that signs the client certificates",
                info.flag("client-cert-auth"),
                info.flag("trusted-ca-file")
            ))
        })?;
        let roots = files::roots(&info.flag("trusted-ca-file"), ca)?;
        let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
        if let Some(crl) = &info.crl_file {
            // Like Go's check in etcd: is the presented certificate's serial listed?
            verifier = verifier
                .with_crls(files::crls(&info.crl_flag(), crl)?)
                .only_check_end_entity_revocation()
                .allow_unknown_revocation_status();
        }
        let verifier = verifier.build().map_err(|e| TlsError::Config(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(ReloadingKey::load(info, provider)?));
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(cfg)
}

/// What an https listener needs: the acceptor and the post-handshake checks.
pub struct ServerTls {
    acceptor: TlsAcceptor,
    allowed_cn: Option<String>,
    allowed_hostname: Option<String>,
}

impl ServerTls {
    /// Reads the side's files (errors name them) and builds the acceptor.
    pub fn new(info: &TlsInfo, opts: &TlsOptions) -> Result<Arc<ServerTls>, TlsError> {
        let cfg = server_config(info, opts)?;
        Ok(Arc::new(ServerTls {
            acceptor: TlsAcceptor::from(Arc::new(cfg)),
            allowed_cn: info.allowed_cn.clone(),
            allowed_hostname: info.allowed_hostname.clone(),
        }))
    }

    async fn serve_connection(self: Arc<Self>, stream: TcpStream, router: axum::Router) {
        let peer = stream.peer_addr().ok();
        let handshake = self.acceptor.accept(stream).into_fallible();
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(tls)) => tls,
            Ok(Err((e, tcp))) => {
                tracing::warn!(remote = ?peer, error = %e, "rejected connection: TLS handshake failed");
                linger(tcp).await;
                return;
            }
            Err(_) => {
                tracing::warn!(remote = ?peer, "rejected connection: TLS handshake timed out");
                return;
            }
        };
        let leaf = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first());
        let cn = leaf.and_then(|leaf| common_name(leaf));
        let allowed = check_allowed_cn(self.allowed_cn.as_deref(), cn.as_deref())
            .and_then(|()| check_allowed_hostname(self.allowed_hostname.as_deref(), leaf.map(|l| l.as_ref())));
        if let Err(e) = allowed {
            tracing::warn!(remote = ?peer, error = %e, "rejected connection");
            return;
        }
        let identity = ClientIdentity { common_name: cn };
        listen::serve_io(tls, peer, router, Some(identity)).await
    }
}

/// Closes a refused connection so that the TLS alert already sent reaches the client:
/// closing with unread input (with TLS 1.3 the client is already sending requests) makes
/// the kernel reset the connection, which can discard the alert before the client reads it.
async fn linger(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut buf = [0u8; 4096];
    let drain = async { while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Accepts connections on `listener` forever, serving each over TLS on its own task.
pub async fn serve(listener: TcpListener, router: axum::Router, tls: Arc<ServerTls>) -> std::io::Result<()> {
    loop {
        let stream = listen::accept(&listener).await;
        tokio::spawn(tls.clone().serve_connection(stream, router.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::CipherSuite;

    #[test]
    fn versions_and_suites_follow_the_options() {
        let all = TlsOptions::default();
        assert_eq!(versions(&all).len(), 2);
        let only13 = TlsOptions {
            min_version: TlsVersion::Tls13,
            ..TlsOptions::default()
        };
        assert_eq!(versions(&only13), vec![&rustls::version::TLS13]);
        let only12 = TlsOptions {
            max_version: TlsVersion::Tls12,
            ..TlsOptions::default()
        };
        assert_eq!(versions(&only12), vec![&rustls::version::TLS12]);
        let one = TlsOptions {
            cipher_suites: vec![CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256],
            ..TlsOptions::default()
        };
        let suites: Vec<CipherSuite> = provider(&one).cipher_suites.iter().map(|s| s.suite()).collect();
        assert!(suites.contains(&CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256));
        assert!(suites.contains(&CipherSuite::TLS13_AES_128_GCM_SHA256));
        assert!(!suites.contains(&CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384));
    }

    #[test]
    fn a_trusted_ca_alone_demands_client_certificates_like_etcd() {
        let mut info = TlsInfo::client("c.pem", "k.pem", "", false, "", false);
        assert!(!requires_client_cert(&info));
        info.trusted_ca_file = Some("ca.pem".into());
        assert!(requires_client_cert(&info));
        info.trusted_ca_file = None;
        info.client_cert_auth = true;
        assert!(requires_client_cert(&info));
    }

    #[test]
    fn client_cert_auth_needs_a_trusted_ca() {
        let dir = tempfile::tempdir().unwrap();
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert, c.cert.pem()).unwrap();
        std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
        let mut info = TlsInfo::peer(cert.to_str().unwrap(), key.to_str().unwrap(), "", true, "", false, "");
        let e = server_config(&info, &TlsOptions::default()).unwrap_err();
        assert!(
            e.to_string()
                .contains("--peer-client-cert-auth needs --peer-trusted-ca-file"),
            "{e}"
        );
        info.trusted_ca_file = Some(cert.clone());
        let cfg = server_config(&info, &TlsOptions::default()).unwrap();
        assert_eq!(cfg.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        info.crl_file = Some(dir.path().join("none.crl"));
        let e = server_config(&info, &TlsOptions::default()).unwrap_err();
        assert!(e.to_string().contains("cannot read --peer-crl-file"), "{e}");
    }
}
