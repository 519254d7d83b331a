//! The write-ahead log: segment files, buffered append, sync, rollover,
//! release of old segments, and replay on open.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState};

use super::error::{Result, StorageError};
use super::layout::{create_dir_all_private, create_private_file, fsync_dir, tmp_path};
use super::record::{
    encode_marker, encode_record, encode_record_with, encode_segment_header, RecordType, RECORD_HEADER_LEN,
    SEGMENT_HEADER_LEN,
};
use super::replay::{Replay, SegmentInfo, SnapshotMarker, WalContents};

/// Default segment size (64 MiB, like etcd's `SegmentSizeBytes`).
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Suffix of WAL segment files.
const SEGMENT_SUFFIX: &str = ".wal";

/// A segment file found in the WAL directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentName {
    /// Sequence number (first hex field of the name).
    pub seq: u64,
    /// Index expected of the segment's first entry (second hex field).
    pub first_index: u64,
    /// Full path.
    pub path: PathBuf,
}

/// File name of segment `seq` whose first entry is expected at `first_index`.
pub fn segment_file_name(seq: u64, first_index: u64) -> String {
    format!("{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}")
}

fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(SEGMENT_SUFFIX)?;
    let (a, b) = stem.split_once('-')?;
    if a.len() != 16 || b.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
}

/// Lists the segment files in `dir`, sorted by sequence number. A missing
/// directory yields an empty list; other files are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<SegmentName>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io(dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| StorageError::io(dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((seq, first_index)) = parse_segment_name(name) {
            out.push(SegmentName {
                seq,
                first_index,
                path: ent.path(),
            });
        }
    }
    out.sort_by_key(|s| s.seq);
    Ok(out)
}

/// Length of a segment freshly created on an empty directory: the header
/// plus an empty-payload record of the default hard state.
const FRESH_SEGMENT_LEN: u64 = (SEGMENT_HEADER_LEN + RECORD_HEADER_LEN) as u64;

/// True when the WAL in `dir` holds anything beyond the empty first segment
/// that [`Wal::open`] creates on an empty directory (i.e. this member has
/// written entries, a hard state, metadata or a snapshot marker before).
pub fn wal_has_data(dir: &Path) -> Result<bool> {
    let segs = list_segments(dir)?;
    match segs.as_slice() {
        [] => Ok(false),
        [only] if only.seq == 0 => {
            let len = fs::metadata(&only.path)
                .map_err(|e| StorageError::io(&only.path, e))?
                .len();
            Ok(len > FRESH_SEGMENT_LEN)
        }
        _ => Ok(true),
    }
}

/// Removes `*<suffix>.tmp` leftovers of interrupted atomic writes in `dir`
/// (only ours: the WAL directory may be shared via `--wal-dir`).
pub(crate) fn remove_tmp_files(dir: &Path, suffix: &str) -> Result<usize> {
    let rd = fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    let mut removed = 0;
    for ent in rd {
        let ent = ent.map_err(|e| StorageError::io(dir, e))?;
        let path = ent.path();
        let ours = ent
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".tmp"))
            .is_some_and(|n| n.ends_with(suffix));
        if ours {
            tracing::warn!(path = %path.display(), "removing leftover temporary file");
            fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// An open write-ahead log. See the module documentation of
/// [`crate::storage`] for the on-disk format.
///
/// Writes are buffered in the OS until [`Wal::sync`]; nothing is durable
/// before it returns. After any write or sync error the WAL is poisoned and
/// refuses further writes (what reached the disk is unknown; reopen it).
#[derive(Debug)]
pub struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    /// Retained segments, oldest first; the last one is being written.
    segments: Vec<SegmentInfo>,
    file: File,
    /// Current length of the segment being written.
    size: u64,
    /// Index of the last entry written, for the no-gap check.
    last_index: Option<u64>,
    hard_state: HardState,
    metadata: Option<Vec<u8>>,
    snapshot: Option<SnapshotMarker>,
    buf: Vec<u8>,
    poisoned: bool,
}

