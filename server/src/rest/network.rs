//! `/api/v1/vpcs`, `/subnets`, `/security-groups`, `/security-rules`: the tenant's networks.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::ids::{SecurityGroupUuid, SecurityRuleUuid, SubnetUuid, VpcUuid};
use portal_types::network::{
    NetworkOverview, SecurityGroupCreate, SecurityGroupView, SecurityRuleCreate, SecurityRuleView,
    SubnetCreate, SubnetView, VpcCreate, VpcView,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiError, ApiResult, Body, Caller, PathOf, no_content, reply};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(network_overview))
        .routes(routes!(vpc_create))
        .routes(routes!(vpc_delete))
        .routes(routes!(subnet_create))
        .routes(routes!(subnet_delete))
        .routes(routes!(security_group_create))
        .routes(routes!(security_group_delete))
        .routes(routes!(security_rule_create))
        .routes(routes!(security_rule_delete))
}

/// The tenant's VPCs with their subnets, and its security groups with their rules.
#[utoipa::path(get, path = "/network", tag = "network",
    responses((status = 200, body = NetworkOverview)))]
async fn network_overview(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
) -> ApiResult<NetworkOverview> {
    let result = ctl.network_overview(&caller.0).await;
    reply(&caller, StatusCode::OK, result)
}

/// Creates a VPC.
#[utoipa::path(post, path = "/vpcs", tag = "network",
    request_body = VpcCreate, responses((status = 201, body = VpcView)))]
async fn vpc_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<VpcCreate>,
) -> ApiResult<VpcView> {
    let result = ctl.vpc_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Deletes an empty VPC.
#[utoipa::path(delete, path = "/vpcs/{id}", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Deleted")))]
async fn vpc_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<VpcUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.vpc_delete(&caller.0, id).await;
    no_content(&caller, result)
}

/// Creates a subnet in a VPC (its CIDR may not overlap another of the VPC's).
#[utoipa::path(post, path = "/subnets", tag = "network",
    request_body = SubnetCreate, responses((status = 201, body = SubnetView)))]
async fn subnet_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<SubnetCreate>,
) -> ApiResult<SubnetView> {
    let result = ctl.subnet_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Deletes a subnet no instance uses.
#[utoipa::path(delete, path = "/subnets/{id}", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Deleted")))]
async fn subnet_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<SubnetUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.subnet_delete(&caller.0, id).await;
    no_content(&caller, result)
}

/// Creates a security group (no rules: it lets nothing in).
#[utoipa::path(post, path = "/security-groups", tag = "network",
    request_body = SecurityGroupCreate, responses((status = 201, body = SecurityGroupView)))]
async fn security_group_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<SecurityGroupCreate>,
) -> ApiResult<SecurityGroupView> {
    let result = ctl.security_group_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Deletes a security group no port uses.
#[utoipa::path(delete, path = "/security-groups/{id}", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Deleted")))]
async fn security_group_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<SecurityGroupUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.security_group_delete(&caller.0, id).await;
    no_content(&caller, result)
}

/// Adds a rule to a group; every port in the group gets it at once.
#[utoipa::path(post, path = "/security-rules", tag = "network",
    request_body = SecurityRuleCreate, responses((status = 201, body = SecurityRuleView)))]
async fn security_rule_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<SecurityRuleCreate>,
) -> ApiResult<SecurityRuleView> {
    let result = ctl.security_rule_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Removes a rule; connections it allowed stop at once.
#[utoipa::path(delete, path = "/security-rules/{id}", tag = "network",
    params(("id" = String, Path, format = Uuid)), responses((status = 204, description = "Deleted")))]
async fn security_rule_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<SecurityRuleUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.security_rule_delete(&caller.0, id).await;
    no_content(&caller, result)
}
