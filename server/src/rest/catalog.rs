//! `/api/v1/instance-types` and `/api/v1/images`: what can be launched, and (provider
//! admins) changing the catalog.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::ids::ImageUuid;
use portal_types::params::{ImageCreate, InstanceTypeCreate};
use portal_types::views::{ImageView, InstanceType};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{
    ApiError, ApiResult, Body, Caller, Page, PageQuery, PathOf, QueryOf, no_content, paginate,
    reply,
};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(instance_type_list, instance_type_create))
        .routes(routes!(instance_type_delete))
        .routes(routes!(image_list, image_create))
        .routes(routes!(image_retire))
}

/// The catalog of instance types with their prices.
#[utoipa::path(get, path = "/instance-types", tag = "catalog",
    params(PageQuery),
    responses((status = 200, body = Page<InstanceType>)))]
async fn instance_type_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
) -> ApiResult<Page<InstanceType>> {
    let result = ctl
        .instance_type_list(&caller.0)
        .await
        .and_then(|all| paginate(all, &page, |t| t.name.clone()));
    reply(&caller, StatusCode::OK, result)
}

/// Adds an instance type (provider admins).
#[utoipa::path(post, path = "/instance-types", tag = "catalog",
    request_body = InstanceTypeCreate,
    responses((status = 201, body = InstanceType)))]
async fn instance_type_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<InstanceTypeCreate>,
) -> ApiResult<InstanceType> {
    let result = ctl.instance_type_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Removes an instance type no instance uses (provider admins).
#[utoipa::path(delete, path = "/instance-types/{name}", tag = "catalog",
    params(("name" = String, Path, description = "The type's catalog name")),
    responses((status = 204, description = "Removed")))]
async fn instance_type_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(name): PathOf<String>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.instance_type_delete(&caller.0, &name).await;
    no_content(&caller, result)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImageFilter {
    /// Retired images too (provider admins only; ignored for others).
    #[serde(default)]
    pub with_retired: bool,
}

/// The images a launch can boot.
#[utoipa::path(get, path = "/images", tag = "catalog",
    params(PageQuery, ImageFilter),
    responses((status = 200, body = Page<ImageView>)))]
async fn image_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
    QueryOf(filter): QueryOf<ImageFilter>,
) -> ApiResult<Page<ImageView>> {
    let result = ctl
        .image_list(&caller.0, filter.with_retired)
        .await
        .and_then(|all| paginate(all, &page, |i| i.id.to_string()));
    reply(&caller, StatusCode::OK, result)
}

/// Adds an image from the image store (provider admins).
#[utoipa::path(post, path = "/images", tag = "catalog",
    request_body = ImageCreate,
    responses((status = 201, body = ImageView)))]
async fn image_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<ImageCreate>,
) -> ApiResult<ImageView> {
    let result = ctl.image_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Retires an image: no new launches; instances that booted it keep it (provider admins).
#[utoipa::path(post, path = "/images/{id}/retire", tag = "catalog",
    params(("id" = String, Path, format = Uuid, description = "The image's id")),
    responses((status = 200, body = ImageView)))]
async fn image_retire(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<ImageUuid>,
) -> ApiResult<ImageView> {
    let result = ctl.image_retire(&caller.0, id).await;
    reply(&caller, StatusCode::OK, result)
}
