//! Reading WAL segments back: record decoding, the raft overwrite rule, and
//! the torn-tail versus corruption decision.

use std::fs;
use std::path::{Path, PathBuf};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use super::error::{Result, StorageError};
use super::record::{
    decode_at, decode_marker, decode_segment_header, find_valid_record, Decoded, HeaderError, RecordType,
    SegmentHeader, SEGMENT_HEADER_LEN, SEGMENT_VERSION,
};

/// A snapshot marker recorded with [`super::Wal::mark_snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotMarker {
    /// Index of the last entry covered by the snapshot.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
}

/// Everything recovered from the WAL by [`super::Wal::open`].
#[derive(Debug, Clone, Default)]
pub struct WalContents {
    /// The last hard state written (default when none was ever written).
    pub hard_state: HardState,
    /// Entries in index order, after applying raft's overwrite rule. After
    /// `release_to`, entries before the first retained segment are absent.
    pub entries: Vec<Entry>,
    /// The last metadata written, if any.
    pub metadata: Option<Vec<u8>>,
    /// Snapshot markers found in the retained segments, in write order (the
    /// newest marker is always retained: it is copied into each new segment).
    pub snapshots: Vec<SnapshotMarker>,
    /// True when an incomplete or damaged final record was cut off.
    pub torn_tail_truncated: bool,
}

impl WalContents {
    /// True when the WAL recorded a marker for the snapshot `(index, term)`.
    pub fn has_snapshot_marker(&self, index: u64, term: u64) -> bool {
        self.snapshots.contains(&SnapshotMarker { index, term })
    }

    /// Checks that the WAL continues the snapshot `(index, term)` (use
    /// `(0, 0)` for "no snapshot") and returns the entries after it.
    ///
    /// The WAL continues the snapshot when it has no entries, or its first
    /// entry is at most `index + 1` (no gap), and any entry it holds at
    /// `index` has term `term`.
    pub fn entries_after_snapshot(&self, index: u64, term: u64) -> Result<&[Entry]> {
        let mismatch = |reason: String| StorageError::SnapshotMismatch { index, term, reason };
        let Some(first) = self.entries.first().map(|e| e.index) else {
            return Ok(&[]);
        };
        if first > index.saturating_add(1) {
            return Err(mismatch(format!(
                "the WAL's first entry is {first}, leaving a gap after the snapshot"
            )));
        }
        let skip = usize::try_from(index.saturating_add(1) - first).unwrap_or(usize::MAX);
        if index >= first {
            if let Some(e) = self.entries.get(skip - 1) {
                if e.term != term {
                    return Err(mismatch(format!("the WAL has entry {index} with term {}", e.term)));
                }
            }
        }
        Ok(self.entries.get(skip..).unwrap_or(&[]))
    }
}

/// What replay learned about one segment, for the writer.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    /// Sequence number (from the file name, checked against the header).
    pub seq: u64,
    /// Path of the segment file.
    pub path: PathBuf,
    /// Largest entry index written in the segment, if any.
    pub max_index: Option<u64>,
}

/// Replay state carried across segments.
#[derive(Default)]
pub(crate) struct Replay {
    /// Recovered contents.
    pub contents: WalContents,
    /// Length of the valid prefix of the last segment replayed.
    pub valid_len: u64,
    /// Effective last index while `entries` is empty: set by a snapshot
    /// marker that superseded every entry seen so far, or by the first
    /// segment's header after older segments were released. The next entry
    /// must then be at most `floor + 1`.
    floor: Option<u64>,
}

impl Replay {
    /// The index the next entry may follow: the last entry's, or that of a
    /// snapshot marker that superseded all entries. The writer starts from
    /// this so that whatever it accepts replays without a gap.
    pub fn effective_last(&self) -> Option<u64> {
        self.contents.entries.last().map(|e| e.index).or(self.floor)
    }

