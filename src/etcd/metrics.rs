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
    /// `etcd_mvcc_put_total`, `_delete_total`, `_txn_total`: synced from the applied-op tally at
    /// each scrape ([`ServerMetrics::sync_applied_ops`]).
    pub mvcc_puts: IntCounter,
    pub mvcc_deletes: IntCounter,
    pub mvcc_txns: IntCounter,
    /// `etcd_mvcc_range_total`: applied ranges (inside txns) plus the Range RPCs this member served.
    pub mvcc_ranges: IntCounter,
    /// Range RPCs served (they are not applied through Raft).
    pub ranges_served: std::sync::atomic::AtomicU64,
    /// `etcd_server_version{server_version}` and `etcd_cluster_version{cluster_version}`.
    pub server_version: prometheus::IntGaugeVec,
    pub cluster_version: prometheus::IntGaugeVec,
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
            mvcc_puts: counter(&reg, "etcd_mvcc_put_total", "Total number of puts seen by this member.")?,
            mvcc_deletes: counter(
                &reg,
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            )?,
            mvcc_txns: counter(&reg, "etcd_mvcc_txn_total", "Total number of txns seen by this member.")?,
            mvcc_ranges: counter(
                &reg,
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            )?,
            ranges_served: std::sync::atomic::AtomicU64::new(0),
            server_version: {
                let v = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "etcd_server_version",
                        "Which version is running. 1 for 'server_version' label with current version.",
                    ),
                    &["server_version"],
                )?;
                reg.register(Box::new(v.clone()))?;
                v.with_label_values(&[crate::server::ETCD_API_VERSION]).set(1);
                v
            },
            cluster_version: {
                let v = prometheus::IntGaugeVec::new(
                    Opts::new(
                        "etcd_cluster_version",
                        "Which version is running. 1 for 'cluster_version' label with current cluster version",
                    ),
                    &["cluster_version"],
                )?;
                reg.register(Box::new(v.clone()))?;
                v
            },
            grpc: Arc::new(GrpcMetrics::new(&reg)?),
            registry: reg,
        })
    }

    /// Brings the MVCC operation counters up to `applied` (this member's applied-op tally) plus the
    /// Range RPCs it served, and the cluster version gauge to `cluster_version` (`3.5.0` shows as
    /// `3.5`, as etcd's; empty while undecided).
    pub fn sync_applied_ops(&self, applied: crate::apply::OpTally, cluster_version: &str) {
        let served = self.ranges_served.load(std::sync::atomic::Ordering::Relaxed);
        for (counter, total) in [
            (&self.mvcc_puts, applied.puts),
            (&self.mvcc_deletes, applied.deletes),
            (&self.mvcc_txns, applied.txns),
            (&self.mvcc_ranges, applied.ranges + served),
        ] {
            // Only this function moves these counters, so they never run ahead of the tally.
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        let short: Vec<&str> = cluster_version.split('.').take(2).collect();
        if short.len() == 2 {
            let label = short.join(".");
            self.cluster_version.reset();
            self.cluster_version.with_label_values(&[label.as_str()]).set(1);
        }
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
