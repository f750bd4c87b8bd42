//! Users and their roles in a tenant. Tenant admins manage their own tenant; provider admins
//! any. Invited local accounts get a one-time password shown once; changing a user's role
//! or disabling them ends their sessions, so the change applies at once.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid, UserUuid};
use portal_types::views::{UserInvited, UserView};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use uuid::Uuid;

use crate::Controller;
use crate::authn::{generate_password, hash_password};
use crate::authz::{Action, Actor, Role};
use crate::context::OpContext;
use crate::datastore::entity::{membership, session, user};
use crate::datastore::now_ms;

/// The tenant an actor may manage users in: their own, or any for provider admins. Another
/// tenant is not found for everyone else.
fn managed_tenant(actor: &Actor, tenant: Option<TenantUuid>) -> Result<TenantUuid, Error> {
    let tenant = tenant.unwrap_or(actor.tenant_id);
    if tenant != actor.tenant_id && !actor.provider_admin {
        return Err(Error::not_found("tenant", tenant));
    }
    Ok(tenant)
}

/// A tenant admin's change to a user also reaches the user's other tenants when it disables
/// the account or ends its sessions: only provider admins may do that to a user who is in
/// other tenants too, or to a provider admin.
async fn check_not_shared(
    db: &sea_orm::DatabaseConnection,
    actor: &Actor,
    tenant: TenantUuid,
    user_id: UserUuid,
) -> Result<(), Error> {
    if actor.provider_admin {
        return Ok(());
    }
    let target = user::Entity::find_by_id(user_id.into_untyped_uuid())
        .one(db)
        .await
        .map_err(Error::internal)?
        .ok_or_else(|| Error::not_found("user", user_id))?;
    let elsewhere = membership::Entity::find()
        .filter(membership::Column::UserId.eq(user_id.into_untyped_uuid()))
        .filter(membership::Column::TenantId.ne(tenant.into_untyped_uuid()))
        .one(db)
        .await
        .map_err(Error::internal)?;
    if target.provider_admin || elsewhere.is_some() {
        return Err(Error::forbidden(format!(
            "{} also belongs to other tenants or runs the cloud; ask your provider to change \
             this account",
            target.username
        )));
    }
    Ok(())
}

fn parse_role(role: &str) -> Result<Role, Error> {
    Role::parse(role).ok_or_else(|| {
        Error::invalid(format!("\"{role}\" is not a role; use viewer, member or tenant-admin."))
    })
}

