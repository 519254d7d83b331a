//! The replicated auth state: users, roles, permissions, the enabled flag and the auth
//! revision, with etcd 3.5's `server/auth/store.go` rules.
//!
//! Every mutating function is an *apply* function: it runs on every member in Raft log
//! order, is deterministic (no clock, no randomness; bcrypt only on the legacy path
//! where a plain password is proposed) and returns the etcd response with `header:
//! None` for the caller to fill. Failed applies change nothing.

use std::collections::{BTreeMap, HashMap};

use crate::proto::authpb::{self, permission::Type as PermType};
use crate::proto::etcdserverpb as pb;
use crate::proto::rustcdpb::AuthSnapshot;

use super::error::AuthError;
use super::password::{base64_decode, verify_password};
use super::permission::{is_valid_permission_range, UnifiedPerms};

/// The special user that must exist (with the root role) before auth can be enabled.
pub const ROOT_USER: &str = "root";
/// The role that grants everything, including auth and cluster management.
pub const ROOT_ROLE: &str = "root";

/// Users, roles and the auth switch. See the module docs.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthStore {
    enabled: bool,
    revision: u64,
    users: BTreeMap<String, authpb::User>,
    roles: BTreeMap<String, authpb::Role>,
    /// Derived: user name -> merged permissions. Rebuilt after every change, like etcd
    /// 3.5's `refreshRangePermCache`.
    perm_cache: HashMap<String, UnifiedPerms>,
}

impl Default for AuthStore {
    fn default() -> Self {
        Self::new()
    }
}

impl AuthStore {
    /// A fresh store: disabled, no users or roles, auth revision 1 (etcd's
    /// `NewAuthStore` commits revision 1 on a new backend).
    pub fn new() -> Self {
        AuthStore {
            enabled: false,
            revision: 1,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
            perm_cache: HashMap::new(),
        }
    }

    // ---------------------------------------------------------------- status

    /// Whether authentication is enabled.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The auth revision: bumped by every successful change except `enable()` and the
    /// no-op cases (enabling twice, disabling while disabled, re-granting a held role).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// `(enabled, auth_revision)`.
    pub fn enabled_and_revision(&self) -> (bool, u64) {
        (self.enabled, self.revision)
    }

    /// `AuthStatus` response (header left `None`).
    pub fn auth_status(&self) -> pb::AuthStatusResponse {
        pb::AuthStatusResponse {
            header: None,
            enabled: self.enabled,
            auth_revision: self.revision,
        }
    }

    fn commit(&mut self) {
        self.revision += 1;
        self.refresh_perm_cache();
    }

    fn refresh_perm_cache(&mut self) {
        let roles = &self.roles;
        self.perm_cache = self
            .users
            .iter()
            .map(|(name, user)| {
                let perms = UnifiedPerms::from_roles(user.roles.iter().filter_map(|r| roles.get(r)));
                (name.clone(), perms)
            })
            .collect();
    }

    // ---------------------------------------------------------------- enable / disable

    /// `AuthEnable`. Requires user `root` holding role `root`. Enabling while enabled is
    /// a no-op; enabling does not bump the revision (as in etcd).
    pub fn enable(&mut self) -> Result<pb::AuthEnableResponse, AuthError> {
        if !self.enabled {
            let root = self.users.get(ROOT_USER).ok_or(AuthError::RootUserNotExist)?;
            if !has_root_role(root) {
                return Err(AuthError::RootRoleNotExist);
            }
            self.enabled = true;
            self.refresh_perm_cache();
        }
        Ok(pb::AuthEnableResponse { header: None })
    }

    /// `AuthDisable`. Bumps the revision when auth was enabled; the caller must also
    /// clear the token store.
    pub fn disable(&mut self) -> pb::AuthDisableResponse {
        if self.enabled {
            self.enabled = false;
            self.commit();
        }
        pb::AuthDisableResponse { header: None }
    }

    // ---------------------------------------------------------------- users