impl Wal {
    /// Opens (creating if needed) the WAL in `dir`, replays it and returns
    /// what it holds. Segments roll over once they exceed `segment_bytes`.
    ///
    /// A torn final record of the last segment is truncated away
    /// (`torn_tail_truncated`); any other damage is [`StorageError::Corrupt`],
    /// an unknown format version is [`StorageError::UnsupportedVersion`].
    pub fn open(dir: &Path, segment_bytes: u64) -> Result<(Wal, WalContents)> {
        if segment_bytes == 0 {
            return Err(StorageError::InvalidArgument("segment_bytes must be positive".into()));
        }
        create_dir_all_private(dir)?;
        remove_tmp_files(dir, SEGMENT_SUFFIX)?;
        let names = list_segments(dir)?;
        if names.is_empty() {
            let (file, size, info) = create_segment_file(dir, 0, 0, &HardState::default(), None, None)?;
            let wal = Wal::new(dir, segment_bytes, vec![info], file, size, &WalContents::default());
            return Ok((wal, WalContents::default()));
        }
        let mut replay = Replay::default();
        let mut segments = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if i > 0 && name.seq != names[i - 1].seq.saturating_add(1) {
                return Err(StorageError::corrupt(
                    &name.path,
                    0,
                    format!(
                        "missing WAL segment: sequence jumps from {} to {}",
                        names[i - 1].seq,
                        name.seq
                    ),
                ));
            }
            let is_last = i + 1 == names.len();
            let max_index = replay.segment(&name.path, name.seq, i == 0, is_last)?;
            segments.push(SegmentInfo {
                seq: name.seq,
                path: name.path.clone(),
                max_index,
            });
        }
        let current = &names[names.len() - 1].path;
        let file = fs::OpenOptions::new()
            .append(true)
            .open(current)
            .map_err(|e| StorageError::io(current, e))?;
        let mut wal = Wal::new(dir, segment_bytes, segments, file, replay.valid_len, &replay.contents);
        wal.last_index = replay.effective_last();
        Ok((wal, replay.contents))
    }

    fn new(
        dir: &Path,
        segment_bytes: u64,
        segments: Vec<SegmentInfo>,
        file: File,
        size: u64,
        contents: &WalContents,
    ) -> Wal {
        Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            segments,
            file,
            size,
            last_index: contents.entries.last().map(|e| e.index),
            hard_state: contents.hard_state.clone(),
            metadata: contents.metadata.clone(),
            snapshot: contents.snapshots.last().copied(),
            buf: Vec::new(),
            poisoned: false,
        }
    }

    /// The WAL directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Index of the last entry written or replayed (or of a newer snapshot
    /// marker, after which entries resume), if any.
    pub fn last_index(&self) -> Option<u64> {
        self.last_index
    }

    /// Paths of the retained segments, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Bytes written to the current segment so far.
    pub fn current_segment_len(&self) -> u64 {
        self.size
    }

    /// Records opaque metadata (e.g. member and cluster IDs). The latest
    /// write wins on replay and is copied into every new segment, so it
    /// survives [`Wal::release_to`]. Durable after the next [`Wal::sync`].
    pub fn set_metadata(&mut self, bytes: &[u8]) -> Result<()> {
        self.check_usable()?;
        self.buf.clear();
        encode_record(&mut self.buf, RecordType::Metadata, bytes)?;
        self.write_buf()?;
        self.metadata = Some(bytes.to_vec());
        self.maybe_rollover()
    }

    /// Records that a snapshot at `(index, term)` exists, so replay can check
    /// the WAL continues it and so entries may resume at `index + 1`.
    /// Durable after the next [`Wal::sync`].
    pub fn mark_snapshot(&mut self, index: u64, term: u64) -> Result<()> {
        self.check_usable()?;
        self.buf.clear();
        encode_record(&mut self.buf, RecordType::SnapshotMarker, &encode_marker(index, term))?;
        self.write_buf()?;
        if self.last_index.is_some_and(|l| l < index) {
            // Entries may resume right after the snapshot.
            self.last_index = Some(index);
        }
        self.snapshot = Some(SnapshotMarker { index, term });
        self.maybe_rollover()
    }

    /// Appends `entries` (then `hard_state`, if given) with a single write.
    /// Not durable until [`Wal::sync`]. An entry with index `i` at or below
    /// the last one written overwrites entry `i` and everything after it;
    /// an entry that would leave a gap is rejected.
    pub fn append(&mut self, entries: &[Entry], hard_state: Option<&HardState>) -> Result<()> {
        self.check_usable()?;
        let mut last = self.last_index;
        for e in entries {
            if let Some(l) = last {
                if e.index > l.saturating_add(1) {
                    return Err(StorageError::InvalidArgument(format!(
                        "entry index {} leaves a gap after {l}",
                        e.index
                    )));
                }
            }
            last = Some(e.index);
        }
        self.buf.clear();
        for e in entries {
            encode_record_with(&mut self.buf, RecordType::Entry, "entry", |v| e.write_to_vec(v))?;
        }
        if let Some(hs) = hard_state {
            encode_record_with(&mut self.buf, RecordType::HardState, "hard state", |v| {
                hs.write_to_vec(v)
            })?;
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.write_buf()?;
        if let Some(max) = entries.iter().map(|e| e.index).max() {
            if let Some(seg) = self.segments.last_mut() {
                seg.max_index = Some(seg.max_index.map_or(max, |m| m.max(max)));
            }
        }
        self.last_index = last;
        if let Some(hs) = hard_state {
            self.hard_state = hs.clone();
        }
        self.maybe_rollover()
    }

    /// fdatasyncs the current segment and returns how long it took.
    /// Everything appended before the call is durable once it returns.
    pub fn sync(&mut self) -> Result<Duration> {
        self.check_usable()?;
        let start = Instant::now();
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(StorageError::io(self.current_path(), e));
        }
        Ok(start.elapsed())
    }

    /// Deletes the oldest segments all of whose entries are `<= index`
    /// (never the current one). Call once a snapshot at `index` is durable.
    /// Returns how many segments were deleted.
    pub fn release_to(&mut self, index: u64) -> Result<usize> {
        let mut n = 0;
        while n + 1 < self.segments.len() && self.segments[n].max_index.is_none_or(|m| m <= index) {
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        for seg in self.segments.drain(..n) {
            tracing::debug!(path = %seg.path.display(), "releasing WAL segment");
            fs::remove_file(&seg.path).map_err(|e| StorageError::io(&seg.path, e))?;
        }
        fsync_dir(&self.dir)?;
        Ok(n)
    }

    fn check_usable(&self) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Poisoned {
                path: self.current_path().to_path_buf(),
            });
        }
        Ok(())
    }

    fn current_path(&self) -> &Path {
        self.segments.last().map_or(&self.dir, |s| &s.path)
    }

    /// Writes `self.buf` to the current segment in one call.
    fn write_buf(&mut self) -> Result<()> {
        if let Err(e) = self.file.write_all(&self.buf) {
            self.poisoned = true;
            return Err(StorageError::io(self.current_path(), e));
        }
        self.size += self.buf.len() as u64;
        Ok(())
    }

    fn maybe_rollover(&mut self) -> Result<()> {
        if self.size < self.segment_bytes {
            return Ok(());
        }
        // The old segment must be complete on disk before the new one
        // exists: only the last segment may have a torn tail.
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(StorageError::io(self.current_path(), e));
        }
        let seq = self.segments.last().map_or(0, |s| s.seq + 1);
        let first_index = self.last_index.map_or(0, |i| i.saturating_add(1));
        if let Err(e) = self.create_segment(seq, first_index) {
            self.poisoned = true;
            return Err(e);
        }
        Ok(())
    }

    /// Creates segment `seq` carrying the current state and makes it the
    /// current segment.
    fn create_segment(&mut self, seq: u64, first_index: u64) -> Result<()> {
        let (file, size, info) = create_segment_file(
            &self.dir,
            seq,
            first_index,
            &self.hard_state,
            self.metadata.as_deref(),
            self.snapshot,
        )?;
        self.file = file;
        self.size = size;
        self.segments.push(info);
        Ok(())
    }
}

