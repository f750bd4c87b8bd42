//! API tokens for scripts and the CLI. A token is `gpc_` + 40 random characters, shown once;
//! the database keeps its SHA-256 (a high-entropy secret needs no slow hash) and its first
//! 12 characters to find it. A token acts for its user in one tenant with at most the role
//! it was created with (never more than the user's current role there); only a token a
//! provider admin made as `provider-admin` acts as provider admin, and only while its user
//! still is one. It expires, can be revoked, and records when it was last used.

use portal_types::Error;
use portal_types::ids::ApiTokenUuid;
use portal_types::views::{ApiTokenCreated, ApiTokenView};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::Controller;
use crate::authz::{Action, Actor, Role};
use crate::context::OpContext;
use crate::datastore::api_token::PROVIDER_ADMIN;

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
            let provider_admin = role == PROVIDER_ADMIN;
            if provider_admin && !actor.provider_admin {
                return Err(Error::forbidden("only provider admins make provider-admin tokens"));
            }
            let role = if provider_admin { Some(Role::TenantAdmin) } else { Role::parse(role) }
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "\"{role}\" is not a role; use viewer, member, tenant-admin or \
                         provider-admin."
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
            let scope = if provider_admin { PROVIDER_ADMIN } else { role.as_str() };
            let token = new_token();
            let view = self
                .datastore
                .api_token_insert(opctx, name, scope, &token[..PREFIX_LEN], hash(&token), days)
                .await?;
            Ok(ApiTokenCreated { view, token })
        }
        .await;
        self.audited(opctx, "api_token.create", "api_token", name, result).await
    }

    /// The actor's own tokens, newest first.
    pub async fn api_token_list(&self, opctx: &OpContext) -> Result<Vec<ApiTokenView>, Error> {
        Ok(self.datastore.api_token_list(opctx).await?)
    }

    /// Revokes one of the actor's tokens; someone else's token is not found.
    pub async fn api_token_revoke(&self, opctx: &OpContext, id: ApiTokenUuid) -> Result<(), Error> {
        let result = async { Ok(self.datastore.api_token_revoke(opctx, id).await?) }.await;
        self.audited(opctx, "api_token.revoke", "api_token", &id.to_string(), result).await
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
        let Some(stored) = self.datastore.api_token_by_prefix(&token[..PREFIX_LEN]).await? else {
            return Ok(None);
        };
        let matches: bool = hash(token).as_bytes().ct_eq(stored.hash.as_bytes()).into();
        if !matches || !stored.usable {
            return Ok(None);
        }
        let Some(user) = self.actor_in(stored.user_id, Some(stored.tenant_id)).await? else {
            return Ok(None);
        };
        // Only the token's tenant, and never more than the user's role there today.
        if user.tenant_id != stored.tenant_id {
            return Ok(None);
        }
        let role = stored.role.min(user.role);
        if let Err(e) = self.datastore.api_token_touch(stored.id).await {
            tracing::warn!(error = %e, "cannot record an API token's use");
        }
        let provider_admin = stored.provider_admin && user.provider_admin;
        Ok(Some(OpContext::for_token(Actor { role, provider_admin, client, ..user })))
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
