//! Identity providers as provider admins configure them: issuer, client, tenant, e-mail
//! domains and group → role rules.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Controller;
use crate::authz::{Action, Role};
use crate::context::OpContext;
use crate::datastore::NewIdentityProvider;
use crate::datastore::entity::identity_provider;

/// Maps members of an identity-provider group to a role in the provider's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleRule {
    pub group: String,
    pub role: String,
}

/// What a provider admin enters to add an identity provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderCreate {
    /// Slug used in URLs: lower-case letters, digits and dashes.
    pub name: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Name of the tenant the provider's users land in.
    pub tenant: String,
    /// Comma-separated e-mail domains allowed to sign in; empty: any.
    pub email_domains: String,
    /// The ID token (or userinfo) claim holding the user's groups; empty: `groups`.
    pub group_claim: String,
    pub role_rules: Vec<RoleRule>,
    /// Role for users no rule matches, or [`NO_ROLE`] to refuse them.
    pub default_role: String,
}

/// An identity provider as admins see it (never its client secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    pub name: String,
    pub display_name: String,
    pub issuer_url: String,
    pub client_id: String,
    pub tenant: String,
    pub email_domains: String,
    pub group_claim: String,
    pub role_rules: Vec<RoleRule>,
    pub default_role: String,
}

/// What the sign-in page shows per provider: a button, nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderButton {
    pub name: String,
    pub display_name: String,
}

/// Parses role rules written one per line (or comma-separated) as `group=role`.
pub fn parse_role_rules(text: &str) -> Result<Vec<RoleRule>, Error> {
    text.split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (group, role) = line.split_once('=').ok_or_else(|| {
                Error::invalid(format!(
                    "The role rule \"{line}\" is not of the form group=role (for example \
                     ml-team=member)."
                ))
            })?;
            Ok(RoleRule { group: group.trim().to_owned(), role: role.trim().to_owned() })
        })
        .collect()
}

/// The default role that admits nobody: users no role rule matches are refused.
pub const NO_ROLE: &str = "none";

/// Whether an issuer URL may be used: https, or plain http only on loopback (127.0.0.0/8,
/// ::1, localhost), where no one between the portal and the provider can read or change
/// the discovery document, the keys or the tokens. (Development and the end-to-end tests
/// run a provider on 127.0.0.1 without TLS.)
pub(super) fn issuer_is_safe(issuer: &str) -> bool {
    use openidconnect::url::{Host, Url};
    let Ok(url) = Url::parse(issuer) else { return false };
    match (url.scheme(), url.host()) {
        ("https", Some(_)) => true,
        ("http", Some(Host::Domain(host))) => host.eq_ignore_ascii_case("localhost"),
        ("http", Some(Host::Ipv4(ip))) => ip.is_loopback(),
        ("http", Some(Host::Ipv6(ip))) => ip.is_loopback(),
        _ => false,
    }
}

