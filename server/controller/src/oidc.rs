//! OpenID Connect single sign-on (authorization code flow with PKCE S256, state and nonce),
//! identity providers configured by provider admins, and RP-initiated logout.
//!
//! The flow: [`RelyingParty::begin`] discovers the provider (cached), remembers state, nonce
//! and the PKCE verifier in the visitor's session and returns the provider's authorization
//! URL; [`RelyingParty::finish`] takes the provider's redirect back, checks state, exchanges
//! the code with the verifier, verifies the ID token (issuer, audience, signature, no
//! `alg=none`, expiry, nonce, `at_hash`), maps the identity to the provider's tenant and a
//! role, creates or updates the user and signs the session in. Every refusal is one sentence
//! that says what was wrong; tokens and secrets are never logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreErrorResponseType,
    CoreGenderClaim, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRevocableToken, CoreRevocationErrorResponse, CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenClaims, IdTokenFields, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use portal_types::Error;
use portal_types::ids::{GenericUuid, UserUuid};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder, Set,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tower_sessions::Session;
use uuid::Uuid;

use crate::Controller;
use crate::authz::{Action, Actor, Role, authorize};
use crate::db::entity::{external_identity, identity_provider, membership, tenant, user};
use crate::db::now_ms;

/// Session key of a sign-in in progress (state, nonce, PKCE verifier).
const PENDING_KEY: &str = "oidc_pending";
/// Session key of what RP-initiated logout needs after a single sign-on.
const LOGOUT_KEY: &str = "oidc_logout";
/// Session key of why the last single sign-on was refused, shown once on the sign-in page.
const REFUSAL_KEY: &str = "oidc_refusal";
/// A sign-in left at the provider longer than this must start over.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Provider metadata and keys are re-read this often (and at once when a token names an
/// unknown key, which is how providers rotate keys).
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);

// ---------------------------------------------------------------------------------------
// Provider administration
// ---------------------------------------------------------------------------------------

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
    /// Role for users no rule matches.
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

fn rules_of(row: &identity_provider::Model) -> Vec<RoleRule> {
    serde_json::from_str(&row.role_rules).unwrap_or_default()
}

impl Controller {
    /// The identity providers, for provider admins.
    pub async fn identity_provider_list(
        &self,
        actor: Option<&Actor>,
    ) -> Result<Vec<ProviderInfo>, Error> {
        authorize(actor, Action::IdentityProviderWrite)?;
        let rows = identity_provider::Entity::find()
            .order_by_asc(identity_provider::Column::Name)
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        let tenants: HashMap<Uuid, String> = tenant::Entity::find()
            .all(&self.db)
            .await
            .map_err(Error::internal)?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        Ok(rows
            .into_iter()
            .map(|r| ProviderInfo {
                role_rules: rules_of(&r),
                tenant: tenants.get(&r.tenant_id).cloned().unwrap_or_default(),
                name: r.name,
                display_name: r.display_name,
                issuer_url: r.issuer_url,
                client_id: r.client_id,
                email_domains: r.email_domains,
                group_claim: r.group_claim,
                default_role: r.default_role,
            })
            .collect())
    }

    /// Adds an identity provider; everything is checked before anything is written.
    pub async fn identity_provider_create(
        &self,
        actor: Option<&Actor>,
        create: &ProviderCreate,
    ) -> Result<ProviderInfo, Error> {
        let result = self.identity_provider_create_unaudited(actor, create).await;
        self.audited(
            actor,
            "identity_provider.create",
            "identity_provider",
            create.name.trim(),
            result,
        )
        .await
    }

