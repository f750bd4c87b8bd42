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
use portal_controller::oidc::{Callback, ExtraClaims, ProviderCreate, RelyingParty, RoleRule};
use portal_controller::{Controller, ControllerConfig};
use portal_types::Error;
use serde_json::json;
use tower_sessions::Session;

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
    let (iat, exp) =
        if how == Misbehave::Expired { (now - 7200, now - 3600) } else { (now, now + 300) };
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
            claims["email_verified"] = json!(true);
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
    Json(json!({
        "sub": grant.subject,
        "email": grant.email,
        "email_verified": true,
        "groups": grant.groups,
    }))
    .into_response()
}

// ---------------------------------------------------------------------------------------

struct Portal {
    controller: Arc<Controller>,
    admin: Actor,
    rp: RelyingParty,
    idp: Idp,
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
    let controller = Controller::open(&ControllerConfig {
        admin_password: Some(ADMIN_PASSWORD.to_owned()),
        ..ControllerConfig::new(database_url)
    })
    .await
    .expect("controller opens");
    let admin_id = controller.login("admin", ADMIN_PASSWORD, None).await.unwrap();
    let admin = controller.actor(admin_id).await.unwrap().unwrap();
    let idp = Idp::start().await;
    controller
        .identity_provider_create(
            Some(&admin),
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
    Portal { controller, admin, rp, idp }
}

fn session(p: &Portal) -> Session {
    Session::new(None, Arc::new(p.controller.session_store()), None)
}

impl Portal {
    /// One whole sign-in of `subject` through the provider.
    async fn sign_in(
        &self,
        session: &Session,
        subject: &str,
        email: Option<&str>,
        groups: &[&str],
    ) -> Result<Actor, Error> {
        let url = self.rp.begin(&self.controller, session, "corp").await?;
        let callback = self.idp.authorize(&url, subject, email, groups, None);
        let user = self.rp.finish(&self.controller, session, &callback).await?;
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
    assert_eq!(alice.username, "alice@example.com");
    assert_eq!(alice.tenant_name, "default");
    assert_eq!(alice.role, Role::Member);
    assert!(!alice.provider_admin);
    // The session is signed in as her, and RP-initiated logout is offered with the hint.
    let logout = portal_controller::oidc::logout_url(&s).await.unwrap().expect("end_session");
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

    // Without an e-mail address the user is sub@provider.
    let bob = p.sign_in(&session(&p), "bob-sub", None, &["ml-team"]).await.unwrap();
    assert_eq!(bob.username, "bob-sub@corp");
    assert_eq!(bob.role, Role::Member);
}

#[tokio::test(flavor = "multi_thread")]
async fn single_sign_on_works_on_postgres_and_rotates_the_session_id() {
    let Some(url) = postgres_url().await else { return };
    let p = portal_on(&url, "example.com").await;
    let s = session(&p);
    let url = p.rp.begin(&p.controller, &s, "corp").await.unwrap();
    s.save().await.unwrap();
    let before = s.id().expect("the pending sign-in is stored under a session id");
    let callback = p.idp.authorize(&url, "dana-sub", Some("dana@example.com"), &["admins"], None);
    let user = p.rp.finish(&p.controller, &s, &callback).await.unwrap();
    s.save().await.unwrap();
    assert_ne!(s.id(), Some(before), "the session id changes at sign-in (no fixation)");
    let dana = p.controller.actor(user).await.unwrap().unwrap();
    assert_eq!((dana.username.as_str(), dana.role), ("dana@example.com", Role::TenantAdmin));
    // Refusals write nothing on PostgreSQL either.
    assert_sentence(&p.refused(Misbehave::WrongAudience).await, "wrong audience");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_session_id_changes_at_sign_in() {
    let p = portal("fixation", "").await;
    let s = session(&p);
    let url = p.rp.begin(&p.controller, &s, "corp").await.unwrap();
    s.save().await.unwrap();
    let before = s.id().expect("the pending sign-in is stored under a session id");
    let callback = p.idp.authorize(&url, "erin", Some("erin@example.com"), &[], None);
    p.rp.finish(&p.controller, &s, &callback).await.unwrap();
    s.save().await.unwrap();
    assert_ne!(s.id(), Some(before));
    // The record under the old id was deleted, so a planted cookie is worthless.
    use tower_sessions::session_store::SessionStore;
    let old = p.controller.session_store().load(&before).await.unwrap();
    assert!(old.is_none(), "the pre-sign-in session is gone");
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
    p.controller.identity_provider_create(Some(&p.admin), &slash).await.unwrap();
    let err = p.rp.begin(&p.controller, &session(&p), "slash").await.unwrap_err();
    assert_sentence(&err.to_string(), "wrong issuer");
    // Nothing listens there: unavailable (503), the detail only in the log.
    let gone = add("gone", "http://127.0.0.1:9".into());
    p.controller.identity_provider_create(Some(&p.admin), &gone).await.unwrap();
    let err = p.rp.begin(&p.controller, &session(&p), "gone").await.unwrap_err();
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
    assert_eq!(carol.username, "carol@example.com");
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
    let users =
        portal_controller::db::entity::user::Entity::find().count(p.controller.db()).await.unwrap();
    assert_eq!(users, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn state_and_pkce_are_checked() {
    let p = portal("state-pkce", "").await;

    // A callback whose state is not the one this session sent.
    let s = session(&p);
    let url = p.rp.begin(&p.controller, &s, "corp").await.unwrap();
    let mut callback = p.idp.authorize(&url, "eve", None, &[], None);
    callback.state = Some("forged-state".into());
    let err = p.rp.finish(&p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "state mismatch");
    // The pending sign-in was used up: the genuine state no longer works either.
    let err = p.rp.finish(&p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "sign in again");

    // A callback arriving in a session that never started a sign-in (no PKCE verifier).
    let url = p.rp.begin(&p.controller, &session(&p), "corp").await.unwrap();
    let callback = p.idp.authorize(&url, "eve", None, &[], None);
    let err = p.rp.finish(&p.controller, &session(&p), &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "no state, nonce or PKCE verifier");

    // The provider saw a different PKCE challenge than our verifier answers.
    let s = session(&p);
    let url = p.rp.begin(&p.controller, &s, "corp").await.unwrap();
    let (other_challenge, _) = PkceCodeChallenge::new_random_sha256();
    let callback =
        p.idp.authorize(&url, "eve", None, &[], Some(other_challenge.as_str().to_owned()));
    let err = p.rp.finish(&p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "PKCE verification failed");

    // RFC 9207: a response naming another issuer (a mix-up attack) is refused.
    let s = session(&p);
    let url = p.rp.begin(&p.controller, &s, "corp").await.unwrap();
    let mut callback = p.idp.authorize(&url, "eve", None, &[], None);
    callback.iss = Some("http://evil.example".into());
    let err = p.rp.finish(&p.controller, &s, &callback).await.unwrap_err();
    assert_sentence(&err.to_string(), "(wrong issuer)");

    // The provider's own refusal is passed on as a sentence.
    let s = session(&p);
    p.rp.begin(&p.controller, &s, "corp").await.unwrap();
    let denied = Callback {
        error: Some("access_denied".into()),
        error_description: Some("End-User aborted interaction".into()),
        ..Default::default()
    };
    let err = p.rp.finish(&p.controller, &s, &denied).await.unwrap_err();
    assert_sentence(&err.to_string(), "access_denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn email_domains_and_existing_accounts_are_respected() {
    let p = portal("domains", "example.com").await;
    let err = p.sign_in(&session(&p), "x", Some("x@evil.test"), &["ml-team"]).await.unwrap_err();
    assert_sentence(&err.to_string(), "not in a domain admitted");
    let err = p.sign_in(&session(&p), "y", None, &["ml-team"]).await.unwrap_err();
    assert_sentence(&err.to_string(), "sent no e-mail address");
    // A provider asserting the local admin's name does not get the admin account.
    let p2 = portal("takeover", "").await;
    let err = p2.sign_in(&session(&p2), "admin-sub", Some("admin"), &["admins"]).await;
    // "admin" is not an e-mail address the provider would send, but the name is what counts.
    assert_sentence(&err.unwrap_err().to_string(), "already exists and is not linked");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_provider_admins_manage_providers_and_input_is_checked() {
    let p = portal("admin", "").await;
    let viewer = p.sign_in(&session(&p), "v", Some("v@example.com"), &[]).await.unwrap();
    let err = p.controller.identity_provider_list(Some(&viewer)).await.unwrap_err();
    assert_eq!(err.status_code(), 403);
    assert_eq!(p.controller.identity_provider_list(None).await.unwrap_err().status_code(), 401);
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
        let err = p.controller.identity_provider_create(Some(&p.admin), &create).await.unwrap_err();
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    let buttons = p.controller.identity_provider_buttons().await.unwrap();
    assert_eq!(buttons.len(), 1);
    assert_eq!((buttons[0].name.as_str(), buttons[0].display_name.as_str()), ("corp", "Corp SSO"));
    p.controller.identity_provider_delete(Some(&p.admin), "corp").await.unwrap();
    let err = p.rp.begin(&p.controller, &session(&p), "corp").await.unwrap_err();
    assert_eq!(err.status_code(), 404);
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
    assert_eq!(bob.username, "bob@example.com");
    // Within the refresh interval, an unknown key is refused with a sentence instead of
    // fetching the keys again.
    let q = portal("rotation-guarded", "").await;
    q.sign_in(&session(&q), "carol-sub", Some("carol@example.com"), &[]).await.unwrap();
    q.idp.rotate_key();
    let err = q.sign_in(&session(&q), "dave-sub", Some("dave@example.com"), &[]).await.unwrap_err();
    assert_eq!(err.status_code(), 400, "{err}");
}
