//! The `etcdserverpb.KV` service: Range, Put, DeleteRange, Txn, Compact.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth_ctx::{auth_info, check_range, check_txn};
use super::rpc_error::{apply_error, no_space};
use crate::apply::ApplyOutput;
use crate::auth::PermType;
use crate::mvcc::validate;
use crate::proto::etcdserverpb::{self as pb, kv_server::Kv};
use crate::proto::rustcdpb::internal_request::Request as Internal;
use crate::server::{background, EtcdServer};

pub struct KvService {
    pub server: Arc<EtcdServer>,
}

fn mvcc_status(e: crate::mvcc::MvccError) -> Status {
    Status::new(tonic::Code::from_i32(e.grpc_status_code()), e.to_string())
}

/// Fills the cluster/member/term parts of a header whose revision apply already set.
pub fn complete_header(server: &EtcdServer, h: Option<pb::ResponseHeader>) -> Option<pb::ResponseHeader> {
    let rev = h.map(|h| h.revision).unwrap_or(0);
    Some(server.header_at(rev))
}

impl KvService {
    /// etcd refuses writes that would grow the store while the NOSPACE alarm is raised,
    /// and raises the alarm when a write would take the store over its quota.
    async fn check_quota(&self, cost: usize) -> Result<(), Status> {
        let (alarmed, over) = {
            let sm = self.server.sm.read();
            (
                sm.membership.has_alarm(pb::AlarmType::Nospace),
                sm.mvcc.size_bytes().0 + cost as i64 > sm.quota_bytes,
            )
        };
        if alarmed {
            return Err(no_space());
        }
        if over {
            background::raise_nospace(&self.server).await;
            return Err(no_space());
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let r = req.into_inner();
        if !r.serializable && self.server.raft.status.is_learner() {
            return Err(super::learner_gate::not_supported());
        }
        validate::validate_range(&r).map_err(mvcc_status)?;
        check_range(&self.server, &who, &r.key, &r.range_end, PermType::Read)?;
        if !r.serializable {
            self.server.linearizable_read().await?;
        }
        let sm = self.server.sm.read();
        let mut resp = sm.mvcc.range(&r).map_err(mvcc_status)?;
        self.server
            .metrics
            .ranges_served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        resp.header = Some(self.server.header_at(sm.mvcc.current_revision()));
        Ok(Response::new(resp))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let r = req.into_inner();
        validate::validate_put(&r).map_err(mvcc_status)?;
        check_range(&self.server, &who, &r.key, &[], PermType::Write)?;
        if r.prev_kv {
            check_range(&self.server, &who, &r.key, &[], PermType::Read)?;
        }
        self.check_quota(r.key.len() + r.value.len()).await?;
        match self.server.propose(Internal::Put(r), &who).await? {
            ApplyOutput::Put(mut resp) => {
                resp.header = complete_header(&self.server, resp.header);
                Ok(Response::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply output {other:?}"))),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let r = req.into_inner();
        validate::validate_delete_range(&r).map_err(mvcc_status)?;
        check_range(&self.server, &who, &r.key, &r.range_end, PermType::Write)?;
        if r.prev_kv {
            check_range(&self.server, &who, &r.key, &r.range_end, PermType::Read)?;
        }
        match self.server.propose(Internal::DeleteRange(r), &who).await? {
            ApplyOutput::DeleteRange(mut resp) => {
                resp.header = complete_header(&self.server, resp.header);
                Ok(Response::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply output {other:?}"))),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let r = req.into_inner();
        validate::validate_txn(&r, self.server.cfg.max_txn_ops).map_err(mvcc_status)?;
        check_txn(&self.server, &who, &r)?;
        if is_read_only(&r) {
            // etcd serves read-only txns without a proposal, after a linearizable barrier.
            self.server.linearizable_read().await?;
            let mut sm = self.server.sm.write();
            let (mut resp, _) = sm.mvcc.txn(&r, &|_| false).map_err(mvcc_status)?;
            resp.header = Some(self.server.header_at(sm.mvcc.current_revision()));
            return Ok(Response::new(resp));
        }
        self.check_quota(prost::Message::encoded_len(&r)).await?;
        match self.server.propose(Internal::Txn(r), &who).await {
            Ok(ApplyOutput::Txn(mut resp)) => {
                resp.header = complete_header(&self.server, resp.header);
                Ok(Response::new(resp))
            }
            Ok(other) => Err(Status::internal(format!("unexpected apply output {other:?}"))),
            Err(crate::server::ServerError::Apply(e)) => Err(apply_error(&e)),
            Err(e) => Err(e.into()),
        }
    }

    async fn compact(&self, req: Request<pb::CompactionRequest>) -> Result<Response<pb::CompactionResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        let r = req.into_inner();
        match self.server.propose(Internal::Compaction(r), &who).await? {
            ApplyOutput::Compaction(mut resp) => {
                resp.header = complete_header(&self.server, resp.header);
                Ok(Response::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply output {other:?}"))),
        }
    }
}

/// A txn whose every branch only reads.
fn is_read_only(t: &pb::TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).all(|op| match &op.request {
        Some(pb::request_op::Request::RequestRange(_)) | None => true,
        Some(pb::request_op::Request::RequestTxn(inner)) => is_read_only(inner),
        _ => false,
    })
}
