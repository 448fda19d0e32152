//! The `etcdserverpb.Auth` methods: each maps its message to an auth
//! change or a read of the auth store (see the parent module).

use flotilla_kv::{AuthError, AuthOp};
use flotilla_proto::etcdserverpb as pb;
use tonic::{Request, Response};

use super::{Answer, AuthService, permission, to_pb, token_key};
use crate::auth::refused;

#[tonic::async_trait]
impl super::auth_server::Auth for AuthService {
    async fn auth_enable(
        &self,
        r: Request<pb::AuthEnableRequest>,
    ) -> Answer<pb::AuthEnableResponse> {
        let change = AuthOp::Enable {
            token_key: token_key()?,
        };
        let header = self.change_for(&r, change).await?;
        Ok(Response::new(pb::AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        r: Request<pb::AuthDisableRequest>,
    ) -> Answer<pb::AuthDisableResponse> {
        let header = self.change_for(&r, AuthOp::Disable).await?;
        Ok(Response::new(pb::AuthDisableResponse { header }))
    }

    async fn auth_status(
        &self,
        _: Request<pb::AuthStatusRequest>,
    ) -> Answer<pb::AuthStatusResponse> {
        let ((enabled, auth_revision), header) =
            self.read(|a| Ok((a.enabled(), a.revision()))).await?;
        Ok(Response::new(pb::AuthStatusResponse {
            header,
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        r: Request<pb::AuthenticateRequest>,
    ) -> Answer<pb::AuthenticateResponse> {
        let (token, header) = AuthService::authenticate(self, r.into_inner()).await?;
        Ok(Response::new(pb::AuthenticateResponse { header, token }))
    }

    async fn user_add(
        &self,
        r: Request<pb::AuthUserAddRequest>,
    ) -> Answer<pb::AuthUserAddResponse> {
        let caller = self.core.caller(&r)?;
        let m = r.into_inner();
        if m.name.is_empty() {
            return Err(refused(AuthError::UserEmpty));
        }
        let no_password = m.options.is_some_and(|o| o.no_password);
        let password = self
            .stored(no_password, m.password, m.hashed_password)
            .await?;
        let change = AuthOp::UserAdd {
            name: m.name,
            password,
        };
        let header = self.change(caller, change).await?;
        Ok(Response::new(pb::AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        r: Request<pb::AuthUserGetRequest>,
    ) -> Answer<pb::AuthUserGetResponse> {
        let caller = self.core.caller(&r)?;
        let name = r.into_inner().name;
        // etcd: a root, or the user itself.
        if caller != name {
            self.core.require_admin_of(&caller)?;
        }
        let (roles, header) = self
            .read(|a| {
                let u = a.user(&name).ok_or(AuthError::UserNotFound)?;
                Ok(u.roles.iter().cloned().collect())
            })
            .await?;
        Ok(Response::new(pb::AuthUserGetResponse { header, roles }))
    }

    async fn user_list(
        &self,
        r: Request<pb::AuthUserListRequest>,
    ) -> Answer<pb::AuthUserListResponse> {
        self.core.require_admin(&r)?;
        let (users, header) = self
            .read(|a| Ok(a.users().map(str::to_owned).collect()))
            .await?;
        Ok(Response::new(pb::AuthUserListResponse { header, users }))
    }

    async fn user_delete(
        &self,
        r: Request<pb::AuthUserDeleteRequest>,
    ) -> Answer<pb::AuthUserDeleteResponse> {
        let name = r.get_ref().name.clone();
        let header = self.change_for(&r, AuthOp::UserDelete { name }).await?;
        Ok(Response::new(pb::AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        r: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Answer<pb::AuthUserChangePasswordResponse> {
        let caller = self.core.caller(&r)?;
        // Refused before bcrypt's time is spent on it.
        self.core.require_admin_of(&caller)?;
        let m = r.into_inner();
        let no_password = self
            .read(|a| Ok(a.user(&m.name).is_some_and(|u| u.password.is_none())))
            .await?
            .0;
        let password = self
            .stored(no_password, m.password, m.hashed_password)
            .await?;
        let change = AuthOp::UserChangePassword {
            name: m.name,
            password,
        };
        let header = self.change(caller, change).await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        r: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Answer<pb::AuthUserGrantRoleResponse> {
        let m = r.get_ref().clone();
        let change = AuthOp::UserGrantRole {
            user: m.user,
            role: m.role,
        };
        let header = self.change_for(&r, change).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        r: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Answer<pb::AuthUserRevokeRoleResponse> {
        let m = r.get_ref().clone();
        let change = AuthOp::UserRevokeRole {
            user: m.name,
            role: m.role,
        };
        let header = self.change_for(&r, change).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        r: Request<pb::AuthRoleAddRequest>,
    ) -> Answer<pb::AuthRoleAddResponse> {
        let name = r.get_ref().name.clone();
        let header = self.change_for(&r, AuthOp::RoleAdd { name }).await?;
        Ok(Response::new(pb::AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        r: Request<pb::AuthRoleGetRequest>,
    ) -> Answer<pb::AuthRoleGetResponse> {
        let caller = self.core.caller(&r)?;
        let role = r.into_inner().role;
        // etcd: a root, or a user that holds the role.
        let (perm, header) = self
            .read(|a| {
                let holds = a.user(&caller).is_some_and(|u| u.roles.contains(&role));
                if !holds {
                    a.admin(&caller)?;
                }
                let found = a.role(&role).ok_or(AuthError::RoleNotFound)?;
                Ok(found.perms.iter().map(to_pb).collect())
            })
            .await?;
        Ok(Response::new(pb::AuthRoleGetResponse { header, perm }))
    }

    async fn role_list(
        &self,
        r: Request<pb::AuthRoleListRequest>,
    ) -> Answer<pb::AuthRoleListResponse> {
        self.core.require_admin(&r)?;
        let (roles, header) = self
            .read(|a| Ok(a.roles().map(str::to_owned).collect()))
            .await?;
        Ok(Response::new(pb::AuthRoleListResponse { header, roles }))
    }

    async fn role_delete(
        &self,
        r: Request<pb::AuthRoleDeleteRequest>,
    ) -> Answer<pb::AuthRoleDeleteResponse> {
        let name = r.get_ref().role.clone();
        let header = self.change_for(&r, AuthOp::RoleDelete { name }).await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        r: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Answer<pb::AuthRoleGrantPermissionResponse> {
        let m = r.get_ref().clone();
        let change = AuthOp::RoleGrantPermission {
            role: m.name,
            perm: permission(m.perm)?,
        };
        let header = self.change_for(&r, change).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header,
        }))
    }

    async fn role_revoke_permission(
        &self,
        r: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Answer<pb::AuthRoleRevokePermissionResponse> {
        let m = r.get_ref().clone();
        let change = AuthOp::RoleRevokePermission {
            role: m.role,
            key: m.key,
            range_end: m.range_end,
        };
        let header = self.change_for(&r, change).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header,
        }))
    }
}
