//! The `etcdserverpb.Maintenance` service.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tonic::{Request, Response, Status};

use super::auth_ctx::{auth_info, check_admin};
use crate::apply::ApplyOutput;
use crate::backup;
use crate::proto::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use crate::proto::rustcdpb::internal_request::Request as Internal;
use crate::server::{EtcdServer, ETCD_API_VERSION};

/// Size of each chunk of the snapshot stream (etcd sends 32 KiB chunks).
const SNAPSHOT_CHUNK: usize = 32 * 1024;

pub struct MaintenanceService {
    pub server: Arc<EtcdServer>,
}

fn mvcc_status(e: crate::mvcc::MvccError) -> Status {
    Status::new(tonic::Code::from_i32(e.grpc_status_code()), e.to_string())
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

/// etcd's text for an alarm in Status.errors.
fn alarm_text(a: &pb::AlarmMember) -> String {
    let name = pb::AlarmType::try_from(a.alarm)
        .map(|t| t.as_str_name())
        .unwrap_or("UNKNOWN");
    format!("memberID:{} alarm:{} ", a.member_id, name)
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, req: Request<pb::AlarmRequest>) -> Result<Response<pb::AlarmResponse>, Status> {
        if req.get_ref().action == pb::alarm_request::AlarmAction::Get as i32 {
            // Listing alarms is open to anyone, as in etcd.
            let sm = self.server.sm.read();
            let alarm = pb::AlarmType::try_from(req.get_ref().alarm).unwrap_or(pb::AlarmType::None);
            // etcd's Alarm and Defragment responses carry no header.
            return Ok(Response::new(pb::AlarmResponse {
                header: None,
                alarms: sm.membership.alarms_of(alarm),
            }));
        }
        // Raising or disarming one needs root.
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        match self.server.propose(Internal::Alarm(req.into_inner()), &who).await? {
            ApplyOutput::Alarm(mut resp) => {
                resp.header = None;
                Ok(Response::new(resp))
            }
            other => Err(Status::internal(format!("unexpected apply output {other:?}"))),
        }
    }

    async fn status(&self, _req: Request<pb::StatusRequest>) -> Result<Response<pb::StatusResponse>, Status> {
        // Open to anyone, as in etcd (`etcdctl endpoint status` needs no user with auth enabled).
        let st = &self.server.raft.status;
        let sm = self.server.sm.read();
        let (db_size, in_use) = sm.mvcc.size_bytes();
        let mut errors: Vec<String> = sm.membership.alarms.iter().map(alarm_text).collect();
        if !self.server.has_leader() {
            errors.push("etcdserver: no leader".into());
        }
        Ok(Response::new(pb::StatusResponse {
            header: Some(self.server.header_at(sm.mvcc.current_revision())),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: st.leader(),
            raft_index: st.commit_index(),
            raft_term: st.term(),
            raft_applied_index: st.applied_index(),
            errors,
            db_size_in_use: in_use,
            is_learner: st.is_learner(),
        }))
    }

    async fn defragment(
        &self,
        req: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        // Root only, as etcd's authMaintenanceServer.
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        self.server.sm.write().mvcc.defragment();
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(&self, req: Request<pb::HashRequest>) -> Result<Response<pb::HashResponse>, Status> {
        // Root only, as etcd's authMaintenanceServer.
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        let sm = self.server.sm.read();
        Ok(Response::new(pb::HashResponse {
            header: Some(self.server.header_at(sm.mvcc.current_revision())),
            hash: sm.mvcc.hash(),
        }))
    }

    async fn hash_kv(&self, req: Request<pb::HashKvRequest>) -> Result<Response<pb::HashKvResponse>, Status> {
        // Root only, as etcd's authMaintenanceServer.
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        let r = req.into_inner();
        let sm = self.server.sm.read();
        let (hash, compact_revision, hash_revision) = sm.mvcc.hash_kv(r.revision).map_err(mvcc_status)?;
        Ok(Response::new(pb::HashKvResponse {
            header: Some(self.server.header_at(sm.mvcc.current_revision())),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, req: Request<pb::SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        let (bytes, header) = {
            let sm = self.server.sm.read();
            (
                backup::encode(&sm.to_snapshot()),
                self.server.header_at(sm.mvcc.current_revision()),
            )
        };
        let total = bytes.len();
        let chunks: Vec<Result<pb::SnapshotResponse, Status>> = bytes
            .chunks(SNAPSHOT_CHUNK)
            .scan(total, |remaining, chunk| {
                *remaining -= chunk.len();
                Some(Ok(pb::SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: *remaining as u64,
                    blob: chunk.to_vec(),
                }))
            })
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        req: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        self.server
            .move_leader(req.get_ref().target_id)
            .await
            .map_err(super::cluster::member_error)?;
        Ok(Response::new(pb::MoveLeaderResponse {
            header: Some(self.server.header()),
        }))
    }

    async fn downgrade(&self, _req: Request<pb::DowngradeRequest>) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "rustcd: Downgrade is not implemented (rustcd has one storage version; see the README's compatibility table)",
        ))
    }
}
