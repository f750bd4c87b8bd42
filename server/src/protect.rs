//! What every request passes through besides sessions and the CSRF guard: a bound on the
//! request body, a bound on requests in flight (answered at once with 503 beyond it, never
//! queued without end), and the security headers of every response.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

/// Server functions take small forms; nothing the portal accepts today is larger.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Requests being answered at once (a streamed response counts until its headers are sent).
pub const MAX_IN_FLIGHT: usize = 512;

#[derive(Clone)]
pub struct InFlight(Arc<Semaphore>);

impl InFlight {
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Semaphore::new(limit)))
    }
}

/// Middleware: refuses a request beyond [`MAX_IN_FLIGHT`] with 503 and `Retry-After`, and
/// a body over [`MAX_BODY_BYTES`] with 413, announced or streamed, before any handler
/// reads it (bodies are read here, at most that much each).
pub async fn shed_load(State(in_flight): State<InFlight>, req: Request, next: Next) -> Response {
    match in_flight.0.try_acquire() {
        Ok(_permit) => match bounded(req).await {
            Ok(req) => next.run(req).await,
            Err(refused) => refused,
        },
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            "The portal is busy; try again in a moment.",
        )
            .into_response(),
    }
}

async fn bounded(req: Request) -> Result<Request, Response> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("The request is larger than {} KiB; send less.", MAX_BODY_BYTES / 1024),
        )
            .into_response()
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match announced {
        Some(0) => return Ok(req),
        Some(n) if n > MAX_BODY_BYTES => return Err(too_large()),
        // No body to read on these, and the live stream's request must pass untouched.
        None if matches!(*req.method(), axum::http::Method::GET | axum::http::Method::HEAD) => {
            return Ok(req);
        }
        _ => {}
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| too_large())?;
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Headers for every response; pages set their own Content-Security-Policy (with the
/// page's script nonce) and keep it. HSTS only when browsers reach the portal over https.
pub fn security_headers(https: bool) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = vec![
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        (header::REFERRER_POLICY, HeaderValue::from_static("same-origin")),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        ),
    ];
    if https {
        headers.push((
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        ));
    }
    headers
}
