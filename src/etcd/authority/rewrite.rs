//! [`AuthorityRewriter`]: the client-to-server byte-stream transformer.

use std::fmt;

use axum::http::uri::Authority;
use fluke_hpack::Decoder;

use super::frame::{
    parse_headers_payload, write_header_block, FrameHeader, FLAG_END_HEADERS, FLAG_END_STREAM, FRAME_HEADER_LEN,
    PREFACE, PRIORITY_LEN, TYPE_CONTINUATION, TYPE_HEADERS,
};
use super::hpack::{encode_literal, scan_block, HpackError};

/// Largest header block (HEADERS + CONTINUATION payloads, with their frame headers)
/// buffered before the connection is refused.
pub const MAX_BUFFERED_BLOCK: usize = 16 * 1024 * 1024 + FRAME_HEADER_LEN;

/// Largest HPACK dynamic table size the client may announce. h2 itself only accepts
/// 4096 (its SETTINGS_HEADER_TABLE_SIZE); this bound only keeps our decoder's memory
/// bounded, anything larger is refused by the server anyway.
const MAX_DYNAMIC_TABLE_SIZE: usize = 64 * 1024;

/// Why a connection's byte stream cannot be transformed. The caller closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// A header block grew beyond [`MAX_BUFFERED_BLOCK`].
    #[error("HTTP/2 header block of {0} bytes exceeds the {MAX_BUFFERED_BLOCK}-byte limit")]
    BlockTooLarge(usize),
    /// A frame other than CONTINUATION on the same stream interrupted a header block
    /// after this connection's HPACK stream was already rewritten.
    #[error("HTTP/2 header block on stream {stream_id} interrupted by frame type {kind:#x}")]
    InterruptedBlock {
        /// Stream of the unfinished header block.
        stream_id: u32,
        /// Type of the interrupting frame.
        kind: u8,
    },
    /// A malformed HEADERS frame after this connection's HPACK stream was rewritten.
    #[error(transparent)]
    MalformedHeaders(#[from] super::frame::MalformedHeaders),
    /// Undecodable HPACK after this connection's HPACK stream was rewritten.
    #[error(transparent)]
    Hpack(#[from] HpackError),
}

/// What to do with an `:authority` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorityFix {
    /// Valid: keep as is.
    Keep,
    /// Invalid: replace with this valid authority.
    Replace(Vec<u8>),
    /// Invalid and not salvageable: drop the header.
    Drop,
}

fn is_valid_authority(value: &[u8]) -> bool {
    Authority::try_from(value).is_ok()
}

/// Decides how to fix an `:authority` value: valid values are kept; otherwise the part
/// after the last `://` up to the first `/` (or `]`) is used if that is valid
/// (`http://127.0.0.1:2379` → `127.0.0.1:2379`,
/// `#initially=[https://example.com:2379]` → `example.com:2379`); otherwise it is dropped.
pub fn fix_authority(value: &[u8]) -> AuthorityFix {
    if is_valid_authority(value) {
        return AuthorityFix::Keep;
    }
    let Some(sep) = value.windows(3).rposition(|w| w == b"://") else {
        return AuthorityFix::Drop;
    };
    let rest = &value[sep + 3..];
    let host = rest.split(|&b| b == b'/').next().unwrap_or_default();
    let mut candidates = vec![host];
    if let Some(h) = host.strip_suffix(b"]") {
        // `[https://[::1]:2379]`: keep the IPv6 literal's bracket, drop the wrapper's.
        candidates.push(h);
    }
    candidates.push(host.split(|&b| b == b']').next().unwrap_or_default());
    candidates
        .into_iter()
        .find(|c| is_valid_authority(c))
        .map_or(AuthorityFix::Drop, |c| AuthorityFix::Replace(c.to_vec()))
}

enum Mode {
    /// Comparing the first bytes with the HTTP/2 preface; `matched` bytes matched so far.
    Preface { matched: usize },
    /// Not HTTP/2 with prior knowledge (or gave up transparently): copy everything.
    Passthrough,
    /// Parsing HTTP/2 frames.
    Frames,
}

enum FrameState {
    /// Collecting a 9-byte frame header.
    Header { buf: [u8; FRAME_HEADER_LEN], len: usize },
    /// Copying `remaining` payload bytes of a frame we do not look at.
    Copy { remaining: usize },
    /// Buffering the payload of a HEADERS or CONTINUATION frame.
    Buffer {
        raw_header: [u8; FRAME_HEADER_LEN],
        header: FrameHeader,
        payload: Vec<u8>,
    },
}

impl FrameState {
    fn header() -> FrameState {
        FrameState::Header {
            buf: [0; FRAME_HEADER_LEN],
            len: 0,
        }
    }
}

