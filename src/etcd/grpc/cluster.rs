//! The `etcdserverpb.Cluster` service. MemberList is served; membership changes need
//! multi-member Raft and answer `Unimplemented` until then.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth_ctx::auth_info;
use crate::etcd::proto::etcdserverpb::{self as pb, cluster_server::Cluster};
use crate::etcd::server::EtcdServer;

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!(
        "rustcd: {what} is not implemented yet (this build runs single-member clusters; see the README's compatibility table)"
    ))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, _req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        auth_info(&self.server, &req)?;
        if req.get_ref().linearizable {
            self.server.linearizable_read().await?;
        }
        let members = self.server.sm.read().membership.members.clone();
        Ok(Response::new(pb::MemberListResponse {
            // etcd's cluster responses carry no revision.
            header: Some(self.server.header_at(0)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}
