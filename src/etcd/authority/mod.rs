//! Repairs invalid HTTP/2 `:authority` pseudo-headers sent by etcd's Go clients before
//! hyper/h2 sees them.
//!
//! # Why
//!
//! Go's gRPC server accepts any `:authority`; Rust's `h2` parses it as a URI authority
//! and answers `RST_STREAM(PROTOCOL_ERROR)` when that fails. Two etcd clients send such
//! values:
//!
//! * etcdctl 3.4 (`--endpoints http://127.0.0.1:2379`, e.g. `endpoint status`) sends
//!   `:authority: http://127.0.0.1:2379`;
//! * the etcd v3.5.0–3.5.9 client library (used by kube-apiserver) sends
//!   `:authority: #initially=[https://example.com:2379]`.
//!
//! # How
//!
//! [`RewriteStream`] wraps each accepted connection and runs the client-to-server bytes
//! through an [`AuthorityRewriter`]. Connections that do not start with the HTTP/2 client
//! preface (HTTP/1.1) are copied untouched. For HTTP/2 every frame except HEADERS and
//! CONTINUATION is copied untouched; header blocks are collected, HPACK-decoded with a
//! per-connection decoder that mirrors the client's encoder, and an invalid `:authority`
//! is replaced by the host:port after its last `://` ([`fix_authority`]) or dropped.
//!
//! # Invariant: the server's HPACK decoder state
//!
//! HPACK is stateful: a block can reference entries the client's encoder inserted into
//! the dynamic table in earlier blocks. The server's decoder must therefore see a
//! stream of blocks that is consistent on its own. The rewriter keeps it so:
//!
//! * Until the first block that needs a fix, every block is passed through byte for
//!   byte, so the server's dynamic table equals ours and the client's.
//! * Once a block with a *valid* `:authority` has passed through untouched, the rest of
//!   the connection is copied without decoding: gRPC clients send one authority per
//!   connection, and HPACK decoding costs far more than copying. (A client that switched
//!   to an invalid authority later on the same connection would get h2's own error, as
//!   without this module.)
//! * The first fixed block and *every later block* on the connection are re-encoded
//!   from the decoded header list using only "literal without indexing" representations
//!   (plus the block's leading dynamic-table size updates, replayed verbatim). Such
//!   blocks neither read nor modify the server's dynamic table, so references the
//!   client makes into its table are resolved by our decoder and never reach the server.
//!
//! Header order and every other header value are preserved; the re-encoded block is
//! emitted unpadded as HEADERS (+ CONTINUATION beyond 16384 bytes) with the original
//! stream id, END_STREAM flag and PRIORITY fields. Input the rewriter cannot follow
//! (undecodable HPACK, malformed or interleaved header frames) switches the connection
//! to plain pass-through if nothing was rewritten yet (the server then reports the
//! error itself), and fails the connection otherwise. Header blocks are buffered up to
//! [`MAX_BUFFERED_BLOCK`] bytes; all other frames are streamed through unbuffered.
//!
//! Limits: only HTTP/2 with prior knowledge (what gRPC clients use) is inspected, not
//! HTTP/1.1 `Upgrade: h2c`; re-encoded fields lose HPACK's "never indexed" marking,
//! which only matters to intermediaries, and the server is the last hop.

mod frame;
mod hpack;
mod rewrite;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_stream;

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;

use crate::etcd::tls::ClientIdentity;

pub use rewrite::{fix_authority, AuthorityFix, AuthorityRewriter, RewriteError, MAX_BUFFERED_BLOCK};
pub use stream::RewriteStream;

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
