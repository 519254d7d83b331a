//! Incoming peer traffic: Raft message batches (decoded and handed to the Raft driver)
//! and the member list a joining member asks for.

use std::sync::Arc;

use futures::StreamExt;
use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use super::REMOVED_MARK;
use crate::apply::StateMachine;
use crate::proto::rustcdpb::{peer_server::Peer, MembersRequest, MembersResponse, PeerAck, RaftBatch, SnapshotChunk};
use crate::raft_node::RaftHandle;

pub struct PeerService {
    pub cluster_id: u64,
    pub raft: RaftHandle,
    pub sm: Arc<RwLock<StateMachine>>,
}

impl PeerService {
    /// Refuses traffic from another cluster or from a removed member.
    fn admit(&self, cluster_id: u64, from: u64) -> Result<(), Status> {
        if cluster_id != self.cluster_id {
            tracing::warn!(
                from = format!("{from:x}"),
                remote_cluster = format!("{cluster_id:x}"),
                local_cluster = format!("{:x}", self.cluster_id),
                "rejected raft traffic from another cluster"
            );
            return Err(Status::failed_precondition(format!(
                "rustcd: cluster ID mismatch (local {:x}, remote {cluster_id:x})",
                self.cluster_id
            )));
        }
        if self.sm.read().membership.removed.contains(&from) {
            tracing::warn!(
                from = format!("{from:x}"),
                "rejected raft traffic from a removed member"
            );
            return Err(Status::permission_denied(format!(
                "rustcd: member {from:x} {REMOVED_MARK}"
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            tracing::trace!(
                from = format!("{:x}", batch.from),
                n = batch.messages.len(),
                "raft batch from peer"
            );
            self.admit(batch.cluster_id, batch.from)?;
            for bytes in &batch.messages {
                match Message::parse_from_bytes(bytes) {
                    Ok(m) => self.raft.step(m),
                    Err(e) => tracing::warn!(error = %e, "dropping undecodable raft message"),
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }

    async fn snapshot(&self, req: Request<Streaming<SnapshotChunk>>) -> Result<Response<PeerAck>, Status> {
        let mut stream = req.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("rustcd: empty snapshot stream"))??;
        self.admit(first.cluster_id, first.from)?;
        let mut rest = Vec::new();
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            received += chunk.data.len() as u64;
            if received > first.total_size {
                return Err(Status::invalid_argument(
                    "rustcd: snapshot stream longer than announced",
                ));
            }
            rest.push(chunk.data);
        }
        let msg = super::snapshot::reassemble(first, rest)?;
        tracing::info!(
            from = format!("{:x}", msg.from),
            index = msg.get_snapshot().get_metadata().index,
            bytes = received,
            "received a snapshot"
        );
        self.raft.step(msg);
        Ok(Response::new(PeerAck {}))
    }

    async fn members(&self, _req: Request<MembersRequest>) -> Result<Response<MembersResponse>, Status> {
        let sm = self.sm.read();
        Ok(Response::new(MembersResponse {
            cluster_id: self.cluster_id,
            members: sm.membership.members.clone(),
            removed: sm.membership.removed.clone(),
        }))
    }
}
