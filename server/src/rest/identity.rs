//! `/api/v1/identity-providers`: the OpenID Connect providers users sign in with (provider
//! admins), as the portal's Identity page manages them. Client secrets go in, never out.
//!
//! None of these routes makes the portal fetch anything from the issuer: its discovery
//! document is read only when a user signs in through the provider (`/auth/oidc/…`, outside
//! this API), so a caller cannot make the portal request URLs of their choosing here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::identity::{
    IdentityProviderCreate, IdentityProviderUpdate, IdentityProviderView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{
    ApiError, ApiResult, Body, Caller, Page, PageQuery, PathOf, QueryOf, no_content, paginate,
    reply,
};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(identity_provider_list, identity_provider_create))
        .routes(routes!(identity_provider_get, identity_provider_update, identity_provider_delete))
}

/// The identity providers, by name (provider admins).
#[utoipa::path(get, path = "/identity-providers", tag = "identity",
    params(PageQuery), responses((status = 200, body = Page<IdentityProviderView>)))]
async fn identity_provider_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
) -> ApiResult<Page<IdentityProviderView>> {
    let result = ctl
        .identity_provider_list(&caller.0)
        .await
        .and_then(|all| paginate(all, &page, |p| p.name.clone()));
    reply(&caller, StatusCode::OK, result)
}

/// Adds an identity provider (provider admins): its users land in `tenant` with the role its
/// rules give their groups. Register `<portal>/auth/oidc/callback` as the redirect URL at
/// the provider.
#[utoipa::path(post, path = "/identity-providers", tag = "identity",
    request_body = IdentityProviderCreate, responses((status = 201, body = IdentityProviderView)))]
async fn identity_provider_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<IdentityProviderCreate>,
) -> ApiResult<IdentityProviderView> {
    let result = ctl.identity_provider_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// One identity provider (provider admins).
#[utoipa::path(get, path = "/identity-providers/{name}", tag = "identity",
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, body = IdentityProviderView)))]
async fn identity_provider_get(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(name): PathOf<String>,
) -> ApiResult<IdentityProviderView> {
    let result = ctl.identity_provider_get(&caller.0, &name).await;
    reply(&caller, StatusCode::OK, result)
}

/// Changes an identity provider's settings; its name stays, and so does its client secret
/// unless the body carries `client_secret` (provider admins).
#[utoipa::path(put, path = "/identity-providers/{name}", tag = "identity",
    params(("name" = String, Path, description = "The provider's name")),
    request_body = IdentityProviderUpdate, responses((status = 200, body = IdentityProviderView)))]
async fn identity_provider_update(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(name): PathOf<String>,
    Body(update): Body<IdentityProviderUpdate>,
) -> ApiResult<IdentityProviderView> {
    let result = ctl.identity_provider_update(&caller.0, &name, &update).await;
    reply(&caller, StatusCode::OK, result)
}

/// Removes an identity provider (provider admins): its users stay, with their roles, but no
/// longer sign in through it.
#[utoipa::path(delete, path = "/identity-providers/{name}", tag = "identity",
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 204, description = "Removed")))]
async fn identity_provider_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(name): PathOf<String>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.identity_provider_delete(&caller.0, &name).await;
    no_content(&caller, result)
}
