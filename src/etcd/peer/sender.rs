//! Outgoing Raft traffic: one task and one gRPC client stream per peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use protobuf::Message as _;
use raft::eraftpb::{Message, MessageType};
use tokio::sync::mpsc;

use crate::proto::rustcdpb::{peer_client::PeerClient, RaftBatch};
use crate::tls::Dialer;

/// Part of the error a member returns to a removed member's stream (the sender recognises it).
pub const REMOVED_MARK: &str = "has been removed from the cluster";

/// Messages queued per peer before new ones are dropped.
const QUEUE: usize = 4096;
/// Upper bound of messages in one batch on the wire.
const MAX_BATCH: usize = 256;

/// When each peer's stream came up (absent while it is down): etcd's transport "active since".
#[derive(Default)]
pub struct Connectivity {
    since: Mutex<HashMap<u64, Instant>>,
}

impl Connectivity {
    /// Whether `id` has been reachable for at least `for_at_least`.
    pub fn connected_for(&self, id: u64, for_at_least: Duration) -> bool {
        self.since.lock().get(&id).is_some_and(|t| t.elapsed() >= for_at_least)
    }

    /// Whether `id` is reachable now.
    pub fn is_connected(&self, id: u64) -> bool {
        self.since.lock().contains_key(&id)
    }

    fn up(&self, id: u64) {
        self.since.lock().entry(id).or_insert_with(Instant::now);
    }

    fn down(&self, id: u64) {
        self.since.lock().remove(&id);
    }
}

/// Called when a peer says this member has been removed from the cluster.
pub type RemovedHook = Arc<dyn Fn() + Send + Sync>;

/// Tells Raft whether a snapshot reached a peer (raft-rs `report_snapshot`).
pub type SnapshotReport = Arc<dyn Fn(u64, bool) + Send + Sync>;

/// What every sender task shares.
#[derive(Clone)]
pub(super) struct SenderContext {
    pub cluster_id: u64,
    pub me: u64,
    pub connectivity: Arc<Connectivity>,
    pub on_removed: RemovedHook,
    pub report_snapshot: SnapshotReport,
    /// Connects to peer URLs (over TLS for https ones).
    pub dialer: Dialer,
}

struct PeerQueue {
    urls: Vec<String>,
    tx: mpsc::Sender<Message>,
}

/// Sends Raft messages to peers; cheap to call from the driver thread. The peer set follows
/// the membership: [`PeerTransport::upsert`] and [`PeerTransport::remove`] as changes apply.
pub struct PeerTransport {
    rt: Option<tokio::runtime::Handle>,
    ctx: SenderContext,
    peers: HashMap<u64, PeerQueue>,
}

impl PeerTransport {
    /// Starts one sender task per peer (`id -> peer URLs`) on the given runtime.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        rt: &tokio::runtime::Handle,
        cluster_id: u64,
        me: u64,
        peers: &HashMap<u64, Vec<String>>,
        connectivity: Arc<Connectivity>,
        on_removed: RemovedHook,
        report_snapshot: SnapshotReport,
        dialer: Dialer,
    ) -> PeerTransport {
        let mut t = PeerTransport {
            rt: Some(rt.clone()),
            ctx: SenderContext {
                cluster_id,
                me,
                connectivity,
                on_removed,
                report_snapshot,
                dialer,
            },
            peers: HashMap::new(),
        };
        for (&id, urls) in peers {
            t.upsert(id, urls);
        }
        t
    }

    /// A transport with no peers and no runtime (tests of a lone member).
    pub fn none() -> PeerTransport {
        PeerTransport {
            rt: None,
            ctx: SenderContext {
                cluster_id: 0,
                me: 0,
                connectivity: Arc::default(),
                on_removed: Arc::new(|| {}),
                report_snapshot: Arc::new(|_, _| {}),
                dialer: Dialer::plain(),
            },
            peers: HashMap::new(),
        }
    }

    /// Adds a peer, or points an existing one at new URLs (restarting its stream).
    pub fn upsert(&mut self, id: u64, urls: &[String]) {
        if id == self.ctx.me || urls.is_empty() {
            return;
        }
        if self.peers.get(&id).is_some_and(|p| p.urls == urls) {
            return;
        }
        let Some(rt) = &self.rt else { return };
        let (tx, rx) = mpsc::channel(QUEUE);
        rt.spawn(run_sender(self.ctx.clone(), id, urls.to_vec(), rx));
        // Replacing the queue closes the old one, which ends the old sender task.
        self.peers.insert(
            id,
            PeerQueue {
                urls: urls.to_vec(),
                tx,
            },
        );
    }

    /// Stops sending to a peer (it left the cluster).
    pub fn remove(&mut self, id: u64) {
        if self.peers.remove(&id).is_some() {
            self.ctx.connectivity.down(id);
        }
    }

    /// Queues messages; returns the peers whose queue was full or missing (unreachable).
    pub fn send(&self, msgs: Vec<Message>) -> Vec<u64> {
        let mut unreachable = Vec::new();
        for m in msgs {
            let to = m.to;
            let queued = self.peers.get(&to).is_some_and(|p| p.tx.try_send(m).is_ok());
            if !queued && !unreachable.contains(&to) {
                unreachable.push(to);
            }
        }
        unreachable
    }
}

