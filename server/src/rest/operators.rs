//! Quotas and their defaults, capacity, the audit log, the fleet's hosts, tenant suspension
//! and deletion, and users' roles: what tenant and provider admins run the cloud with.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::ids::{TenantUuid, UserUuid};
use portal_types::params::QuotaLimit;
use portal_types::views::{
    AuditEntry, Capacity, FleetSummary, QuotaLine, TenantDeletion, TenantQuota, TenantView,
};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::admin::TenantQuery;
use super::extract::{
    ApiError, ApiResult, Body, Caller, Page, PageQuery, PathOf, QueryOf, no_content, reply,
};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(quota_get))
        .routes(routes!(quota_set))
        .routes(routes!(quota_default_list))
        .routes(routes!(quota_default_set))
        .routes(routes!(capacity))
        .routes(routes!(audit_list))
        .routes(routes!(host_list))
        .routes(routes!(host_cordon))
        .routes(routes!(tenant_suspend))
        .routes(routes!(tenant_deletion_preview))
        .routes(routes!(tenant_delete))
        .routes(routes!(user_role))
        .routes(routes!(user_disable))
}

/// A tenant's quotas with what it uses (its own for tenant users; any for provider admins).
#[utoipa::path(get, path = "/quotas", tag = "quotas",
    params(TenantQuery), responses((status = 200, body = TenantQuota)))]
async fn quota_get(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(query): QueryOf<TenantQuery>,
) -> ApiResult<TenantQuota> {
    let result = ctl.quota_get(&caller.0, query.tenant).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct QuotaSet {
    #[schema(value_type = String, format = Uuid)]
    pub tenant_id: TenantUuid,
    /// A number, `unlimited`, or empty for the provider's default.
    pub limit: String,
}

/// Sets one of a tenant's limits (provider admins): `instances`, `vcpus`, `memory_gib`,
/// `public_ips` or `gpus:<model>`.
#[utoipa::path(put, path = "/quotas/{resource}", tag = "quotas",
    params(("resource" = String, Path, description = "instances, vcpus, memory_gib, public_ips or gpus:<model>")),
    request_body = QuotaSet, responses((status = 200, body = TenantQuota)))]
async fn quota_set(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(resource): PathOf<String>,
    Body(set): Body<QuotaSet>,
) -> ApiResult<TenantQuota> {
    let result = match QuotaLimit::parse(&set.limit) {
        Ok(limit) => ctl.quota_set(&caller.0, set.tenant_id, &resource, limit).await,
        Err(e) => Err(e),
    };
    reply(&caller, StatusCode::OK, result)
}

/// The limits every tenant gets where it has none of its own (provider admins).
#[utoipa::path(get, path = "/default-quotas", tag = "quotas",
    responses((status = 200, body = Vec<QuotaLine>)))]
async fn quota_default_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
) -> ApiResult<Vec<QuotaLine>> {
    let result = ctl.quota_default_list(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DefaultQuotaSet {
    /// A number, `unlimited`, or empty to remove the default (tenants without their own
    /// limit then get none of the resource).
    pub limit: String,
}

/// Sets one default limit (provider admins).
#[utoipa::path(put, path = "/default-quotas/{resource}", tag = "quotas",
    params(("resource" = String, Path, description = "instances, vcpus, memory_gib, public_ips or gpus:<model>")),
    request_body = DefaultQuotaSet, responses((status = 200, body = Vec<QuotaLine>)))]
async fn quota_default_set(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(resource): PathOf<String>,
    Body(set): Body<DefaultQuotaSet>,
) -> ApiResult<Vec<QuotaLine>> {
    let result = match QuotaLimit::parse(&set.limit) {
        Ok(limit) => ctl.quota_default_set(&caller.0, &resource, limit).await,
        Err(e) => Err(e),
    };
    reply(&caller, StatusCode::OK, result)
}

/// Free GPUs and what can be launched now, per GPU model and scalable unit.
#[utoipa::path(get, path = "/capacity", tag = "quotas", responses((status = 200, body = Capacity)))]
async fn capacity(State(ctl): State<Arc<Controller>>, caller: Caller) -> ApiResult<Capacity> {
    let result = ctl.capacity(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only actions starting with this, e.g. `instance.` or `instance.create`.
    pub action: Option<String>,
    /// Only this actor's entries (a username).
    pub actor: Option<String>,
}

/// The tenant's audit log, newest first, a page at a time (tenant admins; provider admins
/// see every tenant's). Pages are cut in the database after the previous page's last entry:
/// entries written meanwhile do not shift them.
#[utoipa::path(get, path = "/audit", tag = "admin",
    params(PageQuery, AuditFilter), responses((status = 200, body = Page<AuditEntry>)))]
