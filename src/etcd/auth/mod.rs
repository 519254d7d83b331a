//! etcd-compatible authentication and authorization (etcd 3.5 `server/auth`).
//!
//! * [`AuthStore`]: the replicated state (users, roles, key-range permissions, the
//!   enabled flag, the auth revision). Its mutating functions are applied in Raft log
//!   order on every member and return etcd's response messages (header `None`) or an
//!   [`AuthError`]. It also answers the permission checks the server makes on every
//!   request while auth is enabled ([`AuthStore::check_range`],
//!   [`AuthStore::check_admin`], [`AuthStore::check_revision`]) and round-trips through
//!   `rustcdpb::AuthSnapshot`.
//! * [`TokenStore`]: etcd's "simple" tokens, in memory with a sliding TTL.
//! * [`hash_password`]: bcrypt + base64, run by the proposer (etcd 3.5 hashes before
//!   proposing so that applying stays cheap and deterministic).
//! * [`AuthError`]: errors whose `Display` is the text etcd sends to clients and whose
//!   [`AuthError::grpc_status_code`] is etcd's gRPC code.
//!
//! Typical flows for the server:
//! * `Authenticate`: `store.check_password(name, pw)` (slow; remember the revision),
//!   propose `InternalAuthenticateRequest { name, simple_token: prefix }` with
//!   `TokenStore::gen_token_prefix()`; on apply, `store.authenticate(name)?` then
//!   `tokens.assign_at(prefix, raft_index, name, now)`; retry if the store's revision
//!   differs from the one `check_password` returned.
//! * `UserDelete` / `UserChangePassword` applied: `tokens.invalidate_user(name)`;
//!   `AuthDisable` applied: `tokens.clear()`.
//! * Every request while enabled: token -> user via `tokens.username_of(token, now)`
//!   ("invalid auth token" if `None`), then `check_range`/`check_admin` and, at apply
//!   time, `check_revision(rev_checked_at)`.

mod error;
mod password;
pub mod permission;
mod store;
mod token;

#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod store_tests;

pub use error::{code, AuthError};
pub use password::{base64_decode, base64_encode, hash_password, verify_password};
pub use store::{AuthStore, ROOT_ROLE, ROOT_USER};
pub use token::{TokenStore, DEFAULT_TOKEN_TTL};

/// The permission type of grants and checks (`authpb.Permission.Type`):
/// `Read`, `Write`, `Readwrite`.
pub use crate::proto::authpb::permission::Type as PermType;
