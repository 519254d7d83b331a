//! A gRPC channel to the current leader's client URL, for the requests etcd serves only
//! on the leader (lease keep-alive and time-to-live): followers forward them.

use parking_lot::Mutex;
use tonic::transport::Channel;

use super::EtcdServer;
use crate::tls::Dialer;

/// Caches one channel per leader; replaced when leadership moves.
#[derive(Default)]
pub struct LeaderLink {
    cached: Mutex<Option<(u64, Channel)>>,
    /// Connects to client URLs (over TLS for https ones; see `tls::client`).
    dialer: Dialer,
}

impl LeaderLink {
    /// A link that connects with `dialer`.
    pub fn new(dialer: Dialer) -> LeaderLink {
        LeaderLink {
            cached: Mutex::default(),
            dialer,
        }
    }

    /// A channel to the leader, or None when there is no leader or this member leads.
    pub async fn channel(&self, server: &EtcdServer) -> Option<Channel> {
        let leader = server.raft.status.leader();
        if leader == 0 || leader == server.member_id {
            return None;
        }
        if let Some((id, ch)) = self.cached.lock().as_ref() {
            if *id == leader {
                return Some(ch.clone());
            }
        }
        let url = server
            .sm
            .read()
            .membership
            .member(leader)
            .and_then(|m| m.client_ur_ls.first().cloned())?;
        let ch = match self.dialer.connect(&url, |e| e).await {
            Ok(ch) => ch,
            Err(e) => {
                let error = rustcd_dial::error_chain(&e);
                tracing::debug!(leader = format!("{leader:x}"), %url, %error, "cannot connect to the leader");
                return None;
            }
        };
        tracing::debug!(leader = format!("{leader:x}"), %url, "connected to the leader for forwarding");
        *self.cached.lock() = Some((leader, ch.clone()));
        Some(ch)
    }
}