    async fn identity_provider_create_unaudited(
        &self,
        actor: Option<&Actor>,
        create: &ProviderCreate,
    ) -> Result<ProviderInfo, Error> {
        authorize(actor, Action::IdentityProviderWrite)?;
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
        let parsed = openidconnect::url::Url::parse(issuer)
            .map_err(|_| Error::invalid(format!("The issuer URL \"{issuer}\" is not a URL.")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(Error::invalid(format!(
                "The issuer URL \"{issuer}\" must start with https:// (or http:// on loopback)."
            )));
        }
        let client_id = create.client_id.trim();
        if client_id.is_empty() {
            return Err(Error::invalid(
                "The client ID is empty; copy it from the identity provider's client settings.",
            ));
        }
        let default_role = create.default_role.trim();
        check_role(default_role, "default role")?;
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
        let tenant_name = create.tenant.trim();
        let tenant = tenant::Entity::find()
            .filter(tenant::Column::Name.eq(tenant_name))
            .one(&self.db)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("tenant", tenant_name))?;
        let exists = identity_provider::Entity::find()
            .filter(identity_provider::Column::Name.eq(name))
            .one(&self.db)
            .await
            .map_err(Error::internal)?;
        if exists.is_some() {
            return Err(Error::Conflict {
                message: format!(
                    "An identity provider named {name} already exists; pick another name."
                ),
            });
        }
        let row = identity_provider::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(name.to_owned()),
            display_name: Set(display_name.to_owned()),
            issuer_url: Set(issuer.to_owned()),
            client_id: Set(client_id.to_owned()),
            client_secret: Set(create.client_secret.trim().to_owned()),
            tenant_id: Set(tenant.id),
            email_domains: Set(domains.join(",")),
            group_claim: Set(group_claim.to_owned()),
            role_rules: Set(serde_json::to_string(&create.role_rules).map_err(Error::internal)?),
            default_role: Set(default_role.to_owned()),
            created_at: Set(now_ms()),
        }
        .insert(&self.db)
        .await
        .map_err(|e| match e.sql_err() {
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_)) => Error::Conflict {
                message: format!(
                    "An identity provider named {name} already exists; pick another name."
                ),
            },
            _ => Error::internal(e),
        })?;
        Ok(ProviderInfo {
            role_rules: rules_of(&row),
            tenant: tenant.name,
            name: row.name,
            display_name: row.display_name,
            issuer_url: row.issuer_url,
            client_id: row.client_id,
            email_domains: row.email_domains,
            group_claim: row.group_claim,
            default_role: row.default_role,
        })
    }

    /// Removes an identity provider. Its users stay (with their roles) but can no longer
    /// sign in through it.
    pub async fn identity_provider_delete(
        &self,
        actor: Option<&Actor>,
        name: &str,
    ) -> Result<(), Error> {
        let result = self.identity_provider_delete_unaudited(actor, name).await;
        self.audited(actor, "identity_provider.delete", "identity_provider", name, result).await
    }

    async fn identity_provider_delete_unaudited(
        &self,
        actor: Option<&Actor>,
        name: &str,
    ) -> Result<(), Error> {
        authorize(actor, Action::IdentityProviderWrite)?;
        let res = identity_provider::Entity::delete_many()
            .filter(identity_provider::Column::Name.eq(name))
            .exec(&self.db)
            .await
            .map_err(Error::internal)?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("identity provider", name));
        }
        Ok(())
    }

    /// The sign-in buttons. Deliberately public (no actor): the sign-in page is for visitors
    /// who are not signed in yet, and only names are returned.
    pub async fn identity_provider_buttons(&self) -> Result<Vec<ProviderButton>, Error> {
        Ok(identity_provider::Entity::find()
            .order_by_asc(identity_provider::Column::DisplayName)
            .all(&self.db)
            .await
            .map_err(Error::internal)?
            .into_iter()
            .map(|r| ProviderButton { name: r.name, display_name: r.display_name })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// The relying party
// ---------------------------------------------------------------------------------------

/// Every claim of the ID token beyond the standard ones; the group claim's name is
/// configured per provider, so it is looked up at sign-in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub claims: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

type Claims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type RpTokenResponse = StandardTokenResponse<
    IdTokenFields<
        ExtraClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;
/// A client built from discovery: authorization URL set, token and userinfo URLs maybe.
type RpClient = openidconnect::Client<
    ExtraClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    RpTokenResponse,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A sign-in in progress, kept in the visitor's session between the two redirects.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    provider_id: Uuid,
    state: String,
    nonce: String,
    pkce_verifier: String,
    started_at: i64,
}

/// What RP-initiated logout needs, kept in the session after a single sign-on.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LogoutHint {
    end_session_endpoint: String,
    id_token: String,
    client_id: String,
    post_logout_redirect_uri: String,
}

/// The provider's redirect back to `/auth/oidc/callback`, as query parameters.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// RFC 9207: the issuer that sent this response, when the provider says.
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

