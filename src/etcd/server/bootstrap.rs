//! Start-up: open (or create) the data directory, recover the state machine from the
//! newest snapshot plus the WAL, build the Raft node, and start the driver thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::etcd::raft_node::NodeStorage;
use parking_lot::RwLock;
use prost::Message as _;
use raft::eraftpb::ConfState;
use raft::storage::MemStorage;
use raft::{Config as RaftConfig, RawNode};

use super::watch_source::{Headers, StoreHistory};
use super::{EtcdServer, IdGenerator};
use crate::etcd::apply::{RestoreError, StateMachine};
use crate::etcd::auth::TokenStore;
use crate::etcd::config::{ClusterState, ServerConfig};
use crate::etcd::lease::min_lease_ttl;
use crate::etcd::membership::{self, Membership};
use crate::etcd::metrics::Metrics;
use crate::etcd::peer::PeerTransport;
use crate::etcd::proto::rustcdpb::{StateSnapshot, WalMetadata};
use crate::etcd::raft_node::{self, raft_logger, DriverConfig, DriverHooks, Durable, RaftStatus};
use crate::etcd::storage::{snapshot_file_name, DataDir, SnapshotFiles, StorageError, Wal};
use crate::etcd::watch::WatchHub;

/// WAL segment size (etcd uses 64 MB segments).
const WAL_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// Why the member cannot start. Each message names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("snapshot {path}: {source}")]
    Snapshot { path: String, source: RestoreError },
    #[error("WAL metadata in {0} is unreadable: {1}")]
    Metadata(String, String),
    #[error("{0}")]
    Unsupported(String),
    #[error("WAL in {dir} does not continue the newest snapshot: expected entry {expected}, found {found}")]
    WalGap { dir: String, expected: u64, found: u64 },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("cannot start the raft thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A started member and the driver thread's handle.
pub struct Started {
    pub server: Arc<EtcdServer>,
    pub driver: std::thread::JoinHandle<()>,
}

/// Opens the data directory and starts the member.
pub fn start(cfg: ServerConfig, metrics: Arc<Metrics>) -> Result<Started, BootstrapError> {
    let dirs = DataDir::new(&cfg.data_dir, cfg.wal_dir.as_deref());
    dirs.create()?;
    dirs.check_version()?;
    let snapshots = SnapshotFiles::open(dirs.snap_dir())?;
    let newest = snapshots.load_newest()?;
    let (mut wal, contents) = Wal::open(dirs.wal_dir(), WAL_SEGMENT_BYTES)?;
    if contents.torn_tail_truncated {
        tracing::warn!(dir = %dirs.wal_dir().display(), "truncated a torn WAL record left by a crash");
    }
    let now = Instant::now();
    let min_ttl = min_lease_ttl(cfg.heartbeat, cfg.election_timeout);

    let fresh = contents.metadata.is_none();
    let meta = match &contents.metadata {
        Some(bytes) => WalMetadata::decode(bytes.as_slice())
            .map_err(|e| BootstrapError::Metadata(dirs.wal_dir().display().to_string(), e.to_string()))?,
        None => {
            if cfg.initial_cluster_state == ClusterState::Existing {
                return Err(BootstrapError::Unsupported(
                    "--initial-cluster-state=existing (joining a running cluster) needs multi-member support, which this rustcd does not have yet".into(),
                ));
            }
            let m = Membership::bootstrap(&cfg.initial_cluster, &cfg.initial_cluster_token);
            let me = membership::member_id(&cfg.initial_advertise_peer_urls, &cfg.initial_cluster_token, None);
            let meta = WalMetadata {
                member_id: me,
                cluster_id: m.cluster_id,
                bootstrap: Some(m.to_snapshot()),
            };
            wal.set_metadata(&meta.encode_to_vec())?;
            wal.sync()?;
            tracing::info!(
                member_id = format!("{me:x}"),
                cluster_id = format!("{:x}", m.cluster_id),
                "bootstrapped a new cluster"
            );
            meta
        }
    };
    if !fresh {
        tracing::info!(
            member_id = format!("{:x}", meta.member_id),
            "restarting member from its data directory (bootstrap flags are ignored)"
        );
    }
    let bootstrap_membership = Membership::from_snapshot(meta.bootstrap.clone().unwrap_or_default());
    let mut sm = StateMachine::new(bootstrap_membership, meta.member_id, min_ttl, cfg.quota_backend_bytes);

    let storage = match &newest {
        Some(snap) => {
            let state = StateSnapshot::decode(snap.data.as_slice()).map_err(|e| BootstrapError::Snapshot {
                path: dirs
                    .snap_dir()
                    .join(snapshot_file_name(snap.term, snap.index))
                    .display()
                    .to_string(),
                source: RestoreError::Decode(e),
            })?;
            sm.restore(state, now).map_err(|e| BootstrapError::Snapshot {
                path: dirs
                    .snap_dir()
                    .join(snapshot_file_name(snap.term, snap.index))
                    .display()
                    .to_string(),
                source: e,
            })?;
            let storage = MemStorage::new();
            storage.wl().apply_snapshot(raft_node::snapshot_metadata(
                snap.index,
                snap.term,
                voters(&sm.membership),
            ))?;
            storage
        }
        None => MemStorage::new_with_conf_state(ConfState::from((voters(&sm.membership), vec![]))),
    };
    let snap_index = sm.applied_index;
    let entries: Vec<_> = contents.entries.into_iter().filter(|e| e.index > snap_index).collect();
    if let Some(first) = entries.first() {
        if first.index > snap_index + 1 {
            return Err(BootstrapError::WalGap {
                dir: dirs.wal_dir().display().to_string(),
                expected: snap_index + 1,
                found: first.index,
            });
        }
    }
    storage.wl().append(&entries)?;
    let mut hs = contents.hard_state;
    let last = entries.last().map(|e| e.index).unwrap_or(snap_index);
    hs.commit = hs.commit.clamp(snap_index, last.max(snap_index));
    storage.wl().set_hardstate(hs);

    let raft_cfg = RaftConfig {
        id: meta.member_id,
        election_tick: cfg.election_ticks(),
        heartbeat_tick: 1,
        applied: snap_index,
        max_size_per_msg: 1024 * 1024,
        max_inflight_msgs: 512,
        pre_vote: cfg.pre_vote,
        check_quorum: true,
        ..Default::default()
    };
    raft_cfg.validate()?;
    let sm = Arc::new(RwLock::new(sm));
    let storage = NodeStorage {
        mem: storage,
        sm: sm.clone(),
    };
    let node = RawNode::new(&raft_cfg, storage, &raft_logger())?;

    let status = Arc::new(RaftStatus::default());
    let watch = Arc::new(WatchHub::new(
        Arc::new(StoreHistory(sm.clone())),
        Arc::new(Headers {
            cluster_id: meta.cluster_id,
            member_id: meta.member_id,
            status: status.clone(),
        }),
        cfg.watch_progress_notify_interval,
    ));
    let hooks = {
        let watch = watch.clone();
        let m1 = metrics.clone();
        let m2 = metrics.clone();
        let m3 = metrics.clone();
        let hub = watch.clone();
        DriverHooks {
            on_events: Box::new(move |rev, events| watch.notify(rev, events)),
            on_fsync: Box::new(move |d| m1.wal_fsync.observe(d.as_secs_f64())),
            on_applied: Box::new(move |n| m2.proposals_applied.inc_by(n as f64)),
            on_restore: Box::new(move || hub.restore()),
            on_role_change: Box::new(move |leader| {
                m3.is_leader.set(if leader { 1.0 } else { 0.0 });
                m3.leader_changes.inc();
            }),
        }
    };
    let driver_cfg = DriverConfig {
        tick: cfg.heartbeat,
        snapshot_count: cfg.snapshot_count,
        max_snapshots: cfg.max_snapshots,
        unsafe_no_fsync: cfg.unsafe_no_fsync,
        campaign_if_single: true,
        lease_promote_extend: cfg.election_timeout,
        catch_up_entries: cfg.snapshot_catchup_entries,
    };
    let peers: HashMap<u64, Vec<String>> = sm
        .read()
        .membership
        .members
        .iter()
        .map(|m| (m.id, m.peer_ur_ls.clone()))
        .collect();
    let transport = PeerTransport::start(
        &tokio::runtime::Handle::current(),
        meta.cluster_id,
        meta.member_id,
        &peers,
    );
    let (raft, driver) = raft_node::spawn(
        node,
        Durable { wal, snapshots },
        sm.clone(),
        hooks,
        driver_cfg,
        status,
        transport,
    )?;
    let server = Arc::new(EtcdServer {
        member_id: meta.member_id,
        cluster_id: meta.cluster_id,
        raft,
        tokens: TokenStore::new(cfg.auth_token_ttl),
        watch,
        metrics,
        ids: IdGenerator::new(meta.member_id),
        sm,
        started_at: now,
        leader_link: Default::default(),
        cfg,
    });
    Ok(Started { server, driver })
}

fn voters(m: &Membership) -> Vec<u64> {
    m.members.iter().filter(|m| !m.is_learner).map(|m| m.id).collect()
}
