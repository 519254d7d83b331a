//! Durable storage: the write-ahead log (WAL) and snapshot files.
//!
//! # On-disk format (version 1)
//!
//! All integers are little-endian. All CRCs are CRC-32 (IEEE polynomial, as
//! computed by `crc32fast`).
//!
//! ## Directory layout
//!
//! ```text
//! <data-dir>/member/rustcd-format      "rustcd-data-dir-format 1\n"
//! <data-dir>/member/wal/               (or --wal-dir)
//!     0000000000000000-0000000000000000.wal
//!     0000000000000001-00000000000004d3.wal      {seq:016x}-{first_index:016x}.wal
//! <data-dir>/member/snap/
//!     0000000000000002-0000000000002710.snap     {term:016x}-{index:016x}.snap
//! ```
//!
//! Directories are created with mode 0700, files with 0600. Every file
//! carries a magic and a format version; a version this build does not know
//! is refused with [`StorageError::UnsupportedVersion`] naming the file, so
//! that a future rustcd can migrate instead of misreading. The version field
//! is checked before any CRC, so a future layout is reported as a version
//! problem, not as corruption. `*.wal.tmp` / `*.snap.tmp` files are
//! leftovers of interrupted atomic writes and are deleted on open.
//!
//! ## WAL segments
//!
//! ```text
//! segment header (32 bytes):
//!   [8] magic "RUSTCDWL"  [4] version = 1  [8] seq  [8] first index
//!   [4] crc of the previous 28 bytes
//! then records, back to back:
//!   [4] len (payload bytes)  [4] crc of type byte + payload  [1] type  [len] payload
//! record types:
//!   1 entry           protobuf raft::eraftpb::Entry
//!   2 hard state      protobuf raft::eraftpb::HardState
//!   3 metadata        opaque caller bytes
//!   4 snapshot marker [8] index [8] term
//! ```
//!
//! Segment sequence numbers are consecutive. The header's first index is
//! where entries continue (last entry index + 1, or 0 when the WAL was
//! empty); the copy in the file name is informational. A new segment is
//! created atomically (temp file, fsync, rename, directory fsync) once the
//! current one reaches the size limit, after fsyncing the old one, and
//! starts with a preamble of the current hard state, metadata and newest
//! snapshot marker. Old segments can
//! therefore be deleted ([`Wal::release_to`]) without losing that state.
//!
//! Replay applies records in order: the last hard state and metadata win;
//! an entry with index `i` replaces entry `i` and everything after it
//! (raft's conflicting-suffix truncation). A snapshot marker past the last
//! entry supersedes all entries seen so far and entries resume after it.
//! An entry leaving a gap is corruption, and so is a segment whose header
//! first index does not continue the previous segment; the oldest retained
//! segment's first index says where entries resume after a release. The
//! writer refuses appends that would leave a gap, so whatever it accepts
//! replays.
//!
//! ## Torn tail versus corruption
//!
//! A crash in the middle of a write can only damage the end of the last
//! segment (older segments are fsynced before a new one exists). So when the
//! record at offset `o` of the **last** segment is incomplete or fails its
//! CRC, and no valid record (complete, known type, good CRC) starts anywhere
//! after `o`, the file is truncated to `o`, `torn_tail_truncated` is
//! reported and a warning is logged. Zero-filled tails fall under this rule
//! (type 0 is never valid). Everything else is [`StorageError::Corrupt`],
//! whose message names the file and offset and the server refuses to start:
//! damage followed by a valid record, damage in a non-final segment, a bad
//! segment header, a valid-CRC record of unknown type, an undecodable
//! payload, a gap in entry indexes or a missing segment.
//!
//! ## Snapshot files
//!
//! ```text
//! header (44 bytes):
//!   [8] magic "RUSTCDSN"  [4] version = 1  [8] term  [8] index  [8] data len
//!   [4] crc of data  [4] crc of the previous 40 bytes
//! then the opaque snapshot data
//! ```
//!
//! Saved atomically (temp, fsync, rename, directory fsync). Term and index
//! in the header must match the file name. The newest snapshot (highest
//! index) is loaded; if it is damaged that is an error naming it, never a
//! silent fallback to an older one.
//!
//! # Intended use
//!
//! Start: [`DataDir::create`], [`SnapshotFiles::load_newest`], [`Wal::open`],
//! then [`WalContents::entries_after_snapshot`] with the snapshot's index and
//! term. Ready loop: [`Wal::append`] every entry and hard state of a batch,
//! then one [`Wal::sync`] before acknowledging. Snapshot: save the file with
//! [`SnapshotFiles::save`], then [`Wal::mark_snapshot`] and [`Wal::sync`],
//! then [`Wal::release_to`] and [`SnapshotFiles::purge`].
//!
//! # Known limits
//!
//! * If a torn final record's payload happens to contain a complete,
//!   CRC-valid record frame, the damage is reported as corruption (the safe
//!   side: refuse rather than drop data).
//! * A power loss during an unsynced write whose pages reach the disk out of
//!   order (a zeroed page followed by a persisted one) is also reported as
//!   corruption, although no acknowledged data was lost.

mod error;
mod layout;
mod record;
mod replay;
mod snapshot_file;
mod wal;

#[cfg(test)]
mod wal_tests;

pub use error::{Result, StorageError};
pub use layout::{write_atomic, DataDir, DATA_DIR_VERSION, VERSION_FILE};
pub use record::{RecordType, SEGMENT_VERSION};
pub use replay::{SnapshotMarker, WalContents};
pub use snapshot_file::{snapshot_file_name, SnapshotData, SnapshotFiles, SnapshotName, SNAP_VERSION};
pub use wal::{list_segments, segment_file_name, SegmentName, Wal, DEFAULT_SEGMENT_BYTES};