struct Discovered {
    at: Instant,
    metadata: ProviderMetadataWithLogout,
}

/// The portal as an OpenID Connect relying party: an HTTP client that follows no
/// redirects (no SSRF through the provider's answers), the redirect URL registered at the
/// providers, and the discovery cache.
pub struct RelyingParty {
    http: openidconnect::reqwest::Client,
    redirect_url: RedirectUrl,
    post_logout_url: String,
    discovery: tokio::sync::Mutex<HashMap<(Uuid, String), Arc<Discovered>>>,
    /// A token signed with a key we do not know makes us re-read the provider's keys, at
    /// most this often (forged key ids must not turn us into a request amplifier).
    key_refresh_after: Duration,
}

fn refuse(message: impl Into<String>) -> Error {
    Error::invalid(message)
}

fn unreachable_provider(display_name: &str, e: impl std::fmt::Display) -> Error {
    // The detail (a URL and a transport error, never a secret) stays in the server log.
    tracing::warn!(provider = %display_name, error = %e, "identity provider unreachable");
    Error::Unavailable { internal: format!("identity provider {display_name}: {e}") }
}

impl RelyingParty {
    /// `public_url` is where browsers reach the portal, e.g. `https://gpu.example.com`; the
    /// callback is `{public_url}/auth/oidc/callback`.
    pub fn new(public_url: &str) -> Result<Self, Error> {
        let base = public_url.trim_end_matches('/');
        let redirect_url =
            RedirectUrl::new(format!("{base}/auth/oidc/callback")).map_err(|_| {
                Error::invalid(format!("The public URL \"{public_url}\" is not a URL."))
            })?;
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(Error::internal)?;
        Ok(Self {
            http,
            redirect_url,
            post_logout_url: format!("{base}/login"),
            discovery: tokio::sync::Mutex::new(HashMap::new()),
            key_refresh_after: Duration::from_secs(30),
        })
    }

    /// How soon after reading a provider's keys an unknown key id may make us read them
    /// again (default 30 s).
    pub fn with_key_refresh_after(mut self, after: Duration) -> Self {
        self.key_refresh_after = after;
        self
    }

    pub fn redirect_url(&self) -> &str {
        self.redirect_url.as_str()
    }

