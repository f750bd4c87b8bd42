//! Single sign-on over HTTP: `GET /auth/oidc/{name}/login` sends the browser to the identity
//! provider, `GET /auth/oidc/callback` finishes the sign-in and lands on the dashboard, or on
//! the sign-in page with `?sso=<reference>` to the sentence saying why, kept in the session. The work is in
//! [`portal_controller::oidc::RelyingParty`] and its session state in [`portal_web::oidc`];
//! these handlers only translate to redirects.
//!
//! Every anonymous start stores a pending sign-in in a session row, so starts are bounded
//! (per client address and in all) and an anonymous visitor's session lives ten minutes,
//! not the eight hours of a signed-in one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portal_controller::Controller;
use portal_controller::oidc::{Callback, RelyingParty};
use portal_types::Error;
use portal_web::Session;
use tower_sessions::Expiry;

use crate::config::Config;

#[derive(Clone)]
struct Sso {
    controller: Arc<Controller>,
    rp: Arc<RelyingParty>,
    starts: Arc<Mutex<StartBudget>>,
}

/// Sign-in starts a minute, per client address and in all.
const STARTS_PER_ADDRESS: u32 = 20;
const STARTS_IN_ALL: u32 = 1200;
/// How long an anonymous session (a pending sign-in, a refusal to show) lives.
const ANONYMOUS_SESSION: time::Duration = time::Duration::minutes(10);

/// Counts of sign-in starts in the current minute.
#[derive(Default)]
struct StartBudget {
    minute: Option<Instant>,
    all: u32,
    by_address: HashMap<IpAddr, u32>,
}

impl StartBudget {
    /// Takes one start for `address`, or says no.
    fn take(&mut self, address: IpAddr, now: Instant) -> bool {
        if self.minute.is_none_or(|m| now.duration_since(m) >= Duration::from_secs(60)) {
            *self = StartBudget { minute: Some(now), ..StartBudget::default() };
        }
        let mine = self.by_address.entry(address).or_default();
        if *mine >= STARTS_PER_ADDRESS || self.all >= STARTS_IN_ALL {
            return false;
        }
        *mine += 1;
        self.all += 1;
        true
    }
}

/// An anonymous visitor's session ends ten minutes after its last use; signing in gives it
/// the usual lifetime again.
async fn keep_briefly_if_anonymous(controller: &Controller, session: &Session) {
    if matches!(portal_web::actor(controller, session, None).await, Ok(None)) {
        session.set_expiry(Some(Expiry::OnInactivity(ANONYMOUS_SESSION)));
    }
}

/// The routes, ready to merge into a router of any state. The session layer must wrap them.
pub fn router<S: Clone + Send + Sync + 'static>(
    controller: Arc<Controller>,
    config: &Config,
) -> anyhow::Result<Router<S>> {
    let public_url =
        config.public_url.clone().unwrap_or_else(|| format!("http://{}", config.listen));
    let rp = RelyingParty::new(&public_url).map_err(|e| anyhow!("{e} Pass --public-url."))?;
    tracing::info!(redirect_url = rp.redirect_url(), "single sign-on callback");
    Ok(Router::new()
        .route("/auth/oidc/{name}/login", get(login))
        .route("/auth/oidc/callback", get(callback))
        .with_state(Sso { controller, rp: Arc::new(rp), starts: Arc::default() }))
}

/// A 302, which every browser follows with GET (the providers' authorization endpoints and
/// our pages expect GET).
fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Back to the sign-in page, which shows the refusal as one sentence.
async fn refused(controller: &Controller, session: &Session, err: &Error) -> Response {
    let sentence = match err {
        Error::Unavailable { .. } => {
            "The identity provider cannot be reached right now; try again shortly or sign in \
             with a local account."
                .to_owned()
        }
        other => other.to_string(),
    };
    match err.internal_detail() {
        Some(detail) => tracing::warn!(%detail, "single sign-on failed"),
        None => tracing::info!(reason = %sentence, "single sign-on refused"),
    }
    keep_briefly_if_anonymous(controller, session).await;
    match portal_web::oidc::remember_refusal(session, &sentence).await {
        Ok(reference) => found(&format!("/login?sso={reference}")),
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep the refusal for the sign-in page");
            found("/login")
        }
    }
}

async fn login(
    State(sso): State<Sso>,
    client: Option<axum::Extension<crate::client_ip::ClientIp>>,
    session: Session,
    Path(name): Path<String>,
) -> Response {
    let client = client.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.0);
    let allowed = sso.starts.lock().unwrap_or_else(|p| p.into_inner()).take(client, Instant::now());
    if !allowed {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            "Too many single sign-on attempts; try again in a minute.",
        )
            .into_response();
    }
    keep_briefly_if_anonymous(&sso.controller, &session).await;
    match portal_web::oidc::begin(&sso.rp, &sso.controller, &session, &name).await {
        Ok(url) => found(&url),
        Err(e) => refused(&sso.controller, &session, &e).await,
    }
}

async fn callback(
    State(sso): State<Sso>,
    session: Session,
    Query(response): Query<Callback>,
) -> Response {
    match portal_web::oidc::finish(&sso.rp, &sso.controller, &session, &response).await {
        Ok(_) => found("/"),
        Err(e) => refused(&sso.controller, &session, &e).await,
    }
}