    /// `UserAdd`. `hashed_password` is the proposer's [`super::hash_password`] output;
    /// a request carrying only a plain `password` (pre-3.5 log entries) is hashed here at
    /// `bcrypt_cost`. Ignores the password for `options.no_password` users.
    pub fn user_add(
        &mut self,
        r: &pb::AuthUserAddRequest,
        bcrypt_cost: u32,
    ) -> Result<pb::AuthUserAddResponse, AuthError> {
        if r.name.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        if self.users.contains_key(&r.name) {
            return Err(AuthError::UserAlreadyExist);
        }
        let options = r.options.unwrap_or_default();
        let password = if options.no_password {
            Vec::new()
        } else {
            select_password(&r.password, &r.hashed_password, bcrypt_cost)?
        };
        let user = authpb::User {
            name: r.name.as_bytes().to_vec(),
            password,
            roles: Vec::new(),
            options: Some(options),
        };
        self.users.insert(r.name.clone(), user);
        self.commit();
        Ok(pb::AuthUserAddResponse { header: None })
    }

    /// `UserDelete`. `root` cannot be deleted while auth is enabled. The caller must
    /// invalidate the user's tokens.
    pub fn user_delete(&mut self, r: &pb::AuthUserDeleteRequest) -> Result<pb::AuthUserDeleteResponse, AuthError> {
        if self.enabled && r.name == ROOT_USER {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.users.remove(&r.name).is_none() {
            return Err(AuthError::UserNotFound);
        }
        self.commit();
        Ok(pb::AuthUserDeleteResponse { header: None })
    }

    /// `UserChangePassword` (hashed as for [`Self::user_add`]). A no-password user keeps
    /// no password. The caller must invalidate the user's tokens.
    pub fn user_change_password(
        &mut self,
        r: &pb::AuthUserChangePasswordRequest,
        bcrypt_cost: u32,
    ) -> Result<pb::AuthUserChangePasswordResponse, AuthError> {
        let user = self.users.get(&r.name).ok_or(AuthError::UserNotFound)?;
        let no_password = user.options.is_some_and(|o| o.no_password);
        let password = if no_password {
            Vec::new()
        } else {
            select_password(&r.password, &r.hashed_password, bcrypt_cost)?
        };
        if let Some(user) = self.users.get_mut(&r.name) {
            user.password = password;
        }
        self.commit();
        Ok(pb::AuthUserChangePasswordResponse { header: None })
    }

    /// `UserGrantRole`. The role must exist, except `root`, which may be granted before
    /// it is created. Granting a held role succeeds without a change.
    pub fn user_grant_role(
        &mut self,
        r: &pb::AuthUserGrantRoleRequest,
    ) -> Result<pb::AuthUserGrantRoleResponse, AuthError> {
        let user = self.users.get(&r.user).ok_or(AuthError::UserNotFound)?;
        if r.role != ROOT_ROLE && !self.roles.contains_key(&r.role) {
            return Err(AuthError::RoleNotFound);
        }
        let Err(idx) = user.roles.binary_search(&r.role) else {
            return Ok(pb::AuthUserGrantRoleResponse { header: None });
        };
        if let Some(user) = self.users.get_mut(&r.user) {
            user.roles.insert(idx, r.role.clone());
        }
        self.commit();
        Ok(pb::AuthUserGrantRoleResponse { header: None })
    }

    /// `UserRevokeRole`. `root` cannot lose the `root` role while auth is enabled.
    pub fn user_revoke_role(
        &mut self,
        r: &pb::AuthUserRevokeRoleRequest,
    ) -> Result<pb::AuthUserRevokeRoleResponse, AuthError> {
        if self.enabled && r.name == ROOT_USER && r.role == ROOT_ROLE {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let user = self.users.get_mut(&r.name).ok_or(AuthError::UserNotFound)?;
        let before = user.roles.len();
        user.roles.retain(|role| *role != r.role);
        if user.roles.len() == before {
            return Err(AuthError::RoleNotGranted);
        }
        self.commit();
        Ok(pb::AuthUserRevokeRoleResponse { header: None })
    }

    /// `UserGet`: the user's roles, sorted.
    pub fn user_get(&self, r: &pb::AuthUserGetRequest) -> Result<pb::AuthUserGetResponse, AuthError> {
        let user = self.users.get(&r.name).ok_or(AuthError::UserNotFound)?;
        Ok(pb::AuthUserGetResponse {
            header: None,
            roles: user.roles.clone(),
        })
    }

    /// `UserList`: all user names, sorted byte-wise.
    pub fn user_list(&self) -> pb::AuthUserListResponse {
        pb::AuthUserListResponse {
            header: None,
            users: self.users.keys().cloned().collect(),
        }
    }

    // ---------------------------------------------------------------- roles

    /// `RoleAdd`.
    pub fn role_add(&mut self, r: &pb::AuthRoleAddRequest) -> Result<pb::AuthRoleAddResponse, AuthError> {
        if r.name.is_empty() {
            return Err(AuthError::RoleEmpty);
        }
        if self.roles.contains_key(&r.name) {
            return Err(AuthError::RoleAlreadyExist);
        }
        let role = authpb::Role {
            name: r.name.as_bytes().to_vec(),
            key_permission: Vec::new(),
        };
        self.roles.insert(r.name.clone(), role);
        self.commit();
        Ok(pb::AuthRoleAddResponse { header: None })
    }

    /// `RoleDelete`: removes the role and revokes it from every user. The `root` role
    /// cannot be deleted while auth is enabled.
    pub fn role_delete(&mut self, r: &pb::AuthRoleDeleteRequest) -> Result<pb::AuthRoleDeleteResponse, AuthError> {
        if self.enabled && r.role == ROOT_ROLE {
            return Err(AuthError::InvalidAuthMgmt);
        }
        if self.roles.remove(&r.role).is_none() {
            return Err(AuthError::RoleNotFound);
        }
        for user in self.users.values_mut() {
            user.roles.retain(|role| *role != r.role);
        }
        self.commit();
        Ok(pb::AuthRoleDeleteResponse { header: None })
    }

    /// `RoleGrantPermission`. The range must be valid (etcd 3.5's
    /// `isValidPermissionRange`, else "invalid auth management"). A permission with the
    /// same key and range end as the first one at or after its key is updated in place;
    /// otherwise it is added and the list re-sorted by key (stable).
    pub fn role_grant_permission(
        &mut self,
        r: &pb::AuthRoleGrantPermissionRequest,
    ) -> Result<pb::AuthRoleGrantPermissionResponse, AuthError> {
        let perm = r.perm.as_ref().ok_or(AuthError::PermissionNotGiven)?;
        if !is_valid_permission_range(&perm.key, &perm.range_end) {
            return Err(AuthError::InvalidAuthMgmt);
        }
        let role = self.roles.get_mut(&r.name).ok_or(AuthError::RoleNotFound)?;
        let perms = &mut role.key_permission;
        let idx = perms.partition_point(|p| p.key < perm.key);
        match perms.get_mut(idx) {
            Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                p.perm_type = perm.perm_type;
            }
            _ => {
                perms.push(authpb::Permission {
                    perm_type: perm.perm_type,
                    key: perm.key.clone(),
                    range_end: perm.range_end.clone(),
                });
                perms.sort_by(|a, b| a.key.cmp(&b.key));
            }
        }
        self.commit();
        Ok(pb::AuthRoleGrantPermissionResponse { header: None })
    }

    /// `RoleRevokePermission`: removes every permission with exactly this key and range
    /// end.
    pub fn role_revoke_permission(
        &mut self,
        r: &pb::AuthRoleRevokePermissionRequest,
    ) -> Result<pb::AuthRoleRevokePermissionResponse, AuthError> {
        let role = self.roles.get_mut(&r.role).ok_or(AuthError::RoleNotFound)?;
        let before = role.key_permission.len();
        role.key_permission
            .retain(|p| p.key != r.key || p.range_end != r.range_end);
        if role.key_permission.len() == before {
            return Err(AuthError::PermissionNotGranted);
        }
        self.commit();
        Ok(pb::AuthRoleRevokePermissionResponse { header: None })
    }

    /// `RoleGet`. The `root` role (when it exists) reports etcd 3.5's synthetic
    /// permission READWRITE `["", "\0")`.
    pub fn role_get(&self, r: &pb::AuthRoleGetRequest) -> Result<pb::AuthRoleGetResponse, AuthError> {
        let role = self.roles.get(&r.role).ok_or(AuthError::RoleNotFound)?;
        let perm = if r.role == ROOT_ROLE {
            vec![authpb::Permission {
                perm_type: PermType::Readwrite as i32,
                key: Vec::new(),
                range_end: vec![0],
            }]
        } else {
            role.key_permission.clone()
        };
        Ok(pb::AuthRoleGetResponse { header: None, perm })
    }

    /// `RoleList`: all role names, sorted byte-wise.
    pub fn role_list(&self) -> pb::AuthRoleListResponse {
        pb::AuthRoleListResponse {
            header: None,
            roles: self.roles.keys().cloned().collect(),
        }
    }

    // ---------------------------------------------------------------- authentication

    /// Verifies a password before `Authenticate` is proposed (bcrypt: slow, call it
    /// without holding a lock other writers need, e.g. on a clone or via
    /// [`Self::password_hash`]). Returns the auth revision the check was made at: if it
    /// differs after the proposal is applied, etcd retries the whole authentication.
    pub fn check_password(&self, name: &str, password: &str) -> Result<u64, AuthError> {
        let (hash, revision) = self.password_hash(name)?;
        if verify_password(&hash, password) {
            Ok(revision)
        } else {
            Err(AuthError::AuthFailed)
        }
    }

    /// The cheap half of [`Self::check_password`]: the stored hash and the current
    /// revision, or the error etcd gives before comparing (auth disabled, unknown user,
    /// no-password user). Verify the hash with [`super::verify_password`].
    pub fn password_hash(&self, name: &str) -> Result<(Vec<u8>, u64), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.is_some_and(|o| o.no_password) {
            return Err(AuthError::NoPasswordUser);
        }
        Ok((user.password.clone(), self.revision))
    }