fn valid_slug(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 40
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn check_role(role: &str, what: &str) -> Result<(), Error> {
    Role::parse(role).map(|_| ()).ok_or_else(|| {
        Error::invalid(format!(
            "The {what} \"{role}\" is not a role; use viewer, member or tenant-admin."
        ))
    })
}

pub(super) fn rules_of(row: &identity_provider::Model) -> Vec<RoleRule> {
    serde_json::from_str(&row.role_rules).unwrap_or_default()
}

fn info(row: identity_provider::Model, tenant: String) -> ProviderInfo {
    ProviderInfo {
        role_rules: rules_of(&row),
        tenant,
        name: row.name,
        display_name: row.display_name,
        issuer_url: row.issuer_url,
        client_id: row.client_id,
        email_domains: row.email_domains,
        group_claim: row.group_claim,
        default_role: row.default_role,
    }
}

impl Controller {
    /// The identity providers, for provider admins.
    pub async fn identity_provider_list(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<ProviderInfo>, Error> {
        let rows = self.datastore.identity_provider_list(opctx).await?;
        Ok(rows.into_iter().map(|(row, tenant)| info(row, tenant)).collect())
    }

    /// Adds an identity provider; everything is checked before anything is written.
    pub async fn identity_provider_create(
        &self,
        opctx: &OpContext,
        create: &ProviderCreate,
    ) -> Result<ProviderInfo, Error> {
        let result = self.identity_provider_create_unaudited(opctx, create).await;
        // Filed under the tenant the provider signs users into, which its admins care about.
        let tenant = match &result {
            Ok(_) => self.tenant_named(create.tenant.trim()).await,
            Err(_) => None,
        };
        self.audited_in(
            opctx,
            tenant,
            "identity_provider.create",
            "identity_provider",
            create.name.trim(),
            result,
        )
        .await
    }

    async fn identity_provider_create_unaudited(
        &self,
        opctx: &OpContext,
        create: &ProviderCreate,
    ) -> Result<ProviderInfo, Error> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let name = create.name.trim();
        if !valid_slug(name) {
            return Err(Error::invalid(format!(
                "The name \"{name}\" must be 1 to 40 lower-case letters, digits or dashes (it \
                 appears in the sign-in URL)."
            )));
        }
        let display_name =
            if create.display_name.trim().is_empty() { name } else { create.display_name.trim() };
        // The exact issuer string the provider advertises: ID tokens are compared to it.
        let issuer = create.issuer_url.trim();
        openidconnect::url::Url::parse(issuer)
            .map_err(|_| Error::invalid(format!("The issuer URL \"{issuer}\" is not a URL.")))?;
        if !issuer_is_safe(issuer) {
            return Err(Error::invalid(format!(
                "The issuer URL \"{issuer}\" must start with https:// (plain http:// is allowed \
                 only on loopback: 127.0.0.0/8, ::1 or localhost)."
            )));
        }
        let client_id = create.client_id.trim();
        if client_id.is_empty() {
            return Err(Error::invalid(
                "The client ID is empty; copy it from the identity provider's client settings.",
            ));
        }
        let default_role = create.default_role.trim();
        if default_role != NO_ROLE && Role::parse(default_role).is_none() {
            return Err(Error::invalid(format!(
                "The default role \"{default_role}\" is not a role; use viewer, member, \
                 tenant-admin, or none to refuse users no rule matches."
            )));
        }
        for rule in &create.role_rules {
            if rule.group.is_empty() {
                return Err(Error::invalid("A role rule has an empty group name."));
            }
            check_role(&rule.role, &format!("role for group {}", rule.group))?;
        }
        let domains: Vec<String> = create
            .email_domains
            .split(',')
            .map(|d| d.trim().trim_start_matches('@').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        if let Some(bad) = domains.iter().find(|d| !d.contains('.') || d.contains(['@', ' '])) {
            return Err(Error::invalid(format!(
                "The e-mail domain \"{bad}\" is not a domain such as example.com."
            )));
        }
        let group_claim =
            if create.group_claim.trim().is_empty() { "groups" } else { create.group_claim.trim() };
        let id = Uuid::new_v4();
        let new = NewIdentityProvider {
            id,
            name,
            display_name,
            issuer_url: issuer,
            client_id,
            sealed_client_secret: self.secret_keys.seal(id, create.client_secret.trim()),
            tenant: create.tenant.trim(),
            email_domains: domains.join(","),
            group_claim,
            role_rules: serde_json::to_string(&create.role_rules).map_err(Error::internal)?,
            default_role,
        };
        let (row, tenant) = self.datastore.identity_provider_create(opctx, new).await?;
        Ok(info(row, tenant))
    }

    /// Removes an identity provider. Its users stay (with their roles) but can no longer
    /// sign in through it.
    pub async fn identity_provider_delete(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(), Error> {
        let tenant = self.datastore.identity_provider_tenant(name).await.ok().flatten();
        let result = self.identity_provider_delete_unaudited(opctx, name).await;
        let kind = "identity_provider";
        self.audited_in(opctx, tenant, "identity_provider.delete", kind, name, result).await
    }

    /// The id of the tenant with this name, for filing audit entries.
    async fn tenant_named(&self, name: &str) -> Option<TenantUuid> {
        let found = self.datastore.tenant_lookup_by_name(name).await.ok().flatten();
        found.map(|t| TenantUuid::from_untyped_uuid(t.id))
    }

    async fn identity_provider_delete_unaudited(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(), Error> {
        Ok(self.datastore.identity_provider_delete(opctx, name).await?)
    }

    /// The sign-in buttons. Deliberately public (no actor): the sign-in page is for visitors
    /// who are not signed in yet, and only names are returned.
    pub async fn identity_provider_buttons(&self) -> Result<Vec<ProviderButton>, Error> {
        Ok(self
            .datastore
            .identity_provider_list_by_display_name()
            .await?
            .into_iter()
            .map(|r| ProviderButton { name: r.name, display_name: r.display_name })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_url_safe() {
        assert!(valid_slug("corp-sso"));
        assert!(!valid_slug("Corp SSO"));
        assert!(!valid_slug(""));
        assert!(!valid_slug("a/b"));
    }
}
