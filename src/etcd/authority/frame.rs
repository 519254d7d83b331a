//! HTTP/2 frame layout (RFC 9113 §4.1, §6.2, §6.10): the 9-byte frame header and the
//! parts of a HEADERS frame payload (padding, priority, header block fragment).

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of a frame header.
pub const FRAME_HEADER_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value; every frame we emit fits in it.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16_384;

/// Frame type HEADERS.
pub const TYPE_HEADERS: u8 = 0x1;
/// Frame type CONTINUATION.
pub const TYPE_CONTINUATION: u8 = 0x9;

/// Flag END_STREAM (HEADERS).
pub const FLAG_END_STREAM: u8 = 0x1;
/// Flag END_HEADERS (HEADERS, CONTINUATION).
pub const FLAG_END_HEADERS: u8 = 0x4;
/// Flag PADDED (HEADERS).
pub const FLAG_PADDED: u8 = 0x8;
/// Flag PRIORITY (HEADERS).
pub const FLAG_PRIORITY: u8 = 0x20;

/// Length of the PRIORITY fields (exclusive bit + stream dependency, weight).
pub const PRIORITY_LEN: usize = 5;

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub length: usize,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (31 bits; the reserved bit is dropped).
    pub stream_id: u32,
}

impl FrameHeader {
    /// Parses a 9-byte frame header.
    pub fn parse(b: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            length: (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            stream_id: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    /// Appends the 9-byte encoding of this header to `out`. `length` must fit in 24 bits.
    pub fn write(&self, out: &mut Vec<u8>) {
        debug_assert!(self.length < (1 << 24));
        let len = self.length as u32;
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(self.kind);
        out.push(self.flags);
        out.extend_from_slice(&(self.stream_id & 0x7fff_ffff).to_be_bytes());
    }

    /// Whether the flag bit(s) `flag` are set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag == flag
    }
}

/// The parts of a HEADERS frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadersPayload<'a> {
    /// The PRIORITY fields, if the PRIORITY flag was set.
    pub priority: Option<[u8; PRIORITY_LEN]>,
    /// The header block fragment (padding stripped).
    pub fragment: &'a [u8],
}

/// A HEADERS payload whose padding or priority fields do not fit in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed HEADERS frame: padding or priority exceeds the payload")]
pub struct MalformedHeaders;

/// Splits a HEADERS frame payload into priority fields and header block fragment.
pub fn parse_headers_payload(flags: u8, payload: &[u8]) -> Result<HeadersPayload<'_>, MalformedHeaders> {
    let mut body = payload;
    let mut pad = 0usize;
    if flags & FLAG_PADDED != 0 {
        let (&p, rest) = body.split_first().ok_or(MalformedHeaders)?;
        pad = usize::from(p);
        body = rest;
    }
    let mut priority = None;
    if flags & FLAG_PRIORITY != 0 {
        if body.len() < PRIORITY_LEN {
            return Err(MalformedHeaders);
        }
        let mut p = [0u8; PRIORITY_LEN];
        p.copy_from_slice(&body[..PRIORITY_LEN]);
        priority = Some(p);
        body = &body[PRIORITY_LEN..];
    }
    if pad > body.len() {
        return Err(MalformedHeaders);
    }
    Ok(HeadersPayload {
        priority,
        fragment: &body[..body.len() - pad],
    })
}

/// Appends a HEADERS frame (and CONTINUATION frames as needed so that no payload
/// exceeds [`DEFAULT_MAX_FRAME_SIZE`]) carrying `block`, unpadded.
///
/// `end_stream` sets END_STREAM on the HEADERS frame; END_HEADERS goes on the last frame.
pub fn write_header_block(
    stream_id: u32,
    end_stream: bool,
    priority: Option<[u8; PRIORITY_LEN]>,
    block: &[u8],
    out: &mut Vec<u8>,
) {
    let prio_len = if priority.is_some() { PRIORITY_LEN } else { 0 };
    let first_len = block.len().min(DEFAULT_MAX_FRAME_SIZE - prio_len);
    let (first, mut rest) = block.split_at(first_len);
    let mut flags = 0;
    if end_stream {
        flags |= FLAG_END_STREAM;
    }
    if priority.is_some() {
        flags |= FLAG_PRIORITY;
    }
    if rest.is_empty() {
        flags |= FLAG_END_HEADERS;
    }
    FrameHeader {
        length: prio_len + first.len(),
        kind: TYPE_HEADERS,
        flags,
        stream_id,
    }
    .write(out);
    if let Some(p) = priority {
        out.extend_from_slice(&p);
    }
    out.extend_from_slice(first);
    while !rest.is_empty() {
        let n = rest.len().min(DEFAULT_MAX_FRAME_SIZE);
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let flags = if rest.is_empty() { FLAG_END_HEADERS } else { 0 };
        FrameHeader {
            length: n,
            kind: TYPE_CONTINUATION,
            flags,
            stream_id,
        }
        .write(out);
        out.extend_from_slice(chunk);
    }
}
