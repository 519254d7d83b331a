//! [`RewriteStream`]: an `AsyncRead + AsyncWrite` wrapper that runs the bytes read from
//! the client through an [`AuthorityRewriter`].

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::rewrite::AuthorityRewriter;

/// Size of the buffer raw client bytes are read into.
const READ_CHUNK: usize = 16 * 1024;

/// Wraps a client connection: reads are rewritten by an [`AuthorityRewriter`], writes,
/// flushes and shutdowns go straight to the inner stream.
#[derive(Debug)]
pub struct RewriteStream<S> {
    inner: S,
    rewriter: AuthorityRewriter,
    /// Transformed bytes not yet returned to the reader, from `pos`.
    pending: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
}

impl<S> RewriteStream<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> RewriteStream<S> {
        RewriteStream {
            inner,
            rewriter: AuthorityRewriter::new(),
            pending: Vec::new(),
            pos: 0,
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection's rewriter (for inspection).
    pub fn rewriter(&self) -> &AuthorityRewriter {
        &self.rewriter
    }

    /// Unwraps the inner stream; bytes read but not yet returned are lost.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RewriteStream<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.pending.len() {
                let n = (this.pending.len() - this.pos).min(buf.remaining());
                buf.put_slice(&this.pending[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.pending.len() {
                    this.pending.clear();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut raw = ReadBuf::new(&mut this.scratch);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut raw))?;
            let filled = raw.filled();
            if filled.is_empty() {
                // EOF (an unfinished header block is dropped; the server sees a truncated stream).
                return Poll::Ready(Ok(()));
            }
            this.rewriter
                .feed(filled, &mut this.pending)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RewriteStream<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
