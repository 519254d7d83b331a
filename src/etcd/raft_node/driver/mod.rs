//! The Ready loop. See the module docs of `raft_node` for the invariants it keeps.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use raft::eraftpb::{ConfChange, Entry, EntryType, Message, MessageType};
use raft::{RawNode, SnapshotStatus, StateRole};
use tokio::sync::oneshot;

mod membership;
mod reads;
mod snapshots;

pub use snapshots::snapshot_metadata;

use super::storage::NodeStorage;
use super::view::RaftView;
use crate::apply::{Applied, ApplyResult, StateMachine};
use crate::peer::PeerTransport;
use crate::storage::{SnapshotFiles, Wal};

/// Upper bound of proposals taken into one Ready (one fsync).
const MAX_BATCH: usize = 4096;

/// Why a proposal or read could not be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RaftError {
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: not leader")]
    NotLeader,
    /// Raft takes one configuration change at a time.
    #[error("etcdserver: another membership change is in progress; retry when it has been applied")]
    ConfChangePending,
}

type Waiter = oneshot::Sender<Result<ApplyResult, RaftError>>;
type ReadWaiter = oneshot::Sender<Result<u64, RaftError>>;

enum Input {
    Propose {
        data: Vec<u8>,
        id: u64,
        tx: Waiter,
    },
    Read {
        tx: oneshot::Sender<Result<u64, RaftError>>,
    },
    Snapshot {
        tx: oneshot::Sender<Result<(), String>>,
    },
    ProposeConfChange {
        cc: ConfChange,
        id: u64,
        tx: Waiter,
    },
    /// On the leader: (learner's matched index, leader's matched index), None if `id` has no progress.
    Progress {
        id: u64,
        tx: oneshot::Sender<Result<Option<(u64, u64)>, RaftError>>,
    },
    TransferLeader {
        to: u64,
    },
    ReportSnapshot {
        to: u64,
        ok: bool,
    },
    /// A Raft message from a peer.
    Step(Box<Message>),
    Stop,
}

/// Receives each applied write's revision and events.
pub type EventSink = Box<dyn Fn(i64, &[crate::proto::mvccpb::Event]) + Send>;

/// Callbacks into the rest of the server, run on the driver thread right after an entry applies.
pub struct DriverHooks {
    /// Called with each applied write's revision and events (for watchers).
    pub on_events: EventSink,
    /// Called with the fsync duration of every WAL sync (for metrics).
    pub on_fsync: Box<dyn Fn(Duration) + Send>,
    /// Called with the number of entries applied in one round (for metrics).
    pub on_applied: Box<dyn Fn(u64) + Send>,
    /// Called when this member becomes leader or stops being leader.
    pub on_role_change: Box<dyn Fn(bool) + Send>,
    /// Called after a snapshot from the leader replaced the state machine.
    pub on_restore: Box<dyn Fn() + Send>,
    /// Called when this member has applied its own removal from the cluster.
    pub on_removed: Box<dyn Fn() + Send>,
    /// Called once when a WAL, snapshot or fsync error stopped the driver (the member must then
    /// stop: fail-stop, as etcd does); the error is in [`RaftView::storage_failure`].
    pub on_storage_failure: Box<dyn Fn() + Send>,
}

/// Settings for the driver thread.
pub struct DriverConfig {
    pub tick: Duration,
    pub snapshot_count: u64,
    pub max_snapshots: usize,
    pub unsafe_no_fsync: bool,
    /// Campaign immediately when this member is the only voter.
    pub campaign_if_single: bool,
    /// Entries kept in memory behind a snapshot so slow followers catch up from the log
    /// (etcd's --experimental-snapshot-catchup-entries).
    pub catch_up_entries: u64,
    /// Extra time given to every lease when this member becomes leader (the election timeout).
    pub lease_promote_extend: Duration,
}

/// Cheap, cloneable handle used by RPC handlers to talk to the driver thread.
#[derive(Clone)]
pub struct RaftHandle {
    tx: SyncSender<Input>,
    pub status: Arc<RaftView>,
}

