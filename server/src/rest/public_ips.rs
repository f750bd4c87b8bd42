//! `/api/v1/public-ips`: the tenant's public IPs; `/api/v1/public-ip-pools`: the provider's
//! pools (everyone reads them, provider admins change them).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::ids::{PublicIpPoolUuid, PublicIpUuid};
use portal_types::public_ip::{
    PublicIpAttach, PublicIpCreate, PublicIpPoolCreate, PublicIpPoolView, PublicIpView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiError, ApiResult, Body, Caller, PathOf, no_content, reply};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(public_ip_list, public_ip_allocate))
        .routes(routes!(public_ip_get, public_ip_release))
        .routes(routes!(public_ip_attach))
        .routes(routes!(public_ip_detach))
        .routes(routes!(public_ip_pool_list, public_ip_pool_create))
        .routes(routes!(public_ip_pool_delete))
}

/// The tenant's public IPs, by name.
#[utoipa::path(get, path = "/public-ips", tag = "network",
    responses((status = 200, body = Vec<PublicIpView>)))]
async fn public_ip_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
) -> ApiResult<Vec<PublicIpView>> {
    let result = ctl.public_ips(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

/// Takes the lowest free address of a pool (or of the first pool with one), within the
/// tenant's `public_ips` quota.
#[utoipa::path(post, path = "/public-ips", tag = "network",
    request_body = PublicIpCreate, responses((status = 201, body = PublicIpView)))]
async fn public_ip_allocate(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<PublicIpCreate>,
) -> ApiResult<PublicIpView> {
    let result = ctl.public_ip_allocate(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// One public IP: its address, and the instance it is attached to.
#[utoipa::path(get, path = "/public-ips/{id}", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = PublicIpView)))]
async fn public_ip_get(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<PublicIpUuid>,
) -> ApiResult<PublicIpView> {
    let result = ctl.public_ip_get(&caller.0, id).await;
    reply(&caller, StatusCode::OK, result)
}

/// Gives a detached public IP back to its pool.
#[utoipa::path(delete, path = "/public-ips/{id}", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Released")))]
async fn public_ip_release(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<PublicIpUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.public_ip_release(&caller.0, id).await;
    no_content(&caller, result)
}

/// Attaches a public IP to an instance that has none: its DPU maps it to the instance's
/// private address (`state` is `attaching` until the DPU confirms).
#[utoipa::path(post, path = "/public-ips/{id}/attach", tag = "network",
    params(("id" = String, Path, format = Uuid)),
    request_body = PublicIpAttach, responses((status = 200, body = PublicIpView)))]
async fn public_ip_attach(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<PublicIpUuid>,
    Body(attach): Body<PublicIpAttach>,
) -> ApiResult<PublicIpView> {
    let result = ctl.public_ip_attach(&caller.0, id, attach.instance).await;
    reply(&caller, StatusCode::OK, result)
}

/// Detaches a public IP from its instance; the tenant keeps it.
#[utoipa::path(post, path = "/public-ips/{id}/detach", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = PublicIpView)))]
async fn public_ip_detach(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<PublicIpUuid>,
) -> ApiResult<PublicIpView> {
    let result = ctl.public_ip_detach(&caller.0, id).await;
    reply(&caller, StatusCode::OK, result)
}

/// The provider's pools of public addresses, with how many are held.
#[utoipa::path(get, path = "/public-ip-pools", tag = "network",
    responses((status = 200, body = Vec<PublicIpPoolView>)))]
async fn public_ip_pool_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
) -> ApiResult<Vec<PublicIpPoolView>> {
    let result = ctl.public_ip_pools(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

/// Adds a pool (provider admins); it may not overlap another.
#[utoipa::path(post, path = "/public-ip-pools", tag = "admin",
    request_body = PublicIpPoolCreate, responses((status = 201, body = PublicIpPoolView)))]
async fn public_ip_pool_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<PublicIpPoolCreate>,
) -> ApiResult<PublicIpPoolView> {
    let result = ctl.public_ip_pool_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Deletes a pool no tenant holds an address of (provider admins).
#[utoipa::path(delete, path = "/public-ip-pools/{id}", tag = "admin",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Deleted")))]
async fn public_ip_pool_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<PublicIpPoolUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.public_ip_pool_delete(&caller.0, id).await;
    no_content(&caller, result)
}
