//! Single sign-on against an in-process OpenID provider that can be told to misbehave:
//! every refusal the relying party owes (wrong issuer, wrong audience, bad signature,
//! `alg=none`, expired token, nonce, state and PKCE mismatches, bad `at_hash`, e-mail
//! domains) and the happy path that creates the user in the mapped tenant with the mapped
//! role.
//!
//! The provider is axum on 127.0.0.1:0 serving discovery, JWKS, a token endpoint that checks
//! the client secret and the PKCE verifier, and userinfo. The browser's trip to the
//! authorization endpoint is played by the test: it reads state, nonce and the PKCE challenge
//! off the authorization URL, as the provider's login page would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use openidconnect::core::{
    CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
    CoreRsaPrivateSigningKey,
};
use openidconnect::{
    AccessToken, IdToken, IdTokenClaims, JsonWebKeyId, PkceCodeChallenge, PkceCodeVerifier,
    PrivateSigningKey,
};
use portal_controller::authz::{Actor, Role};
use portal_controller::datastore::entity::identity_provider;
use portal_controller::oidc::{
    Callback, ExtraClaims, LogoutHint, PendingSignIn, ProviderCreate, ProviderUpdate, RelyingParty,
    RoleRule, SecretKeys,
};
use portal_controller::{Controller, ControllerConfig, OpContext};
use portal_types::Error;
use portal_types::ids::{GenericUuid, UserUuid};
use serde_json::json;

fn op(actor: &Actor) -> OpContext {
    OpContext::for_session(Some(actor.clone()))
}

const CLIENT_ID: &str = "portal";
const CLIENT_SECRET: &str = "portal-secret";
/// `Basic base64("portal:portal-secret")`: how the relying party authenticates at the token
/// endpoint (client_secret_basic).
const CLIENT_BASIC: &str = "Basic cG9ydGFsOnBvcnRhbC1zZWNyZXQ=";
const ADMIN_PASSWORD: &str = "correct horse battery staple";

type SignedIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

/// How the provider misbehaves when it issues the next ID token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Misbehave {
    #[default]
    Nothing,
    WrongIssuer,
    WrongAudience,
    BadSignature,
    AlgNone,
    Expired,
    WrongNonce,
    BadAtHash,
    /// E-mail and groups only from userinfo, as oidc-provider does by default.
    ClaimsOnlyInUserinfo,
    /// No `email_verified` claim, neither in the ID token nor from userinfo.
    EmailVerifiedMissing,
    /// `email_verified: false` in both.
    EmailUnverified,
    /// `iat` ten minutes ahead of the portal's clock.
    IssuedInFuture,
    /// `iat` 30 s ahead: clock skew the portal tolerates.
    IssuedSlightlyAhead,
}

impl Misbehave {
    /// The `email_verified` claim the provider sends with an e-mail address.
    fn email_verified(self) -> Option<bool> {
        match self {
            Misbehave::EmailVerifiedMissing => None,
            Misbehave::EmailUnverified => Some(false),
            _ => Some(true),
        }
    }
}

/// What the provider's login page learnt from the authorization request.
#[derive(Debug, Clone)]
struct Grant {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    subject: String,
    email: Option<String>,
    groups: Vec<String>,
}

struct IdpState {
    issuer: String,
    key: CoreRsaPrivateSigningKey,
    foreign_key: CoreRsaPrivateSigningKey,
    /// The key after a rotation: another key id, published in place of `key`.
    next_key: CoreRsaPrivateSigningKey,
    rotated: std::sync::atomic::AtomicBool,
    misbehave: Mutex<Misbehave>,
    codes: Mutex<HashMap<String, Grant>>,
    access_tokens: Mutex<HashMap<String, Grant>>,
}

struct Idp {
    state: Arc<IdpState>,
}