/// A header block being collected (HEADERS frame seen, END_HEADERS not yet).
struct PendingBlock {
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    /// Concatenated header block fragments.
    fragment: Vec<u8>,
    /// The original frames, byte for byte, for the pass-through case.
    raw: Vec<u8>,
}

/// Per-connection transformer of the client-to-server byte stream that repairs invalid
/// `:authority` pseudo-headers. See the [module documentation](super) for the invariant.
pub struct AuthorityRewriter {
    mode: Mode,
    state: FrameState,
    block: Option<PendingBlock>,
    /// Mirrors the client's HPACK encoder.
    decoder: Decoder<'static>,
    /// Whether any header block on this connection has been re-encoded; from then on
    /// every block is re-encoded.
    rewritten: bool,
}

impl fmt::Debug for AuthorityRewriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorityRewriter")
            .field("rewritten", &self.rewritten)
            .finish_non_exhaustive()
    }
}

impl Default for AuthorityRewriter {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthorityRewriter {
    /// A rewriter for a new connection.
    pub fn new() -> AuthorityRewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_DYNAMIC_TABLE_SIZE);
        AuthorityRewriter {
            mode: Mode::Preface { matched: 0 },
            state: FrameState::header(),
            block: None,
            decoder,
            rewritten: false,
        }
    }

    /// Whether some header block on this connection has been re-encoded.
    pub fn has_rewritten(&self) -> bool {
        self.rewritten
    }

    /// Whether this connection is being passed through untouched (not HTTP/2 with prior
    /// knowledge, or input the rewriter cannot follow before anything was rewritten).
    pub fn is_passthrough(&self) -> bool {
        matches!(self.mode, Mode::Passthrough)
    }

    /// Consumes `input` (any chunk of the client's bytes) and appends the bytes to hand to
    /// the HTTP server to `out`. Bytes of an unfinished header block are held back.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        while !input.is_empty() {
            match &mut self.mode {
                Mode::Passthrough => {
                    out.extend_from_slice(input);
                    return Ok(());
                }
                Mode::Preface { matched } => {
                    let want = &PREFACE[*matched..];
                    let n = want.len().min(input.len());
                    if input[..n] == want[..n] {
                        out.extend_from_slice(&input[..n]);
                        *matched += n;
                        input = &input[n..];
                        if *matched == PREFACE.len() {
                            self.mode = Mode::Frames;
                        }
                    } else {
                        // The already matched prefix was emitted as it arrived.
                        self.mode = Mode::Passthrough;
                    }
                }
                Mode::Frames => {
                    let used = self.feed_frames(input, out)?;
                    input = &input[used..];
                }
            }
        }
        Ok(())
    }

    /// Processes frame bytes; returns how many bytes of `input` were consumed.
    fn feed_frames(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RewriteError> {
        match &mut self.state {
            FrameState::Header { buf, len } => {
                let n = (FRAME_HEADER_LEN - *len).min(input.len());
                buf[*len..*len + n].copy_from_slice(&input[..n]);
                *len += n;
                if *len == FRAME_HEADER_LEN {
                    let raw = *buf;
                    self.state = FrameState::header();
                    self.on_frame_header(raw, out)?;
                }
                Ok(n)
            }
            FrameState::Copy { remaining } => {
                let n = (*remaining).min(input.len());
                out.extend_from_slice(&input[..n]);
                *remaining -= n;
                if *remaining == 0 {
                    self.state = FrameState::header();
                }
                Ok(n)
            }
            FrameState::Buffer {
                raw_header,
                header,
                payload,
            } => {
                let n = (header.length - payload.len()).min(input.len());
                payload.extend_from_slice(&input[..n]);
                if payload.len() == header.length {
                    let (raw_header, header) = (*raw_header, *header);
                    let payload = std::mem::take(payload);
                    self.state = FrameState::header();
                    self.on_header_frame(raw_header, header, payload, out)?;
                }
                Ok(n)
            }
        }
    }

    fn on_frame_header(&mut self, raw: [u8; FRAME_HEADER_LEN], out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let header = FrameHeader::parse(&raw);
        let in_block = self.block.as_ref().map(|b| b.stream_id);
        let buffer = match in_block {
            Some(stream_id) if header.kind != TYPE_CONTINUATION || header.stream_id != stream_id => {
                // A connection error (RFC 9113 §6.10) the server will report; we can only
                // stay transparent if nothing was rewritten yet.
                let mut bytes = self.block.take().map(|b| b.raw).unwrap_or_default();
                bytes.extend_from_slice(&raw);
                self.give_up(
                    &bytes,
                    out,
                    RewriteError::InterruptedBlock {
                        stream_id,
                        kind: header.kind,
                    },
                )?;
                return Ok(());
            }
            Some(_) => true,
            None => header.kind == TYPE_HEADERS,
        };
        if !buffer {
            out.extend_from_slice(&raw);
            if header.length > 0 {
                self.state = FrameState::Copy {
                    remaining: header.length,
                };
            }
            return Ok(());
        }
        let buffered = self.block.as_ref().map_or(0, |b| b.raw.len());
        let total = buffered + FRAME_HEADER_LEN + header.length;
        if total > MAX_BUFFERED_BLOCK {
            return Err(RewriteError::BlockTooLarge(total));
        }
        let payload = Vec::with_capacity(header.length.min(64 * 1024));
        if header.length == 0 {
            self.on_header_frame(raw, header, payload, out)
        } else {
            self.state = FrameState::Buffer {
                raw_header: raw,
                header,
                payload,
            };
            Ok(())
        }
    }

    /// A complete HEADERS or CONTINUATION frame (the latter only within a block).
    fn on_header_frame(
        &mut self,
        raw_header: [u8; FRAME_HEADER_LEN],
        header: FrameHeader,
        payload: Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<(), RewriteError> {
        let mut raw = Vec::with_capacity(FRAME_HEADER_LEN + payload.len());
        raw.extend_from_slice(&raw_header);
        raw.extend_from_slice(&payload);
        let block = match self.block.take() {
            Some(mut block) => {
                block.fragment.extend_from_slice(&payload);
                block.raw.extend_from_slice(&raw);
                block
            }
            None => match parse_headers_payload(header.flags, &payload) {
                Ok(p) => PendingBlock {
                    stream_id: header.stream_id,
                    end_stream: header.has(FLAG_END_STREAM),
                    priority: p.priority,
                    fragment: p.fragment.to_vec(),
                    raw,
                },
                Err(e) => return self.give_up(&raw, out, e.into()),
            },
        };
        if header.has(FLAG_END_HEADERS) {
            self.finish_block(block, out)
        } else {
            self.block = Some(block);
            Ok(())
        }
    }

    /// A complete header block: decode, fix `:authority`, pass through or re-encode.
    fn finish_block(&mut self, block: PendingBlock, out: &mut Vec<u8>) -> Result<(), RewriteError> {
        let decoded = scan_block(&block.fragment).and_then(|leading| {
            self.decoder
                .decode(&block.fragment)
                .map(|headers| (leading, headers))
                .map_err(|e| HpackError::Decode(format!("{e:?}")))
        });
        let (leading, headers) = match decoded {
            Ok(d) => d,
            Err(e) => return self.give_up(&block.raw, out, e.into()),
        };
        let mut changed = false;
        let mut valid_authority = false;
        let mut fixed = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if name == b":authority" {
                match fix_authority(&value) {
                    AuthorityFix::Keep => {
                        valid_authority = true;
                        fixed.push((name, value))
                    }
                    AuthorityFix::Replace(v) => {
                        tracing::debug!(from = %String::from_utf8_lossy(&value), to = %String::from_utf8_lossy(&v), "rewrote invalid :authority");
                        changed = true;
                        fixed.push((name, v));
                    }
                    AuthorityFix::Drop => {
                        tracing::debug!(value = %String::from_utf8_lossy(&value), "dropped invalid :authority");
                        changed = true;
                    }
                }
            } else {
                fixed.push((name, value));
            }
        }
        if !changed && !self.rewritten {
            out.extend_from_slice(&block.raw);
            if valid_authority {
                // gRPC clients use one authority per connection: once a valid one has been
                // seen, nothing on this connection needs repair, so stop decoding (HPACK
                // decoding costs far more than copying bytes).
                self.mode = Mode::Passthrough;
            }
            return Ok(());
        }
        self.rewritten = true;
        let mut encoded = Vec::with_capacity(block.fragment.len() + 64);
        encoded.extend_from_slice(&block.fragment[..leading]);
        for (name, value) in &fixed {
            encode_literal(name, value, &mut encoded);
        }
        write_header_block(block.stream_id, block.end_stream, block.priority, &encoded, out);
        Ok(())
    }

    /// Input the rewriter cannot follow. Before any rewrite the server's view is still
    /// the client's exact bytes, so hand it `raw` and copy the rest of the connection
    /// untouched (the server reports the problem itself); afterwards fail.
    fn give_up(&mut self, raw: &[u8], out: &mut Vec<u8>, err: RewriteError) -> Result<(), RewriteError> {
        if self.rewritten {
            return Err(err);
        }
        tracing::debug!(error = %err, "authority rewriter: passing the rest of the connection through");
        out.extend_from_slice(raw);
        self.mode = Mode::Passthrough;
        self.block = None;
        self.state = FrameState::header();
        Ok(())
    }
}
