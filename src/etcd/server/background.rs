//! Leader-side and housekeeping loops: publishing this member's attributes, lease
//! expiry, the NOSPACE alarm, auto-compaction and metric gauges.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{AuthInfo, EtcdServer, CLUSTER_VERSION};
use crate::config::{url_string, AutoCompaction};
use crate::proto::etcdserverpb::{self as pb, alarm_request::AlarmAction, AlarmType};
use crate::proto::rustcdpb::{internal_request::Request, ClusterVersionSet, MemberAttributes};

const LEASE_CHECK_INTERVAL: Duration = Duration::from_millis(500);
const MAX_REVOKES_PER_ROUND: usize = 1000;

/// Starts every background loop of the server on the current tokio runtime.
pub fn spawn_all(server: &Arc<EtcdServer>) {
    tokio::spawn(lease_expiry(server.clone()));
    tokio::spawn(housekeeping(server.clone()));
    if server.cfg.auto_compaction != AutoCompaction::Off {
        tokio::spawn(auto_compaction(server.clone()));
    }
}

/// Publishes name and client URLs (what `member list` shows) and the cluster version through
/// Raft. Like etcd, the member serves clients only after this returns.
pub async fn publish(server: Arc<EtcdServer>) {
    let urls: Vec<String> = server.cfg.advertise_client_urls.clone();
    let _ = url_string; // client URLs are already normalised by the config.
    loop {
        // A member that joined a running cluster learns of itself only when it applies the
        // entry that added it (`needs_attrs` is None until then): keep waiting.
        let (needs_attrs, needs_version) = {
            let sm = server.sm.read();
            let attrs = sm
                .membership
                .member(server.member_id)
                .map(|m| m.name != server.cfg.name || m.client_ur_ls != urls);
            (attrs, sm.membership.cluster_version.is_empty())
        };
        if let (true, Some(needs_attrs)) = (server.has_leader(), needs_attrs) {
            let mut ok = true;
            if needs_attrs {
                let req = Request::MemberAttributes(MemberAttributes {
                    id: server.member_id,
                    name: server.cfg.name.clone(),
                    client_urls: urls.clone(),
                });
                ok &= server.propose(req, &AuthInfo::default()).await.is_ok();
            }
            if needs_version && server.raft.status.is_leader() {
                let req = Request::ClusterVersion(ClusterVersionSet {
                    version: CLUSTER_VERSION.to_string(),
                });
                ok &= server.propose(req, &AuthInfo::default()).await.is_ok();
            }
            if ok {
                tracing::info!(name = %server.cfg.name, "published local member attributes to the cluster");
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On the leader, revokes leases whose TTL ran out.
async fn lease_expiry(server: Arc<EtcdServer>) {
    let mut tick = tokio::time::interval(LEASE_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        let now = Instant::now();
        if !server.raft.status.is_leader() {
            continue;
        }
        let expired = server.sm.write().lessor.expired(now, MAX_REVOKES_PER_ROUND);
        for id in expired {
            let s = server.clone();
            tokio::spawn(async move {
                let req = Request::LeaseRevoke(pb::LeaseRevokeRequest { id });
                if let Err(e) = s.propose(req, &AuthInfo::default()).await {
                    tracing::debug!(lease = id, error = %e, "revoking expired lease failed; will retry");
                }
            });
        }
    }
}

/// Raises the NOSPACE alarm when the store outgrows its quota (as etcd's quota check does).
pub async fn raise_nospace(server: &EtcdServer) {
    let req = Request::Alarm(pb::AlarmRequest {
        action: AlarmAction::Activate as i32,
        member_id: server.member_id,
        alarm: AlarmType::Nospace as i32,
    });
    if let Err(e) = server.propose(req, &AuthInfo::default()).await {
        tracing::warn!(error = %e, "raising the NOSPACE alarm failed");
    }
}

/// Keeps metric gauges current and raises the quota alarm.
async fn housekeeping(server: Arc<EtcdServer>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    server
        .metrics
        .server_id
        .set((server.member_id & (i64::MAX as u64)) as i64);
    loop {
        tick.tick().await;
        let (total, in_use, rev, compact, leases, over, alarmed) = {
            let sm = server.sm.read();
            let (total, in_use) = sm.mvcc.size_bytes();
            (
                total,
                in_use,
                sm.mvcc.current_revision(),
                sm.mvcc.compact_revision(),
                sm.lessor.leases().len() as i64,
                sm.over_quota(),
                sm.membership.has_alarm(AlarmType::Nospace),
            )
        };
        let m = &server.metrics;
        m.db_total_size.set(total);
        m.db_total_size_in_use.set(in_use);
        m.current_revision.set(rev);
        m.compact_revision.set(compact);
        m.leases.set(leases);
        m.has_leader.set(i64::from(server.has_leader()));
        m.proposals_committed.set(server.raft.status.commit_index() as i64);
        m.watchers.set(server.watch.watcher_count() as i64);
        server.tokens.purge_expired(Instant::now());
        if over && !alarmed && server.raft.status.is_leader() {
            raise_nospace(&server).await;
        }
    }
}

/// etcd's auto-compaction: periodic mode keeps roughly `retention` of history, sampling
/// the revision every retention/10 (or every hour for retention above an hour); revision
/// mode keeps the last N revisions, checked every 5 minutes.
async fn auto_compaction(server: Arc<EtcdServer>) {
    let (interval, periodic) = match server.cfg.auto_compaction {
        AutoCompaction::Periodic(d) => {
            let step = if d > Duration::from_secs(3600) {
                Duration::from_secs(3600)
            } else {
                d / 10
            };
            (step.max(Duration::from_millis(100)), Some(d))
        }
        AutoCompaction::Revision(_) => (Duration::from_secs(300), None),
        AutoCompaction::Off => return,
    };
    let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
    let mut last_compacted = 0i64;
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if !server.raft.status.is_leader() {
            samples.clear();
            continue;
        }
        let now = Instant::now();
        let current = server.sm.read().mvcc.current_revision();
        let target = match (server.cfg.auto_compaction, periodic) {
            (AutoCompaction::Revision(keep), _) => current - keep,
            (_, Some(retention)) => {
                samples.push_back((now, current));
                let mut target = 0;
                while let Some(&(t, rev)) = samples.front() {
                    if now.duration_since(t) >= retention {
                        target = rev;
                        samples.pop_front();
                    } else {
                        break;
                    }
                }
                target
            }
            _ => 0,
        };
        if target > last_compacted && target > 0 {
            let req = Request::Compaction(pb::CompactionRequest {
                revision: target,
                physical: false,
            });
            match server.propose(req, &AuthInfo::default()).await {
                Ok(_) => {
                    tracing::info!(revision = target, "auto-compaction finished");
                    last_compacted = target;
                }
                Err(e) => tracing::warn!(revision = target, error = %e, "auto-compaction failed"),
            }
        }
    }
}