    async fn metadata(
        &self,
        provider: &identity_provider::Model,
        refresh: bool,
    ) -> Result<Arc<Discovered>, Error> {
        let key = (provider.id, provider.issuer_url.clone());
        // One lock across the fetch: concurrent sign-ins wait for one discovery instead of
        // each fetching it.
        let mut cache = self.discovery.lock().await;
        if !refresh
            && let Some(d) = cache.get(&key)
            && d.at.elapsed() < DISCOVERY_TTL
        {
            return Ok(Arc::clone(d));
        }
        let issuer = IssuerUrl::new(provider.issuer_url.clone()).map_err(|_| {
            refuse(format!(
                "The issuer URL of {} is not a URL; a provider admin must correct it.",
                provider.display_name
            ))
        })?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer, &self.http)
            .await
            .map_err(|e| discovery_error(provider, e))?;
        let d = Arc::new(Discovered { at: Instant::now(), metadata });
        cache.insert(key, Arc::clone(&d));
        Ok(d)
    }

    fn client(&self, provider: &identity_provider::Model, d: &Discovered) -> RpClient {
        let secret = (!provider.client_secret.is_empty())
            .then(|| ClientSecret::new(provider.client_secret.clone()));
        RpClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(provider.client_id.clone()),
            secret,
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    /// Starts a sign-in with the provider `name`: remembers state, nonce and the PKCE
    /// verifier in the session and returns the provider's authorization URL.
    pub async fn begin(
        &self,
        ctl: &Controller,
        session: &Session,
        name: &str,
    ) -> Result<String, Error> {
        let provider = identity_provider::Entity::find()
            .filter(identity_provider::Column::Name.eq(name))
            .one(&ctl.db)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("identity provider", name))?;
        let d = self.metadata(&provider, false).await?;
        let client = self.client(&provider, &d);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge)
            .url();
        let pending = Pending {
            provider_id: provider.id,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            started_at: now_ms(),
        };
        session.insert(PENDING_KEY, pending).await.map_err(Error::internal)?;
        Ok(url.to_string())
    }

    /// Finishes a sign-in from the provider's redirect: on success the session is signed in
    /// (with a fresh id) as the mapped user. Recorded in the audit log either way.
    pub async fn finish(
        &self,
        ctl: &Controller,
        session: &Session,
        callback: &Callback,
    ) -> Result<UserUuid, Error> {
        let result = self.finish_unaudited(ctl, session, callback).await;
        let actor = match &result {
            Ok(user) => ctl.actor(*user).await.ok().flatten(),
            Err(_) => None,
        };
        let username = actor.as_ref().map_or("", |a| a.username.as_str());
        ctl.audit_write(crate::audit::entry_of(
            actor.as_ref(),
            "session.sign_in_sso",
            "user",
            username,
            crate::audit::outcome(&result),
        ))
        .await;
        result
    }

    async fn finish_unaudited(
        &self,
        ctl: &Controller,
        session: &Session,
        callback: &Callback,
    ) -> Result<UserUuid, Error> {
        // One use only: a replayed callback finds nothing.
        let pending: Option<Pending> =
            session.remove(PENDING_KEY).await.map_err(Error::internal)?;
        if let Some(error) = &callback.error {
            let detail = callback.error_description.as_deref().unwrap_or("");
            return Err(refuse(format!(
                "The identity provider refused the sign-in ({}{}{}); sign in again.",
                sanitize(error),
                if detail.is_empty() { "" } else { ": " },
                sanitize(detail)
            )));
        }
        let Some(pending) = pending else {
            return Err(refuse(
                "This sign-in has no state, nonce or PKCE verifier in the session (it expired, \
                 was already used, or was started in another browser); sign in again.",
            ));
        };
        let state = callback.state.as_deref().unwrap_or("");
        if !bool::from(state.as_bytes().ct_eq(pending.state.as_bytes())) {
            return Err(refuse(
                "The state returned by the identity provider does not match this sign-in \
                 (state mismatch); sign in again.",
            ));
        }
        if now_ms() - pending.started_at > PENDING_TTL_MS {
            return Err(refuse("The sign-in took longer than 10 minutes; sign in again."));
        }
        let Some(code) = callback.code.as_deref().filter(|c| !c.is_empty()) else {
            return Err(refuse("The identity provider sent no authorization code; sign in again."));
        };
        let provider = identity_provider::Entity::find_by_id(pending.provider_id)
            .one(&ctl.db)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| {
                refuse("The identity provider was removed during the sign-in; sign in again.")
            })?;
        let display = provider.display_name.clone();
        let mut d = self.metadata(&provider, false).await?;
        if let Some(iss) = &callback.iss
            && iss != d.metadata.issuer().as_str()
        {
            return Err(refuse(format!(
                "The sign-in response came from the issuer {}, not from {} (wrong issuer); \
                 sign in again.",
                sanitize(iss),
                d.metadata.issuer().as_str()
            )));
        }
        let mut client = self.client(&provider, &d);
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| refuse(format!("{display} advertises no token endpoint.")))?
            .set_pkce_verifier(PkceCodeVerifier::new(pending.pkce_verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| token_error(&display, e))?;
        let id_token = token.id_token().ok_or_else(|| {
            refuse(format!("{display} returned no ID token; it must support OpenID Connect."))
        })?;
        let nonce = Nonce::new(pending.nonce.clone());
        let claims: Claims = {
            let first = id_token.claims(&client.id_token_verifier(), &nonce).cloned();
            match first {
                // An unknown key may mean the provider rotated its keys: re-read them once.
                Err(ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                )) if d.at.elapsed() >= self.key_refresh_after => {
                    d = self.metadata(&provider, true).await?;
                    // The at_hash check below needs the new keys too.
                    client = self.client(&provider, &d);
                    id_token
                        .claims(&client.id_token_verifier(), &nonce)
                        .cloned()
                        .map_err(|e| claims_error(&display, d.metadata.issuer().as_str(), e))?
                }
                other => {
                    other.map_err(|e| claims_error(&display, d.metadata.issuer().as_str(), e))?
                }
            }
        };
        // at_hash binds the access token to the ID token; check it when present.
        if let Some(expected) = claims.access_token_hash() {
            let verifier = client.id_token_verifier();
            let alg = id_token.signing_alg().map_err(|_| bad_at_hash())?;
            let key = id_token.signing_key(&verifier).map_err(|_| bad_at_hash())?;
            let actual = AccessTokenHash::from_token(token.access_token(), alg, key)
                .map_err(|_| bad_at_hash())?;
            if !bool::from(actual.as_bytes().ct_eq(expected.as_bytes())) {
                return Err(bad_at_hash());
            }
        }
        let mut identity = Identity::from_claims(&claims, &provider.group_claim);
        // Some providers (oidc-provider by default) put e-mail and groups only in userinfo.
        if (identity.email.is_none() || identity.groups.is_none())
            && let Ok(request) =
                client.user_info(token.access_token().clone(), Some(claims.subject().clone()))
        {
            let info: Result<openidconnect::UserInfoClaims<ExtraClaims, CoreGenderClaim>, _> =
                request.request_async(&self.http).await;
            match info {
                Ok(info) => identity.fill_from_userinfo(&info, &provider.group_claim),
                Err(e) => {
                    tracing::warn!(provider = %provider.name, error = %e, "userinfo request failed")
                }
            }
        }
        let user_id = map_and_store(ctl, &provider, &identity).await?;
        ctl.session_sign_in(session, user_id).await?;
        // A hint left by an earlier sign-in in this browser belongs to another identity.
        session.remove::<LogoutHint>(LOGOUT_KEY).await.map_err(Error::internal)?;
        if let Some(end) = &d.metadata.additional_metadata().end_session_endpoint {
            let hint = LogoutHint {
                end_session_endpoint: end.url().to_string(),
                id_token: id_token.to_string(),
                client_id: provider.client_id.clone(),
                post_logout_redirect_uri: self.post_logout_url.clone(),
            };
            session.insert(LOGOUT_KEY, hint).await.map_err(Error::internal)?;
        }
        tracing::info!(provider = %provider.name, user = %identity.username(&provider.name), "single sign-on");
        Ok(user_id)
    }
}

