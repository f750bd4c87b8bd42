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

/// The origin browsers use for the portal when it is not the `Host` header, e.g. behind a
/// proxy that rewrites it: `https://gpu.example.com` from `--public-url`.
#[derive(Clone, Debug, Default)]
pub struct PublicOrigin(Option<String>);

impl PublicOrigin {
    /// The scheme, host and port of `url` (its path, if any, is not part of an origin).
    pub fn from_url(url: Option<&str>) -> Self {
        PublicOrigin(url.map(|u| {
            let (scheme, rest) = u.split_once("://").unwrap_or(("http", u));
            let authority = rest.split('/').next().unwrap_or(rest);
            format!("{scheme}://{authority}")
        }))
    }
}

/// Why a request looks forged, or `None` when it may proceed. A mutation's `Origin` must be
/// the portal's: the `Host` it was sent to, or the public origin.
pub fn refusal(
    method: &Method,
    headers: &HeaderMap,
    public: &PublicOrigin,
) -> Option<&'static str> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    cross_origin(headers, public)
}

/// Why a request looks sent by another site, whatever its method (a WebSocket handshake is
/// a GET that acts), or `None` when a browser says it comes from the portal itself or the
/// client is no browser (it sends neither header, and holds no visitor's cookie).
pub fn cross_origin(headers: &HeaderMap, public: &PublicOrigin) -> Option<&'static str> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = value("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return Some("Requests from other sites are refused; use the portal itself.");
    }
    if let Some(origin) = value(header::ORIGIN.as_str()) {
        let host = value(header::HOST.as_str()).unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        let is_public = public.0.as_deref().is_some_and(|p| p.eq_ignore_ascii_case(origin));
        if origin == "null" || (origin_host != host && !is_public) {
            return Some("Requests from other origins are refused; use the portal itself.");
        }
    }
    None
}

pub async fn guard(
    axum::extract::State(public): axum::extract::State<PublicOrigin>,
    request: Request,
    next: Next,
) -> Response {
    match refusal(request.method(), request.headers(), &public) {
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

    fn check(method: Method, pairs: &[(&'static str, &'static str)]) -> Option<&'static str> {
        refusal(&method, &headers(pairs), &PublicOrigin::default())
    }

    #[test]
    fn cross_site_mutations_are_refused() {
        assert!(check(Method::POST, &[("sec-fetch-site", "cross-site")]).is_some());
        assert!(check(Method::POST, &[("sec-fetch-site", "same-site")]).is_some());
        let foreign = [("host", "127.0.0.1:3000"), ("origin", "http://evil.example")];
        assert!(check(Method::POST, &foreign).is_some());
        assert!(check(Method::POST, &[("host", "a:1"), ("origin", "null")]).is_some());
    }

    #[test]
    fn same_origin_reads_and_scripts_pass() {
        let same = [
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
            ("sec-fetch-site", "same-origin"),
        ];
        assert_eq!(check(Method::POST, &same), None);
        assert_eq!(check(Method::POST, &[]), None, "curl and the CLI send neither");
        assert_eq!(check(Method::GET, &[("sec-fetch-site", "cross-site")]), None);
    }

    #[test]
    fn behind_a_proxy_the_public_origin_is_the_portal() {
        // The proxy forwards to 10.0.0.5:3000 and keeps the browser's Origin.
        let proxied = headers(&[("host", "10.0.0.5:3000"), ("origin", "https://gpu.example.com")]);
        let public = PublicOrigin::from_url(Some("https://gpu.example.com/"));
        assert_eq!(refusal(&Method::POST, &proxied, &public), None);
        assert!(refusal(&Method::POST, &proxied, &PublicOrigin::default()).is_some());
        let other = headers(&[("host", "10.0.0.5:3000"), ("origin", "https://evil.example")]);
        assert!(refusal(&Method::POST, &other, &public).is_some());
    }

    #[test]
    fn websocket_handshakes_from_other_sites_are_refused() {
        let public = PublicOrigin::default();
        let foreign = headers(&[("host", "127.0.0.1:3000"), ("origin", "http://evil.example")]);
        assert!(cross_origin(&foreign, &public).is_some());
        let same = headers(&[("host", "127.0.0.1:3000"), ("origin", "http://127.0.0.1:3000")]);
        assert_eq!(cross_origin(&same, &public), None);
    }
}
