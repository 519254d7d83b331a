//! The etcd v3 gRPC services, plus the HTTP endpoints etcd serves on the client port,
//! multiplexed on one listener (HTTP/2 gRPC and HTTP/1.1 share the port, as in etcd).

mod auth;
mod auth_ctx;
mod cluster;
mod kv;
mod learner_gate;
mod lease;
mod maintenance;
pub mod metrics_layer;
pub mod rpc_error;
pub mod watch;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tonic::service::Routes;

use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer, lease_server::LeaseServer,
    maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::rustcdpb::peer_server::PeerServer;
use crate::server::{EtcdServer, CLUSTER_VERSION, ETCD_API_VERSION};

/// gRPC allows this much framing beyond `--max-request-bytes` (etcd's grpcOverheadBytes).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// A channel to the leader for requests a follower forwards (lease keep-alive and
/// time-to-live, member promotion); etcd's "no leader" while there is none.
pub(crate) async fn leader_channel(server: &EtcdServer) -> Result<tonic::transport::Channel, tonic::Status> {
    server
        .leader_link
        .channel(server)
        .await
        .ok_or_else(|| tonic::Status::unavailable("etcdserver: no leader"))
}

/// Every service and HTTP endpoint of the client port.
pub fn client_router(server: Arc<EtcdServer>) -> Router {
    let max = server.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let routes = Routes::new(KvServer::new(kv::KvService { server: server.clone() }).max_decoding_message_size(max))
        .add_service(WatchServer::new(watch::WatchGrpc::new(server.clone())).max_decoding_message_size(max))
        .add_service(LeaseServer::new(lease::LeaseService { server: server.clone() }).max_decoding_message_size(max))
        .add_service(
            ClusterServer::new(cluster::ClusterService { server: server.clone() }).max_decoding_message_size(max),
        )
        .add_service(
            MaintenanceServer::new(maintenance::MaintenanceService { server: server.clone() })
                .max_decoding_message_size(max),
        )
        .add_service(AuthServer::new(auth::AuthService { server: server.clone() }).max_decoding_message_size(max));
    routes
        .into_axum_router()
        .layer(axum::middleware::from_fn_with_state(server.clone(), learner_gate::gate))
        .layer(metrics_layer::GrpcMetricsLayer::new(server.metrics.grpc.clone()))
        .merge(http_router(server))
}

/// The peer port: Raft traffic between members plus the HTTP endpoints.
pub fn peer_router(server: Arc<EtcdServer>) -> Router {
    let peer = crate::peer::PeerService {
        cluster_id: server.cluster_id,
        raft: server.raft.clone(),
        sm: server.sm.clone(),
    };
    Routes::new(PeerServer::new(peer).max_decoding_message_size(64 * 1024 * 1024))
        .into_axum_router()
        .merge(http_router(server))
}

/// Only the HTTP endpoints (for `--listen-metrics-urls`).
pub fn http_router(server: Arc<EtcdServer>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(server)
}

/// etcd 3.5's /health: unhealthy without a leader, with an active alarm, or when a
/// linearizable read does not complete.
async fn health(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let reason = health_problem(&server).await;
    let (code, body) = match reason {
        None => (StatusCode::OK, r#"{"health":"true","reason":""}"#.to_string()),
        Some(r) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": r}).to_string(),
        ),
    };
    (code, [("content-type", "application/json")], body)
}

async fn health_problem(server: &EtcdServer) -> Option<String> {
    if let Some(e) = server.raft.status.storage_failure() {
        return Some(format!("STORAGE FAILURE {e}"));
    }
    if let Some(a) = server.sm.read().membership.alarms.first() {
        let name = crate::proto::etcdserverpb::AlarmType::try_from(a.alarm)
            .map(|t| t.as_str_name())
            .unwrap_or("UNKNOWN");
        return Some(format!("ALARM {name}"));
    }
    if !server.has_leader() {
        return Some("RAFT NO LEADER".into());
    }
    if server.linearizable_read().await.is_err() {
        return Some("QGET ERROR".into());
    }
    None
}

/// Liveness: the process serves requests (etcd 3.5.11+ /livez).
/// A member whose Raft driver stopped on a storage error is not alive (it is about to exit).
async fn livez(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    match server.raft.status.storage_failure() {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("[-]storage failed: {e}\nlivez check failed\n"),
        ),
    }
}

/// Readiness: there is a leader and a linearizable read completes (etcd 3.5.11+ /readyz).
async fn readyz(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    if server.raft.status.storage_failure().is_none() && server.has_leader() && server.linearizable_read().await.is_ok()
    {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "[-]linearizable_read failed\nreadyz check failed\n".to_string(),
        )
    }
}

async fn version(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    let cluster = server.sm.read().membership.cluster_version.clone();
    let cluster = if cluster.is_empty() {
        "not_decided".to_string()
    } else {
        cluster
    };
    let _ = CLUSTER_VERSION;
    let body = serde_json::json!({
        "etcdserver": ETCD_API_VERSION,
        "etcdcluster": cluster,
        "rustcd": env!("CARGO_PKG_VERSION"),
    });
    ([("content-type", "application/json")], body.to_string())
}

async fn metrics(State(server): State<Arc<EtcdServer>>) -> impl IntoResponse {
    // Counting live keys walks the index, so it is done per scrape, not every second.
    let (keys, applied, cluster_version) = {
        let sm = server.sm.read();
        (
            sm.mvcc.key_count() as i64,
            sm.applied_ops,
            sm.membership.cluster_version.clone(),
        )
    };
    server.metrics.keys_total.set(keys);
    server.metrics.sync_applied_ops(applied, &cluster_version);
    ([("content-type", "text/plain; version=0.0.4")], server.metrics.render())
}
