//! Server functions, one per control-plane method, at stable URLs `/api/fn/<name>`. Each authenticates from the session,
//! calls the controller, and maps the error to its HTTP status.

use leptos::prelude::*;
use portal_types::ids::{InstanceUuid, TenantUuid};
use portal_types::{Error, params, views};

#[cfg(feature = "ssr")]
use crate::ssr::{context, fail};

#[server(prefix = "/api/fn", endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<(), Error> {
    let (ctl, session, _) = context().await?;
    let client = crate::ssr::client_address().await;
    let user_id = ctl.login(username.trim(), &password, client).await.map_err(fail)?;
    ctl.session_sign_in(&session, user_id).await.map_err(fail)?;
    leptos_axum::redirect("/");
    Ok(())
}

#[server(prefix = "/api/fn", endpoint = "logout")]
pub async fn logout() -> Result<(), Error> {
    let (ctl, session, _) = context().await?;
    ctl.session_sign_out(&session).await.map_err(fail)?;
    leptos_axum::redirect("/login");
    Ok(())
}

#[server(prefix = "/api/fn", endpoint = "get_me")]
pub async fn get_me() -> Result<views::Me, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.me(actor.as_ref()).map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "fleet_summary")]
pub async fn fleet_summary() -> Result<views::FleetSummary, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.fleet_summary(actor.as_ref()).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_list")]
pub async fn instance_list() -> Result<Vec<views::InstanceView>, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.instance_list(actor.as_ref()).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_create")]
pub async fn instance_create(
    create: params::InstanceCreate,
) -> Result<Vec<views::InstanceView>, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.instance_create(actor.as_ref(), &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_delete")]
pub async fn instance_delete(id: InstanceUuid) -> Result<views::InstanceView, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.instance_delete(actor.as_ref(), id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "capacity")]
pub async fn capacity() -> Result<views::Capacity, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.capacity(actor.as_ref()).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_type_list")]
pub async fn instance_type_list() -> Result<Vec<views::InstanceType>, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.instance_type_list(actor.as_ref()).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_type_create")]
pub async fn instance_type_create(
    create: params::InstanceTypeCreate,
) -> Result<views::InstanceType, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.instance_type_create(actor.as_ref(), &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_type_delete")]
pub async fn instance_type_delete(name: String) -> Result<(), Error> {
    let (ctl, _, actor) = context().await?;
    ctl.instance_type_delete(actor.as_ref(), &name).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "quota_get")]
pub async fn quota_get(tenant_id: Option<TenantUuid>) -> Result<views::TenantQuota, Error> {
    let (ctl, _, actor) = context().await?;
    ctl.quota_get(actor.as_ref(), tenant_id).await.map_err(fail)
}

/// `limit` empty removes the limit.
#[server(prefix = "/api/fn", endpoint = "quota_set")]
pub async fn quota_set(
    tenant_id: TenantUuid,
    resource: String,
    limit: String,
) -> Result<views::TenantQuota, Error> {
    let (ctl, _, actor) = context().await?;
    let limit = match limit.trim() {
        "" => None,
        text => Some(text.parse::<u64>().map_err(|_| {
            fail(Error::invalid(format!(
                "The limit \"{text}\" is not a whole number; enter one, or leave it empty for no \
                 limit."
            )))
        })?),
    };
    ctl.quota_set(actor.as_ref(), tenant_id, resource.trim(), limit).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "host_set_cordoned")]
pub async fn host_set_cordoned(host: String, cordoned: bool) -> Result<(), Error> {
    let (ctl, _, actor) = context().await?;
    ctl.host_set_cordoned(actor.as_ref(), host.trim(), cordoned).await.map_err(fail)
}