    /// Applies one entry with the overwrite rule: an entry with index `i`
    /// replaces any entry `i` and everything after it.
    fn push_entry(&mut self, e: Entry, path: &Path, off: usize) -> Result<()> {
        let entries = &mut self.contents.entries;
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            let (first, last) = (first.index, last.index);
            if e.index < first {
                entries.clear();
            } else if e.index <= last {
                entries.truncate(usize::try_from(e.index - first).unwrap_or(usize::MAX));
            } else if e.index > last.saturating_add(1) {
                return Err(StorageError::corrupt(
                    path,
                    off as u64,
                    format!("entry index {} leaves a gap after entry {last}", e.index),
                ));
            }
        } else if let Some(s) = self.floor {
            if e.index > s.saturating_add(1) {
                return Err(StorageError::corrupt(
                    path,
                    off as u64,
                    format!("entry index {} leaves a gap after snapshot {s}", e.index),
                ));
            }
        }
        self.floor = None;
        entries.push(e);
        Ok(())
    }

    /// Applies a snapshot marker: entries wholly before the snapshot are
    /// superseded by it, so the next entry may be `index + 1`.
    fn push_marker(&mut self, m: SnapshotMarker) {
        if self.effective_last().is_some_and(|l| l < m.index) {
            self.contents.entries.clear();
            self.floor = Some(m.index);
        }
        self.contents.snapshots.push(m);
    }

    /// Replays one segment file. `is_last` enables torn-tail truncation.
    /// Returns the largest entry index in the segment.
    pub fn segment(&mut self, path: &Path, seq: u64, is_first: bool, is_last: bool) -> Result<Option<u64>> {
        let data = fs::read(path).map_err(|e| StorageError::io(path, e))?;
        let header = check_header(path, &data, seq)?;
        if is_first {
            // Older segments may have been released: entries continue at
            // the index the header records.
            self.floor = header.first_index.checked_sub(1);
        } else {
            let expected = self.effective_last().map_or(0, |l| l.saturating_add(1));
            if header.first_index != expected {
                return Err(StorageError::corrupt(
                    path,
                    20,
                    format!(
                        "segment continues at index {} but the previous segments end before {expected}",
                        header.first_index
                    ),
                ));
            }
        }
        let mut off = SEGMENT_HEADER_LEN;
        let mut max_index = None;
        loop {
            let why = match decode_at(&data, off) {
                Decoded::End => break,
                Decoded::Record { record, next } => {
                    let p = record.payload;
                    let bad = |what: &str, e: &dyn std::fmt::Display| {
                        StorageError::corrupt(path, off as u64, format!("undecodable {what}: {e}"))
                    };
                    match record.ty {
                        RecordType::Entry => {
                            let e = Entry::parse_from_bytes(p).map_err(|e| bad("entry", &e))?;
                            max_index = Some(max_index.map_or(e.index, |m: u64| m.max(e.index)));
                            self.push_entry(e, path, off)?;
                        }
                        RecordType::HardState => {
                            self.contents.hard_state =
                                HardState::parse_from_bytes(p).map_err(|e| bad("hard state", &e))?;
                        }
                        RecordType::Metadata => self.contents.metadata = Some(p.to_vec()),
                        RecordType::SnapshotMarker => {
                            let (index, term) = decode_marker(p)
                                .ok_or_else(|| bad("snapshot marker", &format!("length {}", p.len())))?;
                            self.push_marker(SnapshotMarker { index, term });
                        }
                    }
                    off = next;
                    continue;
                }
                Decoded::UnknownType(t) => {
                    // A valid CRC with an unknown type was written on purpose
                    // by something else: never treat it as a torn write.
                    return Err(StorageError::corrupt(
                        path,
                        off as u64,
                        format!("unknown record type {t}"),
                    ));
                }
                Decoded::Incomplete => "incomplete record",
                Decoded::BadCrc => "record CRC mismatch",
            };
            if !is_last {
                return Err(StorageError::corrupt(
                    path,
                    off as u64,
                    format!("{why} in a non-final segment"),
                ));
            }
            if let Some(valid) = find_valid_record(&data, off + 1) {
                return Err(StorageError::corrupt(
                    path,
                    off as u64,
                    format!("{why} followed by a valid record at offset {valid}"),
                ));
            }
            tracing::warn!(
                path = %path.display(),
                offset = off,
                dropped_bytes = data.len() - off,
                "WAL: {why} at the tail of the last segment (torn write); truncating"
            );
            truncate_file(path, off as u64)?;
            self.contents.torn_tail_truncated = true;
            break;
        }
        self.valid_len = off as u64;
        Ok(max_index)
    }
}

/// Validates a segment header against the expected sequence number.
fn check_header(path: &Path, data: &[u8], seq: u64) -> Result<SegmentHeader> {
    match decode_segment_header(data) {
        Ok(h) if h.seq == seq => Ok(h),
        Ok(h) => Err(StorageError::corrupt(
            path,
            12,
            format!("header sequence number {} does not match the file name ({seq})", h.seq),
        )),
        Err(HeaderError::Version(found)) => Err(StorageError::UnsupportedVersion {
            path: path.to_path_buf(),
            found,
            supported: SEGMENT_VERSION,
        }),
        Err(HeaderError::Short) => Err(StorageError::corrupt(
            path,
            0,
            format!("segment shorter than its {SEGMENT_HEADER_LEN}-byte header"),
        )),
        Err(HeaderError::BadMagic) => Err(StorageError::corrupt(path, 0, "bad magic: not a rustcd WAL segment")),
        Err(HeaderError::BadCrc) => Err(StorageError::corrupt(path, 28, "segment header CRC mismatch")),
    }
}

/// Truncates `path` to `len` bytes and makes that durable.
fn truncate_file(path: &Path, len: u64) -> Result<()> {
    let f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| StorageError::io(path, e))?;
    f.set_len(len).map_err(|e| StorageError::io(path, e))?;
    f.sync_all().map_err(|e| StorageError::io(path, e))
}
