//! Prometheus metrics, named like etcd's where etcd has the same measurement.

use std::sync::Arc;

use prometheus::{Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntGauge, Opts, Registry, TextEncoder};

use crate::grpc::metrics_layer::GrpcMetrics;

/// All metrics of one member.
pub struct ServerMetrics {
    pub registry: Registry,
    pub has_leader: IntGauge,
    pub is_leader: Gauge,
    pub leader_changes: IntCounter,
    pub proposals_committed: IntGauge,
    pub proposals_applied: prometheus::Counter,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
    pub wal_fsync: Histogram,
    pub db_total_size: IntGauge,
    pub db_total_size_in_use: IntGauge,
    pub keys_total: IntGauge,
    pub current_revision: IntGauge,
    pub compact_revision: IntGauge,
    pub watchers: IntGauge,
    pub leases: IntGauge,
    pub server_id: IntGauge,
    /// gRPC server metrics (go-grpc-prometheus names), counted by the client router's layer.
    pub grpc: Arc<GrpcMetrics>,
}

fn gauge(reg: &Registry, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
    let g = IntGauge::with_opts(Opts::new(name, help))?;
    reg.register(Box::new(g.clone()))?;
    Ok(g)
}

fn counter(reg: &Registry, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
    let c = IntCounter::with_opts(Opts::new(name, help))?;
    reg.register(Box::new(c.clone()))?;
    Ok(c)
}

impl ServerMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let reg = Registry::new();
        let is_leader = Gauge::with_opts(Opts::new(
            "etcd_server_is_leader",
            "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        ))?;
        reg.register(Box::new(is_leader.clone()))?;
        let proposals_applied = prometheus::Counter::with_opts(Opts::new(
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
        ))?;
        reg.register(Box::new(proposals_applied.clone()))?;
        let wal_fsync = Histogram::with_opts(
            HistogramOpts::new(
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 14)?),
        )?;
        reg.register(Box::new(wal_fsync.clone()))?;
        Ok(ServerMetrics {
            has_leader: gauge(
                &reg,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            )?,
            is_leader,
            leader_changes: counter(
                &reg,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            )?,
            proposals_committed: gauge(
                &reg,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            )?,
            proposals_applied,
            proposals_pending: gauge(
                &reg,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            )?,
            proposals_failed: counter(
                &reg,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            )?,
            wal_fsync,
            db_total_size: gauge(
                &reg,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            )?,
            db_total_size_in_use: gauge(
                &reg,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            )?,
            keys_total: gauge(&reg, "etcd_debugging_mvcc_keys_total", "Total number of keys.")?,
            current_revision: gauge(
                &reg,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            )?,
            compact_revision: gauge(
                &reg,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            )?,
            watchers: gauge(&reg, "etcd_debugging_mvcc_watcher_total", "Total number of watchers.")?,
            leases: gauge(&reg, "etcd_debugging_lease_total", "The number of leases.")?,
            server_id: gauge(&reg, "etcd_server_id", "Server ID (low 63 bits).")?,
            grpc: Arc::new(GrpcMetrics::new(&reg)?),
            registry: reg,
        })
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            return format!("# error encoding metrics: {e}\n");
        }
        String::from_utf8_lossy(&buf).into_owned()
    }
}
