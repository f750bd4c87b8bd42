//! Pages are rendered on a small pool of single-threaded runtimes, one whole page at a time
//! per task, and sent only once complete.
//!
//! Leptos' server rendering takes `std` read/write locks inside the reactive graph from the
//! render task and from the resource tasks it spawns. On a multi-threaded runtime two of
//! those can run on two workers at once and take the locks in opposite orders: both
//! workers block forever and the whole portal stops answering (DESIGN §5; leptos #4673,
//! #4578, #4851). Here every task of one page runs on the same thread (the executor
//! spawns onto the current runtime), so no lock order can be inverted between threads; the
//! main runtime keeps serving server functions, the live stream, static files and
//! `/healthz`; and a page that still takes too long is abandoned with a sentence instead of
//! holding its connection.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio_util::task::LocalPoolHandle;

/// How long one page may take before the visitor is told to try again.
pub const PAGE_DEADLINE: Duration = Duration::from_secs(10);

/// A rendered page larger than this is an error, not something to hold in memory.
const MAX_PAGE_BYTES: usize = 8 << 20;

#[derive(Clone)]
pub struct RenderPool {
    pool: LocalPoolHandle,
    deadline: Duration,
}

impl RenderPool {
    /// One thread per core: rendering is CPU work between database round trips.
    pub fn new(deadline: Duration) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self { pool: LocalPoolHandle::new(threads), deadline }
    }
}

/// Pages are GET requests outside the API, the sign-in redirects, the bundle, vendored
/// scripts, health and the consoles' WebSockets (a connection upgraded on the pool would
/// live on its thread).
fn is_page(req: &Request) -> bool {
    let path = req.uri().path();
    req.method() == Method::GET
        && !["/api/", "/auth/", "/pkg/", "/vendor/", "/healthz", "/livez", "/readyz", "/metrics"]
            .iter()
            .any(|p| path.starts_with(p))
        && !is_console(path)
}

/// `/instances/{id}/console/ws`, exactly: any other path is rendered on the pool.
fn is_console(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    matches!(segments[..], ["", "instances", id, "console", "ws"] if !id.is_empty())
}

/// Middleware: renders pages on the pool (see the module comment); everything else passes.
pub async fn isolate(State(pool): State<RenderPool>, req: Request, next: Next) -> Response {
    if !is_page(&req) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_owned();
    let task = pool.pool.spawn_pinned(move || async move {
        let (parts, body) = next.run(req).await.into_parts();
        axum::body::to_bytes(body, MAX_PAGE_BYTES).await.map(|bytes| (parts, bytes))
    });
    let abort = task.abort_handle();
    // The task's failure (a panic) and the body's (too large) alike: not rendered.
    let rendered = tokio::time::timeout(pool.deadline, task)
        .await
        .map(|joined| joined.map_err(|e| e.to_string()).and_then(|r| r.map_err(|e| e.to_string())));
    match rendered {
        Ok(Ok((parts, bytes))) => Response::from_parts(parts, Body::from(bytes)),
        Ok(Err(error)) => {
            tracing::error!(%path, %error, "a page could not be rendered");
            unavailable(
                "This page could not be rendered; reload it, and tell your provider if it persists.",
            )
        }
        Err(_) => {
            abort.abort();
            tracing::error!(%path, deadline_s = pool.deadline.as_secs(), "a page took too long to render");
            unavailable("This page took too long to load; reload it in a moment.")
        }
    }
}

fn unavailable(sentence: &'static str) -> Response {
    let mut response =
        (StatusCode::SERVICE_UNAVAILABLE, Bytes::from_static(sentence.as_bytes())).into_response();
    response.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_console_route_skips_the_pool() {
        assert!(super::is_console("/instances/0b6f/console/ws"));
        for page in [
            "/instances/0b6f",
            "/x/console/ws",
            "/instances/a/b/console/ws",
            "/instances//console/ws",
        ] {
            assert!(!super::is_console(page), "{page}");
        }
    }
}
