//! API tokens' rows: a token's SHA-256 and prefix, never the token. The `role` column holds
//! the token's scope: a tenant role, or `provider-admin` (a tenant admin that also acts as
//! the provider admin its user is).

use portal_types::Error;
use portal_types::ids::{ApiTokenUuid, GenericUuid, TenantUuid, UserUuid};
use portal_types::views::ApiTokenView;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::entity::{api_token, tenant};
use super::{DataStore, StoreError, now_ms, rfc3339, stored_role};
use crate::authz::{Action, Role};
use crate::context::OpContext;

/// What authenticating with a token needs to know of its row.
pub struct StoredToken {
    pub id: ApiTokenUuid,
    pub user_id: UserUuid,
    pub tenant_id: TenantUuid,
    pub role: Role,
    /// Made by a provider admin to administer the fleet from scripts.
    pub provider_admin: bool,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub usable: bool,
}

/// The `role` column of a provider admin's token.
pub const PROVIDER_ADMIN: &str = "provider-admin";

fn view(row: &api_token::Model, tenant_name: &str) -> ApiTokenView {
    ApiTokenView {
        id: ApiTokenUuid::from_untyped_uuid(row.id),
        name: row.name.clone(),
        prefix: row.prefix.clone(),
        tenant_name: tenant_name.to_owned(),
        role: stored_role(&row.role),
        provider_admin: row.role == PROVIDER_ADMIN,
        created_at: rfc3339(row.created_at),
        expires_at: rfc3339(row.expires_at),
        last_used_at: row.last_used_at.map(rfc3339),
        revoked: row.revoked_at.is_some(),
    }
}

impl DataStore {
    /// Stores a new token of the actor in their tenant (validated by the caller); `scope` is
    /// a role's name or [`PROVIDER_ADMIN`].
    pub async fn api_token_insert(
        &self,
        opctx: &OpContext,
        name: &str,
        scope: &str,
        prefix: &str,
        hash: String,
        days: u32,
    ) -> Result<ApiTokenView, StoreError> {
        let actor = opctx.authorize(Action::AccountWrite)?;
        let now = now_ms();
        let row = api_token::ActiveModel {
            id: Set(Uuid::new_v4()),
            user_id: Set(actor.user_id.into_untyped_uuid()),
            tenant_id: Set(actor.tenant_id.into_untyped_uuid()),
            role: Set(scope.to_owned()),
            name: Set(name.to_owned()),
            prefix: Set(prefix.to_owned()),
            hash: Set(hash),
            created_at: Set(now),
            expires_at: Set(now + i64::from(days) * 86_400_000),
            last_used_at: Set(None),
            revoked_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(view(&row, &actor.tenant_name))
    }

    /// The actor's own tokens, newest first.
    pub async fn api_token_list(&self, opctx: &OpContext) -> Result<Vec<ApiTokenView>, StoreError> {
        let actor = opctx.authorize(Action::AccountRead)?;
        let rows = api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(actor.user_id.into_untyped_uuid()))
            .order_by_desc(api_token::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = tenant::Entity::find_by_id(r.tenant_id).one(&self.db).await?;
            out.push(view(r, &t.map(|t| t.name).unwrap_or_default()));
        }
        Ok(out)
    }

    /// Revokes one of the actor's tokens; someone else's token is not found.
    pub async fn api_token_revoke(
        &self,
        opctx: &OpContext,
        id: ApiTokenUuid,
    ) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::AccountWrite)?;
        let res = api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Some(now_ms()).into())
            .filter(api_token::Column::Id.eq(id.into_untyped_uuid()))
            .filter(api_token::Column::UserId.eq(actor.user_id.into_untyped_uuid()))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("API token", id).into());
        }
        Ok(())
    }

    /// Revokes every token of a user (after a password change the user authorized).
    pub(crate) async fn api_tokens_revoke_all(&self, user_id: UserUuid) -> Result<(), StoreError> {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Some(now_ms()).into())
            .filter(api_token::Column::UserId.eq(user_id.into_untyped_uuid()))
            .filter(api_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The token with this prefix, for authenticating a bearer token (no caller yet).
    pub(crate) async fn api_token_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Option<StoredToken>, StoreError> {
        let row = api_token::Entity::find()
            .filter(api_token::Column::Prefix.eq(prefix))
            .one(&self.db)
            .await?;
        let now = now_ms();
        Ok(row.map(|r| StoredToken {
            id: ApiTokenUuid::from_untyped_uuid(r.id),
            user_id: UserUuid::from_untyped_uuid(r.user_id),
            tenant_id: TenantUuid::from_untyped_uuid(r.tenant_id),
            role: stored_role(&r.role),
            provider_admin: r.role == PROVIDER_ADMIN,
            hash: r.hash,
            usable: r.revoked_at.is_none() && r.expires_at > now,
        }))
    }

    /// Records that a token was just used (best effort).
    pub(crate) async fn api_token_touch(&self, id: ApiTokenUuid) -> Result<(), StoreError> {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Some(now_ms()).into())
            .filter(api_token::Column::Id.eq(id.into_untyped_uuid()))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}
