//! The `etcdserverpb.Watch` service (the only tonic `Watch` implementation): the watch engine's
//! stream handler (`watch::WatchService`), with each stream's create requests checked against
//! the permissions of the stream's user.

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::auth_ctx::{auth_info, check_range};
use crate::auth::PermType;
use crate::proto::etcdserverpb::{self as pb, watch_server::Watch};
use crate::server::EtcdServer;
use crate::watch::{WatchResponseStream, WatchService};

pub struct WatchGrpc {
    /// Checks permissions when auth is enabled; `None` serves every stream unchecked.
    server: Option<Arc<EtcdServer>>,
    inner: WatchService,
}

impl WatchGrpc {
    /// The server's Watch service.
    pub fn new(server: Arc<EtcdServer>) -> Self {
        let inner = WatchService::new((*server.watch).clone()).with_max_request_bytes(server.cfg.max_request_bytes);
        WatchGrpc {
            server: Some(server),
            inner,
        }
    }

    /// `inner` served without an auth store (the watch engine's own gRPC tests).
    pub fn without_auth(inner: WatchService) -> Self {
        WatchGrpc { server: None, inner }
    }
}

#[tonic::async_trait]
impl Watch for WatchGrpc {
    type WatchStream = WatchResponseStream;

    async fn watch(&self, req: Request<Streaming<pb::WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let mut svc = self.inner.clone();
        if let Some(server) = &self.server {
            let who = auth_info(server, &req)?;
            if !who.username.is_empty() {
                let server = server.clone();
                svc = svc.with_authorizer(Arc::new(move |c: &pb::WatchCreateRequest| {
                    check_range(&server, &who, &c.key, &c.range_end, PermType::Read)
                }));
            }
        }
        Ok(Response::new(svc.serve_stream(req.into_inner())))
    }
}
