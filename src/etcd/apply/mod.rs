//! The replicated state machine: everything that Raft entries change, applied in log order.
//!
//! Invariants:
//! - `apply` is deterministic: the same entries in the same order give the same state and
//!   the same results on every member (time only enters through the leader-local lessor
//!   expiry bookkeeping, never through what is written).
//! - Every entry is applied exactly once: `applied_index` advances with each entry, is part
//!   of every snapshot, and entries at or below it are skipped on replay.
//! - Writes produce MVCC events; the caller hands them to the watch hub after the entry is applied.

mod conf_change;
mod output;

use std::time::Instant;

use prost::Message;

pub use conf_change::{decode_conf_change, encode_conf_change};
pub use output::{ApplyError, ApplyOutput, ApplyResult};

use crate::auth::AuthStore;
use crate::lease::Lessor;
use crate::membership::Membership;
use crate::mvcc::{MvccError, Store};
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;
use crate::proto::rustcdpb::{self, internal_request::Request};

/// bcrypt cost used only if a proposal carries a plain password (rustcd's own proposers
/// always hash before proposing, so every member stores the same hash).
const FALLBACK_BCRYPT_COST: u32 = 10;

/// Version of the snapshot contents; bump when `StateSnapshot` changes meaning.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// Everything Raft replicates.
pub struct StateMachine {
    pub mvcc: Store,
    pub lessor: Lessor,
    pub auth: AuthStore,
    pub membership: Membership,
    pub applied_index: u64,
    pub applied_term: u64,
    /// Quota for the NOSPACE alarm (bytes of MVCC data).
    pub quota_bytes: i64,
    /// This member's ID (alarms raised locally are tagged with it).
    pub member_id: u64,
    /// Key-value operations applied by this member, for etcd's `etcd_mvcc_*_total` counters (not
    /// replicated state: kept across a snapshot restore, not in snapshots).
    pub applied_ops: OpTally,
}

/// Counts of applied key-value operations, as etcd's MVCC metrics count them: every put, every
/// delete-range (not per key) and every range, also inside txns; a txn counts when it performed
/// more than one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpTally {
    pub puts: u64,
    pub deletes: u64,
    pub ranges: u64,
    pub txns: u64,
}

impl OpTally {
    /// Adds the operations a txn performed, read off its response (the taken branches only).
    fn add_txn(&mut self, resp: &pb::TxnResponse) {
        let before = *self;
        self.add_responses(resp);
        let ops = (self.puts - before.puts) + (self.deletes - before.deletes) + (self.ranges - before.ranges);
        if ops > 1 {
            self.txns += 1;
        }
    }

    fn add_responses(&mut self, resp: &pb::TxnResponse) {
        use pb::response_op::Response;
        for op in &resp.responses {
            match &op.response {
                Some(Response::ResponsePut(_)) => self.puts += 1,
                Some(Response::ResponseDeleteRange(_)) => self.deletes += 1,
                Some(Response::ResponseRange(_)) => self.ranges += 1,
                Some(Response::ResponseTxn(t)) => self.add_responses(t),
                None => {}
            }
        }
    }
}

/// The result of applying one entry: the response for the proposer and the events for watchers.
pub struct Applied {
    pub proposal_id: u64,
    pub result: ApplyResult,
    pub events: Vec<mvccpb::Event>,
    pub revision: i64,
}

impl StateMachine {
    pub fn new(membership: Membership, member_id: u64, min_lease_ttl: i64, quota_bytes: i64) -> Self {
        StateMachine {
            mvcc: Store::new(),
            lessor: Lessor::new(min_lease_ttl),
            auth: AuthStore::new(),
            membership,
            applied_index: 0,
            applied_term: 0,
            quota_bytes,
            member_id,
            applied_ops: OpTally::default(),
        }
    }