    /// Apply-time check of an `Authenticate` proposal (etcd's `authStore.Authenticate`
    /// before assigning the token): auth enabled, user exists and has a password.
    pub fn authenticate(&self, name: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Err(AuthError::AuthNotEnabled);
        }
        let user = self.users.get(name).ok_or(AuthError::AuthFailed)?;
        if user.options.is_some_and(|o| o.no_password) {
            return Err(AuthError::AuthFailed);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- authorization

    /// Whether `user` exists and holds the `root` role.
    pub fn is_admin(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(has_root_role)
    }

    /// Whether `user` exists and holds `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users.get(user).is_some_and(|u| u.roles.iter().any(|r| r == role))
    }

    /// etcd's `IsAdminPermitted`, for auth, cluster and maintenance management requests:
    /// allowed when auth is disabled; otherwise the user must be named, exist and hold
    /// the `root` role.
    pub fn check_admin(&self, user: &str) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let u = self.users.get(user).ok_or(AuthError::UserNotFound)?;
        if !has_root_role(u) {
            return Err(AuthError::PermissionDenied);
        }
        Ok(())
    }

    /// `UserGet` authorization: admins, or any user asking about itself (etcd's
    /// `authApplierV3.UserGet`).
    pub fn check_user_get(&self, requester: &str, name: &str) -> Result<(), AuthError> {
        match self.check_admin(requester) {
            Err(_) if requester == name => Ok(()),
            other => other,
        }
    }

    /// `RoleGet` authorization: admins, or a user holding the role.
    pub fn check_role_get(&self, requester: &str, role: &str) -> Result<(), AuthError> {
        match self.check_admin(requester) {
            Err(_) if self.has_role(requester, role) => Ok(()),
            other => other,
        }
    }

    /// etcd's `isOpPermitted` minus the revision check (see [`Self::check_revision`]):
    /// allowed when auth is disabled; otherwise the user must be named
    /// ("user name is empty"), exist ("permission denied") and either hold `root` or have
    /// `[key, range_end)` covered by grants of type `typ` (see [`super::permission`]).
    /// Use `Write` for puts and deletes, `Read` for ranges; `Readwrite` requires both.
    pub fn check_range(&self, user: &str, key: &[u8], range_end: &[u8], typ: PermType) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if user.is_empty() {
            return Err(AuthError::UserEmpty);
        }
        let Some(u) = self.users.get(user) else {
            return Err(AuthError::PermissionDenied);
        };
        if has_root_role(u) {
            return Ok(());
        }
        match self.perm_cache.get(user) {
            Some(perms) if perms.permits(key, range_end, typ) => Ok(()),
            _ => Err(AuthError::PermissionDenied),
        }
    }

    /// The revision check of etcd's `isOpPermitted`, for a request authorized at
    /// `checked_revision` (0 means no credentials): "user name is empty" for 0,
    /// "revision of auth store is old" when the store has moved on. Always passes when
    /// auth is disabled.
    pub fn check_revision(&self, checked_revision: u64) -> Result<(), AuthError> {
        if !self.enabled {
            return Ok(());
        }
        if checked_revision == 0 {
            return Err(AuthError::UserEmpty);
        }
        if checked_revision < self.revision {
            return Err(AuthError::AuthOldRevision);
        }
        Ok(())
    }

    // ---------------------------------------------------------------- snapshots

    /// The whole state for a snapshot; users and roles sorted by name.
    pub fn to_snapshot(&self) -> AuthSnapshot {
        AuthSnapshot {
            enabled: self.enabled,
            revision: self.revision,
            users: self.users.values().cloned().collect(),
            roles: self.roles.values().cloned().collect(),
        }
    }

    /// Rebuilds a store from [`Self::to_snapshot`] output. Rejects names that are not
    /// UTF-8 and duplicate names.
    pub fn from_snapshot(snap: AuthSnapshot) -> Result<Self, AuthError> {
        let mut users = BTreeMap::new();
        for user in snap.users {
            let name = snapshot_name(&user.name, "user")?;
            if users.insert(name.clone(), user).is_some() {
                return Err(AuthError::InvalidSnapshot(format!("duplicate user {name:?}")));
            }
        }
        let mut roles = BTreeMap::new();
        for role in snap.roles {
            let name = snapshot_name(&role.name, "role")?;
            if roles.insert(name.clone(), role).is_some() {
                return Err(AuthError::InvalidSnapshot(format!("duplicate role {name:?}")));
            }
        }
        let mut store = AuthStore {
            enabled: snap.enabled,
            revision: snap.revision,
            users,
            roles,
            perm_cache: HashMap::new(),
        };
        store.refresh_perm_cache();
        Ok(store)
    }
}

fn snapshot_name(name: &[u8], what: &str) -> Result<String, AuthError> {
    String::from_utf8(name.to_vec())
        .map_err(|_| AuthError::InvalidSnapshot(format!("{what} name is not UTF-8: {name:?}")))
}

fn has_root_role(user: &authpb::User) -> bool {
    user.roles.iter().any(|r| r == ROOT_ROLE)
}

/// etcd's `selectPassword`: a plain password without a hash is a pre-3.5 proposal and is
/// hashed here; otherwise the base64 `hashed_password` is decoded (an empty one gives an
/// empty hash, which never verifies). Bad base64 is reported as etcd does, as
/// `NoPasswordUser`.
fn select_password(password: &str, hashed: &str, cost: u32) -> Result<Vec<u8>, AuthError> {
    if !password.is_empty() && hashed.is_empty() {
        let parts = bcrypt::hash_with_result(password, cost).map_err(|e| AuthError::Hash(e.to_string()))?;
        return Ok(parts.format_for_version(bcrypt::Version::TwoA).into_bytes());
    }
    base64_decode(hashed).ok_or(AuthError::NoPasswordUser)
}
