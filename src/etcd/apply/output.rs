//! What applying one Raft entry produces for the member that proposed it.

use thiserror::Error;

use crate::auth::AuthError;
use crate::lease::LeaseError;
use crate::mvcc::MvccError;
use crate::proto::etcdserverpb as pb;

/// The response to one applied request, before its header is filled in.
#[derive(Debug, Clone)]
pub enum ApplyOutput {
    Put(pb::PutResponse),
    DeleteRange(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compaction(pb::CompactionResponse),
    LeaseGrant(pb::LeaseGrantResponse),
    LeaseRevoke(pb::LeaseRevokeResponse),
    Alarm(pb::AlarmResponse),
    Authenticate(pb::AuthenticateResponse),
    /// Auth management requests whose responses carry only a header.
    AuthDone,
    /// A membership change: the member list after it.
    Members(Vec<pb::Member>),
    /// Internal bookkeeping entries (checkpoints, attributes) with nothing to return.
    Nothing,
}

impl ApplyOutput {
    /// Records the store revision right after this request applied in the response header
    /// (the RPC layer adds cluster, member and term). Clients use it as the write's revision.
    pub fn set_revision(&mut self, revision: i64) {
        let header = Some(pb::ResponseHeader {
            revision,
            ..Default::default()
        });
        match self {
            ApplyOutput::Put(r) => r.header = header,
            ApplyOutput::DeleteRange(r) => r.header = header,
            ApplyOutput::Txn(r) => r.header = header,
            ApplyOutput::Compaction(r) => r.header = header,
            ApplyOutput::LeaseGrant(r) => r.header = header,
            ApplyOutput::LeaseRevoke(r) => r.header = header,
            ApplyOutput::Alarm(r) => r.header = header,
            ApplyOutput::Authenticate(r) => r.header = header,
            ApplyOutput::AuthDone | ApplyOutput::Members(_) | ApplyOutput::Nothing => {}
        }
    }
}

/// Why an applied request failed. Applying is deterministic: every member gets the same error.
#[derive(Debug, Clone, Error)]
pub enum ApplyError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    #[error("rustcd: malformed raft entry: {0}")]
    Malformed(String),
}

pub type ApplyResult = Result<ApplyOutput, ApplyError>;