impl Controller {
    pub async fn user_list(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
    ) -> Result<Vec<UserView>, Error> {
        let actor = opctx.authorize(Action::UserRead)?;
        let tenant = managed_tenant(actor, tenant)?;
        let members = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(tenant.into_untyped_uuid()))
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        let ids: Vec<Uuid> = members.iter().map(|m| m.user_id).collect();
        let mut providers = crate::oidc::providers_of(&self.db, &ids).await?;
        let mut out = Vec::with_capacity(members.len());
        for m in members {
            if let Some(u) =
                user::Entity::find_by_id(m.user_id).one(&self.db).await.map_err(Error::internal)?
            {
                out.push(UserView {
                    id: UserUuid::from_untyped_uuid(u.id),
                    username: u.username,
                    role: m.role,
                    disabled: u.disabled,
                    provider_admin: u.provider_admin,
                    provider: providers.remove(&u.id),
                });
            }
        }
        out.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(out)
    }

    /// Creates a local account in the tenant with a role and a one-time password.
    pub async fn user_invite(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        username: &str,
        role: &str,
    ) -> Result<UserInvited, Error> {
        let result = async {
            let actor = opctx.authorize(Action::UserWrite)?;
            let tenant = managed_tenant(actor, tenant)?;
            let role = parse_role(role)?;
            validate_username(username)?;
            let taken = user::Entity::find()
                .filter(user::Column::Username.eq(username))
                .one(&self.db)
                .await
                .map_err(Error::internal)?;
            if taken.is_some() {
                return Err(Error::Conflict {
                    message: format!("The username \"{username}\" is taken; pick another."),
                });
            }
            let password = generate_password();
            let hash = hash_password(password.clone()).await?;
            let id = Uuid::new_v4();
            let txn = crate::datastore::begin_write(&self.db).await.map_err(Error::internal)?;
            user::ActiveModel {
                id: Set(id),
                username: Set(username.to_owned()),
                password_hash: Set(Some(hash)),
                provider_admin: Set(false),
                disabled: Set(false),
                created_at: Set(now_ms()),
                // The inviter saw this password: it is for signing in once.
                must_change_password: Set(true),
                sessions_valid_after: Set(0),
            }
            .insert(&txn)
            .await
            .map_err(Error::internal)?;
            membership::ActiveModel {
                user_id: Set(id),
                tenant_id: Set(tenant.into_untyped_uuid()),
                role: Set(role.as_str().to_owned()),
            }
            .insert(&txn)
            .await
            .map_err(Error::internal)?;
            txn.commit().await.map_err(Error::internal)?;
            Ok(UserInvited {
                user: UserView {
                    id: UserUuid::from_untyped_uuid(id),
                    username: username.to_owned(),
                    role: role.as_str().to_owned(),
                    disabled: false,
                    provider_admin: false,
                    provider: None,
                },
                one_time_password: password,
            })
        }
        .await;
        self.audited_in(opctx, tenant, "user.invite", "user", username, result).await
    }

    /// Adds an existing user to another tenant with a role (provider admins: only they may
    /// see users across tenants).
    pub async fn user_add_to_tenant(
        &self,
        opctx: &OpContext,
        tenant: TenantUuid,
        username: &str,
        role: &str,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::TenantWrite)?;
            let role = parse_role(role)?;
            let u = user::Entity::find()
                .filter(user::Column::Username.eq(username))
                .one(&self.db)
                .await
                .map_err(Error::internal)?
                .ok_or_else(|| Error::not_found("user", username))?;
            let exists = membership::Entity::find_by_id((u.id, tenant.into_untyped_uuid()))
                .one(&self.db)
                .await
                .map_err(Error::internal)?;
            if exists.is_some() {
                return Err(Error::Conflict {
                    message: format!(
                        "{username} is already in that tenant; change their role instead."
                    ),
                });
            }
            membership::ActiveModel {
                user_id: Set(u.id),
                tenant_id: Set(tenant.into_untyped_uuid()),
                role: Set(role.as_str().to_owned()),
            }
            .insert(&self.db)
            .await
            .map_err(Error::internal)?;
            Ok(())
        }
        .await;
        self.audited_in(opctx, Some(tenant), "user.add_to_tenant", "user", username, result).await
    }

    /// Changes a member's role in the tenant; their sessions end so it applies at once.
    pub async fn user_set_role(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        user_id: UserUuid,
        role: &str,
    ) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::UserWrite)?;
            let tenant = managed_tenant(actor, tenant)?;
            let role = parse_role(role)?;
            if user_id == actor.user_id {
                return Err(Error::Conflict {
                    message: "You cannot change your own role; ask another admin.".into(),
                });
            }
            check_not_shared(&self.db, actor, tenant, user_id).await?;
            let res = membership::Entity::update_many()
                .col_expr(membership::Column::Role, role.as_str().into())
                .filter(membership::Column::UserId.eq(user_id.into_untyped_uuid()))
                .filter(membership::Column::TenantId.eq(tenant.into_untyped_uuid()))
                .exec(&self.db)
                .await
                .map_err(Error::internal)?;
            if res.rows_affected == 0 {
                return Err(Error::not_found("user", user_id));
            }
            self.sessions_end_for_user(user_id).await
        }
        .await;
        let object = user_id.to_string();
        self.audited_in(opctx, tenant, "user.set_role", "user", &object, result).await
    }

    /// Disables (or re-enables) a member of the tenant; disabling ends their sessions.
    pub async fn user_set_disabled(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        user_id: UserUuid,
        disabled: bool,
    ) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::UserWrite)?;
            let tenant = managed_tenant(actor, tenant)?;
            if user_id == actor.user_id {
                return Err(Error::Conflict { message: "You cannot disable yourself.".into() });
            }
            let member = membership::Entity::find_by_id((
                user_id.into_untyped_uuid(),
                tenant.into_untyped_uuid(),
            ))
            .one(&self.db)
            .await
            .map_err(Error::internal)?;
            if member.is_none() {
                return Err(Error::not_found("user", user_id));
            }
            check_not_shared(&self.db, actor, tenant, user_id).await?;
            user::Entity::update_many()
                .col_expr(user::Column::Disabled, disabled.into())
                .filter(user::Column::Id.eq(user_id.into_untyped_uuid()))
                .exec(&self.db)
                .await
                .map_err(Error::internal)?;
            if disabled {
                self.sessions_end_for_user(user_id).await?;
            }
            Ok(())
        }
        .await;
        let verb = if disabled { "user.disable" } else { "user.enable" };
        self.audited_in(opctx, tenant, verb, "user", &user_id.to_string(), result).await
    }

    /// Ends every session of a user (server side: the rows go, so cookies stop working, and
    /// sessions signed in before now are void even if a request in flight writes one back).
    pub(crate) async fn sessions_end_for_user(&self, user_id: UserUuid) -> Result<(), Error> {
        user::Entity::update_many()
            .col_expr(user::Column::SessionsValidAfter, now_ms().into())
            .filter(user::Column::Id.eq(user_id.into_untyped_uuid()))
            .exec(&self.db)
            .await
            .map_err(Error::internal)?;
        session::Entity::delete_many()
            .filter(session::Column::UserId.eq(user_id.into_untyped_uuid()))
            .exec(&self.db)
            .await
            .map_err(Error::internal)?;
        Ok(())
    }

    pub(crate) async fn sessions_end_for_tenant(&self, tenant: TenantUuid) -> Result<(), Error> {
        let members = membership::Entity::find()
            .filter(membership::Column::TenantId.eq(tenant.into_untyped_uuid()))
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        for m in members {
            self.sessions_end_for_user(UserUuid::from_untyped_uuid(m.user_id)).await?;
        }
        Ok(())
    }
}

/// Usernames: 1–64 characters of letters, digits and `.-_@` (emails fit).
fn validate_username(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "The username \"{name}\" is not valid: use 1 to 64 letters, digits and . - _ @."
        )))
    }
}
