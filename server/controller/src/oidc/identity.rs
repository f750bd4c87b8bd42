//! Who a verified sign-in is in the portal: the e-mail domain check, the role from the
//! provider's groups, and the user linked to (provider, subject).

use openidconnect::core::CoreGenderClaim;
use portal_types::Error;
use portal_types::ids::UserUuid;

use super::flow::{Claims, ExtraClaims};
use super::providers::{RoleRule, rules_of};
use super::refuse;
use crate::Controller;
use crate::authz::Role;
use crate::datastore::entity::identity_provider;

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
        let info_email = info.email().map(|e| e.as_str().to_ascii_lowercase());
        if self.email.is_none() {
            self.email = info_email;
            self.email_verified = info.email_verified();
        } else if self.email_verified.is_none() && info_email == self.email {
            // Only a statement about the same address counts.
            self.email_verified = info.email_verified();
        }
        if self.groups.is_none() {
            self.groups = groups_of(info.additional_claims().claims.get(group_claim));
        }
    }

    /// The portal's name for a new user: the address (the subject when the provider sent
    /// none) qualified by the provider, `alice@example.com (corp)`. Usernames are global;
    /// local ones cannot contain spaces or parentheses and provider names are unique, so
    /// this never names a local account or another provider's user. The user is found by
    /// (provider, subject) in `external_identity`, never by this name.
    pub(super) fn username(&self, provider: &str) -> String {
        let name = self.email.as_deref().unwrap_or(&self.subject);
        format!("{name} ({provider})")
    }
}

/// The role for `groups`: the highest role any matching rule grants, else the default;
/// `None` when nothing matches and the default is "none".
pub fn role_for(rules: &[RoleRule], groups: &[String], default_role: &str) -> Option<Role> {
    rules
        .iter()
        .filter(|r| groups.iter().any(|g| g == &r.group))
        .filter_map(|r| Role::parse(&r.role))
        .max()
        .or_else(|| Role::parse(default_role))
}

/// Checks the e-mail domain, finds or creates the user, and sets their role in the
/// provider's tenant, all in one transaction.
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
        // The domain admits people only if the provider vouches for the address; a missing
        // claim vouches for nothing.
        match identity.email_verified {
            Some(true) => {}
            Some(false) => {
                return Err(refuse(format!(
                    "{display} says the e-mail address {email} is not verified; verify it there \
                     and sign in again."
                )));
            }
            None => {
                return Err(refuse(format!(
                    "{display} sent no email_verified claim, so the e-mail address {email} is \
                     not verified for this portal; ask your identity provider's admin to \
                     release that claim."
                )));
            }
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
    let Some(role) = role else {
        let tenant = ctl
            .datastore
            .tenant_lookup_by_id(provider.tenant_id)
            .await?
            .map_or_else(|| "the provider's tenant".to_owned(), |t| t.name);
        return Err(refuse(format!(
            "No group of yours maps to a role in {tenant}; ask your admin."
        )));
    };
    let username = identity.username(&provider.name);
    Ok(ctl.datastore.identity_sign_in(provider, &identity.subject, &username, role).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::parse_role_rules;

    #[test]
    fn role_rules_parse_and_pick_the_highest_matching_role() {
        let rules = parse_role_rules("ml-team=member\nadmins = tenant-admin, ").unwrap();
        assert_eq!(rules.len(), 2);
        let groups = |g: &[&str]| g.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let role = |g: &[&str], default: &str| role_for(&rules, &groups(g), default);
        assert_eq!(role(&["ml-team"], "viewer"), Some(Role::Member));
        assert_eq!(role(&["ml-team", "admins"], "viewer"), Some(Role::TenantAdmin));
        assert_eq!(role(&["other"], "viewer"), Some(Role::Viewer));
        assert_eq!(role(&["other"], "none"), None, "no rule matches and no default role");
        assert_eq!(role(&["ml-team"], "none"), Some(Role::Member));
        assert!(parse_role_rules("ml-team member").is_err());
    }
}
