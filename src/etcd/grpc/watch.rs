//! The `etcdserverpb.Watch` service: the watch hub's stream handler, with each stream's
//! create requests checked against the permissions of the stream's user.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::auth_ctx::{auth_info, check_range};
use crate::etcd::auth::PermType;
use crate::etcd::proto::etcdserverpb::{self as pb, watch_server::Watch};
use crate::etcd::server::EtcdServer;
use crate::etcd::watch::{WatchResponseStream, WatchService};

pub struct WatchGrpc {
    pub server: Arc<EtcdServer>,
    pub inner: WatchService,
}

impl WatchGrpc {
    pub fn new(server: Arc<EtcdServer>) -> Self {
        let inner = WatchService::new((*server.watch).clone()).with_max_request_bytes(server.cfg.max_request_bytes);
        WatchGrpc { server, inner }
    }
}

#[tonic::async_trait]
impl Watch for WatchGrpc {
    type WatchStream = WatchResponseStream;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let who = auth_info(&self.server, &req)?;
        let mut svc = self.inner.clone();
        if !who.username.is_empty() {
            let server = self.server.clone();
            svc = svc.with_authorizer(Arc::new(move |c: &pb::WatchCreateRequest| {
                check_range(&server, &who, &c.key, &c.range_end, PermType::Read)
            }));
        }
        Ok(Response::new(svc.serve_stream(req.into_inner())))
    }
}
