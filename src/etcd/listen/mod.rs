//! The client and peer listeners' accept loop and per-connection serving: every accepted connection
//! (plain TCP, or the decrypted stream `tls::server` hands on after the handshake) is served by hyper
//! (HTTP/1.1 and HTTP/2 with prior knowledge, gRPC and HTTP on the same port) through
//! [`RewriteStream`], which repairs the invalid `:authority` values etcd's Go clients send (see
//! `authority`).

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::authority::RewriteStream;
use crate::tls::ClientIdentity;
/// Serves one connection (HTTP/1.1, or HTTP/2 with prior knowledge) with `router`,
/// repairing invalid `:authority` headers. Errors are logged at debug level.
pub async fn serve_connection(stream: TcpStream, router: axum::Router) {
    let peer = stream.peer_addr().ok();
    serve_io(stream, peer, router, None).await
}

/// Serves one connection over any byte stream (a TCP stream, or a TLS stream on top of
/// one). `identity` (the TLS client certificate's name) is attached to every request as
/// an extension, for the auth layer.
pub async fn serve_io<S>(stream: S, peer: Option<SocketAddr>, router: axum::Router, identity: Option<ClientIdentity>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(RewriteStream::new(stream));
    let service = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
        if let Some(id) = &identity {
            req.extensions_mut().insert(id.clone());
        }
        router.clone().oneshot(req)
    });
    let service = TowerToHyperService::new(service);
    let mut builder = Builder::new(TokioExecutor::new());
    // Same connection settings as `axum::serve`.
    builder.http2().enable_connect_protocol();
    if let Err(e) = builder.serve_connection_with_upgrades(io, service).await {
        tracing::debug!(?peer, error = %e, "connection error");
    }
}

/// Waits for the next connection. Like axum, accept errors are retried (after a second
/// unless the error concerns only that connection, e.g. ECONNABORTED).
pub async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
                if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
                    tracing::debug!(error = %e, "accept failed");
                } else {
                    // E.g. EMFILE: give other connections time to close.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "set TCP_NODELAY failed");
        }
        return stream;
    }
}

/// Accepts connections on `listener` forever, serving each with [`serve_connection`] on
/// its own task: a drop-in replacement for `axum::serve(listener, router)`; never returns
/// in practice.
pub async fn serve(listener: TcpListener, router: axum::Router) -> std::io::Result<()> {
    loop {
        let stream = accept(&listener).await;
        tokio::spawn(serve_connection(stream, router.clone()));
    }
}
