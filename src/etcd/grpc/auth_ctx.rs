//! Establishes who makes a request (from the `token` metadata etcd clients send) and
//! checks key-range permissions, as etcd's auth applier does on every RPC.

use std::time::Instant;

use tonic::{Request, Status};

use super::rpc_error::{ERR_INVALID_AUTH_TOKEN, ERR_USER_EMPTY};
use crate::auth::PermType;
use crate::proto::etcdserverpb::{self as pb, request_op};
use crate::server::{AuthInfo, EtcdServer};
use crate::tls::ClientIdentity;

/// The user of a request, or the anonymous `AuthInfo` when auth is disabled.
pub fn auth_info<T>(server: &EtcdServer, req: &Request<T>) -> Result<AuthInfo, Status> {
    let (enabled, revision) = server.sm.read().auth.enabled_and_revision();
    if !enabled {
        return Ok(AuthInfo::default());
    }
    let token = req
        .metadata()
        .get("token")
        .or_else(|| req.metadata().get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let Some(token) = token else {
        // etcd's AuthInfoFromTLS: with --client-cert-auth, the client certificate's CN.
        let cn = req
            .extensions()
            .get::<ClientIdentity>()
            .and_then(|i| i.common_name.as_deref());
        return match user_from_certificate(server.cfg.tls.client.client_cert_auth, cn) {
            Some(username) => Ok(AuthInfo { username, revision }),
            None => Err(Status::invalid_argument(ERR_USER_EMPTY)),
        };
    };
    let username = server
        .tokens
        .username_of(&token, Instant::now())
        .ok_or_else(|| Status::unauthenticated(ERR_INVALID_AUTH_TOKEN))?;
    Ok(AuthInfo { username, revision })
}

/// The user a request without a token is made by: the client certificate's CN, when the
/// server verifies client certificates (`--client-cert-auth`) and the certificate has one.
pub fn user_from_certificate(client_cert_auth: bool, common_name: Option<&str>) -> Option<String> {
    common_name
        .filter(|cn| client_cert_auth && !cn.is_empty())
        .map(str::to_string)
}

fn auth_status(e: crate::auth::AuthError) -> Status {
    Status::new(tonic::Code::from_i32(e.grpc_status_code()), e.to_string())
}

/// Checks one key range against the user's permissions (no-op when auth is off).
pub fn check_range(server: &EtcdServer, who: &AuthInfo, key: &[u8], end: &[u8], perm: PermType) -> Result<(), Status> {
    if who.username.is_empty() {
        return Ok(());
    }
    server
        .sm
        .read()
        .auth
        .check_range(&who.username, key, end, perm)
        .map_err(auth_status)
}

/// Requires the root role (auth management, membership, alarms).
pub fn check_admin(server: &EtcdServer, who: &AuthInfo) -> Result<(), Status> {
    if who.username.is_empty() {
        return Ok(());
    }
    server.sm.read().auth.check_admin(&who.username).map_err(auth_status)
}

/// Checks every compare and operation of a txn, recursively.
pub fn check_txn(server: &EtcdServer, who: &AuthInfo, txn: &pb::TxnRequest) -> Result<(), Status> {
    if who.username.is_empty() {
        return Ok(());
    }
    for c in &txn.compare {
        check_range(server, who, &c.key, &c.range_end, PermType::Read)?;
    }
    for op in txn.success.iter().chain(txn.failure.iter()) {
        match &op.request {
            Some(request_op::Request::RequestRange(r)) => {
                check_range(server, who, &r.key, &r.range_end, PermType::Read)?
            }
            Some(request_op::Request::RequestPut(r)) => {
                check_range(server, who, &r.key, &[], PermType::Write)?;
                if r.prev_kv {
                    check_range(server, who, &r.key, &[], PermType::Read)?;
                }
            }
            Some(request_op::Request::RequestDeleteRange(r)) => {
                check_range(server, who, &r.key, &r.range_end, PermType::Write)?;
                if r.prev_kv {
                    check_range(server, who, &r.key, &r.range_end, PermType::Read)?;
                }
            }
            Some(request_op::Request::RequestTxn(t)) => check_txn(server, who, t)?,
            None => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::user_from_certificate;

    #[test]
    fn certificate_names_the_user_only_with_client_cert_auth() {
        assert_eq!(user_from_certificate(true, Some("root")).as_deref(), Some("root"));
        assert_eq!(user_from_certificate(false, Some("root")), None);
        assert_eq!(user_from_certificate(true, Some("")), None);
        assert_eq!(user_from_certificate(true, None), None);
    }
}
