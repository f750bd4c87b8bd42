//! `/api/v1/ssh-keys`: the caller's own SSH public keys, which launches put into VMs.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portal_controller::Controller;
use portal_types::ids::SshKeyUuid;
use portal_types::params::SshKeyCreate;
use portal_types::views::SshKeyView;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{
    ApiError, ApiResult, Body, Caller, Page, PageQuery, PathOf, QueryOf, no_content, paginate,
    reply,
};

pub fn router() -> OpenApiRouter<Arc<Controller>> {
    OpenApiRouter::new()
        .routes(routes!(ssh_key_list, ssh_key_create))
        .routes(routes!(ssh_key_delete))
}

/// The caller's SSH keys.
#[utoipa::path(get, path = "/ssh-keys", tag = "ssh-keys",
    params(PageQuery),
    responses((status = 200, body = Page<SshKeyView>)))]
async fn ssh_key_list(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    QueryOf(page): QueryOf<PageQuery>,
) -> ApiResult<Page<SshKeyView>> {
    let result = ctl
        .ssh_key_list(&caller.0)
        .await
        .and_then(|all| paginate(all, &page, |k| k.id.to_string()));
    reply(&caller, StatusCode::OK, result)
}

/// Adds an OpenSSH public key (`ssh-ed25519 AAAA… comment`, RSA or ECDSA).
#[utoipa::path(post, path = "/ssh-keys", tag = "ssh-keys",
    request_body = SshKeyCreate,
    responses((status = 201, body = SshKeyView)))]
async fn ssh_key_create(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    Body(create): Body<SshKeyCreate>,
) -> ApiResult<SshKeyView> {
    let result = ctl.ssh_key_create(&caller.0, &create).await;
    reply(&caller, StatusCode::CREATED, result)
}

/// Deletes one of the caller's keys (VMs that have it keep it).
#[utoipa::path(delete, path = "/ssh-keys/{id}", tag = "ssh-keys",
    params(("id" = String, Path, format = Uuid, description = "The key's id")),
    responses((status = 204, description = "Deleted")))]
async fn ssh_key_delete(
    State(ctl): State<Arc<Controller>>,
    caller: Caller,
    PathOf(id): PathOf<SshKeyUuid>,
) -> Result<StatusCode, ApiError> {
    let result = ctl.ssh_key_delete(&caller.0, id).await;
    no_content(&caller, result)
}
