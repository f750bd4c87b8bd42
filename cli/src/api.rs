//! The REST API over HTTP: one client with timeouts, the bearer token marked sensitive,
//! answers read up to a bound, and the API's errors turned into exit codes.

use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{CliError, exit};

/// Every request ends within this (connect included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer gpuctl reads.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// The longest error sentence shown.
const MAX_MESSAGE: usize = 500;

const REFUSED: &str =
    "The portal refused the token (wrong, expired or revoked): sign in again with `gpuctl login`.";

/// The API's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
    request_id: String,
}

/// One page of a list.
#[derive(Debug, Deserialize)]
struct Page {
    items: Vec<serde_json::Value>,
    next_page_token: Option<String>,
}

pub struct Api {
    client: reqwest::Client,
    /// `https://portal.example.com`, no trailing slash.
    base: String,
    auth: HeaderValue,
}

/// An answer: its status, its `Retry-After` and its body.
pub struct Answer {
    pub status: StatusCode,
    retry_after: Option<u64>,
    pub body: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Result<Api, CliError> {
        let base = normalize_url(base)?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            CliError::new(exit::AUTH, "That is not an API token (it has characters no token has).")
        })?;
        auth.set_sensitive(true);
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gpuctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::other(format!("Cannot make an HTTP client: {}.", cause(&e))))?;
        Ok(Api { client, base, auth })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request; transport failures are errors, any HTTP status is an answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, CliError> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self
            .client
            .request(method, &url)
            .header(AUTHORIZATION, self.auth.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if !query.is_empty() {
            request = request.query(query);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport(&e))? {
            if bytes.len() + chunk.len() > MAX_BODY {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        let body = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer { status, retry_after, body })
    }

    /// A request whose answer must be a success: its body, or the API's error.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<String, CliError> {
        let answer = self.send(method, path, query, body, headers).await?;
        if answer.status.is_success() { Ok(answer.body) } else { Err(api_error(&answer)) }
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<String, CliError> {
        self.call(Method::GET, path, query, None, &[]).await
    }

    /// Every item of a paged list, following `next_page_token` to the end.
    pub async fn list_all(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<Vec<serde_json::Value>, CliError> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        // A portal that keeps answering with a token would loop forever: a bound.
        for _ in 0..10_000 {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            q.push(("limit", "1000"));
            if let Some(t) = &token {
                q.push(("page_token", t));
            }
            let page: Page = decode(&self.get(path, &q).await?)?;
            items.extend(page.items);
            match page.next_page_token {
                Some(next) if Some(&next) != token.as_ref() => token = Some(next),
                _ => return Ok(items),
            }
        }
        Err(CliError::other("The portal's list did not end after 10000 pages."))
    }

    fn transport(&self, e: &reqwest::Error) -> CliError {
        if e.is_timeout() {
            CliError::new(
                exit::UNAVAILABLE,
                format!(
                    "The portal at {} did not answer within {} s.",
                    self.base,
                    REQUEST_TIMEOUT.as_secs()
                ),
            )
        } else if e.is_connect() {
            CliError::new(
                exit::UNAVAILABLE,
                format!("Cannot reach the portal at {}: {}.", self.base, cause(e)),
            )
        } else {
            CliError::new(
                exit::UNAVAILABLE,
                format!("The request to the portal at {} failed: {}.", self.base, cause(e)),
            )
        }
    }
}

/// Seconds the portal asked to wait before retrying, if it did (at most `cap`).
pub fn retry_after(answer: &Answer, cap: u64) -> Option<u64> {
    answer.retry_after.map(|s| s.min(cap))
}

/// `https://host[:port][/prefix]` without a trailing slash; only http and https.
pub fn normalize_url(url: &str) -> Result<String, CliError> {
    let trimmed = url.trim().trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed).map_err(|_| {
        CliError::new(
            exit::INVALID,
            format!("{trimmed:?} is not a URL like https://portal.example.com."),
        )
    })?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(CliError::new(
            exit::INVALID,
            "The portal's URL starts with https:// (or http:// for a local portal).",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(CliError::new(
            exit::INVALID,
            "Put no user or password in the portal's URL; the token signs in.",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(CliError::new(exit::INVALID, "The portal's URL has no query or fragment."));
    }
    Ok(trimmed.to_owned())
}

/// The API's error as the sentence and exit code gpuctl gives.
pub fn api_error(answer: &Answer) -> CliError {
    let status = answer.status.as_u16();
    let code = match status {
        401 => exit::AUTH,
        403 => exit::FORBIDDEN,
        404 => exit::NOT_FOUND,
        400 | 409 | 413 | 422 => exit::INVALID,
        507 => exit::CAPACITY,
        429 | 502 | 503 | 504 => exit::UNAVAILABLE,
        _ => exit::OTHER,
    };
    let message = match serde_json::from_str::<ErrorBody>(&answer.body) {
        Ok(body) => {
            let message = if status == 401 {
                // The portal's sentence speaks of signing in on its pages.
                REFUSED.to_owned()
            } else {
                bounded(&body.message)
            };
            if status >= 500 {
                format!(
                    "{} (request id {}, {})",
                    message.trim_end(),
                    bounded(&body.request_id),
                    body.code
                )
            } else {
                message
            }
        }
        Err(_) => match status {
            401 => REFUSED.to_owned(),
            404 => {
                "The portal has no such API here (HTTP 404): is the URL the portal's?".to_owned()
            }
            _ => format!(
                "The portal answered HTTP {} ({}).",
                status,
                answer.status.canonical_reason().unwrap_or("no reason")
            ),
        },
    };
    CliError::new(code, message)
}

/// A JSON answer as the type gpuctl expects.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, CliError> {
    serde_json::from_str(text).map_err(|e| {
        CliError::other(format!(
            "The portal's answer is not what this gpuctl understands ({e}); is gpuctl as new as \
             the portal?"
        ))
    })
}

/// A value as JSON for `--output json`.
pub fn pretty<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

fn bounded(text: &str) -> String {
    let clean: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if clean.chars().count() > MAX_MESSAGE {
        let mut cut: String = clean.chars().take(MAX_MESSAGE).collect();
        cut.push('…');
        cut
    } else {
        clean
    }
}

fn too_large() -> CliError {
    CliError::other(format!("The portal's answer is larger than {} MiB.", MAX_BODY >> 20))
}

/// The innermost cause of a transport error (e.g. "Connection refused (os error 111)"),
/// never its URL.
fn cause(e: &reqwest::Error) -> String {
    let mut source: &dyn std::error::Error = e;
    while let Some(next) = source.source() {
        source = next;
    }
    bounded(&source.to_string())
}
