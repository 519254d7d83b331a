//! Errors returned by the durable storage layer.

use std::io;
use std::path::{Path, PathBuf};

/// An error from the WAL, the snapshot files or the data directory.
///
/// Every variant names the file or directory involved so that the message the
/// server prints when it refuses to start is actionable on its own.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An operating-system I/O error on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// File or directory the failed operation was about.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The file at `path` is damaged at byte `offset`; the server must not
    /// start on top of it (restore from a peer or a backup instead).
    #[error("corrupt file {} at offset {offset}: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset inside the file where the damage was detected.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// The file was written by a rustcd with a different on-disk format.
    #[error(
        "{}: unsupported on-disk format version {found} (this rustcd reads version {supported}); \
         refusing to touch it",
        path.display()
    )]
    UnsupportedVersion {
        /// The file carrying the unknown version.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// The version this build understands.
        supported: u32,
    },

    /// The WAL does not continue the snapshot the caller loaded.
    #[error("WAL does not continue snapshot at index {index} term {term}: {reason}")]
    SnapshotMismatch {
        /// Snapshot index.
        index: u64,
        /// Snapshot term.
        term: u64,
        /// Why the WAL does not match.
        reason: String,
    },

    /// Protobuf encoding of a raft message failed.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// Encoder message.
        reason: String,
    },

    /// A previous write or sync failed; the WAL's on-disk state is unknown and
    /// it refuses further writes (reopen it to replay what is durable).
    #[error("WAL {} is unusable after an earlier write failure", path.display())]
    Poisoned {
        /// The segment that failed.
        path: PathBuf,
    },

    /// The caller passed an invalid argument.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl StorageError {
    /// Builds a [`StorageError::Io`] for `path`.
    pub(crate) fn io(path: &Path, source: io::Error) -> Self {
        StorageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// Builds a [`StorageError::Corrupt`] for `path` at `offset`.
    pub(crate) fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// True for [`StorageError::Corrupt`].
    pub fn is_corrupt(&self) -> bool {
        matches!(self, StorageError::Corrupt { .. })
    }
}

/// Shorthand result type of this module.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