/// Where to send the browser after signing out a session that signed in through a
/// provider offering RP-initiated logout; `None` otherwise. Call before ending the session.
pub async fn logout_url(session: &Session) -> Result<Option<String>, Error> {
    let hint: Option<LogoutHint> = session.get(LOGOUT_KEY).await.map_err(Error::internal)?;
    Ok(hint.and_then(|h| {
        let mut url = openidconnect::url::Url::parse(&h.end_session_endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", &h.id_token)
            .append_pair("client_id", &h.client_id)
            .append_pair("post_logout_redirect_uri", &h.post_logout_redirect_uri);
        Some(url.to_string())
    }))
}

/// Keeps why a single sign-on was refused for the sign-in page, under a random reference
/// for its URL. (The sentence does not travel in the URL, where a crafted link could put
/// any words on the page; a reference another browser made finds nothing here.)
pub async fn remember_refusal(session: &Session, sentence: &str) -> Result<String, Error> {
    let reference = format!("{:016x}", rand::random::<u64>());
    let kept = (reference.clone(), sentence.to_owned());
    session.insert(REFUSAL_KEY, kept).await.map_err(Error::internal)?;
    Ok(reference)
}

/// The refusal this browser's session keeps under `reference`, if any.
pub async fn refusal(session: &Session, reference: &str) -> Result<Option<String>, Error> {
    let kept: Option<(String, String)> = session.get(REFUSAL_KEY).await.map_err(Error::internal)?;
    Ok(kept.filter(|(r, _)| r == reference).map(|(_, sentence)| sentence))
}

fn discovery_error<RE: std::error::Error + 'static>(
    provider: &identity_provider::Model,
    e: openidconnect::DiscoveryError<RE>,
) -> Error {
    use openidconnect::DiscoveryError as D;
    let (display, issuer) = (&provider.display_name, &provider.issuer_url);
    match e {
        D::Request(e) => unreachable_provider(display, e),
        // The issuer in the document must equal the configured one character for character
        // (a trailing slash is the usual culprit): ID tokens are checked against it.
        D::Validation(_) => refuse(format!(
            "The discovery document of {display} names another issuer than {issuer} (wrong \
             issuer); a provider admin must enter the issuer URL exactly as the provider \
             advertises it."
        )),
        D::Response(status, _, _) => refuse(format!(
            "{display} answered the discovery request for {issuer} with HTTP {status}; a \
             provider admin must check the issuer URL."
        )),
        other => refuse(format!(
            "The discovery document or keys of {display} could not be read ({}); a provider \
             admin must check the issuer URL.",
            sanitize(&other.to_string())
        )),
    }
}

