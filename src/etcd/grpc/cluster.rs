//! The `etcdserverpb.Cluster` service: member list and membership changes.
//!
//! Changes need the root role when auth is enabled (etcd's membership permission check).
//! MemberPromote needs the leader's view of the learner's log, so followers forward it to
//! the leader, as etcd does.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::auth_ctx::{auth_info, check_admin};
use super::rpc_error::{membership_status, server_error};
use crate::membership::MembershipError;
use crate::proto::etcdserverpb::{self as pb, cluster_client::ClusterClient, cluster_server::Cluster};
use crate::server::{EtcdServer, MemberError};

pub struct ClusterService {
    pub server: Arc<EtcdServer>,
}

pub(super) fn member_error(e: MemberError) -> Status {
    match e {
        MemberError::Membership(m) => membership_status(&m),
        MemberError::Server(s) => server_error(s),
        MemberError::BadLeaderTransferee | MemberError::LeaderTransferTimeout => {
            Status::failed_precondition(e.to_string())
        }
    }
}

/// etcd's `types.NewURLs`: every peer URL must be `scheme://host:port` with an
/// http/https/unix/unixs scheme and no path; the result is sorted.
pub fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, MembershipError> {
    if urls.is_empty() {
        return Err(MembershipError::BadUrls);
    }
    let mut out = Vec::with_capacity(urls.len());
    for u in urls {
        let parsed = url::Url::parse(u).map_err(|_| MembershipError::BadUrls)?;
        let scheme_ok = matches!(parsed.scheme(), "http" | "https" | "unix" | "unixs");
        let path_ok = parsed.path().is_empty() || parsed.path() == "/";
        if !scheme_ok || parsed.host_str().is_none() || parsed.port().is_none() || !path_ok || parsed.query().is_some()
        {
            return Err(MembershipError::BadUrls);
        }
        out.push(u.trim_end_matches('/').to_string());
    }
    out.sort();
    Ok(out)
}

impl ClusterService {
    fn header(&self) -> pb::ResponseHeader {
        // etcd's cluster responses carry no revision.
        self.server.header_at(0)
    }

    async fn forward_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<pb::MemberPromoteResponse, Status> {
        let ch = super::leader_channel(&self.server).await?;
        let metadata = req.metadata().clone();
        let mut fwd = Request::new(req.into_inner());
        *fwd.metadata_mut() = metadata;
        let mut resp = ClusterClient::new(ch).member_promote(fwd).await?.into_inner();
        resp.header = Some(self.header());
        Ok(resp)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, req: Request<pb::MemberAddRequest>) -> Result<Response<pb::MemberAddResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        let r = req.into_inner();
        let urls = parse_peer_urls(&r.peer_ur_ls).map_err(|e| membership_status(&e))?;
        let (member, members) = self.server.add_member(urls, r.is_learner).await.map_err(member_error)?;
        Ok(Response::new(pb::MemberAddResponse {
            header: Some(self.header()),
            member: Some(member),
            members,
        }))
    }

    async fn member_remove(
        &self,
        req: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        let members = self
            .server
            .remove_member(req.get_ref().id)
            .await
            .map_err(member_error)?;
        Ok(Response::new(pb::MemberRemoveResponse {
            header: Some(self.header()),
            members,
        }))
    }

    async fn member_update(
        &self,
        req: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        let r = req.into_inner();
        let urls = parse_peer_urls(&r.peer_ur_ls).map_err(|e| membership_status(&e))?;
        let members = self.server.update_member(r.id, urls).await.map_err(member_error)?;
        Ok(Response::new(pb::MemberUpdateResponse {
            header: Some(self.header()),
            members,
        }))
    }

    async fn member_list(
        &self,
        req: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        // Open to anyone, as in etcd (it does not look at the caller for MemberList).
        if req.get_ref().linearizable {
            self.server.linearizable_read().await?;
        }
        let members = self.server.sm.read().membership.members.clone();
        Ok(Response::new(pb::MemberListResponse {
            header: Some(self.header()),
            members,
        }))
    }

    async fn member_promote(
        &self,
        req: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        if !self.server.raft.status.is_leader() {
            return self.forward_promote(req).await.map(Response::new);
        }
        let members = self
            .server
            .promote_member(req.get_ref().id)
            .await
            .map_err(member_error)?;
        Ok(Response::new(pb::MemberPromoteResponse {
            header: Some(self.header()),
            members,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_urls_are_checked_and_sorted_like_etcd() {
        let ok = parse_peer_urls(&["http://b:2380".into(), "https://a:2380/".into()]).unwrap();
        assert_eq!(ok, vec!["http://b:2380".to_string(), "https://a:2380".to_string()]);
        for bad in ["foo", "ftp://a:1", "http://a", "http://a:1/path", "http://a:1?x=y"] {
            assert_eq!(parse_peer_urls(&[bad.into()]), Err(MembershipError::BadUrls), "{bad}");
        }
        assert_eq!(parse_peer_urls(&[]), Err(MembershipError::BadUrls));
    }
}
