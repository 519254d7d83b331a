//! WAL record framing: `[u32 len][u32 crc][u8 type][payload]`, little-endian.
//!
//! `len` is the payload length (the type byte is not counted), `crc` is the
//! CRC-32 (IEEE, as computed by `crc32fast`) of the type byte followed by the
//! payload. Also holds the fixed segment header.

use super::error::{Result, StorageError};

/// Bytes before the payload: length, crc and type.
pub const RECORD_HEADER_LEN: usize = 9;

/// Magic at the start of every WAL segment.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RUSTCDWL";
/// WAL segment format version written by (and the only one readable by) this build.
pub const SEGMENT_VERSION: u32 = 1;
/// Segment header: magic (8) + version (4) + sequence number (8) + first
/// index (8) + crc (4).
pub const SEGMENT_HEADER_LEN: usize = 32;

/// Kind of a WAL record; stored as the type byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordType {
    /// A protobuf-encoded `raft::eraftpb::Entry`.
    Entry = 1,
    /// A protobuf-encoded `raft::eraftpb::HardState`.
    HardState = 2,
    /// Opaque caller metadata (latest wins).
    Metadata = 3,
    /// Snapshot marker: `u64 index` + `u64 term`, little-endian.
    SnapshotMarker = 4,
}

impl RecordType {
    /// Decodes a type byte; `None` for unknown values (including 0, so that a
    /// zero-filled region never parses as a record).
    pub fn from_u8(b: u8) -> Option<Self> {
        match b {
            1 => Some(RecordType::Entry),
            2 => Some(RecordType::HardState),
            3 => Some(RecordType::Metadata),
            4 => Some(RecordType::SnapshotMarker),
            _ => None,
        }
    }
}

/// CRC of a record: over the type byte, then the payload.
fn record_crc(ty: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[ty]);
    h.update(payload);
    h.finalize()
}

/// Appends one framed record with a raw payload to `buf`.
pub fn encode_record(buf: &mut Vec<u8>, ty: RecordType, payload: &[u8]) -> Result<()> {
    encode_record_with(buf, ty, "record", |v| {
        v.extend_from_slice(payload);
        Ok(())
    })
}

/// Appends a record whose payload is produced by `write` (which must append
/// to the vector it is given); the header is patched in afterwards. This
/// avoids a temporary allocation per protobuf message. On error `buf` is
/// left as it was; `what` names the payload in the error.
pub fn encode_record_with(
    buf: &mut Vec<u8>,
    ty: RecordType,
    what: &'static str,
    write: impl FnOnce(&mut Vec<u8>) -> protobuf::ProtobufResult<()>,
) -> Result<()> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; RECORD_HEADER_LEN]);
    if let Err(e) = write(buf) {
        buf.truncate(start);
        return Err(StorageError::Encode {
            what,
            reason: e.to_string(),
        });
    }
    let payload_start = start + RECORD_HEADER_LEN;
    let Ok(len) = u32::try_from(buf.len() - payload_start) else {
        let n = buf.len() - payload_start;
        buf.truncate(start);
        return Err(StorageError::Encode {
            what,
            reason: format!("payload of {n} bytes exceeds the 4 GiB record limit"),
        });
    };
    let crc = record_crc(ty as u8, &buf[payload_start..]);
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    buf[start + 8] = ty as u8;
    Ok(())
}

/// One record decoded from a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub struct RawRecord<'a> {
    /// Record type.
    pub ty: RecordType,
    /// Payload bytes (borrowed from the segment).
    pub payload: &'a [u8],
}

/// Outcome of decoding the record starting at some offset.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record; the next one starts at `next`.
    Record {
        /// The record.
        record: RawRecord<'a>,
        /// Offset just past this record.
        next: usize,
    },
    /// The offset is exactly the end of the data.
    End,
    /// The header or payload extends past the end of the data.
    Incomplete,
    /// A complete frame whose CRC does not match.
    BadCrc,
    /// A complete frame with a valid CRC but an unknown type byte.
    UnknownType(u8),
}

/// Decodes the record at `off` in `data`.
pub fn decode_at(data: &[u8], off: usize) -> Decoded<'_> {
    if off == data.len() {
        return Decoded::End;
    }
    let Some(header) = data.get(off..off + RECORD_HEADER_LEN) else {
        return Decoded::Incomplete;
    };
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let ty = header[8];
    let start = off + RECORD_HEADER_LEN;
    let Some(payload) = start.checked_add(len).and_then(|end| data.get(start..end)) else {
        return Decoded::Incomplete;
    };
    if record_crc(ty, payload) != crc {
        return Decoded::BadCrc;
    }
    match RecordType::from_u8(ty) {
        Some(ty) => Decoded::Record {
            record: RawRecord { ty, payload },
            next: start + len,
        },
        None => Decoded::UnknownType(ty),
    }
}

