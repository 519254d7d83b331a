//! TLS for the client and peer listeners and for member-to-member connections, with
//! rustls (ring provider) and tokio-rustls.
//!
//! - [`config`]: etcd's TLS flags as pure, validated settings ([`TlsConfig`]).
//! - [`files`]: PEM certificates, keys, CA bundles and CRLs, errors naming flag and file.
//! - [`reload`]: the certificate/key pair re-read when its files change (rotation
//!   without restart), used by servers and dialers alike.
//! - [`server`]: https listeners (ALPN `h2` + `http/1.1`, mTLS, CRLs, versions, suites);
//!   after the handshake a connection is served exactly like a plain one.
//! - [`client`]: [`Dialer`], which connects tonic endpoints to other members over https.
//! - [`identity`]: the client certificate's CN, attached to requests for the auth layer.
//! - [`auto`]: self-signed certificates for `--auto-tls` / `--peer-auto-tls`.

pub mod auto;
pub mod client;
pub mod config;
pub mod files;
pub mod identity;
pub mod reload;
pub mod server;

use std::path::PathBuf;

use thiserror::Error;

pub use client::{client_dialer, peer_dialer};
pub use config::{TlsConfig, TlsInfo, TlsOptions, TlsVersion};
pub use identity::ClientIdentity;
pub use rustcd_dial::Dialer;
pub use server::{serve, ServerTls};

/// A TLS file or setting that cannot be used.
#[derive(Debug, Error)]
pub enum TlsError {
    // The I/O error is part of the message, not a chained source (printed once).
    #[error("cannot read --{flag} {}: {error}", path.display())]
    Read {
        flag: String,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("--{flag} {}: {reason}", path.display())]
    Parse {
        flag: String,
        path: PathBuf,
        reason: String,
    },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{0}")]
    Config(String),
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("cannot generate a self-signed certificate: {0}")]
    SelfSigned(String),
}
