//! Administration: tenants and users (provider admins; tenant admins manage their own
//! tenant's users), the fleet's usage, prices, and a scalable unit's tenant fabric.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::billing::{PriceList, PriceSet, ProviderUsage};
use portal_types::ids::TenantUuid;
use portal_types::topology::{
    HostTopology, ScalableUnitFabric, ScalableUnitTopology, parse_scalable_unit,
};
use portal_types::views::{Me, TenantView, UserInvited, UserView};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{
    ApiError, ApiResult, Body, Caller, Page, PageQuery, PathOf, QueryOf, no_content, paginate,
    reply,
};
use super::usage::MonthQuery;

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(tenant_list, tenant_create))
        .routes(routes!(user_list, user_invite))
        .routes(routes!(provider_usage))
        .routes(routes!(price_list, price_set))
        .routes(routes!(scalable_unit_fabric))
        .routes(routes!(scalable_unit_topology))
        .routes(routes!(host_topology))
}

/// Who the caller is: user, tenant, role and the tenants they may act in.
#[utoipa::path(get, path = "/me", tag = "account", responses((status = 200, body = Me)))]
async fn me(State(ctl): State<Arc<Controller>>, caller: Caller) -> ApiResult<Me> {
    let result = ctl.me(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

/// Every tenant (provider admins).
#[utoipa::path(get, path = "/tenants", tag = "admin",
    params(PageQuery), responses((status = 200, body = Page<TenantView>)))]
async fn tenant_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
) -> ApiResult<Page<TenantView>> {
    let result =
        ctl.tenant_list(&caller.0).await.and_then(|all| paginate(all, &page, |t| t.id.to_string()));
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TenantCreate {
    /// Lower-case letters, digits and dashes.
    pub name: String,
}

/// Creates a tenant with the default quotas and networks (provider admins).
#[utoipa::path(post, path = "/tenants", tag = "admin",
    request_body = TenantCreate, responses((status = 201, body = TenantView)))]
async fn tenant_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<TenantCreate>,
) -> ApiResult<TenantView> {
    let result = ctl.tenant_create(&caller.0, create.name.trim()).await;
    reply(&caller, StatusCode::CREATED, result)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantQuery {
    /// The tenant (provider admins); none: the caller's.
    #[param(value_type = Option<String>, format = Uuid)]
    pub tenant: Option<TenantUuid>,
}

/// A tenant's users with their roles (tenant admins of it, provider admins).
#[utoipa::path(get, path = "/users", tag = "admin",
    params(PageQuery, TenantQuery), responses((status = 200, body = Page<UserView>)))]
async fn user_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
    QueryOf(query): QueryOf<TenantQuery>,
) -> ApiResult<Page<UserView>> {
    let result = ctl
        .user_list(&caller.0, query.tenant)
        .await
        .and_then(|all| paginate(all, &page, |u| u.id.to_string()));
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UserInvite {
    /// The tenant (provider admins); none: the caller's.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub tenant_id: Option<TenantUuid>,
    pub username: String,
    /// `viewer`, `member` or `tenant-admin`.
    pub role: String,
}

/// Creates a local account with a role and a one-time password (shown once).
#[utoipa::path(post, path = "/users", tag = "admin",
    request_body = UserInvite, responses((status = 201, body = UserInvited)))]
async fn user_invite(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(invite): Body<UserInvite>,
) -> ApiResult<UserInvited> {
    let result =
        ctl.user_invite(&caller.0, invite.tenant_id, invite.username.trim(), &invite.role).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// The fleet's month: revenue, GPU-hours and utilization per GPU model, scalable unit and
/// tenant (provider admins).
#[utoipa::path(get, path = "/admin/usage", tag = "admin",
    params(MonthQuery), responses((status = 200, body = ProviderUsage)))]
async fn provider_usage(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(query): QueryOf<MonthQuery>,
) -> ApiResult<ProviderUsage> {
    let result = ctl.provider_usage(&caller.0, query.month.as_deref()).await;
    reply(&caller, StatusCode::OK, result)
}

/// Every priced item with its versions (provider admins).
#[utoipa::path(get, path = "/admin/prices", tag = "admin",
    responses((status = 200, body = PriceList)))]
async fn price_list(State(ctl): State<Arc<Controller>>, caller: Caller) -> ApiResult<PriceList> {
    let result = ctl.price_list(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

/// A new price for an item, from now or a later time (provider admins).
#[utoipa::path(post, path = "/admin/prices", tag = "admin",
    request_body = PriceSet, responses((status = 204, description = "Set")))]
async fn price_set(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(set): Body<PriceSet>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.price_set(&caller.0, &set).await;
    no_content(&caller, result)
}

/// One scalable unit's tenant fabric: each rail leaf with the tenant VRFs it holds or should
/// hold (tenant, VPC, L3 VNI, its subnets' L2 VNIs) and whether the leaf confirmed their
/// latest generation, the switch agents' links, and the DPUs of the unit's hosts with their
/// links and tenant ports (provider admins).
#[utoipa::path(get, path = "/admin/scalable-units/{su}/fabric", tag = "admin",
    params(("su" = String, Path, description = "The unit: `su1` or `1`")),
    responses((status = 200, body = ScalableUnitFabric)))]
async fn scalable_unit_fabric(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(su): PathOf<String>,
) -> ApiResult<ScalableUnitFabric> {
    let result = ctl.scalable_unit_fabric_named(&caller.0, &su).await;
    reply(&caller, StatusCode::OK, result)
}

/// One scalable unit's picture: its hosts with their GPUs in use and health, and its rail
/// leaves (provider admins).
#[utoipa::path(get, path = "/admin/scalable-units/{su}/topology", tag = "admin",
    params(("su" = String, Path, description = "The unit: `su1` or `1`")),
    responses((status = 200, body = ScalableUnitTopology)))]
async fn scalable_unit_topology(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(su): PathOf<String>,
) -> ApiResult<ScalableUnitTopology> {
    let result = match parse_scalable_unit(&su) {
        Some(number) => ctl.scalable_unit_topology(&caller.0, number).await,
        None => Err(portal_types::Error::not_found("scalable unit", su.trim())),
    };
    reply(&caller, StatusCode::OK, result)
}

/// One host's picture: GPUs, NVLink partitions, NICs and their rails, NUMA nodes, DPUs and
/// the VMs on it (provider admins).
#[utoipa::path(get, path = "/admin/hosts/{name}/topology", tag = "admin",
    params(("name" = String, Path, description = "The host's name")),
    responses((status = 200, body = HostTopology)))]
async fn host_topology(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(name): PathOf<String>,
) -> ApiResult<HostTopology> {
    let result = ctl.host_topology(&caller.0, &name).await;
    reply(&caller, StatusCode::OK, result)
}