/// Looks for any offset in `data[from..]` at which a complete, CRC-valid
/// record of a known type starts. Used to tell a torn tail (nothing valid
/// follows the damage) from corruption (valid records follow the damage).
pub fn find_valid_record(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).find(|&off| {
        // Cheap pre-checks before the CRC: known type, length fits.
        let Some(header) = data.get(off..off + RECORD_HEADER_LEN) else {
            return false;
        };
        if RecordType::from_u8(header[8]).is_none() {
            return false;
        }
        matches!(decode_at(data, off), Decoded::Record { .. })
    })
}

/// Encodes a segment header for sequence number `seq` whose entries
/// continue at `first_index` (0: no constraint, the WAL was empty).
pub fn encode_segment_header(seq: u64, first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&seq.to_le_bytes());
    h[20..28].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32fast::hash(&h[..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// A decoded segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number.
    pub seq: u64,
    /// Index at which entries continue (0: unconstrained).
    pub first_index: u64,
}

/// Why a segment header was rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// Shorter than [`SEGMENT_HEADER_LEN`].
    Short,
    /// Magic bytes do not match.
    BadMagic,
    /// Version is not [`SEGMENT_VERSION`].
    Version(u32),
    /// The header CRC does not match.
    BadCrc,
}

/// Decodes a segment header.
pub fn decode_segment_header(data: &[u8]) -> std::result::Result<SegmentHeader, HeaderError> {
    let Some(h) = data.get(..SEGMENT_HEADER_LEN) else {
        return Err(HeaderError::Short);
    };
    if h[..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != SEGMENT_VERSION {
        return Err(HeaderError::Version(version));
    }
    let crc = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32fast::hash(&h[..28]) != crc {
        return Err(HeaderError::BadCrc);
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&h[12..20]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&h[20..28]);
    Ok(SegmentHeader {
        seq: u64::from_le_bytes(seq),
        first_index: u64::from_le_bytes(first),
    })
}

/// Encodes a snapshot marker payload.
pub fn encode_marker(index: u64, term: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&index.to_le_bytes());
    b[8..].copy_from_slice(&term.to_le_bytes());
    b
}

/// Decodes a snapshot marker payload into `(index, term)`.
pub fn decode_marker(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() != 16 {
        return None;
    }
    let mut i = [0u8; 8];
    let mut t = [0u8; 8];
    i.copy_from_slice(&payload[..8]);
    t.copy_from_slice(&payload[8..]);
    Some((u64::from_le_bytes(i), u64::from_le_bytes(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut buf = Vec::new();
        encode_record(&mut buf, RecordType::Metadata, b"hello").unwrap();
        encode_record_with(&mut buf, RecordType::Entry, "test", |v| {
            v.extend_from_slice(b"xyz");
            Ok(())
        })
        .unwrap();
        let Decoded::Record { record, next } = decode_at(&buf, 0) else {
            panic!("expected record");
        };
        assert_eq!(record.ty, RecordType::Metadata);
        assert_eq!(record.payload, b"hello");
        let Decoded::Record { record, next } = decode_at(&buf, next) else {
            panic!("expected record");
        };
        assert_eq!(record.payload, b"xyz");
        assert_eq!(decode_at(&buf, next), Decoded::End);
        for cut in 0..RECORD_HEADER_LEN + 5 {
            assert_eq!(decode_at(&buf[..cut.max(1)], 0), Decoded::Incomplete);
        }
        let mut bad = buf.clone();
        bad[RECORD_HEADER_LEN + 1] ^= 0xff;
        assert_eq!(decode_at(&bad, 0), Decoded::BadCrc);
        assert_eq!(find_valid_record(&bad, 1), Some(RECORD_HEADER_LEN + 5));
        assert_eq!(find_valid_record(&[0u8; 64], 0), None);
    }

    #[test]
    fn segment_header() {
        let h = encode_segment_header(7, 42);
        assert_eq!(
            decode_segment_header(&h),
            Ok(SegmentHeader {
                seq: 7,
                first_index: 42
            })
        );
        let mut v = h;
        v[8] = 9;
        assert_eq!(decode_segment_header(&v), Err(HeaderError::Version(9)));
        let mut m = h;
        m[0] = b'X';
        assert_eq!(decode_segment_header(&m), Err(HeaderError::BadMagic));
        let mut c = h;
        c[13] ^= 1;
        assert_eq!(decode_segment_header(&c), Err(HeaderError::BadCrc));
        assert_eq!(decode_segment_header(&h[..10]), Err(HeaderError::Short));
    }
}
