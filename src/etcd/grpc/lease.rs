//! The `etcdserverpb.Lease` service. Grants and revokes go through Raft; keep-alives renew
//! on the leader only (as in etcd, renewals are not replicated).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth_ctx::auth_info;
use super::kv::complete_header;
use crate::apply::ApplyOutput;
use crate::lease::LeaseError;
use crate::proto::etcdserverpb::{self as pb, lease_client::LeaseClient, lease_server::Lease};
use crate::proto::rustcdpb::internal_request::Request as Internal;
use crate::server::EtcdServer;

pub struct LeaseService {
    pub server: Arc<EtcdServer>,
}

fn lease_status(e: crate::lease::LeaseError) -> Status {
    Status::new(tonic::Code::from_i32(e.grpc_status_code()), e.to_string())
}

impl LeaseService {
    /// Followers relay a keep-alive stream to the leader, whose lessor tracks expiry.
    async fn forward_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<KeepAliveStream>, Status> {
        let ch = super::leader_channel(&self.server).await?;
        let metadata = req.metadata().clone();
        let input = req
            .into_inner()
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| async { r.ok() });
        let mut fwd = tonic::Request::new(input);
        *fwd.metadata_mut() = metadata;
        let upstream = LeaseClient::new(ch).lease_keep_alive(fwd).await?.into_inner();
        Ok(Response::new(Box::pin(upstream)))
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        req: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let mut r = req.into_inner();
        if r.id == 0 {
            r.id = (self.server.ids.next() & (i64::MAX as u64)) as i64;
        }
        match self.server.propose(Internal::LeaseGrant(r), &who).await? {
            ApplyOutput::LeaseGrant(mut resp) => {
                resp.header = complete_header(&self.server, resp.header);
                Ok(Response::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply output {other:?}"))),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let r = req.into_inner();
        match self.server.propose(Internal::LeaseRevoke(r), &who).await? {
            ApplyOutput::LeaseRevoke(mut resp) => {
                resp.header = complete_header(&self.server, resp.header);
                Ok(Response::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply output {other:?}"))),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        auth_info(&self.server, &req)?;
        if !self.server.raft.status.is_leader() {
            return self.forward_keep_alive(req).await;
        }
        let mut input = req.into_inner();
        let server = self.server.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(msg) = input.next().await {
                let r = match msg {
                    Ok(r) => r,
                    Err(_) => break,
                };
                // etcd answers TTL 0 for a lease that does not exist (any more).
                let renewed = server.sm.write().lessor.renew(r.id, Instant::now());
                let ttl = match renewed {
                    Ok(ttl) => ttl,
                    Err(LeaseError::NotPrimary) => {
                        let _ = tx.send(Err(Status::unavailable("etcdserver: leader changed"))).await;
                        break;
                    }
                    Err(_) => 0,
                };
                let resp = pb::LeaseKeepAliveResponse {
                    header: Some(server.header()),
                    id: r.id,
                    ttl,
                };
                if tx.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        auth_info(&self.server, &req)?;
        if !self.server.raft.status.is_leader() {
            // Remaining TTLs are tracked by the leader's lessor only: ask it.
            let ch = super::leader_channel(&self.server).await?;
            let mut fwd = tonic::Request::new(*req.get_ref());
            *fwd.metadata_mut() = req.metadata().clone();
            return LeaseClient::new(ch).lease_time_to_live(fwd).await;
        }
        let r = req.into_inner();
        self.server.linearizable_read().await?;
        let sm = self.server.sm.read();
        let mut resp = match sm.lessor.time_to_live(r.id, Instant::now(), r.keys) {
            Ok(resp) => resp,
            // etcd reports an unknown lease as TTL -1 rather than an error.
            Err(e) if e.grpc_status_code() == tonic::Code::NotFound as i32 => pb::LeaseTimeToLiveResponse {
                header: None,
                id: r.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Err(e) => return Err(lease_status(e)),
        };
        resp.header = Some(self.server.header_at(sm.mvcc.current_revision()));
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        req: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        auth_info(&self.server, &req)?;
        self.server.linearizable_read().await?;
        let sm = self.server.sm.read();
        let leases = sm
            .lessor
            .leases()
            .into_iter()
            .map(|id| pb::LeaseStatus { id })
            .collect();
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: Some(self.server.header_at(sm.mvcc.current_revision())),
            leases,
        }))
    }
}
