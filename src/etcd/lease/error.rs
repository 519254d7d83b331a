//! Lease errors with etcd's exact client-visible texts and gRPC status codes.

/// gRPC status code `NOT_FOUND`.
const CODE_NOT_FOUND: i32 = 5;
/// gRPC status code `FAILED_PRECONDITION`.
const CODE_FAILED_PRECONDITION: i32 = 9;
/// gRPC status code `OUT_OF_RANGE`.
const CODE_OUT_OF_RANGE: i32 = 11;
/// gRPC status code `UNAVAILABLE`.
const CODE_UNAVAILABLE: i32 = 14;

/// Errors returned by the [`Lessor`](super::Lessor).
///
/// The `Display` texts are the exact messages etcd puts in the gRPC status
/// (`api/v3rpc/rpctypes/error.go`), so the RPC layer can forward them as-is
/// together with [`LeaseError::grpc_status_code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    /// The lease does not exist (never granted, or already revoked). Also
    /// returned for a grant with ID 0, like etcd's lessor does.
    ///
    /// The RPC layer maps it differently per call, like etcd's `v3rpc`:
    /// `LeaseRevoke` fails with `NotFound`, `LeaseTimeToLive` answers with
    /// `TTL: -1` (see [`super::not_found_time_to_live`]) and `LeaseKeepAlive`
    /// answers with `TTL: 0`.
    #[error("etcdserver: requested lease not found")]
    NotFound,
    /// A lease with the requested ID already exists.
    #[error("etcdserver: lease already exists")]
    AlreadyExists,
    /// The requested TTL is above [`super::MAX_LEASE_TTL`].
    #[error("etcdserver: too large lease TTL")]
    TtlTooLarge,
    /// The lease has expired on the leader but its revoke has not been applied
    /// yet. etcd's `Renew` waits for the revoke and then reports "not found"
    /// (keep-alive `TTL: 0`); a caller that cannot wait may treat this exactly
    /// like [`LeaseError::NotFound`], whose text and code it shares.
    #[error("etcdserver: requested lease not found")]
    Expired,
    /// The operation needs the primary lessor (the Raft leader) and this
    /// member is not it: the caller should forward to the leader or let the
    /// client retry. rustcd maps it to etcd's retryable "leader changed".
    #[error("etcdserver: leader changed")]
    NotPrimary,
}

impl LeaseError {
    /// The gRPC status code etcd uses for this error.
    pub fn grpc_status_code(&self) -> i32 {
        match self {
            LeaseError::NotFound | LeaseError::Expired => CODE_NOT_FOUND,
            LeaseError::AlreadyExists => CODE_FAILED_PRECONDITION,
            LeaseError::TtlTooLarge => CODE_OUT_OF_RANGE,
            LeaseError::NotPrimary => CODE_UNAVAILABLE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes_match_etcd() {
        let cases = [
            (LeaseError::NotFound, "etcdserver: requested lease not found", 5),
            (LeaseError::AlreadyExists, "etcdserver: lease already exists", 9),
            (LeaseError::TtlTooLarge, "etcdserver: too large lease TTL", 11),
            (LeaseError::Expired, "etcdserver: requested lease not found", 5),
            (LeaseError::NotPrimary, "etcdserver: leader changed", 14),
        ];
        for (err, text, code) in cases {
            assert_eq!(err.to_string(), text);
            assert_eq!(err.grpc_status_code(), code);
        }
    }
}