impl Idp {
    async fn start() -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let kid = Some(JsonWebKeyId::new("test-key".into()));
        let state = Arc::new(IdpState {
            issuer,
            key: CoreRsaPrivateSigningKey::from_pem(PROVIDER_KEY, kid.clone()).unwrap(),
            // Same key id: only the signature can tell the two apart.
            foreign_key: CoreRsaPrivateSigningKey::from_pem(FOREIGN_KEY, kid).unwrap(),
            next_key: CoreRsaPrivateSigningKey::from_pem(
                FOREIGN_KEY,
                Some(JsonWebKeyId::new("next-key".into())),
            )
            .unwrap(),
            rotated: std::sync::atomic::AtomicBool::new(false),
            misbehave: Mutex::default(),
            codes: Mutex::default(),
            access_tokens: Mutex::default(),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .route("/token", post(token))
            .route("/userinfo", get(userinfo))
            .with_state(Arc::clone(&state));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Idp { state }
    }

    fn issuer(&self) -> &str {
        &self.state.issuer
    }

    /// Replaces the signing key with one of another id, as providers rotate keys.
    fn rotate_key(&self) {
        self.state.rotated.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    fn misbehave(&self, how: Misbehave) {
        *self.state.misbehave.lock().unwrap() = how;
    }

    /// Plays the browser at the authorization endpoint: the user `subject` signs in, and the
    /// provider answers with a code for the redirect URI. `challenge` overrides the PKCE
    /// challenge the provider remembers (to test a verifier that does not match).
    fn authorize(
        &self,
        auth_url: &str,
        subject: &str,
        email: Option<&str>,
        groups: &[&str],
        challenge: Option<String>,
    ) -> Callback {
        let url = openidconnect::url::Url::parse(auth_url).unwrap();
        assert!(auth_url.starts_with(&format!("{}/authorize?", self.issuer())), "{auth_url}");
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        assert_eq!(q["response_type"], "code");
        assert_eq!(q["code_challenge_method"], "S256", "PKCE must be S256");
        assert!(q["scope"].split(' ').any(|s| s == "openid"));
        let code = format!("code-{}", uuid::Uuid::new_v4());
        self.state.codes.lock().unwrap().insert(
            code.clone(),
            Grant {
                client_id: q["client_id"].clone(),
                redirect_uri: q["redirect_uri"].clone(),
                challenge: challenge.unwrap_or_else(|| q["code_challenge"].clone()),
                nonce: q["nonce"].clone(),
                subject: subject.to_owned(),
                email: email.map(str::to_owned),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        );
        Callback { code: Some(code), state: Some(q["state"].clone()), ..Default::default() }
    }
}

async fn discovery(State(s): State<Arc<IdpState>>) -> Json<serde_json::Value> {
    let i = &s.issuer;
    Json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "end_session_endpoint": format!("{i}/session/end"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    }))
}

async fn jwks(State(s): State<Arc<IdpState>>) -> Json<CoreJsonWebKeySet> {
    Json(CoreJsonWebKeySet::new(vec![s.signing_key().as_verification_key()]))
}

impl IdpState {
    fn signing_key(&self) -> &CoreRsaPrivateSigningKey {
        if self.rotated.load(std::sync::atomic::Ordering::SeqCst) {
            &self.next_key
        } else {
            &self.key
        }
    }
}

fn oauth_error(error: &str, description: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": error, "error_description": description })))
        .into_response()
}

/// The token endpoint, honest about client authentication and PKCE; what it puts in the
/// ID token follows the current misbehaviour.
async fn token(
    State(s): State<Arc<IdpState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(CLIENT_BASIC) {
        return oauth_error("invalid_client", "client authentication failed");
    }
    if form.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return oauth_error("unsupported_grant_type", "only authorization_code");
    }
    let Some(grant) = form.get("code").and_then(|c| s.codes.lock().unwrap().remove(c)) else {
        return oauth_error("invalid_grant", "unknown or used code");
    };
    if grant.client_id != CLIENT_ID || form.get("redirect_uri") != Some(&grant.redirect_uri) {
        return oauth_error("invalid_grant", "code issued to another client or redirect URI");
    }
    let Some(verifier) = form.get("code_verifier") else {
        return oauth_error("invalid_grant", "PKCE verification failed: code_verifier missing");
    };
    let computed =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.clone()));
    if computed.as_str() != grant.challenge {
        return oauth_error("invalid_grant", "PKCE verification failed");
    }
    let how = *s.misbehave.lock().unwrap();
    let access_token = format!("at-{}", uuid::Uuid::new_v4());
    s.access_tokens.lock().unwrap().insert(access_token.clone(), grant.clone());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (iat, exp) = match how {
        Misbehave::Expired => (now - 7200, now - 3600),
        Misbehave::IssuedInFuture => (now + 600, now + 900),
        Misbehave::IssuedSlightlyAhead => (now + 30, now + 330),
        _ => (now, now + 300),
    };
    let mut claims = json!({
        "iss": if how == Misbehave::WrongIssuer { "http://evil.example".to_owned() } else { s.issuer.clone() },
        "aud": [if how == Misbehave::WrongAudience { "someone-else" } else { CLIENT_ID }],
        "iat": iat,
        "exp": exp,
        "sub": grant.subject,
        "nonce": if how == Misbehave::WrongNonce { "another-nonce".to_owned() } else { grant.nonce.clone() },
    });
    if how != Misbehave::ClaimsOnlyInUserinfo {
        if let Some(email) = &grant.email {
            claims["email"] = json!(email);
            if let Some(verified) = how.email_verified() {
                claims["email_verified"] = json!(verified);
            }
        }
        claims["groups"] = json!(grant.groups);
    }
    let claims: IdTokenClaims<ExtraClaims, CoreGenderClaim> =
        serde_json::from_value(claims).unwrap();
    let key = if how == Misbehave::BadSignature { &s.foreign_key } else { s.signing_key() };
    let hashed = if how == Misbehave::BadAtHash {
        AccessToken::new("not-the-access-token".into())
    } else {
        AccessToken::new(access_token.clone())
    };
    let signed = SignedIdToken::new(
        claims,
        key,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        Some(&hashed),
        None,
    )
    .unwrap()
    .to_string();
    let id_token = if how == Misbehave::AlgNone {
        // {"alg":"none","typ":"JWT"}, the same claims, no signature.
        let payload = signed.split('.').nth(1).unwrap();
        format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.")
    } else {
        signed
    };
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

async fn userinfo(State(s): State<Arc<IdpState>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(grant) = s.access_tokens.lock().unwrap().get(bearer).cloned() else {
        return StatusCode::UNAUTHORIZED.into_response();
    };
    let mut info = json!({ "sub": grant.subject, "email": grant.email, "groups": grant.groups });
    if let Some(verified) = s.misbehave.lock().unwrap().email_verified() {
        info["email_verified"] = json!(verified);
    }
    Json(info).into_response()
}

// ---------------------------------------------------------------------------------------

struct Portal {
    database_url: String,
    controller: Arc<Controller>,
    admin: Actor,
    rp: RelyingParty,
    idp: Idp,
}

/// Opens the control plane on `database_url` with `keys` and signs the admin in.
async fn open(database_url: &str, keys: SecretKeys) -> Result<(Arc<Controller>, Actor), String> {
    let controller = Controller::open(&ControllerConfig {
        admin_password: Some(ADMIN_PASSWORD.to_owned()),
        secret_keys: keys,
        ..ControllerConfig::new(database_url)
    })
    .await
    .map_err(|e| e.to_string())?;
    let admin_id = controller.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    let admin = controller.actor(admin_id).await.unwrap().unwrap();
    Ok((controller, admin))
}

/// What a provider admin enters for another provider at the test's identity provider.
fn provider(name: &str, issuer: &str, default_role: &str) -> ProviderCreate {
    ProviderCreate {
        name: name.into(),
        issuer_url: issuer.to_owned(),
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        tenant: "default".into(),
        role_rules: vec![RoleRule { group: "ml-team".into(), role: "member".into() }],
        default_role: default_role.into(),
        ..Default::default()
    }
}

fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portal-oidc-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}?mode=rwc", dir.join("portal.db").display())
}

/// A portal with one provider `corp` into the default tenant: group `ml-team` → member,
/// `admins` → tenant-admin, anyone else a viewer.
async fn portal(name: &str, email_domains: &str) -> Portal {
    portal_on(&sqlite_url(name), email_domains).await
}

