//! `/api/v1/instances`: list, launch, read, power and delete VMs. Launches, power changes
//! and deletions are sagas that go on after the answer (202): poll the instance's `state`,
//! or follow `/api/v1/events`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use portal_controller::Controller;
use portal_types::Error;
use portal_types::ids::InstanceUuid;
use portal_types::params::{InstanceCreate, PowerAction};
use portal_types::views::{InstanceDetail, InstanceState, InstanceView};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{ApiResult, Body, Caller, Page, PageQuery, PathOf, QueryOf, paginate, reply};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(instance_list, instance_create))
        .routes(routes!(instance_get, instance_delete))
        .routes(routes!(instance_action))
}

/// Narrows an instance list.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceFilter {
    /// Only instances in this state.
    pub state: Option<InstanceState>,
    /// Only instances whose name contains this.
    pub name: Option<String>,
}

/// The tenant's instances, one page at a time.
#[utoipa::path(get, path = "/instances", tag = "instances",
    params(PageQuery, InstanceFilter),
    responses((status = 200, description = "One page of instances", body = Page<InstanceView>)))]
async fn instance_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
    QueryOf(filter): QueryOf<InstanceFilter>,
) -> ApiResult<Page<InstanceView>> {
    let result = ctl.instance_list(&caller.0).await.and_then(|all| {
        let matching = all
            .into_iter()
            .filter(|i| filter.state.is_none_or(|s| i.state == s))
            .filter(|i| filter.name.as_deref().is_none_or(|n| i.name.contains(n)))
            .collect();
        paginate(matching, &page, |i| i.id.to_string())
    });
    reply(&caller, StatusCode::OK, result)
}

/// Launches `count` VMs of a type, all or nothing. With an `Idempotency-Key` header (or the
/// body's `idempotency_key`), repeating the request returns the instances the first made.
#[utoipa::path(post, path = "/instances", tag = "instances",
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes the launch safe to repeat (up to 64 of A-Za-z0-9_-)")),
    request_body = InstanceCreate,
    responses((status = 202, description = "Launched; each instance is provisioning", body = Vec<InstanceView>)))]
async fn instance_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    headers: HeaderMap,
    Body(mut create): Body<InstanceCreate>,
) -> ApiResult<Vec<InstanceView>> {
    let result = async {
        if let Some(key) = headers.get("idempotency-key") {
            let key = key
                .to_str()
                .map_err(|_| Error::invalid("The Idempotency-Key header must be plain text."))?;
            if !create.idempotency_key.is_empty() && create.idempotency_key != key {
                return Err(Error::invalid(
                    "The Idempotency-Key header and the body's idempotency_key differ; send one.",
                ));
            }
            create.idempotency_key = key.to_owned();
        }
        ctl.instance_create(&caller.0, &create).await
    }
    .await;
    reply(&caller, StatusCode::ACCEPTED, result)
}

/// One instance with where it runs, its GPUs, NICs, pinned CPUs and saga timeline.
#[utoipa::path(get, path = "/instances/{id}", tag = "instances",
    params(("id" = String, Path, format = Uuid, description = "The instance's id")),
    responses((status = 200, body = InstanceDetail)))]
async fn instance_get(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<InstanceUuid>,
) -> ApiResult<InstanceDetail> {
    let result = ctl.instance_get(&caller.0, id).await;
    reply(&caller, StatusCode::OK, result)
}

/// Deletes an instance: its VM, disk and addresses go, its GPUs are freed.
#[utoipa::path(delete, path = "/instances/{id}", tag = "instances",
    params(("id" = String, Path, format = Uuid, description = "The instance's id")),
    responses((status = 202, description = "Deleting", body = InstanceView)))]
async fn instance_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<InstanceUuid>,
) -> ApiResult<InstanceView> {
    let result = ctl.instance_delete(&caller.0, id).await;
    reply(&caller, StatusCode::ACCEPTED, result)
}

/// Starts, stops (cleanly), reboots or powers off an instance.
#[utoipa::path(post, path = "/instances/{id}/{action}", tag = "instances",
    params(("id" = String, Path, format = Uuid, description = "The instance's id"),
        ("action" = PowerAction, Path, description = "start, stop, reboot or power-off")),
    responses((status = 202, description = "The change is under way", body = InstanceView)))]
async fn instance_action(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf((id, action)): PathOf<(InstanceUuid, PowerAction)>,
) -> ApiResult<InstanceView> {
    let result = ctl.instance_power(&caller.0, id, action).await;
    reply(&caller, StatusCode::ACCEPTED, result)
}