/// Atomically creates segment `seq` in `dir`: header plus a preamble of the
/// hard state, metadata and snapshot marker, written to a temp file,
/// fsynced, renamed into place, directory fsynced. Returns the segment
/// opened for appending and its length.
fn create_segment_file(
    dir: &Path,
    seq: u64,
    first_index: u64,
    hard_state: &HardState,
    metadata: Option<&[u8]>,
    snapshot: Option<SnapshotMarker>,
) -> Result<(File, u64, SegmentInfo)> {
    let path = dir.join(segment_file_name(seq, first_index));
    let tmp = tmp_path(&path);
    let mut buf = encode_segment_header(seq, first_index).to_vec();
    encode_record_with(&mut buf, RecordType::HardState, "hard state", |v| {
        hard_state.write_to_vec(v)
    })?;
    if let Some(m) = metadata {
        encode_record(&mut buf, RecordType::Metadata, m)?;
    }
    if let Some(s) = snapshot {
        encode_record(&mut buf, RecordType::SnapshotMarker, &encode_marker(s.index, s.term))?;
    }
    let mut f = create_private_file(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    f.write_all(&buf).map_err(|e| StorageError::io(&tmp, e))?;
    f.sync_all().map_err(|e| StorageError::io(&tmp, e))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
    fsync_dir(dir)?;
    let file = fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    let info = SegmentInfo {
        seq,
        path,
        max_index: None,
    };
    Ok((file, buf.len() as u64, info))
}