async fn run_sender(ctx: SenderContext, peer: u64, urls: Vec<String>, mut rx: mpsc::Receiver<Message>) {
    let mut attempt = 0usize;
    loop {
        let Some(url) = urls.get(attempt % urls.len().max(1)).cloned() else {
            return;
        };
        attempt += 1;
        let mut client = match ctx.dialer.connect(&url, |e| e).await.map(PeerClient::new) {
            Ok(c) => c,
            Err(e) => {
                ctx.connectivity.down(peer);
                let error = rustcd_dial::error_chain(&e);
                tracing::debug!(peer = format!("{peer:x}"), %url, %error, "peer unreachable; retrying");
                drain_for(&mut rx, Duration::from_millis(200)).await;
                if rx.is_closed() {
                    return;
                }
                continue;
            }
        };
        let (btx, brx) = mpsc::channel::<RaftBatch>(64);
        let on_removed = ctx.on_removed.clone();
        let call = tokio::spawn(async move {
            let r = client.raft(tokio_stream::wrappers::ReceiverStream::new(brx)).await;
            if let Err(e) = &r {
                if e.code() == tonic::Code::PermissionDenied && e.message().contains(REMOVED_MARK) {
                    tracing::error!(peer = format!("{peer:x}"), "{}", e.message());
                    on_removed();
                } else {
                    tracing::debug!(peer = format!("{peer:x}"), error = %e, "peer stream ended");
                }
            }
            r
        });
        ctx.connectivity.up(peer);
        tracing::info!(peer = format!("{peer:x}"), %url, "connected to peer");
        loop {
            let Some(first) = rx.recv().await else {
                call.abort();
                ctx.connectivity.down(peer);
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            // Snapshots go on their own chunked stream.
            let (snaps, rest): (Vec<Message>, Vec<Message>) = batch
                .into_iter()
                .partition(|m| m.get_msg_type() == MessageType::MsgSnapshot);
            for s in snaps {
                tokio::spawn(super::snapshot::send(ctx.clone(), peer, url.clone(), s));
            }
            let batch = rest;
            if batch.is_empty() {
                continue;
            }
            tracing::trace!(peer = format!("{peer:x}"), n = batch.len(), "sending raft batch");
            let messages = batch.iter().filter_map(|m| m.write_to_bytes().ok()).collect();
            let b = RaftBatch {
                cluster_id: ctx.cluster_id,
                from: ctx.me,
                messages,
            };
            if btx.send(b).await.is_err() || call.is_finished() {
                tracing::debug!(peer = format!("{peer:x}"), "peer stream closed; reconnecting");
                break;
            }
        }
        call.abort();
        ctx.connectivity.down(peer);
        drain_for(&mut rx, Duration::from_millis(100)).await;
    }
}

/// Drops queued messages for a while (the peer is down; Raft will retry).
async fn drain_for(rx: &mut mpsc::Receiver<Message>, d: Duration) {
    let deadline = tokio::time::Instant::now() + d;
    while let Ok(Some(_)) = tokio::time::timeout_at(deadline, rx.recv()).await {}
}
