//! The relying party: discovery (cached), the authorization request, and the provider's
//! redirect back, which ends in a mapped user. The state between the two redirects is a
//! [`PendingSignIn`] value the web layer keeps (in the visitor's session); what
//! RP-initiated logout needs afterwards is a [`LogoutHint`] it keeps too.

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
    PkceCodeVerifier, ProviderMetadataWithLogout, RedirectUrl, Scope, SignatureVerificationError,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use portal_types::Error;
use portal_types::ids::UserUuid;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::identity::{Identity, map_and_store};
use super::verify::{bad_at_hash, check_issued_at, claims_error, token_error};
use super::{refuse, sanitize};
use crate::Controller;
use crate::datastore::entity::identity_provider;
use crate::datastore::now_ms;

/// A sign-in left at the provider longer than this must start over.
const PENDING_TTL_MS: i64 = 10 * 60 * 1000;
/// Provider metadata and keys are re-read this often (and at once when a token names an
/// unknown key, which is how providers rotate keys).
const DISCOVERY_TTL: Duration = Duration::from_secs(15 * 60);

/// Every claim of the ID token beyond the standard ones; the group claim's name is
/// configured per provider, so it is looked up at sign-in.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExtraClaims {
    #[serde(flatten)]
    pub claims: HashMap<String, serde_json::Value>,
}
impl AdditionalClaims for ExtraClaims {}

pub(super) type Claims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
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

/// A sign-in in progress (state, nonce, PKCE verifier), kept by the web layer in the
/// visitor's session between the two redirects; opaque outside this module.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingSignIn {
    provider_id: Uuid,
    state: String,
    nonce: String,
    pkce_verifier: String,
    started_at: i64,
}

/// What RP-initiated logout needs, kept by the web layer in the session after a single
/// sign-on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogoutHint {
    end_session_endpoint: String,
    id_token: String,
    client_id: String,
    post_logout_redirect_uri: String,
}

/// A finished single sign-on: the mapped user, and what RP-initiated logout needs when the
/// provider offers it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: UserUuid,
    pub logout: Option<LogoutHint>,
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

pub(super) fn unreachable_provider(display_name: &str, e: impl std::fmt::Display) -> Error {
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
        // Also checked when the provider is added; this catches rows stored before that.
        if !super::providers::issuer_is_safe(&provider.issuer_url) {
            return Err(refuse(format!(
                "The issuer URL of {} uses plain http:// on a host that is not loopback (allowed \
                 only on loopback); a provider admin must change it to https://.",
                provider.display_name
            )));
        }
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

    fn client(
        &self,
        provider: &identity_provider::Model,
        d: &Discovered,
        secret: Option<ClientSecret>,
    ) -> RpClient {
        RpClient::from_provider_metadata(
            d.metadata.clone(),
            ClientId::new(provider.client_id.clone()),
            secret,
        )
        .set_redirect_uri(self.redirect_url.clone())
    }

    /// Starts a sign-in with the provider `name`: the provider's authorization URL, and the
    /// state, nonce and PKCE verifier to keep until its redirect back.
    pub async fn begin(
        &self,
        ctl: &Controller,
        name: &str,
    ) -> Result<(String, PendingSignIn), Error> {
        let provider = ctl
            .datastore
            .identity_provider_by_name(name)
            .await?
            .ok_or_else(|| Error::not_found("identity provider", name))?;
        let d = self.metadata(&provider, false).await?;
        // The authorization request carries no secret.
        let client = self.client(&provider, &d, None);
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
        let pending = PendingSignIn {
            provider_id: provider.id,
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            pkce_verifier: verifier.secret().clone(),
            started_at: now_ms(),
        };
        Ok((url.to_string(), pending))
    }

    /// Finishes a sign-in from the provider's redirect, given the sign-in that was pending
    /// (taken out of the session: one use only): on success the mapped user, whom the web
    /// layer then signs in with a fresh session id. Recorded in the audit log either way.
    pub async fn finish(
        &self,
        ctl: &Controller,
        pending: Option<PendingSignIn>,
        callback: &Callback,
    ) -> Result<SignedIn, Error> {
        let result = self.finish_unaudited(ctl, pending, callback).await;
        let actor = match &result {
            Ok(signed_in) => ctl.actor(signed_in.user_id).await.ok().flatten(),
            Err(_) => None,
        };
        let username = actor.as_ref().map_or("", |a| a.username.as_str());
        ctl.audit_write(&crate::app::audit::entry_of(
            actor.as_ref(),
            "session.sign_in_sso",
            "user",
            username,
            crate::app::audit::outcome(&result),
        ))
        .await;
        result
    }

    async fn finish_unaudited(
        &self,
        ctl: &Controller,
        pending: Option<PendingSignIn>,
        callback: &Callback,
    ) -> Result<SignedIn, Error> {
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
        let provider =
            ctl.datastore.identity_provider_by_id(pending.provider_id).await?.ok_or_else(|| {
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
        let secret = ctl.client_secret(&provider)?;
        let mut client = self.client(&provider, &d, secret.clone());
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
                    client = self.client(&provider, &d, secret);
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
        check_issued_at(&claims)?;
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
        if (identity.email.is_none()
            || identity.email_verified.is_none()
            || identity.groups.is_none())
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
        let logout =
            d.metadata.additional_metadata().end_session_endpoint.as_ref().map(|end| LogoutHint {
                end_session_endpoint: end.url().to_string(),
                id_token: id_token.to_string(),
                client_id: provider.client_id.clone(),
                post_logout_redirect_uri: self.post_logout_url.clone(),
            });
        tracing::info!(provider = %provider.name, user = %user_id, "single sign-on");
        Ok(SignedIn { user_id, logout })
    }
}

impl LogoutHint {
    /// Where to send the browser after signing out, to end the session at the provider
    /// too; `None` if the provider's end-session endpoint is not a URL.
    pub fn url(&self) -> Option<String> {
        let mut url = openidconnect::url::Url::parse(&self.end_session_endpoint).ok()?;
        url.query_pairs_mut()
            .append_pair("id_token_hint", &self.id_token)
            .append_pair("client_id", &self.client_id)
            .append_pair("post_logout_redirect_uri", &self.post_logout_redirect_uri);
        Some(url.to_string())
    }
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
