//! Member-to-member transport for Raft messages.
//!
//! Each member keeps one outgoing client stream per peer (`sender`), fed by the Raft
//! driver through a bounded queue; messages are batched per stream write. Incoming
//! streams (`service`) are decoded and stepped into the local Raft node. Raft tolerates
//! lost and reordered messages, so a full queue or a broken connection drops messages
//! and reports the peer unreachable instead of blocking the driver.

mod sender;
mod service;

pub use sender::PeerTransport;
pub use service::PeerService;
