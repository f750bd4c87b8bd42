//! What every REST handler takes and gives: the caller (API token or web session), JSON
//! bodies and queries whose rejections are the API's own errors, the error body, and pages
//! of lists.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portal_controller::{Controller, OpContext};
use portal_types::Error;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error the API returns: one sentence for a person, a stable code for a script.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable: `unauthenticated`, `bad_credentials`, `throttled`, `forbidden`, `not_found`,
    /// `invalid_request`, `conflict`, `insufficient_capacity`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and what to do, in one sentence.
    pub message: String,
    /// The request id in the server's log (quote it to the operators).
    pub request_id: String,
}

/// An error as the API answers it.
#[derive(Debug)]
pub struct ApiError {
    error: Error,
    request_id: uuid::Uuid,
}

impl ApiError {
    pub fn new(error: Error, opctx: &OpContext) -> Self {
        ApiError { error, request_id: opctx.request_id() }
    }

    /// Before there is an operation: the request's id from the web layer.
    fn at(error: Error, extensions: &axum::http::Extensions) -> Self {
        ApiError { error, request_id: request_id(extensions) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError { error, request_id } = self;
        if let Some(detail) = error.internal_detail() {
            tracing::error!(status = error.status_code(), %request_id, %detail, "API request failed");
        }
        let status =
            StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = match &error {
            Error::Throttled { retry_after_secs } => Some(*retry_after_secs),
            Error::Unavailable { .. } => Some(5),
            _ => None,
        };
        let body = ErrorBody {
            code: error.code().to_owned(),
            message: error.to_string(),
            request_id: request_id.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// The id the web layer gave the request (a new one outside it, as in unit tests).
fn request_id(extensions: &axum::http::Extensions) -> uuid::Uuid {
    extensions.get::<crate::request_id::RequestId>().map_or_else(uuid::Uuid::new_v4, |r| r.0)
}

/// A handler's result: JSON with the status it chose, or the error.
pub type ApiResult<T> = Result<(StatusCode, axum::Json<T>), ApiError>;

/// The answer of a controller call, as `status` with the value as JSON.
pub fn reply<T>(caller: &Caller, status: StatusCode, result: Result<T, Error>) -> ApiResult<T> {
    result.map(|v| (status, axum::Json(v))).map_err(|e| ApiError::new(e, &caller.0))
}

/// The answer of a controller call that returns nothing: 204.
pub fn no_content(caller: &Caller, result: Result<(), Error>) -> Result<StatusCode, ApiError> {
    result.map(|()| StatusCode::NO_CONTENT).map_err(|e| ApiError::new(e, &caller.0))
}

/// Who calls: the holder of the `Authorization: Bearer gpc_…` token, or the signed-in
/// browser session; nobody is a 401. A token that is not valid is refused even when a session exists, so a
/// script never acts as whoever happens to be signed in.
pub struct Caller(pub OpContext);

impl FromRequestParts<Arc<Controller>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctl: &Arc<Controller>,
    ) -> Result<Self, Self::Rejection> {
        let client = parts.extensions.get::<crate::client_ip::ClientIp>().map(|c| c.0);
        let id = request_id(&parts.extensions);
        let refuse = |error: Error| ApiError { error, request_id: id };
        let tagged = |opctx: OpContext| Caller(opctx.with_request_id(id));
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| refuse(Error::Unauthenticated))?;
            return match ctl.token_actor(token, client).await {
                Ok(Some(opctx)) => Ok(tagged(opctx)),
                Ok(None) => Err(refuse(Error::Unauthenticated)),
                Err(e) => Err(refuse(e)),
            };
        }
        let session = portal_web::Session::from_request_parts(parts, ctl)
            .await
            .map_err(|(_, m)| refuse(Error::internal(format!("no session layer: {m}"))))?;
        // Every operation needs a caller: refused here, before the body is even read.
        let actor = portal_web::actor(ctl, &session, client)
            .await
            .map_err(refuse)?
            .ok_or_else(|| refuse(Error::Unauthenticated))?;
        Ok(tagged(OpContext::for_session(Some(actor))))
    }
}

/// A JSON request body; anything else is a 400 that says what is wrong with it.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let extensions = req.extensions().clone();
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::at(
                Error::invalid(format!(
                    "The request body is not what this operation takes ({}); send JSON as the API \
                 document describes.",
                    e.body_text()
                )),
                &extensions,
            )),
        }
    }
}

/// Query parameters; ones that do not parse are a 400 that names them.
pub struct QueryOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(QueryOf(v)),
            Err(e) => Err(ApiError::at(
                Error::invalid(format!("The query parameters are not valid ({}).", e.body_text())),
                &parts.extensions,
            )),
        }
    }
}

/// Path parameters (ids, names); one that does not parse is a 400 that names it.
pub struct PathOf<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathOf<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathOf(v)),
            Err(e) => Err(ApiError::at(
                Error::invalid(format!("A path parameter is not valid ({}).", e.body_text())),
                &parts.extensions,
            )),
        }
    }
}

/// Which page of a list, and one page of it (shared with the control plane, whose audit log
/// is paginated in the database).
pub use portal_types::page::{Page, PageQuery};

/// Cuts one page out of `items`, ordered by `key` (unique, e.g. the id).
pub fn paginate<T>(
    mut items: Vec<T>,
    query: &PageQuery,
    key: impl Fn(&T) -> String,
) -> Result<Page<T>, Error> {
    let limit = query.limit()?;
    items.sort_by_key(&key);
    let start = match &query.page_token {
        Some(after) => items.partition_point(|item| key(item) <= *after),
        None => 0,
    };
    let mut page: Vec<T> = items.into_iter().skip(start).collect();
    let next_page_token = if page.len() > limit as usize {
        page.truncate(limit as usize);
        page.last().map(&key)
    } else {
        None
    };
    Ok(Page { items: page, next_page_token })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(limit: u32, token: Option<&str>) -> Result<Page<u32>, Error> {
        let query = PageQuery { limit: Some(limit), page_token: token.map(str::to_owned) };
        paginate(vec![5, 1, 4, 2, 3], &query, |n| n.to_string())
    }

    #[test]
    fn pages_walk_the_whole_list_once_in_order() {
        let first = page(2, None).unwrap();
        assert_eq!(first.items, [1, 2]);
        let second = page(2, first.next_page_token.as_deref()).unwrap();
        assert_eq!(second.items, [3, 4]);
        let last = page(2, second.next_page_token.as_deref()).unwrap();
        assert_eq!(last.items, [5]);
        assert_eq!(last.next_page_token, None);
        assert_eq!(page(5, None).unwrap().next_page_token, None);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert!(page(0, None).is_err());
        assert!(page(portal_types::page::MAX_LIMIT + 1, None).is_err());
    }
}
