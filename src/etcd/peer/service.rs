//! Incoming Raft traffic: decodes batches and hands each message to the Raft driver.

use futures::StreamExt;
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use crate::etcd::proto::rustcdpb::{peer_server::Peer, PeerAck, RaftBatch};
use crate::etcd::raft_node::RaftHandle;

pub struct PeerService {
    pub cluster_id: u64,
    pub raft: RaftHandle,
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
            if batch.cluster_id != self.cluster_id {
                tracing::warn!(
                    from = format!("{:x}", batch.from),
                    remote_cluster = format!("{:x}", batch.cluster_id),
                    local_cluster = format!("{:x}", self.cluster_id),
                    "rejected raft traffic from another cluster"
                );
                return Err(Status::failed_precondition(format!(
                    "rustcd: cluster ID mismatch (local {:x}, remote {:x})",
                    self.cluster_id, batch.cluster_id
                )));
            }
            for bytes in &batch.messages {
                match Message::parse_from_bytes(bytes) {
                    Ok(m) => self.raft.step(m),
                    Err(e) => tracing::warn!(error = %e, "dropping undecodable raft message"),
                }
            }
        }
        Ok(Response::new(PeerAck {}))
    }
}
