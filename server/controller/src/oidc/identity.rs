//! Who a verified sign-in is in the portal: the e-mail domain check, the role from the
//! provider's groups, and the user linked to (provider, subject).

use openidconnect::core::CoreGenderClaim;
use portal_types::Error;
use portal_types::ids::{GenericUuid, UserUuid};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, Set};
use uuid::Uuid;

use super::flow::{Claims, ExtraClaims};
use super::providers::{RoleRule, rules_of};
use super::refuse;
use crate::Controller;
use crate::authz::Role;
use crate::db::entity::{external_identity, identity_provider, membership, user};
use crate::db::now_ms;

/// What the portal takes from a verified sign-in.
#[derive(Debug, Clone, Default)]
pub(super) struct Identity {
    pub(super) subject: String,
    pub(super) email: Option<String>,
    pub(super) email_verified: Option<bool>,
    /// `None` when the provider sent no group claim at all.
    pub(super) groups: Option<Vec<String>>,
}

fn groups_of(value: Option<&serde_json::Value>) -> Option<Vec<String>> {
    match value? {
        serde_json::Value::Array(items) => {
            Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        }
        serde_json::Value::String(s) => Some(vec![s.clone()]),
        _ => None,
    }
}

impl Identity {
    pub(super) fn from_claims(claims: &Claims, group_claim: &str) -> Self {
        Identity {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_ascii_lowercase()),
            email_verified: claims.email_verified(),
            groups: groups_of(claims.additional_claims().claims.get(group_claim)),
        }
    }

    pub(super) fn fill_from_userinfo(
        &mut self,
        info: &openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim>,
        group_claim: &str,
    ) {
        if self.email.is_none() {
            self.email = info.email().map(|e| e.as_str().to_ascii_lowercase());
            self.email_verified = info.email_verified();
        }
        if self.groups.is_none() {
            self.groups = groups_of(info.additional_claims().claims.get(group_claim));
        }
    }

    pub(super) fn username(&self, provider: &str) -> String {
        self.email.clone().unwrap_or_else(|| format!("{}@{provider}", self.subject))
    }
}

/// The role for `groups`: the highest role any matching rule grants, else the default.
pub fn role_for(rules: &[RoleRule], groups: &[String], default_role: &str) -> Role {
    rules
        .iter()
        .filter(|r| groups.iter().any(|g| g == &r.group))
        .filter_map(|r| Role::parse(&r.role))
        .max()
        .unwrap_or_else(|| Role::parse(default_role).unwrap_or(Role::Viewer))
}

/// Checks the e-mail domain, finds or creates the user, and sets their role in the
/// provider's tenant, all in one transaction.
// `..Default::default()` on the new user row: columns added to `users` later (with database
// defaults) must not break single sign-on.
#[allow(clippy::needless_update)]
pub(super) async fn map_and_store(
    ctl: &Controller,
    provider: &identity_provider::Model,
    identity: &Identity,
) -> Result<UserUuid, Error> {
    let display = &provider.display_name;
    if !provider.email_domains.is_empty() {
        let Some(email) = &identity.email else {
            return Err(refuse(format!(
                "{display} sent no e-mail address, and this portal admits only addresses at {}; \
                 ask your identity provider's admin to release the email claim.",
                provider.email_domains
            )));
        };
        if identity.email_verified == Some(false) {
            return Err(refuse(format!(
                "{display} says the e-mail address {email} is not verified; verify it there and \
                 sign in again."
            )));
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if !provider.email_domains.split(',').any(|d| d == domain) {
            return Err(refuse(format!(
                "The e-mail address {email} is not in a domain admitted through {display} ({}).",
                provider.email_domains
            )));
        }
    }
    let role = role_for(
        &rules_of(provider),
        identity.groups.as_deref().unwrap_or(&[]),
        &provider.default_role,
    );
    let username = identity.username(&provider.name);
    let now = now_ms();
    let txn = crate::db::begin_write(&ctl.db).await.map_err(Error::internal)?;
    let link = external_identity::Entity::find_by_id((provider.id, identity.subject.clone()))
        .one(&txn)
        .await
        .map_err(Error::internal)?;
    let user_id = match link {
        Some(link) => {
            let u = user::Entity::find_by_id(link.user_id)
                .one(&txn)
                .await
                .map_err(Error::internal)?
                .ok_or_else(|| Error::internal("external identity points at a missing user"))?;
            if u.disabled {
                return Err(refuse(format!(
                    "The account {} is disabled; ask an admin to enable it.",
                    u.username
                )));
            }
            let mut link = link.into_active_model();
            link.last_sign_in_at = Set(now);
            link.update(&txn).await.map_err(Error::internal)?;
            u.id
        }
        None => {
            // Never adopt an existing account by name: a provider asserting someone's
            // address must not take over a local (or another provider's) account.
            let taken = user::Entity::find()
                .filter(user::Column::Username.eq(&username))
                .one(&txn)
                .await
                .map_err(Error::internal)?;
            if taken.is_some() {
                return Err(refuse(format!(
                    "An account named {username} already exists and is not linked to {display}; \
                     ask an admin to remove or rename it."
                )));
            }
            let id = Uuid::new_v4();
            user::ActiveModel {
                id: Set(id),
                username: Set(username.clone()),
                password_hash: Set(None),
                provider_admin: Set(false),
                disabled: Set(false),
                created_at: Set(now),
                must_change_password: Set(false),
            }
            .insert(&txn)
            .await
            .map_err(Error::internal)?;
            external_identity::ActiveModel {
                provider_id: Set(provider.id),
                subject: Set(identity.subject.clone()),
                user_id: Set(id),
                created_at: Set(now),
                last_sign_in_at: Set(now),
            }
            .insert(&txn)
            .await
            .map_err(Error::internal)?;
            id
        }
    };
    // The provider's groups are authoritative for the role in the provider's tenant.
    let existing = membership::Entity::find_by_id((user_id, provider.tenant_id))
        .one(&txn)
        .await
        .map_err(Error::internal)?;
    match existing {
        Some(m) if m.role == role.as_str() => {}
        Some(m) => {
            let mut m = m.into_active_model();
            m.role = Set(role.as_str().to_owned());
            m.update(&txn).await.map_err(Error::internal)?;
        }
        None => {
            membership::ActiveModel {
                user_id: Set(user_id),
                tenant_id: Set(provider.tenant_id),
                role: Set(role.as_str().to_owned()),
            }
            .insert(&txn)
            .await
            .map_err(Error::internal)?;
        }
    }
    txn.commit().await.map_err(Error::internal)?;
    Ok(UserUuid::from_untyped_uuid(user_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_rules_parse_and_pick_the_highest_matching_role() {
        let rules = parse_role_rules("ml-team=member\nadmins = tenant-admin, ").unwrap();
        assert_eq!(rules.len(), 2);
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(role_for(&rules, &groups(&["ml-team"]), "viewer"), Role::Member);
        assert_eq!(role_for(&rules, &groups(&["ml-team", "admins"]), "viewer"), Role::TenantAdmin);
        assert_eq!(role_for(&rules, &groups(&["other"]), "viewer"), Role::Viewer);
        assert!(parse_role_rules("ml-team member").is_err());
    }
}