async fn audit_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
    QueryOf(filter): QueryOf<AuditFilter>,
) -> ApiResult<Page<AuditEntry>> {
    let (action, actor) = (filter.action.as_deref(), filter.actor.as_deref());
    let result = ctl.audit_list(&caller.0, action, actor, &page).await;
    reply(&caller, StatusCode::OK, result)
}

/// Every host with its agent link, GPUs and cordon (provider admins).
#[utoipa::path(get, path = "/admin/hosts", tag = "admin",
    responses((status = 200, body = FleetSummary)))]
async fn host_list(State(ctl): State<Arc<Controller>>, caller: Caller) -> ApiResult<FleetSummary> {
    let result = ctl.fleet_summary(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Cordon {
    /// True: no new VMs are placed on the host; those on it keep running.
    pub cordoned: bool,
}

/// Cordons or uncordons a host (provider admins).
#[utoipa::path(put, path = "/admin/hosts/{name}/cordon", tag = "admin",
    params(("name" = String, Path, description = "The host's name")),
    request_body = Cordon, responses((status = 204, description = "Set")))]
async fn host_cordon(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(name): PathOf<String>,
    Body(cordon): Body<Cordon>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.host_set_cordoned(&caller.0, &name, cordon.cordoned).await;
    no_content(&caller, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct Suspend {
    /// True: its users cannot sign in or launch; its VMs keep running.
    pub suspended: bool,
}

/// Suspends or resumes a tenant (provider admins).
#[utoipa::path(put, path = "/tenants/{id}/suspended", tag = "admin",
    params(("id" = String, Path, format = Uuid)),
    request_body = Suspend, responses((status = 200, body = TenantView)))]
async fn tenant_suspend(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<TenantUuid>,
    Body(suspend): Body<Suspend>,
) -> ApiResult<TenantView> {
    let result = ctl.tenant_set_suspended(&caller.0, id, suspend.suspended).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RoleSet {
    /// The tenant (provider admins); none: the caller's.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub tenant_id: Option<TenantUuid>,
    /// `viewer`, `member` or `tenant-admin`.
    pub role: String,
}

/// Changes a user's role in a tenant (its tenant admins, provider admins).
#[utoipa::path(put, path = "/users/{id}/role", tag = "admin",
    params(("id" = String, Path, format = Uuid)),
    request_body = RoleSet, responses((status = 204, description = "Set")))]
async fn user_role(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<UserUuid>,
    Body(set): Body<RoleSet>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.user_set_role(&caller.0, set.tenant_id, id, &set.role).await;
    no_content(&caller, result)
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DisabledSet {
    /// The tenant (provider admins); none: the caller's.
    #[schema(value_type = Option<String>, format = Uuid)]
    pub tenant_id: Option<TenantUuid>,
    /// True: the user cannot sign in, and their sessions and tokens stop working.
    pub disabled: bool,
}

/// Disables or enables a user (their tenant admins, provider admins).
#[utoipa::path(put, path = "/users/{id}/disabled", tag = "admin",
    params(("id" = String, Path, format = Uuid)),
    request_body = DisabledSet, responses((status = 204, description = "Set")))]
async fn user_disable(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<UserUuid>,
    Body(set): Body<DisabledSet>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.user_set_disabled(&caller.0, set.tenant_id, id, set.disabled).await;
    no_content(&caller, result)
}

/// What deleting the tenant would take away; nothing is changed (provider admins).
#[utoipa::path(get, path = "/tenants/{id}/deletion", tag = "admin",
    params(("id" = String, Path, format = Uuid)), responses((status = 200, body = TenantDeletion)))]
async fn tenant_deletion_preview(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<TenantUuid>,
) -> ApiResult<TenantDeletion> {
    let result = ctl.tenant_deletion_preview(&caller.0, id).await;
    reply(&caller, StatusCode::OK, result)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteConfirm {
    /// The tenant's name, repeated.
    #[serde(default)]
    pub confirm: String,
}

/// Deletes a tenant with its memberships and quotas (provider admins); `confirm` must repeat
/// its name, and a tenant with instances is refused with their count.
#[utoipa::path(delete, path = "/tenants/{id}", tag = "admin",
    params(("id" = String, Path, format = Uuid), DeleteConfirm),
    responses((status = 204, description = "Deleted")))]
async fn tenant_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<TenantUuid>,
    QueryOf(confirm): QueryOf<DeleteConfirm>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.tenant_delete(&caller.0, id, &confirm.confirm).await;
    no_content(&caller, result)
}
