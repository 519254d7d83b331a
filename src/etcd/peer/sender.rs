//! Outgoing Raft traffic: one task and one gRPC client stream per peer.

use std::collections::HashMap;
use std::time::Duration;

use protobuf::Message as _;
use raft::eraftpb::Message;
use tokio::sync::mpsc;

use crate::etcd::proto::rustcdpb::{peer_client::PeerClient, RaftBatch};

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Upper bound of messages in one batch on the wire.
const MAX_BATCH: usize = 256;

/// Sends Raft messages to peers; cheap to call from the driver thread.
pub struct PeerTransport {
    peers: HashMap<u64, mpsc::Sender<Message>>,
}

impl PeerTransport {
    /// Starts one sender task per peer (`id -> peer URLs`) on the given runtime.
    pub fn start(
        rt: &tokio::runtime::Handle,
        cluster_id: u64,
        me: u64,
        peers: &HashMap<u64, Vec<String>>,
    ) -> PeerTransport {
        let mut senders = HashMap::new();
        for (&id, urls) in peers {
            if id == me {
                continue;
            }
            let (tx, rx) = mpsc::channel(QUEUE);
            rt.spawn(run_sender(cluster_id, me, id, urls.clone(), rx));
            senders.insert(id, tx);
        }
        PeerTransport { peers: senders }
    }

    /// A transport with no peers (single-member clusters).
    pub fn none() -> PeerTransport {
        PeerTransport { peers: HashMap::new() }
    }

    /// Queues messages; returns the peers whose queue was full or missing (unreachable).
    pub fn send(&self, msgs: Vec<Message>) -> Vec<u64> {
        let mut unreachable = Vec::new();
        for m in msgs {
            let to = m.to;
            match self.peers.get(&to) {
                Some(tx) => {
                    if tx.try_send(m).is_err() && !unreachable.contains(&to) {
                        unreachable.push(to);
                    }
                }
                None => {
                    if !unreachable.contains(&to) {
                        unreachable.push(to);
                    }
                }
            }
        }
        unreachable
    }
}

async fn run_sender(cluster_id: u64, me: u64, peer: u64, urls: Vec<String>, mut rx: mpsc::Receiver<Message>) {
    let mut attempt = 0usize;
    loop {
        let url = match urls.get(attempt % urls.len().max(1)) {
            Some(u) => u.clone(),
            None => return,
        };
        attempt += 1;
        let client = match PeerClient::connect(url.clone()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(peer = format!("{peer:x}"), %url, error = %e, "peer unreachable; retrying");
                drain_for(&mut rx, Duration::from_millis(200)).await;
                if rx.is_closed() {
                    return;
                }
                continue;
            }
        };
        let (btx, brx) = mpsc::channel::<RaftBatch>(64);
        let mut client = client;
        let call = tokio::spawn(async move {
            let r = client.raft(tokio_stream::wrappers::ReceiverStream::new(brx)).await;
            if let Err(e) = &r {
                tracing::debug!(peer = format!("{peer:x}"), error = %e, "peer stream ended");
            }
            r
        });
        tracing::info!(peer = format!("{peer:x}"), %url, "connected to peer");
        loop {
            let Some(first) = rx.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            tracing::trace!(peer = format!("{peer:x}"), n = batch.len(), "sending raft batch");
            let messages = batch.iter().filter_map(|m| m.write_to_bytes().ok()).collect();
            let b = RaftBatch {
                cluster_id,
                from: me,
                messages,
            };
            if btx.send(b).await.is_err() || call.is_finished() {
                tracing::debug!(peer = format!("{peer:x}"), "peer stream closed; reconnecting");
                break;
            }
        }
        call.abort();
    }
}

/// Drops queued messages for a while (the peer is down; Raft will retry).
async fn drain_for(rx: &mut mpsc::Receiver<Message>, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, rx.recv()).await {}
}