/// A fresh PostgreSQL database, or `None` when the run has no PostgreSQL (see `.ci/test`).
async fn postgres_url() -> Option<String> {
    use sea_orm::ConnectionTrait;
    let Ok(admin_url) = std::env::var("PORTAL_TEST_POSTGRES_URL") else {
        eprintln!("PORTAL_TEST_POSTGRES_URL is not set; skipping the PostgreSQL variant");
        return None;
    };
    let db_name = format!("portal_oidc_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(&admin_url).await.expect("PostgreSQL reachable");
    admin.execute_unprepared(&format!("CREATE DATABASE \"{db_name}\"")).await.unwrap();
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{db_name}"))
}

async fn portal_on(database_url: &str, email_domains: &str) -> Portal {
    portal_with(database_url, email_domains, SecretKeys::new([7; 32], None)).await
}

async fn portal_with(database_url: &str, email_domains: &str, keys: SecretKeys) -> Portal {
    let (controller, admin) = open(database_url, keys).await.expect("controller opens");
    let idp = Idp::start().await;
    controller
        .identity_provider_create(
            &op(&admin),
            &ProviderCreate {
                name: "corp".into(),
                display_name: "Corp SSO".into(),
                issuer_url: idp.issuer().to_owned(),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                tenant: "default".into(),
                email_domains: email_domains.into(),
                group_claim: "groups".into(),
                role_rules: vec![
                    RoleRule { group: "ml-team".into(), role: "member".into() },
                    RoleRule { group: "admins".into(), role: "tenant-admin".into() },
                ],
                default_role: "viewer".into(),
            },
        )
        .await
        .expect("provider created");
    let rp = RelyingParty::new("http://127.0.0.1:3000").unwrap();
    Portal { database_url: database_url.to_owned(), controller, admin, rp, idp }
}

/// A browser's session as the web layer (`portal-web`) keeps it between the redirects: the
/// pending sign-in and, after a single sign-on, the logout hint. (Cookies, the session id
/// and its rotation at sign-in are the web layer's and tested there.)
#[derive(Default)]
struct Session {
    pending: Mutex<Option<PendingSignIn>>,
    logout: Mutex<Option<LogoutHint>>,
}

impl Session {
    /// Where signing out sends the browser after a single sign-on, if anywhere.
    fn logout_url(&self) -> Option<String> {
        self.logout.lock().unwrap().as_ref().and_then(LogoutHint::url)
    }
}

fn session(_: &Portal) -> Session {
    Session::default()
}

/// Starts a sign-in as the web layer does: the pending sign-in is kept in the session.
async fn begin(
    rp: &RelyingParty,
    ctl: &Controller,
    session: &Session,
    name: &str,
) -> Result<String, Error> {
    let (url, pending) = rp.begin(ctl, name).await?;
    *session.pending.lock().unwrap() = Some(pending);
    Ok(url)
}

/// Finishes a sign-in as the web layer does: the pending sign-in is taken (one use only).
async fn finish(
    rp: &RelyingParty,
    ctl: &Controller,
    session: &Session,
    callback: &Callback,
) -> Result<UserUuid, Error> {
    let pending = session.pending.lock().unwrap().take();
    let signed_in = rp.finish(ctl, pending, callback).await?;
    *session.logout.lock().unwrap() = signed_in.logout;
    Ok(signed_in.user_id)
}

impl Portal {
    /// Stops this control plane and starts another on the same database with `keys`, as an
    /// operator restarting the portal does; the identity provider keeps running.
    async fn restart(&mut self, keys: SecretKeys) -> Result<(), String> {
        self.controller.stop();
        let (controller, admin) = open(&self.database_url, keys).await?;
        self.controller = controller;
        self.admin = admin;
        // A new process: no discovery cached.
        self.rp = RelyingParty::new("http://127.0.0.1:3000").unwrap();
        Ok(())
    }

    /// The identity provider row `name` as stored.
    async fn stored_provider(&self, name: &str) -> identity_provider::Model {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        identity_provider::Entity::find()
            .filter(identity_provider::Column::Name.eq(name))
            .one(self.controller.datastore().connection())
            .await
            .unwrap()
            .expect("provider stored")
    }

    /// One whole sign-in of `subject` through the provider `corp`.
    async fn sign_in(
        &self,
        session: &Session,
        subject: &str,
        email: Option<&str>,
        groups: &[&str],
    ) -> Result<Actor, Error> {
        self.sign_in_with("corp", session, subject, email, groups).await
    }

    /// One whole sign-in of `subject` through the portal's provider named `provider`.
    async fn sign_in_with(
        &self,
        provider: &str,
        session: &Session,
        subject: &str,
        email: Option<&str>,
        groups: &[&str],
    ) -> Result<Actor, Error> {
        let url = begin(&self.rp, &self.controller, session, provider).await?;
        let callback = self.idp.authorize(&url, subject, email, groups, None);
        let user = finish(&self.rp, &self.controller, session, &callback).await?;
        Ok(self.controller.actor(user).await?.expect("signed-in user has an actor"))
    }

    /// A sign-in the provider spoils in the way `how`; returns the refusal.
    async fn refused(&self, how: Misbehave) -> String {
        self.idp.misbehave(how);
        let result = self.sign_in(&session(self), "mallory", Some("m@example.com"), &[]).await;
        self.idp.misbehave(Misbehave::Nothing);
        let err = result.expect_err(&format!("{how:?} must be refused"));
        assert_eq!(err.status_code(), 400, "{how:?}: {err}");
        err.to_string()
    }
}

fn assert_sentence(message: &str, needle: &str) {
    assert!(message.contains(needle), "expected \"{needle}\" in: {message}");
    assert!(message.ends_with('.'), "one sentence: {message}");
    assert!(!message.contains("at-"), "no tokens in messages: {message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn first_sign_in_creates_the_user_in_the_mapped_tenant_with_the_mapped_role() {
    let p = portal("happy", "").await;
    let s = session(&p);
    let alice = p.sign_in(&s, "alice-sub", Some("Alice@Example.com"), &["ml-team"]).await.unwrap();
    assert_eq!(alice.username, "alice@example.com (corp)");
    assert_eq!(alice.tenant_name, "default");
    assert_eq!(alice.role, Role::Member);
    assert!(!alice.provider_admin);
    // The session is signed in as her, and RP-initiated logout is offered with the hint.
    let logout = s.logout_url().expect("end_session");
    assert!(logout.starts_with(&format!("{}/session/end?id_token_hint=ey", p.idp.issuer())));
    assert!(logout.contains("post_logout_redirect_uri=http%3A%2F%2F127.0.0.1%3A3000%2Flogin"));

    // Later sign-ins find the same user; the groups decide the role each time.
    let again = p
        .sign_in(&session(&p), "alice-sub", Some("alice@example.com"), &["ml-team", "admins"])
        .await
        .unwrap();
    assert_eq!(again.user_id, alice.user_id);
    assert_eq!(again.role, Role::TenantAdmin);
    let demoted =
        p.sign_in(&session(&p), "alice-sub", Some("alice@example.com"), &[]).await.unwrap();
    assert_eq!(demoted.user_id, alice.user_id);
    assert_eq!(demoted.role, Role::Viewer, "no matching group: the default role");

    // Without an e-mail address the user is named by the subject.
    let bob = p.sign_in(&session(&p), "bob-sub", None, &["ml-team"]).await.unwrap();
    assert_eq!(bob.username, "bob-sub (corp)");
    assert_eq!(bob.role, Role::Member);
}

#[tokio::test(flavor = "multi_thread")]
async fn single_sign_on_works_on_postgres() {
    let Some(url) = postgres_url().await else { return };
    let p = portal_on(&url, "example.com").await;
    let s = session(&p);
    let url = begin(&p.rp, &p.controller, &s, "corp").await.unwrap();
    let callback = p.idp.authorize(&url, "dana-sub", Some("dana@example.com"), &["admins"], None);
    let user = finish(&p.rp, &p.controller, &s, &callback).await.unwrap();
    let dana = p.controller.actor(user).await.unwrap().unwrap();
    assert_eq!((dana.username.as_str(), dana.role), ("dana@example.com (corp)", Role::TenantAdmin));
    // Refusals write nothing on PostgreSQL either.
    assert_sentence(&p.refused(Misbehave::WrongAudience).await, "wrong audience");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_problems_are_named() {
    let p = portal("discovery", "").await;
    let add = |name: &str, issuer: String| ProviderCreate {
        name: name.into(),
        issuer_url: issuer,
        client_id: CLIENT_ID.into(),
        tenant: "default".into(),
        default_role: "viewer".into(),
        ..Default::default()
    };
    // A trailing slash: discovery answers with the issuer without it.
    let slash = add("slash", format!("{}/", p.idp.issuer()));
    p.controller.identity_provider_create(&op(&p.admin), &slash).await.unwrap();
    let err = begin(&p.rp, &p.controller, &session(&p), "slash").await.unwrap_err();
    assert_sentence(&err.to_string(), "wrong issuer");
    // Nothing listens there: unavailable (503), the detail only in the log.
    let gone = add("gone", "http://127.0.0.1:9".into());
    p.controller.identity_provider_create(&op(&p.admin), &gone).await.unwrap();
    let err = begin(&p.rp, &p.controller, &session(&p), "gone").await.unwrap_err();
    assert_eq!(err.status_code(), 503);
}

#[tokio::test(flavor = "multi_thread")]
async fn claims_missing_from_the_id_token_come_from_userinfo() {
    let p = portal("userinfo", "example.com").await;
    p.idp.misbehave(Misbehave::ClaimsOnlyInUserinfo);
    let carol = p
        .sign_in(&session(&p), "carol-sub", Some("carol@example.com"), &["ml-team"])
        .await
        .unwrap();
    assert_eq!(carol.username, "carol@example.com (corp)");
    assert_eq!(carol.role, Role::Member);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_id_token_is_refused_with_its_sentence() {
    let p = portal("refusals", "").await;
    assert_sentence(&p.refused(Misbehave::WrongIssuer).await, "wrong issuer");
    assert_sentence(&p.refused(Misbehave::WrongAudience).await, "wrong audience");
    assert_sentence(&p.refused(Misbehave::BadSignature).await, "bad signature");
    assert_sentence(&p.refused(Misbehave::AlgNone).await, "alg=none");
    assert_sentence(&p.refused(Misbehave::Expired).await, "expired token");
    assert_sentence(&p.refused(Misbehave::WrongNonce).await, "nonce mismatch");
    assert_sentence(&p.refused(Misbehave::BadAtHash).await, "at_hash does not match");
    // Nothing was written by any of them: the admin is still the only user.
    use sea_orm::{EntityTrait, PaginatorTrait};
    let users = portal_controller::datastore::entity::user::Entity::find()
        .count(p.controller.datastore().connection())
        .await
        .unwrap();
    assert_eq!(users, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_and_pkce_are_checked() {
    let p = portal("state-pkce", "").await;

    // A callback whose state is not the one this session sent.
    let s = session(&p);
    let url = begin(&p.rp, &p.controller, &s, "corp").await.unwrap();
    let mut callback = p.idp.authorize(&url, "eve", None, &[], None);
    callback.state = Some("forged-state".into());
    let err = finish(&p.rp, &p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "state mismatch");
    // The pending sign-in was used up: the genuine state no longer works either.
    let err = finish(&p.rp, &p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "sign in again");

    // A callback arriving in a session that never started a sign-in (no PKCE verifier).
    let url = begin(&p.rp, &p.controller, &session(&p), "corp").await.unwrap();
    let callback = p.idp.authorize(&url, "eve", None, &[], None);
    let err = finish(&p.rp, &p.controller, &session(&p), &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "no state, nonce or PKCE verifier");

    // The provider saw a different PKCE challenge than our verifier answers.
    let s = session(&p);
    let url = begin(&p.rp, &p.controller, &s, "corp").await.unwrap();
    let (other_challenge, _) = PkceCodeChallenge::new_random_sha256();
    let callback =
        p.idp.authorize(&url, "eve", None, &[], Some(other_challenge.as_str().to_owned()));
    let err = finish(&p.rp, &p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "PKCE verification failed");

    // RFC 9207: a response naming another issuer (a mix-up attack) is refused.
    let s = session(&p);
    let url = begin(&p.rp, &p.controller, &s, "corp").await.unwrap();
    let mut callback = p.idp.authorize(&url, "eve", None, &[], None);
    callback.iss = Some("http://evil.example".into());
    let err = finish(&p.rp, &p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "(wrong issuer)");

    // The provider's own refusal is passed on as a sentence.
    let s = session(&p);
    begin(&p.rp, &p.controller, &s, "corp").await.unwrap();
    let denied = Callback {
        error: Some("access_denied".into()),
        error_description: Some("End-User aborted interaction".into()),
        ..Default::default()
    };
    let err = finish(&p.rp, &p.controller, &s, &denied).await.unwrap_err();
    assert_sentence(&err.to_string(), "access_denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_domains_and_existing_accounts_are_respected() {
    let p = portal("domains", "example.com").await;
    let err = p.sign_in(&session(&p), "x", Some("x@evil.test"), &["ml-team"]).await.unwrap_err();
    assert_sentence(&err.to_string(), "not in a domain admitted");
    let err = p.sign_in(&session(&p), "y", None, &["ml-team"]).await.unwrap_err();
    assert_sentence(&err.to_string(), "sent no e-mail address");
    // A provider asserting the local admin's name does not get the admin account: its user
    // is another account, named after the provider.
    let p2 = portal("takeover", "").await;
    let other = p2.sign_in(&session(&p2), "admin-sub", Some("admin"), &["admins"]).await.unwrap();
    assert_ne!(other.user_id, p2.admin.user_id);
    assert_eq!(other.username, "admin (corp)");
    assert!(!other.provider_admin);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_provider_admins_manage_providers_and_input_is_checked() {
    let p = portal("admin", "").await;
    let viewer = p.sign_in(&session(&p), "v", Some("v@example.com"), &[]).await.unwrap();
    let err = p.controller.identity_provider_list(&op(&viewer)).await.unwrap_err();
    assert_eq!(err.status_code(), 403);
    assert_eq!(
        p.controller
            .identity_provider_list(&OpContext::anonymous())
            .await
            .unwrap_err()
            .status_code(),
        401
    );
    let bad = |f: fn(&mut ProviderCreate)| {
        let mut c = ProviderCreate {
            name: "other".into(),
            issuer_url: "https://idp.example.com".into(),
            client_id: "c".into(),
            tenant: "default".into(),
            default_role: "viewer".into(),
            ..Default::default()
        };
        f(&mut c);
        c
    };
    for (create, needle) in [
        (bad(|c| c.name = "Has Spaces".into()), "lower-case"),
        (bad(|c| c.issuer_url = "not a url".into()), "is not a URL"),
        (bad(|c| c.default_role = "boss".into()), "is not a role"),
        (bad(|c| c.tenant = "nope".into()), "No tenant named nope"),
        (bad(|c| c.name = "corp".into()), "already exists"),
        (bad(|c| c.email_domains = "not-a-domain".into()), "is not a domain"),
    ] {
        let err = p.controller.identity_provider_create(&op(&p.admin), &create).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    let buttons = p.controller.identity_provider_buttons().await.unwrap();
    assert_eq!(buttons.len(), 1);
    assert_eq!((buttons[0].name.as_str(), buttons[0].display_name.as_str()), ("corp", "Corp SSO"));
    p.controller.identity_provider_delete(&op(&p.admin), "corp").await.unwrap();
    let err = begin(&p.rp, &p.controller, &session(&p), "corp").await.unwrap_err();
    assert_eq!(err.status_code(), 404);
}

/// A provider read and changed in place: the next sign-in uses its new settings, its client
/// secret stays unless a new one is given, everything is checked as when it is added, and
/// only provider admins do it.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_is_read_and_changed_in_place() {
    let p = portal("update", "").await;
    let (ctl, admin) = (&p.controller, &op(&p.admin));
    let read = ctl.identity_provider_get(admin, "corp").await.unwrap();
    assert_eq!((read.display_name.as_str(), read.default_role.as_str()), ("Corp SSO", "viewer"));
    assert_eq!(ctl.identity_provider_list(admin).await.unwrap(), std::slice::from_ref(&read));
    let update = |secret: Option<&str>| ProviderUpdate {
        display_name: "Corp".into(),
        issuer_url: p.idp.issuer().to_owned(),
        client_id: CLIENT_ID.into(),
        client_secret: secret.map(str::to_owned),
        tenant: "default".into(),
        email_domains: "Example.com".into(),
        group_claim: String::new(),
        role_rules: vec![RoleRule { group: " admins ".into(), role: "member".into() }],
        default_role: "none".into(),
    };

    // Without a secret the stored one stays: sign-ins go on, under the new rules.
    let sealed = p.stored_provider("corp").await.client_secret;
    let changed = ctl.identity_provider_update(admin, "corp", &update(None)).await.unwrap();
    assert_eq!(changed.role_rules, [RoleRule { group: "admins".into(), role: "member".into() }]);
    assert_eq!(
        (changed.group_claim.as_str(), changed.email_domains.as_str()),
        ("groups", "example.com")
    );
    assert_eq!((changed.name.as_str(), changed.display_name.as_str()), ("corp", "Corp"));
    assert_eq!(ctl.identity_provider_get(admin, "corp").await.unwrap(), changed);
    assert_eq!(p.stored_provider("corp").await.client_secret, sealed);
    let dana = p.sign_in(&session(&p), "dana-sub", Some("dana@example.com"), &["admins"]).await;
    assert_eq!(dana.unwrap().role, Role::Member, "admins are members now");
    let err = p.sign_in(&session(&p), "eve-sub", Some("eve@example.com"), &[]).await.unwrap_err();
    assert_sentence(&err.to_string(), "No group of yours maps to a role in default");

    // A wrong secret is stored (sealed) and the provider's token endpoint refuses it; the
    // right one again works.
    ctl.identity_provider_update(admin, "corp", &update(Some("wrong"))).await.unwrap();
    let row = p.stored_provider("corp").await;
    assert!(
        row.client_secret_sealed
            && row.client_secret != sealed
            && !row.client_secret.contains("wrong")
    );
    let s = session(&p);
    assert!(p.sign_in(&s, "dana-sub", Some("dana@example.com"), &["admins"]).await.is_err());
    ctl.identity_provider_update(admin, "corp", &update(Some(CLIENT_SECRET))).await.unwrap();
    p.sign_in(&session(&p), "dana-sub", Some("dana@example.com"), &["admins"]).await.unwrap();

    // Checked as when added; another provider's name is not found; only provider admins.
    let bad = |f: fn(&mut ProviderUpdate)| {
        let mut u = update(None);
        f(&mut u);
        u
    };
    for (change, status, needle) in [
        (bad(|u| u.issuer_url = "http://idp.example.com".into()), 400, "must start with https://"),
        (bad(|u| u.client_id = " ".into()), 400, "client ID is empty"),
        (bad(|u| u.default_role = "boss".into()), 400, "is not a role"),
        (bad(|u| u.role_rules[0].role = "root".into()), 400, "is not a role"),
        (bad(|u| u.tenant = "nope".into()), 404, "No tenant named nope"),
    ] {
        let err = ctl.identity_provider_update(admin, "corp", &change).await.unwrap_err();
        assert_eq!(err.status_code(), status, "{needle}: {err}");
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    assert_eq!(ctl.identity_provider_get(admin, "corp").await.unwrap().issuer_url, p.idp.issuer());
    let err = ctl.identity_provider_update(admin, "nope", &update(None)).await.unwrap_err();
    assert_eq!(err.status_code(), 404);
    assert_eq!(ctl.identity_provider_get(admin, "nope").await.unwrap_err().status_code(), 404);
    let member = p.sign_in(&session(&p), "mia-sub", Some("mia@example.com"), &["admins"]).await;
    let member = op(&member.unwrap());
    let err = ctl.identity_provider_update(&member, "corp", &update(None)).await.unwrap_err();
    assert_eq!(err.status_code(), 403);
    assert_eq!(ctl.identity_provider_get(&member, "corp").await.unwrap_err().status_code(), 403);
    let anonymous = OpContext::anonymous();
    assert_eq!(ctl.identity_provider_get(&anonymous, "corp").await.unwrap_err().status_code(), 401);

    // Audited, refusals too.
    let page = portal_types::page::PageQuery::first(100);
    let audit = ctl.audit_list(admin, Some("identity_provider.update"), None, &page).await;
    let outcomes: Vec<String> = audit.unwrap().items.into_iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes.iter().filter(|o| *o == "ok").count(), 3, "{outcomes:?}");
    assert!(outcomes.iter().any(|o| o.starts_with("403")), "{outcomes:?}");
}

/// Test-only RSA keys (generated for this test, never used anywhere else).
const PROVIDER_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAq+ktuFXaWL8wIP2Nd/sLtU0F7wCVsx9xCmsckWO9Qv+6ifMG
olTz1Jk9tjjiTNI1FueiAhevqHv5Zct10Bz9mzlukHGSG+I9iAFFZ4gKU+ooKS+J
x6OyekflfLY56blxDcTOnOJzpRVRBVsVFPBLesiQkgAGoKFrJulrJlaeCAvtCP8S
3YPdOQSgilK2OiQFoPgS0jx7IgX/zIFMlvVpmDeJIw1U50PGPP9dDtKDQk89XP8n
7V0cQQDUKu90alzYBfXQelDIjiRXQEhGChSJdhdqnkXWMxU5MHRLvyCct4O02paz
F2547dtvcagqK+Q4QaYQWHys7JELp59q5kgh/wIDAQABAoIBAFPJlLURcxhqJsUN
j5P40d4NqmSwvkXNf0T6q7PZDvfGuF5gCs235heqkL9tvi5/Dc0aHIY0kTLnKckJ
f2RtnNW5CkBweiwI+sB9DhzF23LG38gjGV4qVOTwgdNk5Zka/xUc5S7l2EOPviuE
FyRbcg5oDr56MMC9rAINJmJLOT7l8/vhd5n2vuqCkxqnkVSw+FwNPzwj+wYT+NQY
bGQPVFvFKX+YfLvHDsX8SfZRyWLz0hGbO3ttY1CnN4eb6vNXLoLzIIoAtHMuvdz/
gwvbnhSg/MrjNEtUZzH+08axHNg4TPoT1RnuCb2VMRGerX1ODgxaUWy9lpoga+fY
f5eRlGECgYEA41TD+s7anLunYbum+LiXTqgrUJa164lB0IEZuuGML8UxOiHRXVlB
wAWzW8ltefYRT8D3bJg8VBZnFDDDgVVZkVENMuxGHDJ5IKIi+B6A9FE5rHgeU4pn
AyTSWQI4WR+xCXYmwoJQpIVx79Xw2/mEHfsPllA0OvE/OtBIKKgZ4BkCgYEAwZc0
5RbltNm+ZoiSB59QLjxhqIbeU6GvwafBAeRg3xM1dLcRZCZA5t7vrZQZbfyFDpHf
lhd9R5S9nxhTpiYI2wGkgxkNO/qzE0J/IX4kDY1iETZsgYhYJZzKobse9XkJuD6e
RTOml5zaCIGCtIrcAyyyrG9r/Ka9+sVilGxd9dcCgYEAyphyiATtYx0B0OHRrnuj
rN/Gqm2F90E9vDox2hDERJZyhqI42f5/0EfETpq2zCh1ySPp3YfWzAGjH6VNtud/
iTg4kRdsbBi3RlP44jMdLZ9tzLzIGh+QKocYR2bpHNRXjF0Vsec9Q0ICBoIdw40d
JzLl80nLInR5q0qP5Fvbo5ECgYBCqTWOmTbZ8oyss+RM+Z/be/FI3cAa3jcuIPzG
EQUGa4/hs9QqPz3kAepYRAIJrIWIwdRS053REzfEW9UaBkjQWR10AyFagPY+8Ivk
VZJGlGOrd6kfZXqs4POpg0yizF37cpx/SczYsisl+KqwTox6D18rH2b45dXPTz6l
yzcDmwKBgQDFdBFK8pqJiya5vheheEnGCpLXzXbHBt28bF4Ff33AUSTBUNayvDj/
94W+m6hM0WOp6fvGWtcdWLRAyxmtsWC3AgK/uuKIVOX2qnKLhstV9mNVzr8VecpZ
JUsX86KfCuku380LipDvi3KA8Zl7K3ONr1//WLgxbzYKrOULQe+qbw==
-----END RSA PRIVATE KEY-----";
/// A key the provider does not publish: tokens signed with it must be refused.
const FOREIGN_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAwlicl12TVBLJHPUGrfWh9qt6PKosui8Xm9PnmElniFPs+ZR5
gN0ifXePu0BzXODjRN1g6rNOHXld+ilDfbGwPuZMZeEoZRZRa/VjqsdhDxNKUJVm
4ILde8NkV8suUTnJ0GMJYTCV4d7mhksvzGpvsKvjfkNytRUKVJu2mrXiOeNVtTX0
vcrOVgsQHYFKKevop0+B5YZckvD9hhKpzuXfxBCn8P5eyeHiBbwr+RfzjJd2yszx
Ry7sozp2N2cmR8MGAMKN0MT181pGQhqyVPfZKXkEut8qGeXSTkJ9Dk2lix2NDwyc
Ukh+pFwIUbAwbfwFuchWPmIUppZPEhN0k6t8HwIDAQABAoH/Rji+W/LzyO0AvfXK
9BBM9VQAVusmPh/F6AgpJl1fi2LHvWZogKdmTu9kf8RJ6sVXWQqkeilPkFbKHhnK
yR/rDs8ny6gPcHcf9GI2IP7pkwjlUTiqc3TVkmKHXzGLCs5WnXUrbnKftX1UzjFc
k//hW3TAPl8gk02G7gtVb5FIrKFV/jpyWRM9yBSs9SXr2k00aeqvXbs+YiBTOdeX
nBXhUjjdyf1WexeMH80EimtQOZrLSB0P18H/rBE/5iEfTcowkUyBcf43fiqRih+W
4lXiA4xgQcg994VpZrbIfZY8/kTTTMoURXKSXtCpnWNFH2uZYLLShHAXADl/FH/z
nbtxAoGBAPQVf+tteAs84uglU5QO8kO2OB1x/O9wylVMp7YcPJKowi5ry5wsXlmr
Pj4dySwvy3h355yohRiGQ/vIhg5rC104ifsExYzXTszHaLHpYM81vQ4c88PDemAr
uK0vWATJuDlqRSS16hP5yqV0bIkb/oAcz8hBRl5W8ojAhYIiFnqRAoGBAMvVgDxN
fsvMKEZOdgDTyQ2Db65ki+PSQF9K8a6kVOsdyn8GSe76a+4ntkV5O89EHZV4g4PK
D0iLe4m/eUAtOF5z14GEC2qITbnyjaqa2Li5zkHhSX/wrNHUstCwRUENe/gfnknH
MS+q4Y30pjiWpx0BKdEyWxHPdh4Jm7J3/gOvAoGBAN66e7c+dkty7O+/l+vEU8f8
EGq2KIPqHYgG4gdo7tE5k7A+h1bkmdgjTjHqhjd/CaHNcJlgoctGQeURD1s6zOzs
+eQIb6hclLiCwoOOnduXgwPM4Zfi2dnGK8hFKoF7/VLPKXcdVROTXhrrCVt4Ix2O
rQBkqCzQFJM7ctjT+EUxAoGAFFDfSyNeM+nRSdCgKkzxiQtEolkbKEXYbKcHl6SB
Yj3B5Q83Zz5Ga6JBpIME1w+u8yrj0Mre4xgj5ALVjvPy3lclb589lAyp0pK+U/bD
CwZZ7G8L6FiQoQlWGT64aFdzt7NPD4Nu/5VEjeWIe7NoTJfFFzixowDOgQfsIMmc
47kCgYEAu6/1WHmoERKmCjciYUJzHxS2FkZTRRybyKIB3YvuSPWd+R+I76FhnjEY
jl8NHF9CKWwcBuFPFEJPuH2C9Oep4+4DpczIYqhTw3NNgnbBbEurUunjj+SSEOKu
tCsicvYDvPA/yCivrBCNxkMNe/M7dffgoNFLYSnVij3TdmIMBxg=
-----END RSA PRIVATE KEY-----";

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_provider_key_is_fetched_on_its_first_use() {
    let mut p = portal("rotation", "").await;
    p.rp = RelyingParty::new("http://127.0.0.1:3000")
        .unwrap()
        .with_key_refresh_after(std::time::Duration::ZERO);
    p.sign_in(&session(&p), "alice-sub", Some("alice@example.com"), &[]).await.unwrap();
    // The provider rotates; the keys we hold do not know the new key id.
    p.idp.rotate_key();
    let bob = p.sign_in(&session(&p), "bob-sub", Some("bob@example.com"), &[]).await.unwrap();
    assert_eq!(bob.username, "bob@example.com (corp)");
    // Within the refresh interval, an unknown key is refused with a sentence instead of
    // fetching the keys again.
    let q = portal("rotation-guarded", "").await;
    q.sign_in(&session(&q), "carol-sub", Some("carol@example.com"), &[]).await.unwrap();
    q.idp.rotate_key();
    let err = q.sign_in(&session(&q), "dave-sub", Some("dave@example.com"), &[]).await.unwrap_err();
    assert_eq!(err.status_code(), 400, "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_verified_is_required_when_domains_are_configured() {
    let p = portal("email-verified", "example.com").await;
    assert_sentence(&p.refused(Misbehave::EmailVerifiedMissing).await, "is not verified");
    assert_sentence(&p.refused(Misbehave::EmailUnverified).await, "is not verified");
    // Without domains the address only names the user: no claim is needed.
    let q = portal("email-verified-any", "").await;
    q.idp.misbehave(Misbehave::EmailVerifiedMissing);
    q.sign_in(&session(&q), "u-sub", Some("u@example.com"), &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_role_of_none_refuses_users_no_rule_matches() {
    let p = portal("no-default-role", "").await;
    let strict = provider("strict", p.idp.issuer(), "none");
    p.controller.identity_provider_create(&op(&p.admin), &strict).await.unwrap();
    let listed = p.controller.identity_provider_list(&op(&p.admin)).await.unwrap();
    assert_eq!(listed.iter().find(|i| i.name == "strict").unwrap().default_role, "none");
    let err = p
        .sign_in_with("strict", &session(&p), "x-sub", Some("x@example.com"), &["other"])
        .await
        .unwrap_err();
    assert_sentence(
        &err.to_string(),
        "No group of yours maps to a role in default; ask your admin.",
    );
    use sea_orm::{EntityTrait, PaginatorTrait};
    let users = portal_controller::datastore::entity::user::Entity::find()
        .count(p.controller.datastore().connection())
        .await
        .unwrap();
    assert_eq!(users, 1, "a refused sign-in writes no user");
    let member = p
        .sign_in_with("strict", &session(&p), "y-sub", Some("y@example.com"), &["ml-team"])
        .await
        .unwrap();
    assert_eq!(member.role, Role::Member);
}

#[tokio::test(flavor = "multi_thread")]
async fn sso_users_are_keyed_by_provider_and_subject_never_by_username() {
    let p = portal("identity-keys", "").await;
    // A tenant admin invites a local alice@example.com before Alice first signs in.
    let local =
        p.controller.user_invite(&op(&p.admin), None, "alice@example.com", "viewer").await.unwrap();
    let alice = p
        .sign_in(&session(&p), "alice-sub", Some("alice@example.com"), &["ml-team"])
        .await
        .unwrap();
    assert_ne!(alice.user_id, local.user.id);
    assert_eq!(alice.username, "alice@example.com (corp)");
    assert_eq!(alice.role, Role::Member);
    // Another provider asserting the same address, even the same subject: another user.
    let other = provider("other", p.idp.issuer(), "viewer");
    p.controller.identity_provider_create(&op(&p.admin), &other).await.unwrap();
    let elsewhere = p
        .sign_in_with("other", &session(&p), "alice-sub", Some("alice@example.com"), &[])
        .await
        .unwrap();
    assert_ne!(elsewhere.user_id, alice.user_id);
    assert_eq!(elsewhere.username, "alice@example.com (other)");
    // Her next sign-in through corp finds her by subject, whatever address it carries.
    let again = p
        .sign_in(&session(&p), "alice-sub", Some("alice.b@example.com"), &["ml-team"])
        .await
        .unwrap();
    assert_eq!(again.user_id, alice.user_id);
    // Another subject of corp asserting her address does not become her.
    let err =
        p.sign_in(&session(&p), "mallory-sub", Some("alice@example.com"), &[]).await.unwrap_err();
    assert_sentence(&err.to_string(), "belongs to another");
    // Local names cannot look like a provider's users.
    let err = p
        .controller
        .user_invite(&op(&p.admin), None, "bob@example.com (corp)", "viewer")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is not valid"), "{err}");
    // The user list shows the provider beside single sign-on users.
    let users = p.controller.user_list(&op(&p.admin), None).await.unwrap();
    let provider_of = |name: &str| {
        users
            .iter()
            .find(|u| u.username == name)
            .unwrap_or_else(|| panic!("{name}"))
            .provider
            .clone()
    };
    assert_eq!(provider_of("alice@example.com"), None);
    assert_eq!(provider_of("alice@example.com (corp)").as_deref(), Some("Corp SSO"));
    assert_eq!(provider_of("alice@example.com (other)").as_deref(), Some("other"));
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_issuers_are_accepted_only_on_loopback() {
    let p = portal("http-loopback", "").await;
    let create = |name: &str, issuer: &str| {
        let c = provider(name, issuer, "viewer");
        let ctl = Arc::clone(&p.controller);
        let admin = p.admin.clone();
        async move { ctl.identity_provider_create(&op(&admin), &c).await }
    };
    for issuer in [
        "http://idp.example.com",
        "http://10.0.0.1:8080",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
    ] {
        let err = create("plain", issuer).await.unwrap_err();
        assert_sentence(&err.to_string(), "only on loopback");
    }
    for (name, issuer) in [
        ("l1", "http://localhost:9400"),
        ("l2", "http://127.0.0.2:9400"),
        ("l3", "http://[::1]:9400"),
        ("tls", "https://idp.example.com"),
    ] {
        create(name, issuer).await.unwrap_or_else(|e| panic!("{issuer}: {e}"));
    }
    // A provider stored before the check existed is refused at sign-in, before any request.
    use sea_orm::{ActiveModelTrait, IntoActiveModel, Set};
    let mut row = p.stored_provider("corp").await.into_active_model();
    row.issuer_url = Set("http://idp.example.com".into());
    row.update(p.controller.datastore().connection()).await.unwrap();
    let err = begin(&p.rp, &p.controller, &session(&p), "corp").await.unwrap_err();
    assert_sentence(&err.to_string(), "only on loopback");
}

#[tokio::test(flavor = "multi_thread")]
async fn id_tokens_issued_in_the_future_are_refused() {
    let p = portal("issued-at", "").await;
    assert_sentence(&p.refused(Misbehave::IssuedInFuture).await, "issued in the future");
    // A provider whose clock runs a little ahead is tolerated.
    p.idp.misbehave(Misbehave::IssuedSlightlyAhead);
    p.sign_in(&session(&p), "skew-sub", Some("skew@example.com"), &[]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secrets_are_encrypted_at_rest() {
    let p = portal("sealed", "").await;
    let row = p.stored_provider("corp").await;
    assert!(row.client_secret_sealed);
    assert!(!row.client_secret.contains(CLIENT_SECRET), "{}", row.client_secret);
    // The token endpoint checks the secret, so a sign-in proves it decrypts.
    p.sign_in(&session(&p), "a-sub", Some("a@example.com"), &[]).await.unwrap();
    // The admins' view never carries it.
    let listed = p.controller.identity_provider_list(&op(&p.admin)).await.unwrap();
    assert!(!format!("{listed:?}").contains(CLIENT_SECRET));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_key_rotates_and_a_wrong_key_stops_the_start() {
    let (old, new) = ([1; 32], [2; 32]);
    let mut p = portal_with(&sqlite_url("rotate-key"), "", SecretKeys::new(old, None)).await;
    let before = p.stored_provider("corp").await.client_secret;
    // The new key alone cannot read the secrets: the start stops with a sentence.
    let err = p.restart(SecretKeys::new(new, None)).await.unwrap_err();
    assert!(err.contains("cannot be decrypted"), "{err}");
    assert!(err.contains("PORTAL_SECRET_KEY_PREVIOUS"), "{err}");
    // With the old key as the previous one, every secret is re-encrypted with the new key...
    p.restart(SecretKeys::new(new, Some(old))).await.unwrap();
    assert_ne!(p.stored_provider("corp").await.client_secret, before);
    // ...so the old key is no longer needed.
    p.restart(SecretKeys::new(new, None)).await.unwrap();
    p.sign_in(&session(&p), "b-sub", Some("b@example.com"), &[]).await.unwrap();
}

/// A database from before single sign-on hardening: a provider with a plaintext secret and a
/// user named by the bare address. The first start qualifies the name and encrypts the secret.
#[tokio::test(flavor = "multi_thread")]
async fn an_old_database_gets_qualified_names_and_encrypted_secrets() {
    upgrade_on(sqlite_url("upgrade")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_old_postgres_database_gets_qualified_names_and_encrypted_secrets() {
    let Some(url) = postgres_url().await else { return };
    upgrade_on(url).await;
}

async fn upgrade_on(url: String) {
    use portal_migrations::{Migrator, MigratorTrait};
    use sea_orm::{ConnectionTrait, Statement, Value};
    let db = portal_controller::datastore::connect(&url).await.unwrap();
    // The schema as it was before this change (migrations 001 to 007).
    Migrator::up(&db, Some(7)).await.unwrap();
    let idp = Idp::start().await;
    let (tenant, user, prov) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    let backend = db.get_database_backend();
    let run = |sql: &str, values: Vec<Value>| {
        db.execute_raw(Statement::from_sql_and_values(backend, sql, values))
    };
    run("INSERT INTO tenant (id, name, created_at) VALUES ($1, 'acme', 0)", vec![tenant.into()])
        .await
        .unwrap();
    run(
        "INSERT INTO users (id, username, provider_admin, disabled, created_at) \
         VALUES ($1, 'alice@example.com', false, false, 0)",
        vec![user.into()],
    )
    .await
    .unwrap();
    run(
        "INSERT INTO membership (user_id, tenant_id, role) VALUES ($1, $2, 'member')",
        vec![user.into(), tenant.into()],
    )
    .await
    .unwrap();
    run(
        "INSERT INTO identity_provider (id, name, display_name, issuer_url, client_id, \
         client_secret, tenant_id, email_domains, group_claim, role_rules, default_role, \
         created_at) VALUES ($1, 'corp', 'Corp SSO', $2, 'portal', 'portal-secret', $3, '', \
         'groups', '[]', 'viewer', 0)",
        vec![prov.into(), idp.issuer().into(), tenant.into()],
    )
    .await
    .unwrap();
    run(
        "INSERT INTO external_identity (provider_id, subject, user_id, created_at, \
         last_sign_in_at) VALUES ($1, 'alice-sub', $2, 0, 0)",
        vec![prov.into(), user.into()],
    )
    .await
    .unwrap();
    db.close().await.unwrap();

    // This database has no admin account: open the control plane without signing one in.
    let start = || async {
        Controller::open(&ControllerConfig {
            secret_keys: SecretKeys::new([3; 32], None),
            ..ControllerConfig::new(&url)
        })
        .await
        .unwrap()
    };
    let controller = start().await;
    let admin = controller.actor(UserUuid::from_untyped_uuid(user)).await.unwrap().unwrap();
    let p = Portal {
        database_url: url.clone(),
        controller,
        admin,
        rp: RelyingParty::new("http://127.0.0.1:3000").unwrap(),
        idp,
    };
    let row = p.stored_provider("corp").await;
    assert!(row.client_secret_sealed);
    assert!(!row.client_secret.contains(CLIENT_SECRET));
    let alice = p.sign_in(&session(&p), "alice-sub", Some("alice@example.com"), &[]).await.unwrap();
    assert_eq!(alice.user_id.into_untyped_uuid(), user);
    assert_eq!(alice.username, "alice@example.com (corp)");
    // A second start finds nothing left to do.
    p.controller.stop();
    start().await.stop();
    assert_eq!(p.stored_provider("corp").await.client_secret, row.client_secret);
}
