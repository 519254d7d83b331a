//! Lease management ("lessor") with etcd 3.5 semantics.
//!
//! A lease is granted with a TTL; keys put with the lease are attached to it
//! and are deleted when it is revoked, explicitly or because it expired.
//!
//! The [`Lessor`] holds two kinds of state:
//!
//! * **Replicated state**, changed only by entries applied from the Raft log
//!   in log order on every member: [`Lessor::grant`], [`Lessor::revoke`],
//!   [`Lessor::checkpoint`], and key attachment ([`Lessor::attach`],
//!   [`Lessor::detach`]) driven by MVCC puts and deletes. It is captured by
//!   [`Lessor::to_snapshot`] (IDs, TTLs, checkpointed remaining TTLs; keys are
//!   re-attached from the MVCC store after [`Lessor::restore`]).
//! * **Leader-only deadlines**: after [`Lessor::promote`] every lease expires
//!   at `now + extend + remaining TTL`; [`Lessor::renew`] (keep-alive) pushes a
//!   deadline back; [`Lessor::expired`] lists leases the leader should propose
//!   revokes for; [`Lessor::demote`] drops all deadlines. Followers never
//!   expire leases.
//!
//! Time is always passed in (`now: Instant`), so the module is deterministic
//! and testable without sleeping. The lessor performs no I/O and holds no
//! locks; the server wraps it as it sees fit.
//!
//! RPC mapping (as etcd's `v3rpc`): `LeaseRevoke` of an unknown lease fails
//! with [`LeaseError::NotFound`]; `LeaseTimeToLive` of an unknown lease
//! succeeds with `TTL: -1` ([`not_found_time_to_live`]); `LeaseKeepAlive` of an
//! unknown or expired lease answers `TTL: 0`.

mod checkpoint;
mod error;
mod expiry_queue;
mod id;
mod lessor;
mod pileup;
mod snapshot;
mod time;

#[cfg(test)]
mod lessor_tests;
#[cfg(test)]
mod model_tests;

pub use error::LeaseError;
pub use id::{generate_id, random_id, LeaseIdGenerator};
pub use lessor::{
    min_lease_ttl, Lessor, LessorConfig, DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_EXPIRED_RETRY_INTERVAL, MAX_LEASE_TTL,
};

use crate::proto::etcdserverpb::LeaseTimeToLiveResponse;

/// The `LeaseTimeToLive` answer etcd gives for a lease that does not exist:
/// not an error, but `TTL: -1`, `grantedTTL: 0` and no keys.
pub fn not_found_time_to_live(id: i64) -> LeaseTimeToLiveResponse {
    LeaseTimeToLiveResponse {
        header: None,
        id,
        ttl: -1,
        granted_ttl: 0,
        keys: Vec::new(),
    }
}
