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

pub use rewrite::{fix_authority, AuthorityFix, AuthorityRewriter, RewriteError, MAX_BUFFERED_BLOCK};
pub use stream::RewriteStream;
