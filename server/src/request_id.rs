//! A request id for every request: the caller's `X-Request-Id` when it is a UUID (a proxy
//! or a script that correlates), else a new one. It is answered in `X-Request-Id`, is the
//! `request_id` of the API's error bodies and of the controller's operation, and every log
//! line written while the request runs carries it (with `--log-format json`, in its span).

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use uuid::Uuid;

pub use portal_app::ssr::RequestId;

const HEADER: &str = "x-request-id";

/// Paths polled by probes and scrapers, and static files: no access-log line for them.
fn quiet(path: &str) -> bool {
    ["/healthz", "/livez", "/readyz", "/metrics"].contains(&path) || path.starts_with("/pkg/")
}

pub async fn tag(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::new_v4);
    request.extensions_mut().insert(RequestId(id));
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let span = tracing::info_span!("request", request_id = %id, %method, %path);
    let started = std::time::Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    if let Ok(value) = HeaderValue::from_str(&id.to_string()) {
        response.headers_mut().insert(HEADER, value);
    }
    if !quiet(&path) {
        let status = response.status().as_u16();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        span.in_scope(|| tracing::info!(status, elapsed_ms, "answered"));
    }
    response
}
