//! API tokens for scripts and the CLI. A token is `gpc_` + 40 random characters, shown once;
//! the database keeps its SHA-256 (a high-entropy secret needs no slow hash) and its first
//! 12 characters to find it. A token acts for its user in one tenant with at most the role
//! it was created with (never more than the user's current role there, and never as a
//! provider admin); it expires, can be revoked, and records when it was last used.

use portal_types::Error;
use portal_types::ids::{ApiTokenUuid, GenericUuid, TenantUuid, UserUuid};
use portal_types::views::{ApiTokenCreated, ApiTokenView};
use rand::Rng;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::Controller;
use crate::authz::{Action, Actor, Role};
use crate::context::OpContext;
use crate::datastore::entity::{api_token, tenant};
use crate::datastore::{now_ms, rfc3339};

const PREFIX_LEN: usize = 12;
const MAX_DAYS: u32 = 365;

fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn new_token() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let body: String =
        (0..40).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char).collect();
    format!("gpc_{body}")
}

impl Controller {
    fn token_view(&self, row: &api_token::Model, tenant_name: &str) -> ApiTokenView {
        ApiTokenView {
            id: ApiTokenUuid::from_untyped_uuid(row.id),
            name: row.name.clone(),
            prefix: row.prefix.clone(),
            tenant_name: tenant_name.to_owned(),
            role: row.role.clone(),
            created_at: rfc3339(row.created_at),
            expires_at: rfc3339(row.expires_at),
            last_used_at: row.last_used_at.map(rfc3339),
            revoked: row.revoked_at.is_some(),
        }
    }

    /// Creates a token for the actor in their tenant, with at most their role.
    pub async fn api_token_create(
        &self,
        opctx: &OpContext,
        name: &str,
        role: &str,
        days: u32,
    ) -> Result<ApiTokenCreated, Error> {
        let result = async {
            let actor = opctx.authorize(Action::AccountWrite)?;
            let name = name.trim();
            if name.is_empty() || name.len() > 64 {
                return Err(Error::invalid("Give the token a name of 1 to 64 characters."));
            }
            let role = Role::parse(role).ok_or_else(|| {
                Error::invalid(format!(
                    "\"{role}\" is not a role; use viewer, member or tenant-admin."
                ))
            })?;
            if role > actor.role && !actor.provider_admin {
                return Err(Error::forbidden(format!(
                    "a token cannot have more than your own role ({})",
                    actor.role.as_str()
                )));
            }
            if !(1..=MAX_DAYS).contains(&days) {
                return Err(Error::invalid(format!("A token lives 1 to {MAX_DAYS} days.")));
            }
            let token = new_token();
            let now = now_ms();
            let row = api_token::ActiveModel {
                id: Set(Uuid::new_v4()),
                user_id: Set(actor.user_id.into_untyped_uuid()),
                tenant_id: Set(actor.tenant_id.into_untyped_uuid()),
                role: Set(role.as_str().to_owned()),
                name: Set(name.to_owned()),
                prefix: Set(token[..PREFIX_LEN].to_owned()),
                hash: Set(hash(&token)),
                created_at: Set(now),
                expires_at: Set(now + i64::from(days) * 86_400_000),
                last_used_at: Set(None),
                revoked_at: Set(None),
            }
            .insert(&self.db)
            .await
            .map_err(Error::internal)?;
            Ok(ApiTokenCreated { view: self.token_view(&row, &actor.tenant_name), token })
        }
        .await;
        self.audited(opctx, "api_token.create", "api_token", name, result).await
    }

    /// The actor's own tokens, newest first.
    pub async fn api_token_list(&self, opctx: &OpContext) -> Result<Vec<ApiTokenView>, Error> {
        let actor = opctx.authorize(Action::AccountRead)?;
        let rows = api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(actor.user_id.into_untyped_uuid()))
            .order_by_desc(api_token::Column::CreatedAt)
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = tenant::Entity::find_by_id(r.tenant_id)
                .one(&self.db)
                .await
                .map_err(Error::internal)?;
            out.push(self.token_view(r, &t.map(|t| t.name).unwrap_or_default()));
        }
        Ok(out)
    }

    /// Revokes one of the actor's tokens; someone else's token is not found.
    pub async fn api_token_revoke(&self, opctx: &OpContext, id: ApiTokenUuid) -> Result<(), Error> {
        let result = async {
            let actor = opctx.authorize(Action::AccountWrite)?;
            let res = api_token::Entity::update_many()
                .col_expr(api_token::Column::RevokedAt, Some(now_ms()).into())
                .filter(api_token::Column::Id.eq(id.into_untyped_uuid()))
                .filter(api_token::Column::UserId.eq(actor.user_id.into_untyped_uuid()))
                .exec(&self.db)
                .await
                .map_err(Error::internal)?;
            if res.rows_affected == 0 {
                return Err(Error::not_found("API token", id));
            }
            Ok(())
        }
        .await;
        self.audited(opctx, "api_token.revoke", "api_token", &id.to_string(), result).await
    }

    /// Revokes every token of a user (after a password change).
    pub(crate) async fn api_tokens_revoke_all(&self, user_id: UserUuid) -> Result<(), Error> {
        api_token::Entity::update_many()
            .col_expr(api_token::Column::RevokedAt, Some(now_ms()).into())
            .filter(api_token::Column::UserId.eq(user_id.into_untyped_uuid()))
            .filter(api_token::Column::RevokedAt.is_null())
            .exec(&self.db)
            .await
            .map_err(Error::internal)?;
        Ok(())
    }

    /// The caller a bearer token stands for, or `None` for an unknown, expired or revoked
    /// token, a disabled user, or one no longer in the token's tenant.
    pub async fn token_actor(
        &self,
        token: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<Option<OpContext>, Error> {
        if token.len() < PREFIX_LEN || !token.starts_with("gpc_") {
            return Ok(None);
        }
        let Some(row) = api_token::Entity::find()
            .filter(api_token::Column::Prefix.eq(&token[..PREFIX_LEN]))
            .one(&self.db)
            .await
            .map_err(Error::internal)?
        else {
            return Ok(None);
        };
        let now = now_ms();
        let matches: bool = hash(token).as_bytes().ct_eq(row.hash.as_bytes()).into();
        if !matches || row.revoked_at.is_some() || row.expires_at <= now {
            return Ok(None);
        }
        let tenant = Some(TenantUuid::from_untyped_uuid(row.tenant_id));
        let Some(user) = self.actor_in(UserUuid::from_untyped_uuid(row.user_id), tenant).await?
        else {
            return Ok(None);
        };
        // Only the token's tenant, and never more than the user's role there today.
        if user.tenant_id != TenantUuid::from_untyped_uuid(row.tenant_id) {
            return Ok(None);
        }
        let role = Role::parse(&row.role).unwrap_or(Role::Viewer).min(user.role);
        let _ = api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, Some(now).into())
            .filter(api_token::Column::Id.eq(row.id))
            .exec(&self.db)
            .await;
        Ok(Some(OpContext::for_token(Actor { role, provider_admin: false, client, ..user })))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = super::new_token();
        assert!(a.starts_with("gpc_") && a.len() == 44);
        assert_ne!(a, super::new_token());
        assert_eq!(super::hash(&a).len(), 64);
        assert_ne!(super::hash(&a), super::hash(&super::new_token()));
    }
}
