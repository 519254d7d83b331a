//! A learner serves only what etcd lets a learner serve: `Maintenance/Status` and
//! serializable `KV/Range` (checked in the Range handler). Every other etcd RPC, unary or
//! streaming, is refused with etcd's `Unavailable` error, so clients move to a voter.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use tonic::Status;

use crate::server::EtcdServer;

/// etcd's `ErrGRPCNotSupportedForLearner`.
pub fn not_supported() -> Status {
    Status::unavailable("etcdserver: rpc not supported for learner")
}

/// Whether a learner may serve this gRPC path (Range is checked further in its handler).
pub fn allowed_for_learner(path: &str) -> bool {
    !path.starts_with("/etcdserverpb.")
        || path == "/etcdserverpb.Maintenance/Status"
        || path == "/etcdserverpb.KV/Range"
}

/// Axum middleware in front of the client gRPC services.
pub async fn gate(State(server): State<Arc<EtcdServer>>, req: Request, next: Next) -> Response {
    if server.raft.status.is_learner() && !allowed_for_learner(req.uri().path()) {
        return not_supported().into_http();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learners_serve_status_and_range_only() {
        assert!(allowed_for_learner("/etcdserverpb.Maintenance/Status"));
        assert!(allowed_for_learner("/etcdserverpb.KV/Range"));
        assert!(allowed_for_learner("/health"));
        for p in [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Cluster/MemberList",
        ] {
            assert!(!allowed_for_learner(p), "{p}");
        }
    }
}
