//! The in-memory MVCC key-value store with etcd v3 semantics.
//!
//! # Data structure
//!
//! * `index: BTreeMap<Bytes, KeyHistory>` — every key that has at least one
//!   retained revision, in key order. A `KeyHistory` (`key_index`) is the key's
//!   records (value, create revision, version, lease, or a tombstone) in
//!   increasing `(main, sub)` revision order. A tombstone ends a generation.
//!   Reading key `k` at revision `r` = binary search for the last record with
//!   `main <= r`; the key is live iff that record exists and is not a tombstone.
//! * `log: VecDeque<LogEntry>` — `(main, sub, key)` of every write with
//!   `main >= compact revision`, in revision order. It serves watch history
//!   replay ([`Store::events_since`]) and tells compaction which keys changed.
//! * `current_rev` (1 for a fresh store, as etcd) and `compact_rev` (-1 until the
//!   first compaction, as etcd reports it).
//!
//! # Invariants
//!
//! * Every write operation that changes something creates exactly one main
//!   revision `current_rev + 1`; its individual writes get sub revisions 0, 1, ...
//!   Operations that change nothing create no revision.
//! * Records of each key are strictly increasing in `(main, sub)`, all
//!   `<= current_rev`; versions count 1, 2, ... within a generation and every
//!   record of a generation has the generation's create revision.
//! * After `compact(c)`: for each key, no record older than its last record with
//!   `main <= c` is kept, and that record is dropped too if it is a tombstone with
//!   `main < c`; keys with no records left are removed from `index`. The log holds
//!   exactly the entries with `main >= c`.
//! * Writes are applied directly into the index by a `WriteTxn`; an uncommitted
//!   `WriteTxn` (error in a txn) is rolled back on drop by popping its records,
//!   so failed requests never change the store.
//!
//! Results carry no top-level response header: the caller fills headers.
//! Request validation with etcd's error texts lives in [`validate`].

mod compare;
mod error;
mod history;
mod key_index;
mod range;
mod snapshot;
mod store;
mod txn;
pub mod validate;

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
#[cfg(test)]
mod validate_tests;

pub use error::MvccError;
pub use store::Store;
pub use validate::{validate_delete_range, validate_put, validate_range, validate_txn};
