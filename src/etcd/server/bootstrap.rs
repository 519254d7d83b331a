//! Start-up: open (or create) the data directory, recover the state machine from the
//! newest snapshot plus the WAL, build the Raft node, and start the driver thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crate::raft_node::NodeStorage;
use parking_lot::RwLock;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{Entry, EntryType, HardState};
use raft::storage::MemStorage;
use raft::{Config as RaftConfig, RawNode};

use super::discovery::JoinInfo;
use super::watch_source::{Headers, StoreHistory};
use super::{EtcdServer, IdGenerator, LeaderLink};
use crate::apply::{encode_conf_change, RestoreError, StateMachine};
use crate::auth::TokenStore;
use crate::config::{InitialClusterState, ServerConfig};
use crate::lease::min_lease_ttl;
use crate::membership::{self, Change, Membership};
use crate::metrics::ServerMetrics;
use crate::peer::{Connectivity, PeerTransport};
use crate::proto::rustcdpb::{ClusterSnapshot, StateSnapshot, WalMetadata};
use crate::raft_node::{self, raft_logger, DriverConfig, DriverHooks, Durable, RaftView};
use crate::storage::{snapshot_file_name, DataDir, SnapshotFiles, StorageError, Wal};
use crate::watch::WatchHub;

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
    #[error("{0}")]
    Join(String),
    #[error("WAL in {dir} does not continue the newest snapshot: expected entry {expected}, found {found}")]
    WalGap { dir: String, expected: u64, found: u64 },
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    #[error("cannot start the raft thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// A started member and the driver thread's handle.
pub struct Started {
    pub server: Arc<EtcdServer>,
    pub driver: std::thread::JoinHandle<()>,
}

/// Opens the data directory and starts the member.
pub fn start(
    cfg: ServerConfig,
    metrics: Arc<ServerMetrics>,
    join: Option<JoinInfo>,
) -> Result<Started, BootstrapError> {
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
    let mut contents = contents;
    let meta = match &contents.metadata {
        Some(bytes) => WalMetadata::decode(bytes.as_slice())
            .map_err(|e| BootstrapError::Metadata(dirs.wal_dir().display().to_string(), e.to_string()))?,
        None => {
            let (meta, entries, hs) = fresh_member(&cfg, join)?;
            wal.set_metadata(&meta.encode_to_vec())?;
            if !entries.is_empty() {
                wal.append(&entries, Some(&hs))?;
            }
            wal.sync()?;
            tracing::info!(
                member_id = format!("{:x}", meta.member_id),
                cluster_id = format!("{:x}", meta.cluster_id),
                "{}",
                if entries.is_empty() {
                    "joining a running cluster"
                } else {
                    "bootstrapped a new cluster"
                }
            );
            contents.entries = entries;
            contents.hard_state = hs;
            meta
        }
    };
    if !fresh {
        tracing::info!(
            member_id = format!("{:x}", meta.member_id),
            "restarting member from its data directory (bootstrap flags are ignored)"
        );
    }
    // The member list comes from the newest snapshot and the log (a new cluster's log starts
    // with one configuration change per initial member, as etcd's does).
    let empty = Membership {
        cluster_id: meta.cluster_id,
        ..Default::default()
    };
    let mut sm = StateMachine::new(empty, meta.member_id, min_ttl, cfg.quota_backend_bytes);

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
                sm.membership.conf_state(),
            ))?;
            storage
        }
        None => MemStorage::new(),
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

    let status = Arc::new(RaftView::default());
    let removed = Arc::new(tokio::sync::Notify::new());
    let storage_failed = Arc::new(tokio::sync::Notify::new());
    // The transport reports snapshot outcomes to the driver, which starts after it.
    let handle_slot: Arc<std::sync::OnceLock<raft_node::RaftHandle>> = Arc::default();
    let connectivity = Arc::new(Connectivity::default());
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
            on_removed: {
                let removed = removed.clone();
                Box::new(move || removed.notify_one())
            },
            on_storage_failure: {
                let failed = storage_failed.clone();
                Box::new(move || failed.notify_one())
            },
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
    // Peers known before the log is applied: the members this member was created with, and
    // those of the newest snapshot. Applied configuration changes keep the set current.
    let peers: HashMap<u64, Vec<String>> = {
        let sm = sm.read();
        meta.bootstrap
            .iter()
            .flat_map(|b| b.members.iter())
            .chain(sm.membership.members.iter())
            .filter(|m| !sm.membership.removed.contains(&m.id))
            .map(|m| (m.id, m.peer_ur_ls.clone()))
            .collect()
    };
    let transport = PeerTransport::start(
        &tokio::runtime::Handle::current(),
        meta.cluster_id,
        meta.member_id,
        &peers,
        connectivity.clone(),
        {
            let removed = removed.clone();
            Arc::new(move || removed.notify_one())
        },
        {
            let handle = handle_slot.clone();
            Arc::new(move |to, ok| {
                if let Some(h) = handle.get() {
                    h.report_snapshot(to, ok);
                }
            })
        },
        crate::tls::peer_dialer(&cfg.tls)?,
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
    let _ = handle_slot.set(raft.clone());
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
        leader_link: LeaderLink::new(crate::tls::client_dialer(&cfg.tls)?),
        removed,
        storage_failed,
        connectivity,
        cfg,
    });
    Ok(Started { server, driver })
}

/// A fresh member's WAL metadata, and for a new cluster the log's first entries: one
/// AddNode configuration change per initial member at term 1, all committed (etcd's
/// `StartNode` writes the same), so every member, and every member that joins later and
/// replays the log, derives the same configuration.
fn fresh_member(
    cfg: &ServerConfig,
    join: Option<JoinInfo>,
) -> Result<(WalMetadata, Vec<Entry>, HardState), BootstrapError> {
    if let Some(j) = join {
        let meta = WalMetadata {
            member_id: j.member_id,
            cluster_id: j.cluster_id,
            bootstrap: Some(ClusterSnapshot {
                cluster_id: j.cluster_id,
                members: j.members,
                ..Default::default()
            }),
        };
        return Ok((meta, Vec::new(), HardState::default()));
    }
    if cfg.initial_cluster_state == InitialClusterState::Existing {
        return Err(BootstrapError::Join(
            "--initial-cluster-state=existing: the running cluster was not asked for its members".into(),
        ));
    }
    let m = Membership::bootstrap(&cfg.initial_cluster, &cfg.initial_cluster_token);
    let me = membership::member_id(&cfg.initial_advertise_peer_urls, &cfg.initial_cluster_token, None);
    let mut entries = Vec::with_capacity(m.members.len());
    for (i, member) in m.members.iter().enumerate() {
        let cc = encode_conf_change(0, &Change::Add(member.clone()));
        let mut e = Entry::default();
        e.set_entry_type(EntryType::EntryConfChange);
        e.term = 1;
        e.index = i as u64 + 1;
        e.data = cc
            .write_to_bytes()
            .map_err(|e| BootstrapError::Join(e.to_string()))?
            .into();
        entries.push(e);
    }
    let hs = HardState {
        term: 1,
        vote: 0,
        commit: entries.len() as u64,
        ..Default::default()
    };
    let meta = WalMetadata {
        member_id: me,
        cluster_id: m.cluster_id,
        bootstrap: Some(m.to_snapshot()),
    };
    Ok((meta, entries, hs))
}