    /// Applies one normal Raft entry's payload. Empty payloads (leader no-ops) only advance the index.
    pub fn apply_entry(&mut self, index: u64, term: u64, data: &[u8], now: Instant) -> Option<Applied> {
        if index <= self.applied_index {
            return None;
        }
        self.applied_index = index;
        self.applied_term = term;
        if data.is_empty() {
            return None;
        }
        let req = match rustcdpb::InternalRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(index, error = %e, "skipping undecodable raft entry");
                return Some(Applied {
                    proposal_id: 0,
                    result: Err(ApplyError::Malformed(e.to_string())),
                    events: Vec::new(),
                    revision: self.mvcc.current_revision(),
                });
            }
        };
        let mut events = Vec::new();
        let mut result = self.apply_request(&req, now, &mut events);
        self.track_lease_attachments(&events);
        let revision = self.mvcc.current_revision();
        if let Ok(out) = &mut result {
            out.set_revision(revision);
        }
        Some(Applied {
            proposal_id: req.id,
            result,
            events,
            revision,
        })
    }

    fn apply_request(
        &mut self,
        req: &rustcdpb::InternalRequest,
        now: Instant,
        events: &mut Vec<mvccpb::Event>,
    ) -> ApplyResult {
        let Some(request) = &req.request else {
            return Ok(ApplyOutput::Nothing);
        };
        if !req.username.is_empty() && self.auth.is_enabled() && req.auth_revision < self.auth.revision() {
            return Err(ApplyError::Auth(crate::auth::AuthError::AuthOldRevision));
        }
        let space_ok = !self.membership.has_alarm(pb::AlarmType::Nospace);
        match request {
            Request::Put(r) => {
                if !space_ok {
                    return Err(ApplyError::NoSpace);
                }
                let lessor = &self.lessor;
                let (resp, ev) = self.mvcc.put(r, &|id| lessor.exists(id))?;
                events.extend(ev);
                self.applied_ops.puts += 1;
                Ok(ApplyOutput::Put(resp))
            }
            Request::DeleteRange(r) => {
                let (resp, ev) = self.mvcc.delete_range(r)?;
                events.extend(ev);
                self.applied_ops.deletes += 1;
                Ok(ApplyOutput::DeleteRange(resp))
            }
            Request::Txn(r) => {
                if !space_ok && txn_has_writes(r) {
                    return Err(ApplyError::NoSpace);
                }
                let lessor = &self.lessor;
                let (resp, ev) = self.mvcc.txn(r, &|id| lessor.exists(id))?;
                events.extend(ev);
                self.applied_ops.add_txn(&resp);
                Ok(ApplyOutput::Txn(resp))
            }
            Request::Compaction(r) => {
                self.mvcc.compact(r.revision)?;
                Ok(ApplyOutput::Compaction(pb::CompactionResponse::default()))
            }
            Request::LeaseGrant(r) => {
                if !space_ok {
                    return Err(ApplyError::NoSpace);
                }
                Ok(ApplyOutput::LeaseGrant(self.lessor.grant(r.id, r.ttl, now)?))
            }
            Request::LeaseRevoke(r) => {
                let keys = self.lessor.revoke(r.id)?;
                if !keys.is_empty() {
                    events.extend(self.mvcc.delete_keys(&keys));
                }
                Ok(ApplyOutput::LeaseRevoke(pb::LeaseRevokeResponse::default()))
            }
            Request::LeaseCheckpoint(r) => {
                for c in &r.checkpoints {
                    self.lessor.checkpoint(c.id, c.remaining_ttl, now);
                }
                Ok(ApplyOutput::Nothing)
            }
            Request::Alarm(r) => Ok(ApplyOutput::Alarm(self.apply_alarm(r))),
            Request::AuthEnable(_) => self.auth.enable().map(|_| ApplyOutput::AuthDone).map_err(Into::into),
            Request::AuthDisable(_) => {
                self.auth.disable();
                Ok(ApplyOutput::AuthDone)
            }
            Request::Authenticate(r) => {
                // The token itself lives in the proposing member's token store; applying
                // the entry only orders the authentication after earlier auth changes.
                Ok(ApplyOutput::Authenticate(pb::AuthenticateResponse {
                    header: None,
                    token: r.simple_token.clone(),
                }))
            }
            Request::UserAdd(r) => self
                .auth
                .user_add(r, FALLBACK_BCRYPT_COST)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::UserDelete(r) => self
                .auth
                .user_delete(r)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::UserChangePassword(r) => self
                .auth
                .user_change_password(r, FALLBACK_BCRYPT_COST)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::UserGrantRole(r) => self
                .auth
                .user_grant_role(r)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::UserRevokeRole(r) => self
                .auth
                .user_revoke_role(r)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::RoleAdd(r) => self.auth.role_add(r).map(|_| ApplyOutput::AuthDone).map_err(Into::into),
            Request::RoleDelete(r) => self
                .auth
                .role_delete(r)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::RoleGrantPermission(r) => self
                .auth
                .role_grant_permission(r)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::RoleRevokePermission(r) => self
                .auth
                .role_revoke_permission(r)
                .map(|_| ApplyOutput::AuthDone)
                .map_err(Into::into),
            Request::ClusterVersion(v) => {
                self.membership.cluster_version = v.version.clone();
                Ok(ApplyOutput::Nothing)
            }
            Request::MemberAttributes(a) => {
                self.membership.set_attributes(a.id, &a.name, &a.client_urls);
                Ok(ApplyOutput::Nothing)
            }
        }
    }

    fn apply_alarm(&mut self, r: &pb::AlarmRequest) -> pb::AlarmResponse {
        let alarm = pb::AlarmType::try_from(r.alarm).unwrap_or(pb::AlarmType::None);
        let alarms = match pb::alarm_request::AlarmAction::try_from(r.action) {
            Ok(pb::alarm_request::AlarmAction::Activate) => {
                if alarm != pb::AlarmType::None && self.membership.activate_alarm(r.member_id, alarm) {
                    tracing::warn!(member = format!("{:x}", r.member_id), ?alarm, "alarm raised");
                    vec![pb::AlarmMember {
                        member_id: r.member_id,
                        alarm: alarm as i32,
                    }]
                } else {
                    Vec::new()
                }
            }
            Ok(pb::alarm_request::AlarmAction::Deactivate) => self
                .membership
                .deactivate_alarm(r.member_id, alarm)
                .into_iter()
                .collect(),
            _ => self.membership.alarms_of(alarm),
        };
        pb::AlarmResponse { header: None, alarms }
    }

    /// Keeps the lessor's key sets in step with the store: a key leaves its old lease when
    /// it is overwritten or deleted, and joins the lease its new version carries.
    fn track_lease_attachments(&mut self, events: &[mvccpb::Event]) {
        for ev in events {
            let kv = ev.kv.as_ref();
            let prev_lease = ev.prev_kv.as_ref().map(|p| p.lease).unwrap_or(0);
            let key = kv.map(|k| k.key.clone()).unwrap_or_default();
            let new_lease = if ev.r#type == mvccpb::event::EventType::Put as i32 {
                kv.map(|k| k.lease).unwrap_or(0)
            } else {
                0
            };
            if prev_lease != 0 && prev_lease != new_lease {
                let _ = self.lessor.detach(prev_lease, &key);
            }
            if new_lease != 0 {
                // The lease existed when the write was checked; it cannot vanish within one entry.
                let _ = self.lessor.attach(new_lease, &key);
            }
        }
    }

    /// Whether the MVCC data has outgrown the quota.
    pub fn over_quota(&self) -> bool {
        self.mvcc.size_bytes().0 > self.quota_bytes
    }

    pub fn to_snapshot(&self) -> rustcdpb::StateSnapshot {
        let mut mvcc = self.mvcc.to_snapshot();
        mvcc.consistent_index = self.applied_index as i64;
        rustcdpb::StateSnapshot {
            format_version: SNAPSHOT_FORMAT_VERSION,
            applied_index: self.applied_index,
            applied_term: self.applied_term,
            mvcc: Some(mvcc),
            leases: Some(self.lessor.to_snapshot()),
            auth: Some(self.auth.to_snapshot()),
            cluster: Some(self.membership.to_snapshot()),
        }
    }

    /// Rebuilds the state machine from a snapshot; lease key sets are rebuilt from the store.
    pub fn restore(&mut self, snap: rustcdpb::StateSnapshot, now: Instant) -> Result<(), RestoreError> {
        if snap.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(RestoreError::Version(snap.format_version));
        }
        let mvcc = Store::from_snapshot(&snap.mvcc.unwrap_or_default())?;
        let mut lessor = Lessor::new(self.lessor.min_ttl());
        lessor.restore(&snap.leases.unwrap_or_default(), now);
        for (key, lease) in mvcc.live_keys_with_lease() {
            if let Err(e) = lessor.attach(lease, &key) {
                tracing::warn!(lease, error = %e, "key in snapshot refers to a lease the snapshot lacks");
            }
        }
        self.auth =
            AuthStore::from_snapshot(snap.auth.unwrap_or_default()).map_err(|e| RestoreError::Auth(e.to_string()))?;
        self.membership = Membership::from_snapshot(snap.cluster.unwrap_or_default());
        self.mvcc = mvcc;
        self.lessor = lessor;
        self.applied_index = snap.applied_index;
        self.applied_term = snap.applied_term;
        Ok(())
    }
}

/// A snapshot that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("snapshot format version {0} is not supported by this rustcd (expected {SNAPSHOT_FORMAT_VERSION})")]
    Version(u32),
    #[error("snapshot MVCC data: {0}")]
    Mvcc(#[from] MvccError),
    #[error("snapshot auth data: {0}")]
    Auth(String),
    #[error("snapshot is not decodable: {0}")]
    Decode(#[from] prost::DecodeError),
}

/// Whether a txn could write (used for the NOSPACE alarm, which still allows reads and deletes).
fn txn_has_writes(t: &pb::TxnRequest) -> bool {
    t.success.iter().chain(t.failure.iter()).any(|op| match &op.request {
        Some(pb::request_op::Request::RequestPut(_)) => true,
        Some(pb::request_op::Request::RequestTxn(inner)) => txn_has_writes(inner),
        _ => false,
    })
}
