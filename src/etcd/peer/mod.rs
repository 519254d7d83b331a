//! Member-to-member transport for Raft messages.
//!
//! Each member keeps one outgoing client stream per peer (`sender`), fed by the Raft
//! driver through a bounded queue; messages are batched per stream write. Incoming
//! streams (`service`) are decoded and stepped into the local Raft node. Raft tolerates
//! lost and reordered messages, so a full queue or a broken connection drops messages
//! and reports the peer unreachable instead of blocking the driver.

mod sender;
mod service;
mod snapshot;

pub use sender::{Connectivity, PeerTransport, RemovedHook, SnapshotReport, REMOVED_MARK};
pub use service::PeerService;

use std::time::Duration;

use crate::proto::rustcdpb::{peer_client::PeerClient, MembersRequest, MembersResponse};
use crate::tls::Dialer;

/// Asks the member at peer URL `url` for the cluster as it knows it.
pub async fn fetch_members(url: &str, timeout: Duration, dialer: &Dialer) -> Result<MembersResponse, String> {
    let channel = dialer
        .connect(url, |e| e.connect_timeout(timeout).timeout(timeout))
        .await
        .map_err(|e| format!("{url}: {}", rustcd_dial::error_chain(&e)))?;
    let resp = PeerClient::new(channel)
        .members(MembersRequest {})
        .await
        .map_err(|e| format!("{url}: {}", status_text(&e)))?;
    Ok(resp.into_inner())
}

/// A status's message followed by its sources: a peer that refuses our certificate (TLS 1.3
/// reports that only after the handshake) shows up as the TLS alert, not just "canceled".
pub fn status_text(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => format!("{}: {}", status.message(), rustcd_dial::error_chain(source)),
        None => status.message().to_string(),
    }
}
