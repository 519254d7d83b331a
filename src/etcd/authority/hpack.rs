//! The HPACK (RFC 7541) pieces the rewriter needs on top of `fluke_hpack`'s decoder:
//! a structural scan of a header block (which validates every integer and string
//! length, so the decoder never sees a truncated representation, and finds the
//! leading dynamic table size updates), and an encoder that only emits
//! "literal header field without indexing — new name" representations, so the
//! receiving decoder's dynamic table is never touched.

/// A header block that is not well-formed HPACK.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// An integer or string runs past the end of the block, or an integer is too long.
    #[error("truncated or oversized HPACK integer or string")]
    Truncated,
    /// The decoder rejected the block (bad index, bad Huffman code, table size too large...).
    #[error("HPACK decoding failed: {0}")]
    Decode(String),
}

/// Decodes an HPACK integer with an `prefix`-bit prefix at the start of `buf`.
/// Returns the value and the number of bytes used. At most 4 continuation bytes
/// are accepted (values up to about 2^28), like common decoders.
pub fn decode_int(buf: &[u8], prefix: u8) -> Result<(usize, usize), HpackError> {
    let mask = (1usize << prefix) - 1;
    let first = buf.first().ok_or(HpackError::Truncated)?;
    let mut value = usize::from(*first) & mask;
    if value < mask {
        return Ok((value, 1));
    }
    for (i, &b) in buf.iter().enumerate().skip(1).take(4) {
        value += usize::from(b & 0x7f) << (7 * (i - 1));
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(HpackError::Truncated)
}

/// Appends the HPACK encoding of `value` with a `prefix`-bit prefix; `flags` are the
/// bits above the prefix in the first byte.
pub fn encode_int(mut value: usize, prefix: u8, flags: u8, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value & 0x7f) as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Skips a string literal at the start of `buf`, returning the bytes it occupies.
fn skip_string(buf: &[u8]) -> Result<usize, HpackError> {
    let (len, used) = decode_int(buf, 7)?;
    let end = used.checked_add(len).ok_or(HpackError::Truncated)?;
    if end > buf.len() {
        return Err(HpackError::Truncated);
    }
    Ok(end)
}

/// Walks every representation in `block` without decoding strings. Returns the length
/// of the leading run of dynamic table size updates (which must be replayed verbatim
/// at the start of a re-encoded block so the server's table size tracks the client's).
pub fn scan_block(block: &[u8]) -> Result<usize, HpackError> {
    let mut pos = 0;
    let mut leading_end = 0;
    let mut in_leading = true;
    while pos < block.len() {
        let rest = &block[pos..];
        let b = rest[0];
        if b & 0xe0 == 0x20 {
            // Dynamic table size update.
            pos += decode_int(rest, 5)?.1;
            if in_leading {
                leading_end = pos;
            }
            continue;
        }
        in_leading = false;
        pos += if b & 0x80 != 0 {
            // Indexed header field.
            decode_int(rest, 7)?.1
        } else {
            // Literal header field (with incremental indexing, without indexing, never indexed).
            let prefix = if b & 0x40 != 0 { 6 } else { 4 };
            let (index, mut used) = decode_int(rest, prefix)?;
            if index == 0 {
                used += skip_string(&rest[used..])?;
            }
            used + skip_string(&rest[used..])?
        };
    }
    Ok(leading_end)
}

/// Appends a "literal header field without indexing — new name" representation
/// (RFC 7541 §6.2.2) with raw (non-Huffman) strings.
pub fn encode_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    encode_int(name.len(), 7, 0, out);
    out.extend_from_slice(name);
    encode_int(value.len(), 7, 0, out);
    out.extend_from_slice(value);
}
