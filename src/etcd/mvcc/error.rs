//! Errors returned by the MVCC store and by request validation.
//!
//! `Display` produces etcd's exact error text (what etcd puts in the gRPC status
//! message), and [`MvccError::grpc_status_code`] gives the gRPC status code number
//! etcd uses for it (see etcd `api/v3rpc/rpctypes/error.go`).

use thiserror::Error;

/// gRPC status code `InvalidArgument`.
pub const GRPC_INVALID_ARGUMENT: i32 = 3;
/// gRPC status code `NotFound`.
pub const GRPC_NOT_FOUND: i32 = 5;
/// gRPC status code `OutOfRange`.
pub const GRPC_OUT_OF_RANGE: i32 = 11;
/// gRPC status code `Internal`.
pub const GRPC_INTERNAL: i32 = 13;

/// An error from the MVCC store or from validating a KV request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MvccError {
    /// The requested revision is at or below the compaction point.
    /// Carries the store's compact revision (used by watch cancel responses).
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted {
        /// The store's compact revision at the time of the error.
        compact_revision: i64,
    },
    /// The requested revision is greater than the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put referenced a lease that does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// `ignore_value`/`ignore_lease` on a missing key, or an empty `RequestOp` in a txn.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// The request has an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` was set together with a non-empty value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` was set together with a non-zero lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn (or one of its branches) has more operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Puts/deletes of a txn overlap.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A range request has an unknown sort order or sort target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// A snapshot could not be loaded (rustcd-specific).
    #[error("rustcd: invalid mvcc snapshot: {0}")]
    InvalidSnapshot(String),
}

impl MvccError {
    /// The gRPC status code number etcd returns for this error
    /// (3 = InvalidArgument, 5 = NotFound, 11 = OutOfRange, 13 = Internal).
    pub fn grpc_status_code(&self) -> i32 {
        match self {
            MvccError::Compacted { .. } | MvccError::FutureRevision => GRPC_OUT_OF_RANGE,
            MvccError::LeaseNotFound => GRPC_NOT_FOUND,
            MvccError::KeyNotFound
            | MvccError::EmptyKey
            | MvccError::ValueProvided
            | MvccError::LeaseProvided
            | MvccError::TooManyOps
            | MvccError::DuplicateKey
            | MvccError::InvalidSortOption => GRPC_INVALID_ARGUMENT,
            MvccError::InvalidSnapshot(_) => GRPC_INTERNAL,
        }
    }
}
