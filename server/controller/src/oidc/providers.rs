//! Identity providers as provider admins configure them: issuer, client, tenant, e-mail
//! domains and group → role rules.

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use uuid::Uuid;

use crate::Controller;
use crate::authz::{Action, Role};
use crate::context::OpContext;
use crate::datastore::entity::identity_provider;
use crate::datastore::{IdentityProviderChange, NewIdentityProvider};

pub use portal_types::identity::RoleRule;

/// What a provider admin enters to add an identity provider (the shared type: the portal's
/// form and the REST API's body).
pub type ProviderCreate = portal_types::identity::IdentityProviderCreate;

/// An identity provider's new settings (its name stays).
pub type ProviderUpdate = portal_types::identity::IdentityProviderUpdate;

/// An identity provider as admins see it (never its client secret).
pub type ProviderInfo = portal_types::identity::IdentityProviderView;

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

/// A provider's settings once checked (all but its name and client secret), trimmed and
/// with the defaults filled in, as the datastore stores them.
struct Checked<'a> {
    display_name: &'a str,
    issuer_url: &'a str,
    client_id: &'a str,
    tenant: &'a str,
    email_domains: String,
    group_claim: &'a str,
    /// As JSON.
    role_rules: String,
    default_role: &'a str,
}

impl<'a> Checked<'a> {
    /// Checks `create`'s settings for the provider called `name`: everything is checked
    /// before anything is written.
    fn of(name: &'a str, create: &'a ProviderCreate) -> Result<Self, Error> {
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
        let mut rules = Vec::with_capacity(create.role_rules.len());
        for rule in &create.role_rules {
            let (group, role) = (rule.group.trim(), rule.role.trim());
            if group.is_empty() {
                return Err(Error::invalid("A role rule has an empty group name."));
            }
            check_role(role, &format!("role for group {group}"))?;
            rules.push(RoleRule { group: group.to_owned(), role: role.to_owned() });
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
        Ok(Checked {
            display_name,
            issuer_url: issuer,
            client_id,
            tenant: create.tenant.trim(),
            email_domains: domains.join(","),
            group_claim,
            role_rules: serde_json::to_string(&rules).map_err(Error::internal)?,
            default_role,
        })
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
        let checked = Checked::of(name, create)?;
        let id = Uuid::new_v4();
        let new = NewIdentityProvider {
            id,
            name,
            display_name: checked.display_name,
            issuer_url: checked.issuer_url,
            client_id: checked.client_id,
            sealed_client_secret: self.secret_keys.seal(id, create.client_secret.trim()),
            tenant: checked.tenant,
            email_domains: checked.email_domains,
            group_claim: checked.group_claim,
            role_rules: checked.role_rules,
            default_role: checked.default_role,
        };
        let (row, tenant) = self.datastore.identity_provider_create(opctx, new).await?;
        Ok(info(row, tenant))
    }

    /// One identity provider, for provider admins.
    pub async fn identity_provider_get(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<ProviderInfo, Error> {
        let (row, tenant) = self.datastore.identity_provider_fetch(opctx, name).await?;
        Ok(info(row, tenant))
    }

    /// Changes an identity provider's settings in place (its name stays), checked as when
    /// it is added; the client secret only when `update` carries one. Sign-ins under way
    /// finish with the provider as it is when they come back.
    pub async fn identity_provider_update(
        &self,
        opctx: &OpContext,
        name: &str,
        update: &ProviderUpdate,
    ) -> Result<ProviderInfo, Error> {
        let before = self.datastore.identity_provider_tenant(name).await.ok().flatten();
        let result = self.identity_provider_update_unaudited(opctx, name, update).await;
        // Filed under the tenant the provider signs users into now (else the one it did).
        let tenant = match &result {
            Ok(info) => self.tenant_named(&info.tenant).await,
            Err(_) => before,
        };
        let kind = "identity_provider";
        self.audited_in(opctx, tenant, "identity_provider.update", kind, name, result).await
    }

    async fn identity_provider_update_unaudited(
        &self,
        opctx: &OpContext,
        name: &str,
        update: &ProviderUpdate,
    ) -> Result<ProviderInfo, Error> {
        opctx.authorize(Action::IdentityProviderWrite)?;
        let as_create = ProviderCreate {
            name: name.to_owned(),
            display_name: update.display_name.clone(),
            issuer_url: update.issuer_url.clone(),
            client_id: update.client_id.clone(),
            client_secret: String::new(),
            tenant: update.tenant.clone(),
            email_domains: update.email_domains.clone(),
            group_claim: update.group_claim.clone(),
            role_rules: update.role_rules.clone(),
            default_role: update.default_role.clone(),
        };
        let checked = Checked::of(name, &as_create)?;
        let (existing, _) = self.datastore.identity_provider_fetch(opctx, name).await?;
        let sealed =
            update.client_secret.as_deref().map(|s| self.secret_keys.seal(existing.id, s.trim()));
        let change = IdentityProviderChange {
            display_name: checked.display_name,
            issuer_url: checked.issuer_url,
            client_id: checked.client_id,
            sealed_client_secret: sealed,
            tenant: checked.tenant,
            email_domains: checked.email_domains,
            group_claim: checked.group_claim,
            role_rules: checked.role_rules,
            default_role: checked.default_role,
        };
        let (row, tenant) =
            self.datastore.identity_provider_update(opctx, existing.id, change).await?;
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
