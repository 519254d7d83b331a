//! Auth errors with etcd's client-visible texts and gRPC status codes.
//!
//! The texts are those of etcd's `api/v3rpc/rpctypes/error.go` (the `ErrGRPC*`
//! statuses the server maps `auth.Err*` onto in `v3rpc/util.go`). The one auth
//! error etcd does not map, `ErrNoPasswordUser`, reaches clients as
//! `codes.Unknown` with the raw `auth: ...` text, which is reproduced here.

/// gRPC status codes used by [`AuthError::grpc_status_code`].
pub mod code {
    /// `codes.Unknown`.
    pub const UNKNOWN: i32 = 2;
    /// `codes.InvalidArgument`.
    pub const INVALID_ARGUMENT: i32 = 3;
    /// `codes.PermissionDenied`.
    pub const PERMISSION_DENIED: i32 = 7;
    /// `codes.FailedPrecondition`.
    pub const FAILED_PRECONDITION: i32 = 9;
    /// `codes.Internal`.
    pub const INTERNAL: i32 = 13;
    /// `codes.Unauthenticated`.
    pub const UNAUTHENTICATED: i32 = 16;
}

/// An auth failure, displayed exactly as etcd 3.5 reports it to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// `auth enable` without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// `auth enable` while the `root` user lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// `user add` of an existing name.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// Empty user name: `user add ""`, or a request without credentials while auth is on.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// The named user does not exist.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// `role add` of an existing name.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// The named role does not exist.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// `role add ""`.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// Unknown user or wrong password at `Authenticate`.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// `role grant-permission` without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// `user revoke-role` of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// `role revoke-permission` of a range the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// `Authenticate` (and `CheckPassword`) while auth is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// Unknown or expired token.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// Forbidden management operation (deleting `root`, revoking its `root` role while
    /// enabled, deleting the `root` role while enabled, granting an invalid key range).
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// The auth revision a request was checked at is older than the store's.
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// A password was given for a user created with `--no-password` (also returned when
    /// a `hashedPassword` is not valid base64). etcd does not map this one to a gRPC
    /// status, so clients see `codes.Unknown` with the internal text.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// rustcd-internal: a snapshot's auth section cannot be loaded.
    #[error("auth: invalid auth snapshot: {0}")]
    InvalidSnapshot(String),
    /// rustcd-internal: bcrypt failed while hashing.
    #[error("auth: password hashing failed: {0}")]
    Hash(String),
}

impl AuthError {
    /// The gRPC status code etcd sends with this error.
    pub fn grpc_status_code(&self) -> i32 {
        use AuthError::*;
        match self {
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound | RoleAlreadyExist | RoleNotFound
            | RoleNotGranted | PermissionNotGranted | AuthNotEnabled => code::FAILED_PRECONDITION,
            UserEmpty | RoleEmpty | AuthFailed | PermissionNotGiven | InvalidAuthMgmt | AuthOldRevision => {
                code::INVALID_ARGUMENT
            }
            PermissionDenied => code::PERMISSION_DENIED,
            InvalidAuthToken => code::UNAUTHENTICATED,
            NoPasswordUser => code::UNKNOWN,
            InvalidSnapshot(_) | Hash(_) => code::INTERNAL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_and_codes_match_etcd() {
        let cases: &[(AuthError, &str, i32)] = &[
            (AuthError::RootUserNotExist, "etcdserver: root user does not exist", 9),
            (
                AuthError::RootRoleNotExist,
                "etcdserver: root user does not have root role",
                9,
            ),
            (AuthError::UserAlreadyExist, "etcdserver: user name already exists", 9),
            (AuthError::UserEmpty, "etcdserver: user name is empty", 3),
            (AuthError::UserNotFound, "etcdserver: user name not found", 9),
            (AuthError::RoleAlreadyExist, "etcdserver: role name already exists", 9),
            (AuthError::RoleNotFound, "etcdserver: role name not found", 9),
            (AuthError::RoleEmpty, "etcdserver: role name is empty", 3),
            (
                AuthError::AuthFailed,
                "etcdserver: authentication failed, invalid user ID or password",
                3,
            ),
            (AuthError::PermissionNotGiven, "etcdserver: permission not given", 3),
            (AuthError::PermissionDenied, "etcdserver: permission denied", 7),
            (
                AuthError::RoleNotGranted,
                "etcdserver: role is not granted to the user",
                9,
            ),
            (
                AuthError::PermissionNotGranted,
                "etcdserver: permission is not granted to the role",
                9,
            ),
            (
                AuthError::AuthNotEnabled,
                "etcdserver: authentication is not enabled",
                9,
            ),
            (AuthError::InvalidAuthToken, "etcdserver: invalid auth token", 16),
            (AuthError::InvalidAuthMgmt, "etcdserver: invalid auth management", 3),
            (
                AuthError::AuthOldRevision,
                "etcdserver: revision of auth store is old",
                3,
            ),
            (
                AuthError::NoPasswordUser,
                "auth: authentication failed, password was given for no password user",
                2,
            ),
        ];
        for (err, text, code) in cases {
            assert_eq!(err.to_string(), *text);
            assert_eq!(err.grpc_status_code(), *code, "{err}");
        }
    }
}
