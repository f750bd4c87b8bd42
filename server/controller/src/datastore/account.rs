//! Local accounts: the first provider admin, password hashes, and the actor a user id
//! stands for (their role in the tenant they act in).

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid, UserUuid};
use portal_types::views::Membership;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::entity::{membership, quota, tenant, user};
use super::{DataStore, StoreError, begin_write, now_ms, stored_role};
use crate::authz::{Action, Actor, Role};
use crate::context::OpContext;

/// A local account as signing in needs it.
pub struct Credentials {
    pub user_id: UserUuid,
    pub username: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
}

/// Whether any user exists (at the first start, with the database to itself).
pub(crate) async fn users_exist(db: &impl ConnectionTrait) -> Result<bool, StoreError> {
    Ok(user::Entity::find().count(db).await? > 0)
}

/// The default tenant, with `unlimited` quota resources, and its first provider admin, in
/// one transaction (at the first start, with the database to itself).
pub(crate) async fn first_admin_create(
    db: &sea_orm::DatabaseConnection,
    tenant_name: &str,
    username: &str,
    password_hash: String,
    must_change_password: bool,
    unlimited: &[String],
) -> Result<(), StoreError> {
    let now = now_ms();
    let tenant_id = Uuid::new_v4();
    let user_id = Uuid::new_v4();
    let txn = begin_write(db).await?;
    tenant::ActiveModel {
        id: Set(tenant_id),
        name: Set(tenant_name.to_owned()),
        created_at: Set(now),
        suspended: Set(false),
    }
    .insert(&txn)
    .await?;
    user::ActiveModel {
        id: Set(user_id),
        username: Set(username.to_owned()),
        password_hash: Set(Some(password_hash)),
        provider_admin: Set(true),
        disabled: Set(false),
        created_at: Set(now),
        must_change_password: Set(must_change_password),
        sessions_valid_after: Set(0),
    }
    .insert(&txn)
    .await?;
    membership::ActiveModel {
        user_id: Set(user_id),
        tenant_id: Set(tenant_id),
        role: Set(Role::TenantAdmin.as_str().to_owned()),
    }
    .insert(&txn)
    .await?;
    let rows = unlimited.iter().map(|r| quota::ActiveModel {
        tenant_id: Set(tenant_id),
        resource: Set(r.clone()),
        max_value: Set(-1),
    });
    quota::Entity::insert_many(rows).exec_without_returning(&txn).await?;
    txn.commit().await?;
    Ok(())
}

impl DataStore {
    /// The account named `username`, for checking a password (no caller yet).
    pub(crate) async fn credentials_by_name(
        &self,
        username: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        let found =
            user::Entity::find().filter(user::Column::Username.eq(username)).one(&self.db).await?;
        Ok(found.map(|u| Credentials {
            user_id: UserUuid::from_untyped_uuid(u.id),
            username: u.username,
            password_hash: u.password_hash,
            disabled: u.disabled,
        }))
    }

    /// Stores a new password hash; `chosen`: the user chose it (no change needed at the next
    /// sign-in), as opposed to a rehash of the same password.
    pub(crate) async fn user_password_set(
        &self,
        user_id: UserUuid,
        hash: String,
        chosen: bool,
    ) -> Result<(), StoreError> {
        let mut update = user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Some(hash).into())
            .filter(user::Column::Id.eq(user_id.into_untyped_uuid()));
        if chosen {
            update = update.col_expr(user::Column::MustChangePassword, false.into());
        }
        update.exec(&self.db).await?;
        Ok(())
    }

    /// The actor for a user in `tenant` (or their first tenant), or `None` when the user may not
    /// act: disabled, in no tenant, or — for a session signed in at `session_signed_in_ms` —
    /// when every session signed in before the user's `sessions_valid_after` was revoked.
    pub(crate) async fn actor_load(
        &self,
        user_id: UserUuid,
        tenant: Option<TenantUuid>,
        session_signed_in_ms: Option<i64>,
    ) -> Result<Option<Actor>, StoreError> {
        let Some(u) = user::Entity::find_by_id(user_id.into_untyped_uuid()).one(&self.db).await?
        else {
            return Ok(None);
        };
        if u.disabled || session_signed_in_ms.is_some_and(|at| at < u.sessions_valid_after) {
            return Ok(None);
        }
        let mut memberships = Vec::new();
        for m in membership::Entity::find()
            .filter(membership::Column::UserId.eq(u.id))
            .all(&self.db)
            .await?
        {
            let t = tenant::Entity::find_by_id(m.tenant_id)
                .one(&self.db)
                .await?
                .ok_or_else(|| Error::internal("membership points at a missing tenant"))?;
            if !t.suspended || u.provider_admin {
                memberships.push((m, t));
            }
        }
        // Without a choice, the oldest tenant: adding someone elsewhere does not move them.
        memberships.sort_by_key(|(_, t)| (t.created_at, t.name.clone()));
        let chosen = tenant
            .and_then(|want| {
                memberships.iter().position(|(m, _)| m.tenant_id == want.into_untyped_uuid())
            })
            .unwrap_or(0);
        if memberships.is_empty() {
            return Ok(None);
        }
        let (m, t) = memberships.swap_remove(chosen);
        Ok(Some(Actor {
            user_id,
            username: u.username,
            provider_admin: u.provider_admin,
            tenant_id: TenantUuid::from_untyped_uuid(t.id),
            tenant_name: t.name,
            role: stored_role(&m.role),
            client: None,
            must_change_password: u.must_change_password,
        }))
    }

    /// Every tenant a user belongs to (suspended ones left out), by name.
    pub async fn user_memberships(&self, opctx: &OpContext) -> Result<Vec<Membership>, StoreError> {
        let user_id = opctx.authorize(Action::AccountRead)?.user_id;
        let mut out = Vec::new();
        for m in membership::Entity::find()
            .filter(membership::Column::UserId.eq(user_id.into_untyped_uuid()))
            .all(&self.db)
            .await?
        {
            if let Some(t) = tenant::Entity::find_by_id(m.tenant_id).one(&self.db).await?
                && !t.suspended
            {
                out.push(Membership {
                    tenant_id: TenantUuid::from_untyped_uuid(t.id),
                    tenant_name: t.name,
                    role: stored_role(&m.role),
                });
            }
        }
        out.sort_by(|a, b| a.tenant_name.cmp(&b.tenant_name));
        Ok(out)
    }
}