impl RaftHandle {
    /// Proposes `data` (an encoded `InternalRequest` with `id`) and waits until it is applied.
    pub async fn propose(&self, id: u64, data: Vec<u8>) -> Result<ApplyResult, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::Propose { data, id, tx }).await?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Waits until this member's state machine reflects every write committed before the call.
    pub async fn read_index(&self) -> Result<u64, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::Read { tx }).await?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Proposes a membership change (raft `ConfChange` for proposal `id`) and waits until it is applied.
    pub async fn propose_conf_change(&self, id: u64, cc: ConfChange) -> Result<ApplyResult, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::ProposeConfChange { cc, id, tx }).await?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// On the leader: how far `id`'s log matches the leader's (learner match, leader match).
    pub async fn progress(&self, id: u64) -> Result<Option<(u64, u64)>, RaftError> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::Progress { id, tx }).await?;
        rx.await.map_err(|_| RaftError::Stopped)?
    }

    /// Asks the leader to hand leadership to `to` (raft leadership transfer).
    pub async fn transfer_leader(&self, to: u64) -> Result<(), RaftError> {
        self.send(Input::TransferLeader { to }).await
    }

    /// Forces a state machine snapshot (and WAL release) now.
    pub async fn snapshot(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Input::Snapshot { tx }).await.map_err(|e| e.to_string())?;
        rx.await.map_err(|_| "etcdserver: server stopped".to_string())?
    }

    /// Hands a peer's Raft message to the driver; dropped if the driver is saturated
    /// (Raft retransmits).
    pub fn step(&self, msg: Message) {
        if self.tx.try_send(Input::Step(Box::new(msg))).is_err() {
            tracing::debug!("raft driver busy; dropped a peer message");
        }
    }

    /// Tells Raft whether a snapshot reached `to`.
    pub fn report_snapshot(&self, to: u64, ok: bool) {
        let _ = self.tx.try_send(Input::ReportSnapshot { to, ok });
    }

    /// Asks the driver thread to stop after finishing the current round.
    pub fn stop(&self) {
        let _ = self.tx.try_send(Input::Stop);
    }

    async fn send(&self, input: Input) -> Result<(), RaftError> {
        match self.tx.try_send(input) {
            Ok(()) => Ok(()),
            Err(mpsc::TrySendError::Disconnected(_)) => Err(RaftError::Stopped),
            Err(mpsc::TrySendError::Full(input)) => {
                // Back-pressure: the driver is saturated; wait on a blocking thread.
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(input).map_err(|_| RaftError::Stopped))
                    .await
                    .map_err(|_| RaftError::Stopped)?
            }
        }
    }
}

struct Driver {
    node: RawNode<NodeStorage>,
    wal: Wal,
    snapshots: SnapshotFiles,
    sm: Arc<RwLock<StateMachine>>,
    status: Arc<RaftView>,
    hooks: DriverHooks,
    cfg: DriverConfig,
    rx: Receiver<Input>,
    waiters: HashMap<u64, Waiter>,
    /// Proposals taken this round, proposed together by `flush_proposals`.
    proposals: Vec<(u64, Vec<u8>, Waiter)>,
    pending_reads: Vec<oneshot::Sender<Result<u64, RaftError>>>,
    /// ReadIndex requests sent, by context: when sent and who waits.
    reads_in_flight: HashMap<u64, (Instant, Vec<ReadWaiter>)>,
    reads_waiting_apply: Vec<(u64, oneshot::Sender<Result<u64, RaftError>>)>,
    read_ctx: u64,
    last_snapshot_index: u64,
    was_leader: bool,
    transport: PeerTransport,
}

/// The driver's durable storage: the WAL and the snapshot files.
pub struct Durable {
    pub wal: Wal,
    pub snapshots: SnapshotFiles,
}

/// Starts the driver thread. `node` must already hold the recovered log.
pub fn spawn(
    node: RawNode<NodeStorage>,
    disk: Durable,
    sm: Arc<RwLock<StateMachine>>,
    hooks: DriverHooks,
    cfg: DriverConfig,
    status: Arc<RaftView>,
    transport: PeerTransport,
) -> std::io::Result<(RaftHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::sync_channel(16 * 1024);
    let last_snapshot_index = sm.read().applied_index;
    status.set_applied(last_snapshot_index);
    let mut driver = Driver {
        node,
        wal: disk.wal,
        snapshots: disk.snapshots,
        sm,
        status: status.clone(),
        hooks,
        cfg,
        rx,
        waiters: HashMap::new(),
        proposals: Vec::new(),
        pending_reads: Vec::new(),
        reads_in_flight: HashMap::new(),
        reads_waiting_apply: Vec::new(),
        read_ctx: 0,
        last_snapshot_index,
        was_leader: false,
        transport,
    };
    driver.refresh_learner();
    let join = std::thread::Builder::new()
        .name("raft-driver".into())
        .spawn(move || driver.run())?;
    Ok((RaftHandle { tx, status }, join))
}

