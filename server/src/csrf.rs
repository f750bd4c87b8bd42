//! Cross-site request forgery defence for every state-changing request (server functions
//! included), by Fetch Metadata and Origin: a browser always labels a cross-site request
//! (`Sec-Fetch-Site: cross-site` / a foreign `Origin`), so those are refused before they
//! reach a handler. Scripts and the CLI send neither header and are unaffected; they
//! authenticate without the session cookie anyway. `SameSite=Lax` cookies are the second
//! line of defence.

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Why a request looks forged, or `None` when it may proceed.
pub fn refusal(method: &Method, headers: &HeaderMap) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Some("Requests from other sites are refused; use the portal itself.");
    }
    if let Some(origin) = value(header::ORIGIN.as_str()) {
        let host = value(header::HOST.as_str()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        if origin == "null" || origin_host != host {
            return Some("Requests from other origins are refused; use the portal itself.");
        }
    }
    None
}

pub async fn guard(request: Request, next: Next) -> Response {
    match refusal(request.method(), request.headers()) {
        Some(message) => (StatusCode::FORBIDDEN, message).into_response(),
        None => next.run(request).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cross_site_mutations_are_refused() {
        let post = Method::POST;
        assert!(refusal(&post, &headers(&[("sec-fetch-site", "cross-site")])).is_some());
        assert!(refusal(&post, &headers(&[("sec-fetch-site", "same-site")])).is_some());
        let foreign = headers(&[("host", "127.0.0.1:3000"), ("origin", "http://evil.example")]);
        assert!(refusal(&post, &foreign).is_some());
        assert!(refusal(&post, &headers(&[("host", "a:1"), ("origin", "null")])).is_some());
    }

    #[test]
    fn same_origin_reads_and_scripts_pass() {
        let post = Method::POST;
        let same = headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(refusal(&post, &same), None);
        assert_eq!(refusal(&post, &HeaderMap::new()), None, "curl and the CLI send neither");
        assert_eq!(refusal(&Method::GET, &headers(&[("sec-fetch-site", "cross-site")])), None);
    }
}
