//! Maps server errors to gRPC statuses with etcd's codes and texts (api/v3rpc/rpctypes).

use tonic::{Code, Status};

use crate::apply::ApplyError;
use crate::raft_node::RaftError;
use crate::server::ServerError;

pub const ERR_REQUEST_TOO_LARGE: &str = "etcdserver: request is too large";
pub const ERR_NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
pub const ERR_USER_EMPTY: &str = "etcdserver: user name is empty";
pub const ERR_INVALID_AUTH_TOKEN: &str = "etcdserver: invalid auth token";
pub const ERR_PERMISSION_DENIED: &str = "etcdserver: permission denied";
pub const ERR_MEMBER_NOT_FOUND: &str = "etcdserver: member not found";

fn code_from_i32(code: i32) -> Code {
    Code::from_i32(code)
}

pub fn request_too_large() -> Status {
    Status::invalid_argument(ERR_REQUEST_TOO_LARGE)
}

pub fn no_space() -> Status {
    Status::resource_exhausted(ERR_NO_SPACE)
}

pub fn apply_error(e: &ApplyError) -> Status {
    match e {
        ApplyError::Mvcc(m) => Status::new(code_from_i32(m.grpc_status_code()), m.to_string()),
        ApplyError::Lease(l) => Status::new(code_from_i32(l.grpc_status_code()), l.to_string()),
        ApplyError::Auth(a) => Status::new(code_from_i32(a.grpc_status_code()), a.to_string()),
        ApplyError::Membership(m) => membership_status(m),
        ApplyError::NoSpace => no_space(),
        ApplyError::Corrupt => Status::data_loss(e.to_string()),
        ApplyError::Malformed(_) => Status::internal(e.to_string()),
    }
}

pub fn server_error(e: ServerError) -> Status {
    match e {
        ServerError::Raft(r) => match r {
            RaftError::NoLeader | RaftError::Timeout | RaftError::Stopped => Status::unavailable(r.to_string()),
            RaftError::NotLeader | RaftError::ConfChangePending => Status::failed_precondition(r.to_string()),
        },
        ServerError::Apply(a) => apply_error(&a),
        ServerError::TooLarge => request_too_large(),
    }
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Self {
        server_error(e)
    }
}

/// etcd's gRPC status for a refused membership change.
pub fn membership_status(e: &crate::membership::MembershipError) -> Status {
    use crate::membership::MembershipError as M;
    let code = match e {
        M::NotFound => tonic::Code::NotFound,
        M::BadUrls => tonic::Code::InvalidArgument,
        M::Unhealthy => tonic::Code::Unavailable,
        M::IdExists
        | M::PeerUrlExists
        | M::NotLearner
        | M::TooManyLearners
        | M::NotEnoughStarted
        | M::LearnerNotReady => tonic::Code::FailedPrecondition,
    };
    Status::new(code, e.to_string())
}
