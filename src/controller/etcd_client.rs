//! The operator's etcd client: the project's own generated tonic clients for the Cluster and
//! Maintenance services, dialed at `<pod IP>:2379` (pod IPs come from `status.podIP`, so the operator
//! needs no cluster DNS and can run outside the pod network in tests); over TLS when the cluster has
//! client TLS (see [`super::member_tls`]).

use std::net::IpAddr;
use std::time::Duration;

use tonic::transport::Channel;

use super::error::Error;
use super::member_tls::Dial;
use super::names::CLIENT_PORT;
use rustcd_dial::error_chain;
use rustcd_proto::etcdserverpb::cluster_client::ClusterClient;
use rustcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use rustcd_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberListResponse, MemberPromoteRequest, MemberRemoveRequest,
    MoveLeaderRequest, StatusRequest, StatusResponse,
};

/// Time to establish a connection to a member.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Time for one call (membership changes wait for a Raft commit).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one member's client port.
#[derive(Clone, Debug)]
pub struct MemberClient {
    endpoint: String,
    channel: Channel,
}

impl MemberClient {
    /// Connects to `ip:2379` as `dial` says; with TLS, the member's certificate must name `host`.
    pub async fn connect(dial: &Dial, ip: IpAddr, host: &str) -> Result<MemberClient, Error> {
        let endpoint = format!("{}:{CLIENT_PORT}", ip_for_url(ip));
        let url = format!("{}://{endpoint}", dial.scheme());
        let channel = dial
            .dialer()
            .connect_as(&url, Some(host), |e| {
                e.connect_timeout(CONNECT_TIMEOUT).timeout(CALL_TIMEOUT)
            })
            .await
            .map_err(|e| Error::Etcd {
                endpoint: endpoint.clone(),
                status: Box::new(tonic::Status::unavailable(error_chain(&e))),
            })?;
        Ok(MemberClient { endpoint, channel })
    }

    /// `ip:port` this client dials.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, status: tonic::Status) -> Error {
        Error::Etcd {
            endpoint: self.endpoint.clone(),
            status: Box::new(status),
        }
    }

    /// MemberList (linearizable, so a partitioned member cannot report a stale membership).
    pub async fn member_list(&self) -> Result<MemberListResponse, Error> {
        ClusterClient::new(self.channel.clone())
            .member_list(MemberListRequest { linearizable: true })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    /// Maintenance Status of this member.
    pub async fn status(&self) -> Result<StatusResponse, Error> {
        MaintenanceClient::new(self.channel.clone())
            .status(StatusRequest {})
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| self.error(s))
    }

    /// MemberAdd of a learner with `peer_url`; returns the new member.
    pub async fn add_learner(&self, peer_url: &str) -> Result<Option<Member>, Error> {
        ClusterClient::new(self.channel.clone())
            .member_add(MemberAddRequest {
                peer_ur_ls: vec![peer_url.to_string()],
                is_learner: true,
            })
            .await
            .map(|r| r.into_inner().member)
            .map_err(|s| self.error(s))
    }

    /// MemberPromote.
    pub async fn promote(&self, id: u64) -> Result<(), Error> {
        ClusterClient::new(self.channel.clone())
            .member_promote(MemberPromoteRequest { id })
            .await
            .map(drop)
            .map_err(|s| self.error(s))
    }

    /// MemberRemove.
    pub async fn remove(&self, id: u64) -> Result<(), Error> {
        ClusterClient::new(self.channel.clone())
            .member_remove(MemberRemoveRequest { id })
            .await
            .map(drop)
            .map_err(|s| self.error(s))
    }

    /// MoveLeader to `target` (only the current leader accepts it).
    pub async fn move_leader(&self, target: u64) -> Result<(), Error> {
        MaintenanceClient::new(self.channel.clone())
            .move_leader(MoveLeaderRequest { target_id: target })
            .await
            .map(drop)
            .map_err(|s| self.error(s))
    }
}

/// An IP as it appears in a URL authority (IPv6 in brackets).
fn ip_for_url(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_is_bracketed() {
        assert_eq!(ip_for_url("10.0.0.1".parse().unwrap()), "10.0.0.1");
        assert_eq!(ip_for_url("fd00::1".parse().unwrap()), "[fd00::1]");
    }
}