impl Driver {
    fn run(&mut self) {
        // Apply what is committed already (a new cluster's bootstrap configuration entries)
        // so that Raft knows its voters before deciding whether to campaign.
        if let Err(e) = self.on_ready() {
            self.storage_failed(&e);
            return;
        }
        let voters = self.node.raft.prs().conf().voters().ids();
        if self.cfg.campaign_if_single && voters.len() == 1 && voters.contains(self.node.raft.id) {
            if let Err(e) = self.node.campaign() {
                tracing::error!(error = %e, "campaign failed");
            }
        }
        let mut next_tick = Instant::now() + self.cfg.tick;
        loop {
            // Raft may have work left from the last round (e.g. entries committed by
            // advancing it): then only collect what is already queued, without waiting.
            let timeout = if self.node.has_ready() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            let first = match self.rx.recv_timeout(timeout) {
                Ok(input) => Some(input),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut stop = false;
            if let Some(input) = first {
                stop |= self.take(input);
                let mut n = 1;
                while n < MAX_BATCH {
                    match self.rx.try_recv() {
                        Ok(input) => {
                            stop |= self.take(input);
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
            }
            self.flush_proposals();
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick = Instant::now() + self.cfg.tick;
            }
            self.issue_read_index();
            if let Err(e) = self.on_ready() {
                self.storage_failed(&e);
                return;
            }
            if stop {
                self.fail_all();
                return;
            }
        }
    }

    /// Takes one input; returns true when asked to stop.
    fn take(&mut self, input: Input) -> bool {
        match input {
            Input::Propose { data, id, tx } => {
                if self.node.raft.leader_id == 0 {
                    let _ = tx.send(Err(RaftError::NoLeader));
                    return false;
                }
                self.proposals.push((id, data, tx));
                false
            }
            Input::Read { tx } => {
                self.pending_reads.push(tx);
                false
            }
            Input::Snapshot { tx } => {
                let r = self.take_snapshot().map_err(|e| e.to_string());
                let _ = tx.send(r);
                false
            }
            Input::ProposeConfChange { cc, id, tx } => {
                if self.node.raft.leader_id == 0 {
                    let _ = tx.send(Err(RaftError::NoLeader));
                    return false;
                }
                if self.node.raft.state == StateRole::Leader && self.node.raft.has_pending_conf() {
                    let _ = tx.send(Err(RaftError::ConfChangePending));
                    return false;
                }
                match self.node.propose_conf_change(Vec::new(), cc) {
                    Ok(()) => {
                        self.waiters.insert(id, tx);
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "configuration change dropped");
                        let _ = tx.send(Err(RaftError::NoLeader));
                    }
                }
                false
            }
            Input::Progress { id, tx } => {
                if self.node.raft.state != StateRole::Leader {
                    let _ = tx.send(Err(RaftError::NotLeader));
                    return false;
                }
                let prs = self.node.raft.prs();
                let me = self.node.raft.id;
                let r = prs
                    .get(id)
                    .map(|p| (p.matched, prs.get(me).map(|l| l.matched).unwrap_or(0)));
                let _ = tx.send(Ok(r));
                false
            }
            Input::TransferLeader { to } => {
                self.node.transfer_leader(to);
                false
            }
            Input::ReportSnapshot { to, ok } => {
                let status = if ok {
                    SnapshotStatus::Finish
                } else {
                    SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
                false
            }
            Input::Step(msg) => {
                if let Err(e) = self.node.step(*msg) {
                    tracing::debug!(error = %e, "raft rejected a peer message");
                }
                false
            }
            Input::Stop => true,
        }
    }

    /// Sends one ReadIndex request for every read waiting, and re-sends requests that got no
    /// answer within [`READ_INDEX_RETRY`] (the message or the leader may have been lost).
    /// Hands every proposal taken in this round to Raft as one MsgPropose: the leader appends
    /// them together and replicates them in one append per follower; a follower forwards them
    /// to the leader in one message.
    fn flush_proposals(&mut self) {
        if self.proposals.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.proposals);
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgPropose);
        m.from = self.node.raft.id;
        let mut waiters = Vec::with_capacity(batch.len());
        let mut entries = Vec::with_capacity(batch.len());
        for (id, data, tx) in batch {
            entries.push(Entry {
                data: data.into(),
                ..Default::default()
            });
            waiters.push((id, tx));
        }
        m.set_entries(entries.into());
        match self.node.raft.step(m) {
            Ok(()) => self.waiters.extend(waiters),
            Err(e) => {
                tracing::debug!(error = %e, n = waiters.len(), "proposals dropped");
                for (_, tx) in waiters {
                    let _ = tx.send(Err(RaftError::NoLeader));
                }
            }
        }
    }

    fn on_ready(&mut self) -> Result<(), crate::storage::StorageError> {
        if !self.node.has_ready() {
            return Ok(());
        }
        let mut ready = self.node.ready();
        if let Some(ss) = ready.ss() {
            let is_leader = ss.raft_state == StateRole::Leader;
            if is_leader != self.was_leader {
                self.was_leader = is_leader;
                // Leases are only tracked (and expired) on the leader; a new leader gives
                // every lease its remaining TTL plus an election timeout, as etcd does.
                {
                    let mut sm = self.sm.write();
                    if is_leader {
                        sm.lessor.promote(Instant::now(), self.cfg.lease_promote_extend);
                    } else {
                        sm.lessor.demote();
                    }
                }
                (self.hooks.on_role_change)(is_leader);
            }
        }
        // A leader may send before persisting (Raft thesis 10.2.1).
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            // This follower fell behind the leader's log: replace the state machine.
            self.install_snapshot(ready.snapshot().clone())?;
        }
        self.confirm_reads(ready.take_read_states());
        let committed = ready.take_committed_entries();
        if !ready.entries().is_empty() || ready.hs().is_some() {
            self.wal.append(ready.entries(), ready.hs())?;
            if ready.must_sync() && !self.cfg.unsafe_no_fsync {
                let took = self.wal.sync()?;
                (self.hooks.on_fsync)(took);
            }
            let store = &self.node.mut_store().mem;
            if let Some(hs) = ready.hs() {
                store.wl().set_hardstate(hs.clone());
            }
            if !ready.entries().is_empty() {
                if let Err(e) = store.wl().append(ready.entries()) {
                    tracing::error!(error = %e, "in-memory raft log append failed");
                }
            }
        }
        self.apply(committed);
        self.send(ready.take_persisted_messages());
        let mut light = self.node.advance(ready);
        if let Some(commit) = light.commit_index() {
            // The WAL learns the new commit index with the next Ready's hard state; a commit
            // index lost in a crash is recomputed by Raft on restart, so no write is spent here.
            let mut hs = self.node.raft.hard_state();
            hs.commit = commit;
            self.node.mut_store().mem.wl().set_hardstate(hs);
        }
        self.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.node.advance_apply();
        self.status.set(
            self.node.raft.term,
            self.node.raft.leader_id,
            self.node.raft.state == StateRole::Leader,
            self.node.raft.raft_log.committed,
        );
        self.release_reads();
        if self.sm.read().applied_index >= self.last_snapshot_index + self.cfg.snapshot_count {
            self.take_snapshot()?;
        }
        Ok(())
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut results: Vec<Applied> = Vec::with_capacity(entries.len());
        let n = entries.len() as u64;
        // One write lock for a run of normal entries; configuration changes take their own.
        let sm = self.sm.clone();
        let mut guard = Some(sm.write());
        for e in &entries {
            match e.get_entry_type() {
                EntryType::EntryNormal => {
                    let g = guard.get_or_insert_with(|| sm.write());
                    if let Some(applied) = g.apply_entry(e.index, e.term, &e.data, now) {
                        results.push(applied);
                    }
                }
                EntryType::EntryConfChange => {
                    guard = None;
                    if let Some(applied) = self.apply_conf_change(e) {
                        results.push(applied);
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    tracing::error!(
                        index = e.index,
                        "skipping a joint-consensus entry (rustcd never proposes them)"
                    );
                    guard
                        .get_or_insert_with(|| sm.write())
                        .apply_entry(e.index, e.term, &[], now);
                }
            }
        }
        drop(guard);
        self.status.set_applied(self.sm.read().applied_index);
        (self.hooks.on_applied)(n);
        for a in results {
            if !a.events.is_empty() {
                (self.hooks.on_events)(a.revision, &a.events);
            }
            if let Some(w) = self.waiters.remove(&a.proposal_id) {
                let _ = w.send(Ok(a.result));
            }
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        for peer in self.transport.send(msgs) {
            self.node.report_unreachable(peer);
        }
    }

    /// Fail-stop on a storage error: recorded for `/livez` and `/readyz`, every waiter answered
    /// `server stopped`, the member told to exit.
    fn storage_failed(&mut self, e: &dyn std::fmt::Display) {
        tracing::error!(error = %e, "raft storage failure; stopping the member");
        self.status.set_storage_failure(e.to_string());
        self.fail_all();
        (self.hooks.on_storage_failure)();
    }

    fn fail_all(&mut self) {
        for (_, _, w) in self.proposals.drain(..) {
            let _ = w.send(Err(RaftError::Stopped));
        }
        for (_, w) in self.waiters.drain() {
            let _ = w.send(Err(RaftError::Stopped));
        }
        for w in self.pending_reads.drain(..) {
            let _ = w.send(Err(RaftError::Stopped));
        }
        for (_, (_, ws)) in self.reads_in_flight.drain() {
            for w in ws {
                let _ = w.send(Err(RaftError::Stopped));
            }
        }
        for (_, w) in self.reads_waiting_apply.drain(..) {
            let _ = w.send(Err(RaftError::Stopped));
        }
    }
}
