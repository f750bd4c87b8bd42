//! Single sign-on over HTTP: `GET /auth/oidc/{name}/login` sends the browser to the identity
//! provider, `GET /auth/oidc/callback` finishes the sign-in and lands on the dashboard, or on
//! the sign-in page with `?sso=<reference>` to the sentence saying why, kept in the session. The work is in
//! [`portal_controller::oidc::RelyingParty`]; these handlers only translate to redirects.

use std::sync::Arc;

use anyhow::anyhow;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use portal_controller::Controller;
use portal_controller::oidc::{Callback, RelyingParty};
use portal_types::Error;
use tower_sessions::Session;

use crate::config::Config;

#[derive(Clone)]
struct Sso {
    controller: Arc<Controller>,
    rp: Arc<RelyingParty>,
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
        .with_state(Sso { controller, rp: Arc::new(rp) }))
}

/// A 302, which every browser follows with GET (the providers' authorization endpoints and
/// our pages expect GET).
fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// Back to the sign-in page, which shows the refusal as one sentence.
async fn refused(session: &Session, err: &Error) -> Response {
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
    match portal_controller::oidc::remember_refusal(session, &sentence).await {
        Ok(reference) => found(&format!("/login?sso={reference}")),
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep the refusal for the sign-in page");
            found("/login")
        }
    }
}

async fn login(State(sso): State<Sso>, session: Session, Path(name): Path<String>) -> Response {
    match sso.rp.begin(&sso.controller, &session, &name).await {
        Ok(url) => found(&url),
        Err(e) => refused(&session, &e).await,
    }
}

async fn callback(
    State(sso): State<Sso>,
    session: Session,
    Query(response): Query<Callback>,
) -> Response {
    match sso.rp.finish(&sso.controller, &session, &response).await {
        Ok(_) => found("/"),
        Err(e) => refused(&session, &e).await,
    }
}
