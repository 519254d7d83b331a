//! The `etcdserverpb.Auth` service. Management requests are admin-only and go through
//! Raft; passwords are hashed (bcrypt) before proposing, so the log never holds them.

use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use super::auth_ctx::{auth_info, check_admin};
use crate::auth::{hash_password, AuthError};
use crate::proto::etcdserverpb::{self as pb, auth_server::Auth};
use crate::proto::rustcdpb::{internal_request::Request as Internal, InternalAuthenticateRequest};
use crate::server::{AuthInfo, EtcdServer};

pub struct AuthService {
    pub server: Arc<EtcdServer>,
}

fn auth_status(e: AuthError) -> Status {
    Status::new(tonic::Code::from_i32(e.grpc_status_code()), e.to_string())
}

impl AuthService {
    /// Runs an admin-only management request through Raft and returns the response header.
    async fn manage<T>(
        &self,
        req: Request<T>,
        f: impl FnOnce(T) -> Internal,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        self.server.propose(f(req.into_inner()), &who).await?;
        Ok(Some(self.server.header()))
    }

    async fn hashed(&self, password: String) -> Result<String, Status> {
        let cost = self.server.cfg.bcrypt_cost;
        tokio::task::spawn_blocking(move || hash_password(&password, cost))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(auth_status)
    }

    /// A user may read its own entry and its own roles without being root.
    fn may_read(&self, who: &AuthInfo, user: Option<&str>, role: Option<&str>) -> Result<(), Status> {
        if who.username.is_empty() {
            return Ok(());
        }
        let sm = self.server.sm.read();
        if sm.auth.is_admin(&who.username) {
            return Ok(());
        }
        let own_user = user.is_some_and(|u| u == who.username);
        let own_role = role.is_some_and(|r| sm.auth.has_role(&who.username, r));
        if own_user || own_role {
            Ok(())
        } else {
            Err(auth_status(AuthError::PermissionDenied))
        }
    }
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_enable(
        &self,
        req: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let header = self.manage(req, Internal::AuthEnable).await?;
        Ok(Response::new(pb::AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        req: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let header = self.manage(req, Internal::AuthDisable).await?;
        self.server.tokens.clear();
        Ok(Response::new(pb::AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        req: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        auth_info(&self.server, &req)?;
        let (enabled, auth_revision) = self.server.sm.read().auth.enabled_and_revision();
        Ok(Response::new(pb::AuthStatusResponse {
            header: Some(self.server.header()),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = req.into_inner();
        let server = self.server.clone();
        let (name, password) = (r.name.clone(), r.password.clone());
        tokio::task::spawn_blocking(move || server.sm.read().auth.check_password(&name, &password))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(auth_status)?;
        let token = self.server.tokens.assign(&r.name, Instant::now());
        let req = Internal::Authenticate(InternalAuthenticateRequest {
            name: r.name,
            simple_token: token.clone(),
        });
        self.server.propose(req, &AuthInfo::default()).await?;
        Ok(Response::new(pb::AuthenticateResponse {
            header: Some(self.server.header()),
            token,
        }))
    }

    async fn user_add(
        &self,
        req: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let no_password = req.get_ref().options.as_ref().is_some_and(|o| o.no_password);
        let mut req = req;
        if !no_password && req.get_ref().hashed_password.is_empty() {
            let pw = std::mem::take(&mut req.get_mut().password);
            req.get_mut().hashed_password = self.hashed(pw).await?;
        }
        let header = self.manage(req, Internal::UserAdd).await?;
        Ok(Response::new(pb::AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        req: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        self.may_read(&who, Some(&req.get_ref().name), None)?;
        self.server.linearizable_read().await?;
        let mut resp = self
            .server
            .sm
            .read()
            .auth
            .user_get(req.get_ref())
            .map_err(auth_status)?;
        resp.header = Some(self.server.header());
        Ok(Response::new(resp))
    }

    async fn user_list(
        &self,
        req: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        self.server.linearizable_read().await?;
        let mut resp = self.server.sm.read().auth.user_list();
        resp.header = Some(self.server.header());
        Ok(Response::new(resp))
    }

    async fn user_delete(
        &self,
        req: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let name = req.get_ref().name.clone();
        let header = self.manage(req, Internal::UserDelete).await?;
        self.server.tokens.invalidate_user(&name);
        Ok(Response::new(pb::AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        req: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let mut req = req;
        if req.get_ref().hashed_password.is_empty() {
            let pw = std::mem::take(&mut req.get_mut().password);
            req.get_mut().hashed_password = self.hashed(pw).await?;
        }
        let name = req.get_ref().name.clone();
        let header = self.manage(req, Internal::UserChangePassword).await?;
        self.server.tokens.invalidate_user(&name);
        Ok(Response::new(pb::AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let header = self.manage(req, Internal::UserGrantRole).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let header = self.manage(req, Internal::UserRevokeRole).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        req: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let header = self.manage(req, Internal::RoleAdd).await?;
        Ok(Response::new(pb::AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        req: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        self.may_read(&who, None, Some(&req.get_ref().role))?;
        self.server.linearizable_read().await?;
        let mut resp = self
            .server
            .sm
            .read()
            .auth
            .role_get(req.get_ref())
            .map_err(auth_status)?;
        resp.header = Some(self.server.header());
        Ok(Response::new(resp))
    }

    async fn role_list(
        &self,
        req: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        let who = auth_info(&self.server, &req)?;
        check_admin(&self.server, &who)?;
        self.server.linearizable_read().await?;
        let mut resp = self.server.sm.read().auth.role_list();
        resp.header = Some(self.server.header());
        Ok(Response::new(resp))
    }

    async fn role_delete(
        &self,
        req: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let header = self.manage(req, Internal::RoleDelete).await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let header = self.manage(req, Internal::RoleGrantPermission).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse { header }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let header = self.manage(req, Internal::RoleRevokePermission).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse { header }))
    }
}
