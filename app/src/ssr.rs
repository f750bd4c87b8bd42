//! Server-side glue for server functions: the controller and the caller from the request.

use std::sync::Arc;

use leptos::prelude::*;
use leptos_axum::ResponseOptions;
use portal_controller::Controller;
use portal_controller::OpContext;
use portal_types::Error;
use portal_web::Session;

/// The caller of the current request, worked out once however many server functions a
/// server-rendered page calls (each would read the session, the user and their tenants
/// again). Provided fresh for every request.
#[derive(Clone, Default)]
pub struct RequestActor(Arc<std::sync::Mutex<Option<OpContext>>>);

/// The controller, the session and the caller (signed in or not) of the current request.
pub async fn context() -> Result<(Arc<Controller>, Session, OpContext), Error> {
    let ctl = use_context::<Arc<Controller>>()
        .ok_or_else(|| fail(Error::internal("no controller in the server function context")))?;
    let session: Session = leptos_axum::extract()
        .await
        .map_err(|e| fail(Error::internal(format!("no session layer: {e}"))))?;
    let cache = use_context::<RequestActor>().unwrap_or_default();
    let known = cache.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(opctx) = known {
        return Ok((ctl, session, opctx));
    }
    let client = client_address().await;
    let actor = portal_web::actor(&ctl, &session, client).await.map_err(fail)?;
    let mut opctx = OpContext::for_session(actor);
    // Scripts and the CLI authenticate with `Authorization: Bearer gpc_…` instead.
    if opctx.actor().is_none()
        && let Some(token) = bearer_token().await
        && let Some(by_token) = ctl.token_actor(&token, client).await.map_err(fail)?
    {
        opctx = by_token;
    }
    if let Ok(axum::Extension(RequestId(id))) =
        leptos_axum::extract::<axum::Extension<RequestId>>().await
    {
        opctx = opctx.with_request_id(id);
    }
    *cache.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(opctx.clone());
    Ok((ctl, session, opctx))
}

/// The page's Content-Security-Policy: scripts only from the portal and the inline ones
/// Leptos writes with this response's nonce, WebAssembly allowed to compile, styles from
/// the portal (inline style attributes carry tenant colors), no framing, no plug-ins.
pub fn content_security_policy() {
    let (Some(nonce), Some(response)) =
        (leptos::nonce::use_nonce(), use_context::<ResponseOptions>())
    else {
        return;
    };
    let policy = format!(
        "default-src 'self'; script-src 'self' 'nonce-{nonce}' 'wasm-unsafe-eval'; \
         style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&policy) {
        response.insert_header(axum::http::header::CONTENT_SECURITY_POLICY, value);
    }
}

/// Sets the response status for `err` and logs what only operators may see.
///
/// A form the browser posted itself (before the page was hydrated, or without JavaScript)
/// keeps server_fn's answer instead: a redirect back to its page with the error in the
/// address, which the page then shows; a status would turn it into a page of bare JSON.
pub fn fail(err: Error) -> Error {
    let native_form = use_context::<axum::http::request::Parts>().is_some_and(|parts| {
        parts
            .headers
            .get(axum::http::header::ACCEPT)
            .and_then(|accept| accept.to_str().ok())
            .is_some_and(|accept| accept.contains("text/html"))
    });
    if !native_form
        && let Some(options) = use_context::<ResponseOptions>()
        && let Ok(status) = axum::http::StatusCode::from_u16(err.status_code())
    {
        options.set_status(status);
    }
    if let Some(detail) = err.internal_detail() {
        tracing::error!(status = err.status_code(), %detail, "server function failed");
    }
    err
}

/// The address a request is taken to come from, worked out by the server from the socket
/// and, behind trusted proxies only, `X-Forwarded-For` (a request extension).
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub std::net::IpAddr);

/// The id of the current request (a request extension the server sets): in its log lines,
/// its `X-Request-Id` answer and the controller's operation.
#[derive(Clone, Copy, Debug)]
pub struct RequestId(pub uuid::Uuid);

/// The caller's IP address (for sign-in throttling and the audit log).
pub async fn client_address() -> Option<std::net::IpAddr> {
    leptos_axum::extract::<axum::Extension<ClientIp>>().await.ok().map(|c| c.0.0)
}

async fn bearer_token() -> Option<String> {
    let headers: axum::http::HeaderMap = leptos_axum::extract().await.ok()?;
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

/// The provider's currency written with the separators of the reader's `Accept-Language`.
pub async fn money_format(ctl: &Controller) -> portal_types::billing::MoneyFormat {
    let headers: Option<axum::http::HeaderMap> = leptos_axum::extract().await.ok();
    let language = headers
        .as_ref()
        .and_then(|h| h.get(axum::http::header::ACCEPT_LANGUAGE))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    portal_types::billing::MoneyFormat::for_accept_language(&ctl.money_format().currency, language)
}
