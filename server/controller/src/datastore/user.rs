//! Users and their memberships (a role in a tenant). Tenant admins reach the users of the
//! tenant they manage, provider admins any tenant's ([`managed_tenant`]).

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid, UserUuid};
use portal_types::views::UserView;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use super::entity::{membership, session, user};
use super::{DataStore, StoreError, begin_write, now_ms, stored_role};
use crate::authz::{Action, Actor, Role, managed_tenant};
use crate::context::OpContext;

impl DataStore {
    /// The members of the tenant the actor manages, by username.
    pub async fn user_list(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
    ) -> Result<Vec<UserView>, StoreError> {
        let actor = opctx.authorize(Action::UserRead)?;
        let tenant = managed_tenant(actor, tenant)?;
        let members = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(tenant.into_untyped_uuid()))
            .all(&self.db)
            .await?;
        let ids: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
        let mut providers = self.identity_providers_of_users(&ids).await?;
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            if let Some(u) = user::Entity::find_by_id(m.user_id).one(&self.db).await? {
                out.push(UserView {
                    id: UserUuid::from_untyped_uuid(u.id),
                    username: u.username,
                    role: stored_role(&m.role),
                    disabled: u.disabled,
                    provider_admin: u.provider_admin,
                    provider: providers.remove(&u.id),
                });
            }
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// A new local account with `password_hash` (one the inviter chose, so it must be
    /// changed at the first sign-in) and a role in the tenant, in one transaction.
    pub async fn user_create_invited(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        username: &str,
        role: Role,
        password_hash: String,
    ) -> Result<UserView, StoreError> {
        let actor = opctx.authorize(Action::UserWrite)?;
        let tenant = managed_tenant(actor, tenant)?;
        let taken =
            user::Entity::find().filter(user::Column::Username.eq(username)).one(&self.db).await?;
        if taken.is_some() {
            return Err(Error::Conflict {
                message: format!("The username \"{username}\" is taken; pick another."),
            }
            .into());
        }
        let id = Uuid::new_v4();
        let txn = begin_write(&self.db).await?;
        user::ActiveModel {
            id: Set(id),
            username: Set(username.to_owned()),
            password_hash: Set(Some(password_hash)),
            provider_admin: Set(false),
            disabled: Set(false),
            created_at: Set(now_ms()),
            must_change_password: Set(true),
            sessions_valid_after: Set(0),
        }
        .insert(&txn)
        .await?;
        membership::ActiveModel {
            user_id: Set(id),
            tenant_id: Set(tenant.into_untyped_uuid()),
            role: Set(role.as_str().to_owned()),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok(UserView {
            id: UserUuid::from_untyped_uuid(id),
            username: username.to_owned(),
            role,
            disabled: false,
            provider_admin: false,
            provider: None,
        })
    }

    /// Gives an existing user a role in another tenant (provider admins).
    pub async fn user_add_to_tenant(
        &self,
        opctx: &OpContext,
        tenant: TenantUuid,
        username: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        opctx.authorize(Action::TenantWrite)?;
        let u = user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("user", username))?;
        let exists = membership::Entity::find_by_id((u.id, tenant.into_untyped_uuid()))
            .one(&self.db)
            .await?;
        if exists.is_some() {
            return Err(Error::Conflict {
                message: format!(
                    "{username} is already in that tenant; change their role instead."
                ),
            }
            .into());
        }
        membership::ActiveModel {
            user_id: Set(u.id),
            tenant_id: Set(tenant.into_untyped_uuid()),
            role: Set(role.as_str().to_owned()),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// Changes a member's role in the tenant the actor manages.
    pub async fn user_set_role(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        user_id: UserUuid,
        role: Role,
    ) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::UserWrite)?;
        let tenant = managed_tenant(actor, tenant)?;
        self.user_check_not_shared(actor, tenant, user_id).await?;
        let res = membership::Entity::update_many()
            .col_expr(membership::Column::Role, role.as_str().into())
            .filter(membership::Column::UserId.eq(user_id.into_untyped_uuid()))
            .filter(membership::Column::TenantId.eq(tenant.into_untyped_uuid()))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("user", user_id).into());
        }
        Ok(())
    }

    /// Disables (or re-enables) a member of the tenant the actor manages.
    pub async fn user_set_disabled(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        user_id: UserUuid,
        disabled: bool,
    ) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::UserWrite)?;
        let tenant = managed_tenant(actor, tenant)?;
        let member = membership::Entity::find_by_id((
            user_id.into_untyped_uuid(),
            tenant.into_untyped_uuid(),
        ))
        .one(&self.db)
        .await?;
        if member.is_none() {
            return Err(Error::not_found("user", user_id).into());
        }
        self.user_check_not_shared(actor, tenant, user_id).await?;
        user::Entity::update_many()
            .col_expr(user::Column::Disabled, disabled.into())
            .filter(user::Column::Id.eq(user_id.into_untyped_uuid()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// A tenant admin's change to a user also reaches the user's other tenants when it
    /// disables the account or ends its sessions: only provider admins may do that to a user
    /// who is in other tenants too, or to a provider admin.
    async fn user_check_not_shared(
        &self,
        actor: &Actor,
        tenant: TenantUuid,
        user_id: UserUuid,
    ) -> Result<(), StoreError> {
        if actor.provider_admin {
            return Ok(());
        }
        let target = user::Entity::find_by_id(user_id.into_untyped_uuid())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("user", user_id))?;
        let elsewhere = membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id.into_untyped_uuid()))
            .filter(membership::Column::TenantId.ne(tenant.into_untyped_uuid()))
            .one(&self.db)
            .await?;
        if target.provider_admin || elsewhere.is_some() {
            return Err(Error::forbidden(format!(
                "{} also belongs to other tenants or runs the cloud; ask your provider to change \
                 this account",
                target.username
            ))
            .into());
        }
        Ok(())
    }

    /// Ends every session of a user (server side: the rows go, so cookies stop working, and
    /// sessions signed in before now are void even if a request in flight writes one back).
    /// Called after the change that requires it was authorized.
    pub(crate) async fn user_sessions_end(&self, user_id: UserUuid) -> Result<(), StoreError> {
        user::Entity::update_many()
            .col_expr(user::Column::SessionsValidAfter, now_ms().into())
            .filter(user::Column::Id.eq(user_id.into_untyped_uuid()))
            .exec(&self.db)
            .await?;
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user_id.into_untyped_uuid()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Ends every session of every member of the tenant (suspended or deleted).
    pub(crate) async fn tenant_sessions_end(&self, tenant: TenantUuid) -> Result<(), StoreError> {
        let members = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(tenant.into_untyped_uuid()))
            .all(&self.db)
            .await?;
        for m in members {
            self.user_sessions_end(UserUuid::from_untyped_uuid(m.user_id)).await?;
        }
        Ok(())
    }
}
