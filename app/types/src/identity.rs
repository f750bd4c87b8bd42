//! OpenID Connect identity providers as provider admins configure them: issuer, client,
//! tenant, e-mail domains and group → role rules. Client secrets go in, never out.

use serde::{Deserialize, Serialize};

/// Members of an identity-provider group get `role` in the provider's tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RoleRule {
    /// The group's name as the provider's group claim carries it.
    #[cfg_attr(feature = "openapi", schema(example = "ml-team"))]
    pub group: String,
    /// `viewer`, `member` or `tenant-admin`.
    #[cfg_attr(feature = "openapi", schema(example = "member"))]
    pub role: String,
}

/// A new identity provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityProviderCreate {
    /// 1 to 40 lower-case letters, digits and dashes; it names the provider in URLs.
    #[cfg_attr(feature = "openapi", schema(example = "corp-sso"))]
    pub name: String,
    /// The sign-in button's text; empty: the name.
    #[serde(default)]
    pub display_name: String,
    /// The issuer exactly as the provider advertises it: `https://…` (plain `http://` only on
    /// loopback).
    #[cfg_attr(feature = "openapi", schema(example = "https://login.example.com"))]
    pub issuer_url: String,
    #[cfg_attr(feature = "openapi", schema(example = "portal"))]
    pub client_id: String,
    /// Stored encrypted and never returned; empty for a public client.
    #[serde(default)]
    pub client_secret: String,
    /// The name of the tenant the provider's users land in.
    #[cfg_attr(feature = "openapi", schema(example = "default"))]
    pub tenant: String,
    /// Comma-separated e-mail domains allowed to sign in; empty: any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "example.com"))]
    pub email_domains: String,
    /// The ID token (or userinfo) claim holding the user's groups; empty: `groups`.
    #[serde(default)]
    pub group_claim: String,
    #[serde(default)]
    pub role_rules: Vec<RoleRule>,
    /// The role of users no rule matches: `viewer`, `member`, `tenant-admin`, or `none` to
    /// refuse them.
    #[cfg_attr(feature = "openapi", schema(example = "viewer"))]
    pub default_role: String,
}

/// An identity provider's new settings; its name stays.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityProviderUpdate {
    /// The sign-in button's text; empty: the name.
    #[serde(default)]
    pub display_name: String,
    /// The issuer exactly as the provider advertises it: `https://…` (plain `http://` only on
    /// loopback).
    #[cfg_attr(feature = "openapi", schema(example = "https://login.example.com"))]
    pub issuer_url: String,
    #[cfg_attr(feature = "openapi", schema(example = "portal"))]
    pub client_id: String,
    /// A new client secret (stored encrypted, never returned); empty for a public client;
    /// absent or null: the stored one stays.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// The name of the tenant the provider's users land from now on (users who signed in
    /// before keep their role in the previous one).
    #[cfg_attr(feature = "openapi", schema(example = "default"))]
    pub tenant: String,
    /// Comma-separated e-mail domains allowed to sign in; empty: any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "example.com"))]
    pub email_domains: String,
    /// The ID token (or userinfo) claim holding the user's groups; empty: `groups`.
    #[serde(default)]
    pub group_claim: String,
    #[serde(default)]
    pub role_rules: Vec<RoleRule>,
    /// The role of users no rule matches: `viewer`, `member`, `tenant-admin`, or `none` to
    /// refuse them.
    #[cfg_attr(feature = "openapi", schema(example = "viewer"))]
    pub default_role: String,
}

/// An identity provider as provider admins see it (never its client secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct IdentityProviderView {
    pub name: String,
    pub display_name: String,
    #[cfg_attr(feature = "openapi", schema(example = "https://login.example.com"))]
    pub issuer_url: String,
    #[cfg_attr(feature = "openapi", schema(example = "portal"))]
    pub client_id: String,
    /// The name of the tenant its users land in.
    #[cfg_attr(feature = "openapi", schema(example = "default"))]
    pub tenant: String,
    /// Comma-separated; empty: any.
    #[cfg_attr(feature = "openapi", schema(example = "example.com"))]
    pub email_domains: String,
    pub group_claim: String,
    pub role_rules: Vec<RoleRule>,
    /// `viewer`, `member`, `tenant-admin`, or `none`: users no rule matches are refused.
    #[cfg_attr(feature = "openapi", schema(example = "viewer"))]
    pub default_role: String,
}
