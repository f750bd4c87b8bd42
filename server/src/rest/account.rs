//! `/api/v1/account`: the caller's own sessions, API tokens and password. Reading works
//! with a token; changing them needs the browser's session (a stolen token must not mint
//! tokens, end sessions or change the password: the controller refuses with 403).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::ids::ApiTokenUuid;
use portal_types::views::{ApiTokenCreated, ApiTokenView, SessionView};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiError, ApiResult, Body, Caller, PathOf, no_content, reply};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(session_list))
        .routes(routes!(session_end))
        .routes(routes!(token_list, token_create))
        .routes(routes!(token_revoke))
        .routes(routes!(password_change))
}

/// The caller's signed-in sessions, each by its label (a hash; session ids are secrets).
#[utoipa::path(get, path = "/account/sessions", tag = "account",
    responses((status = 200, body = Vec<SessionView>)))]
async fn session_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
) -> ApiResult<Vec<SessionView>> {
    let result = ctl.session_list(&caller.0, None).await;
    reply(&caller, StatusCode::OK, result)
}

/// Signs one of the caller's sessions out (browser session only).
#[utoipa::path(delete, path = "/account/sessions/{label}", tag = "account",
    params(("label" = String, Path, description = "The session's label from the list")),
    responses((status = 204, description = "Ended")))]
async fn session_end(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(label): PathOf<String>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.session_end(&caller.0, &label).await;
    no_content(&caller, result)
}

/// The caller's API tokens, newest first (never the secret itself).
#[utoipa::path(get, path = "/account/tokens", tag = "account",
    responses((status = 200, body = Vec<ApiTokenView>)))]
async fn token_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
) -> ApiResult<Vec<ApiTokenView>> {
    let result = ctl.api_token_list(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenCreate {
    /// 1 to 64 characters.
    pub name: String,
    /// `viewer`, `member`, `tenant-admin` (at most the caller's) or `provider-admin`.
    pub role: String,
    /// How many days it lives.
    pub days: u32,
}

/// Makes an API token in the caller's tenant (browser session only); the secret is in this
/// answer and nowhere else.
#[utoipa::path(post, path = "/account/tokens", tag = "account",
    request_body = TokenCreate, responses((status = 201, body = ApiTokenCreated)))]
async fn token_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<TokenCreate>,
) -> ApiResult<ApiTokenCreated> {
    let result = ctl.api_token_create(&caller.0, &create.name, &create.role, create.days).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Revokes one of the caller's tokens (browser session only).
#[utoipa::path(delete, path = "/account/tokens/{id}", tag = "account",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Revoked")))]
async fn token_revoke(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<ApiTokenUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.api_token_revoke(&caller.0, id).await;
    no_content(&caller, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
    /// The new password again.
    pub repeat: String,
}

/// Changes the caller's password (browser session only; users of an identity provider
/// have none).
#[utoipa::path(post, path = "/account/password", tag = "account",
    request_body = PasswordChange, responses((status = 204, description = "Changed")))]
async fn password_change(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(change): Body<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.password_change(&caller.0, &change.current, &change.new, &change.repeat).await;
    no_content(&caller, result)
}