/// Text from the provider shown to the user: printable, short.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn bad_at_hash() -> Error {
    refuse(
        "The ID token's at_hash does not match the access token (a substituted token); sign in \
         again.",
    )
}

fn token_error<RE: std::error::Error + 'static>(
    display: &str,
    e: RequestTokenError<RE, StandardErrorResponse<CoreErrorResponseType>>,
) -> Error {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let detail = r.error_description().map(|d| format!(": {}", sanitize(d)));
            refuse(format!(
                "{display} refused the sign-in code ({}{}); sign in again.",
                r.error().as_ref(),
                detail.unwrap_or_default()
            ))
        }
        RequestTokenError::Request(e) => unreachable_provider(display, e),
        RequestTokenError::Parse(e, _) => {
            refuse(format!("{display} answered the token request with something unreadable ({e})."))
        }
        RequestTokenError::Other(e) => {
            refuse(format!("{display} answered the token request unexpectedly ({}).", sanitize(&e)))
        }
    }
}

fn claims_error(display: &str, issuer: &str, e: ClaimsVerificationError) -> Error {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    let sentence = match e {
        C::InvalidIssuer(_) => format!(
            "The ID token was not issued by {issuer} (wrong issuer); sign in again or ask a \
             provider admin to check the issuer URL."
        ),
        C::InvalidAudience(_) => format!(
            "The ID token was issued for another application (wrong audience); ask a provider \
             admin to check the client ID of {display}."
        ),
        C::Expired(_) => "The ID token has expired (expired token); sign in again.".to_owned(),
        C::InvalidNonce(_) => "The ID token's nonce does not match this sign-in (nonce \
                               mismatch, a replayed or substituted token); sign in again."
            .to_owned(),
        C::SignatureVerification(S::NoSignature) => {
            "The ID token is unsigned (alg=none, unsigned token), which is refused; sign in \
             again."
                .to_owned()
        }
        C::SignatureVerification(S::DisallowedAlg(alg) | S::UnsupportedAlg(alg))
            if alg.contains("none") =>
        {
            "The ID token is unsigned (alg=none, unsigned token), which is refused; sign in \
             again."
                .to_owned()
        }
        C::SignatureVerification(S::DisallowedAlg(alg) | S::UnsupportedAlg(alg)) => format!(
            "The ID token is signed with {}, which {display} does not advertise or the portal \
             does not accept; sign in again.",
            sanitize(&alg)
        ),
        C::SignatureVerification(_) => format!(
            "The ID token's signature does not verify with {display}'s published keys (bad \
             signature); sign in again."
        ),
        other => {
            format!("The ID token was refused ({}); sign in again.", sanitize(&other.to_string()))
        }
    };
    refuse(sentence)
}

// ---------------------------------------------------------------------------------------
// Mapping an identity to a tenant, a role and a user
// ---------------------------------------------------------------------------------------

/// What the portal takes from a verified sign-in.
#[derive(Debug, Clone, Default)]
struct Identity {
    subject: String,
    email: Option<String>,
    email_verified: Option<bool>,
    /// `None` when the provider sent no group claim at all.
    groups: Option<Vec<String>>,
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
    fn from_claims(claims: &Claims, group_claim: &str) -> Self {
        Identity {
            subject: claims.subject().as_str().to_owned(),
            email: claims.email().map(|e| e.as_str().to_ascii_lowercase()),
            email_verified: claims.email_verified(),
            groups: groups_of(claims.additional_claims().claims.get(group_claim)),
        }
    }

    fn fill_from_userinfo(
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

    fn username(&self, provider: &str) -> String {
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
async fn map_and_store(
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
                sessions_valid_after: Set(0),
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

    #[test]
    fn slugs_are_url_safe() {
        assert!(valid_slug("corp-sso"));
        assert!(!valid_slug("Corp SSO"));
        assert!(!valid_slug(""));
        assert!(!valid_slug("a/b"));
    }
}
