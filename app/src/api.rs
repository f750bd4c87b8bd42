//! Server functions, one per control-plane method, at stable URLs `/api/fn/<name>`. Each authenticates from the session,
//! calls the controller, and maps the error to its HTTP status.

use leptos::prelude::*;
use portal_types::ids::{
    ApiTokenUuid, ImageUuid, InstanceUuid, PublicIpPoolUuid, PublicIpUuid, SecurityGroupUuid,
    SecurityRuleUuid, SshKeyUuid, SubnetUuid, TenantUuid, UserUuid, VpcUuid,
};
use portal_types::{Error, billing, network, params, public_ip, views};

#[cfg(feature = "ssr")]
use crate::ssr::{context, fail, money_format};
#[cfg(feature = "ssr")]
use portal_controller::context::Through;

#[server(prefix = "/api/fn", endpoint = "login")]
pub async fn login(username: String, password: String) -> Result<(), Error> {
    let (ctl, session, _) = context().await?;
    let client = crate::ssr::client_address().await;
    let user_id = ctl.login(username.trim(), &password, client).await.map_err(fail)?;
    portal_web::sign_in(&session, user_id).await.map_err(fail)?;
    // A password someone else chose is for signing in once: choose one's own first.
    let must_change =
        ctl.actor(user_id).await.map_err(fail)?.is_some_and(|a| a.must_change_password);
    leptos_axum::redirect(if must_change { "/account" } else { "/" });
    Ok(())
}

#[server(prefix = "/api/fn", endpoint = "logout")]
pub async fn logout() -> Result<(), Error> {
    let (_, session, _) = context().await?;
    // After single sign-on, also end the session at the identity provider, which sends the
    // browser back to /login.
    let provider_logout = portal_web::oidc::logout_url(&session).await.map_err(fail)?;
    portal_web::sign_out(&session).await.map_err(fail)?;
    leptos_axum::redirect(provider_logout.as_deref().unwrap_or("/login"));
    Ok(())
}

#[server(prefix = "/api/fn", endpoint = "get_me")]
pub async fn get_me() -> Result<views::Me, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.me(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "fleet_summary")]
pub async fn fleet_summary() -> Result<views::FleetSummary, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.fleet_summary(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_list")]
pub async fn instance_list() -> Result<Vec<views::InstanceView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_list(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_get")]
pub async fn instance_get(id: InstanceUuid) -> Result<views::InstanceDetail, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_get(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_create")]
pub async fn instance_create(
    create: params::InstanceCreate,
) -> Result<Vec<views::InstanceView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_delete")]
pub async fn instance_delete(id: InstanceUuid) -> Result<views::InstanceView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_power")]
pub async fn instance_power(
    id: InstanceUuid,
    action: params::PowerAction,
) -> Result<views::InstanceView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_power(&opctx, id, action).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "capacity")]
pub async fn capacity() -> Result<views::Capacity, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.capacity(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_type_list")]
pub async fn instance_type_list() -> Result<Vec<views::InstanceType>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_type_list(&opctx).await.map_err(fail)
}

/// The launch form's choices in one answer (see `views::LaunchOptions`).
#[server(prefix = "/api/fn", endpoint = "launch_options")]
pub async fn launch_options() -> Result<views::LaunchOptions, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.launch_options(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_type_create")]
pub async fn instance_type_create(
    create: params::InstanceTypeCreate,
) -> Result<views::InstanceType, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_type_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_type_delete")]
pub async fn instance_type_delete(name: String) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_type_delete(&opctx, &name).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "image_list")]
pub async fn image_list(with_retired: bool) -> Result<Vec<views::ImageView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.image_list(&opctx, with_retired).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "image_create")]
pub async fn image_create(create: params::ImageCreate) -> Result<views::ImageView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.image_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "image_retire")]
pub async fn image_retire(id: ImageUuid) -> Result<views::ImageView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.image_retire(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "quota_get")]
pub async fn quota_get(tenant_id: Option<TenantUuid>) -> Result<views::TenantQuota, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.quota_get(&opctx, tenant_id).await.map_err(fail)
}

/// `limit` empty removes the limit.
#[server(prefix = "/api/fn", endpoint = "quota_set")]
pub async fn quota_set(
    tenant_id: TenantUuid,
    resource: String,
    limit: String,
) -> Result<views::TenantQuota, Error> {
    let (ctl, _, opctx) = context().await?;
    let limit = params::QuotaLimit::parse(&limit).map_err(fail)?;
    ctl.quota_set(&opctx, tenant_id, resource.trim(), limit).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "quota_default_list")]
pub async fn quota_default_list() -> Result<Vec<views::QuotaLine>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.quota_default_list(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "quota_default_set")]
pub async fn quota_default_set(
    resource: String,
    limit: String,
) -> Result<Vec<views::QuotaLine>, Error> {
    let (ctl, _, opctx) = context().await?;
    let limit = params::QuotaLimit::parse(&limit).map_err(fail)?;
    ctl.quota_default_set(&opctx, resource.trim(), limit).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "host_set_cordoned")]
pub async fn host_set_cordoned(host: String, cordoned: bool) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.host_set_cordoned(&opctx, host.trim(), cordoned).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "tenant_list")]
pub async fn tenant_list() -> Result<Vec<views::TenantView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.tenant_list(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "tenant_create")]
pub async fn tenant_create(name: String) -> Result<views::TenantView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.tenant_create(&opctx, name.trim()).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "tenant_set_suspended")]
pub async fn tenant_set_suspended(
    tenant_id: TenantUuid,
    suspended: bool,
) -> Result<views::TenantView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.tenant_set_suspended(&opctx, tenant_id, suspended).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "tenant_deletion_preview")]
pub async fn tenant_deletion_preview(
    tenant_id: TenantUuid,
) -> Result<views::TenantDeletion, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.tenant_deletion_preview(&opctx, tenant_id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "tenant_delete")]
pub async fn tenant_delete(tenant_id: TenantUuid, confirm_name: String) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.tenant_delete(&opctx, tenant_id, confirm_name.trim()).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "user_list")]
pub async fn user_list(tenant_id: Option<TenantUuid>) -> Result<Vec<views::UserView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.user_list(&opctx, tenant_id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "user_invite")]
pub async fn user_invite(
    tenant_id: Option<TenantUuid>,
    username: String,
    role: String,
) -> Result<views::UserInvited, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.user_invite(&opctx, tenant_id, username.trim(), &role).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "user_set_role")]
pub async fn user_set_role(
    tenant_id: Option<TenantUuid>,
    user_id: UserUuid,
    role: String,
) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.user_set_role(&opctx, tenant_id, user_id, &role).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "user_set_disabled")]
pub async fn user_set_disabled(
    tenant_id: Option<TenantUuid>,
    user_id: UserUuid,
    disabled: bool,
) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.user_set_disabled(&opctx, tenant_id, user_id, disabled).await.map_err(fail)
}

/// The newest 500 entries (the first page of the controller's paginated log).
/// A page of the audit log, newest first: [`AUDIT_PAGE`] entries after `page_token` (the
/// previous page's `next_page_token`; none: the newest).
#[server(prefix = "/api/fn", endpoint = "audit_list")]
pub async fn audit_list(
    action: Option<String>,
    actor_name: Option<String>,
    page_token: Option<String>,
) -> Result<portal_types::page::Page<views::AuditEntry>, Error> {
    let (ctl, _, opctx) = context().await?;
    let page = portal_types::page::PageQuery { limit: Some(AUDIT_PAGE), page_token };
    ctl.audit_list(&opctx, action.as_deref(), actor_name.as_deref(), &page).await.map_err(fail)
}

/// Entries per page of the portal's audit log.
pub const AUDIT_PAGE: u32 = 100;

#[server(prefix = "/api/fn", endpoint = "api_token_list")]
pub async fn api_token_list() -> Result<Vec<views::ApiTokenView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.api_token_list(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "api_token_create")]
pub async fn api_token_create(
    name: String,
    role: String,
    days: u32,
) -> Result<views::ApiTokenCreated, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.api_token_create(&opctx, &name, &role, days).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "api_token_revoke")]
pub async fn api_token_revoke(id: ApiTokenUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.api_token_revoke(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "ssh_key_list")]
pub async fn ssh_key_list() -> Result<Vec<views::SshKeyView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.ssh_key_list(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "ssh_key_create")]
pub async fn ssh_key_create(create: params::SshKeyCreate) -> Result<views::SshKeyView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.ssh_key_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "ssh_key_delete")]
pub async fn ssh_key_delete(id: SshKeyUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.ssh_key_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "network_overview")]
pub async fn network_overview() -> Result<network::NetworkOverview, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.network_overview(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "vpc_create")]
pub async fn vpc_create(create: network::VpcCreate) -> Result<network::VpcView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.vpc_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "vpc_delete")]
pub async fn vpc_delete(id: VpcUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.vpc_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "subnet_create")]
pub async fn subnet_create(create: network::SubnetCreate) -> Result<network::SubnetView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.subnet_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "subnet_delete")]
pub async fn subnet_delete(id: SubnetUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.subnet_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "security_group_create")]
pub async fn security_group_create(
    create: network::SecurityGroupCreate,
) -> Result<network::SecurityGroupView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.security_group_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "security_group_delete")]
pub async fn security_group_delete(id: SecurityGroupUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.security_group_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "security_rule_create")]
pub async fn security_rule_create(
    create: network::SecurityRuleCreate,
) -> Result<network::SecurityRuleView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.security_rule_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "security_rule_delete")]
pub async fn security_rule_delete(id: SecurityRuleUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.security_rule_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_list")]
pub async fn public_ip_list() -> Result<Vec<public_ip::PublicIpView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ips(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_get")]
pub async fn public_ip_get(id: PublicIpUuid) -> Result<public_ip::PublicIpView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_get(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_allocate")]
pub async fn public_ip_allocate(
    create: public_ip::PublicIpCreate,
) -> Result<public_ip::PublicIpView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_allocate(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_attach")]
pub async fn public_ip_attach(
    id: PublicIpUuid,
    instance: InstanceUuid,
) -> Result<public_ip::PublicIpView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_attach(&opctx, id, instance).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_detach")]
pub async fn public_ip_detach(id: PublicIpUuid) -> Result<public_ip::PublicIpView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_detach(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_release")]
pub async fn public_ip_release(id: PublicIpUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_release(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_pool_list")]
pub async fn public_ip_pool_list() -> Result<Vec<public_ip::PublicIpPoolView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_pools(&opctx).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_pool_create")]
pub async fn public_ip_pool_create(
    create: public_ip::PublicIpPoolCreate,
) -> Result<public_ip::PublicIpPoolView, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_pool_create(&opctx, &create).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "public_ip_pool_delete")]
pub async fn public_ip_pool_delete(id: PublicIpPoolUuid) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.public_ip_pool_delete(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "instance_port_counters")]
pub async fn instance_port_counters(
    id: InstanceUuid,
) -> Result<Vec<network::PortCountersView>, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.instance_port_counters(&opctx, id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "user_add_to_tenant")]
pub async fn user_add_to_tenant(
    tenant_id: TenantUuid,
    username: String,
    role: String,
) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.user_add_to_tenant(&opctx, tenant_id, username.trim(), &role).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "tenant_switch")]
pub async fn tenant_switch(tenant_id: TenantUuid) -> Result<(), Error> {
    let (ctl, session, opctx) = context().await?;
    portal_web::switch_tenant(&ctl, &session, &opctx, tenant_id).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "password_change")]
pub async fn password_change(current: String, new: String, repeat: String) -> Result<(), Error> {
    let (ctl, session, opctx) = context().await?;
    ctl.password_change(&opctx, &current, &new, &repeat).await.map_err(fail)?;
    // The change ended every session of the user; this browser goes on under a new id (a
    // script with an API token has no session to renew).
    if let (Through::Session, Some(actor)) = (opctx.through(), opctx.actor()) {
        portal_web::sign_in(&session, actor.user_id).await.map_err(fail)?;
    }
    Ok(())
}

#[server(prefix = "/api/fn", endpoint = "session_list")]
pub async fn session_list() -> Result<Vec<views::SessionView>, Error> {
    let (ctl, session, opctx) = context().await?;
    portal_web::session_list(&ctl, &opctx, &session).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "session_end")]
pub async fn session_end(label: String) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    portal_web::session_end(&ctl, &opctx, &label).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "usage_summary")]
pub async fn usage_summary(month: Option<String>) -> Result<billing::UsageSummary, Error> {
    let (ctl, _, opctx) = context().await?;
    let mut summary = ctl.usage_summary(&opctx, month.as_deref()).await.map_err(fail)?;
    summary.format = money_format(&ctl).await;
    Ok(summary)
}

#[server(prefix = "/api/fn", endpoint = "invoice_get")]
pub async fn invoice_get(
    month: String,
    tenant: Option<TenantUuid>,
) -> Result<billing::Invoice, Error> {
    let (ctl, _, opctx) = context().await?;
    let mut invoice = ctl.invoice(&opctx, tenant, &month).await.map_err(fail)?;
    invoice.format = money_format(&ctl).await;
    Ok(invoice)
}

#[server(prefix = "/api/fn", endpoint = "budget_set")]
pub async fn budget_set(set: billing::BudgetSet) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.budget_set(&opctx, &set).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "provider_usage")]
pub async fn provider_usage(month: Option<String>) -> Result<billing::ProviderUsage, Error> {
    let (ctl, _, opctx) = context().await?;
    let mut usage = ctl.provider_usage(&opctx, month.as_deref()).await.map_err(fail)?;
    usage.format = money_format(&ctl).await;
    Ok(usage)
}

#[server(prefix = "/api/fn", endpoint = "price_list")]
pub async fn price_list() -> Result<billing::PriceList, Error> {
    let (ctl, _, opctx) = context().await?;
    let mut list = ctl.price_list(&opctx).await.map_err(fail)?;
    list.format = money_format(&ctl).await;
    Ok(list)
}

#[server(prefix = "/api/fn", endpoint = "price_set")]
pub async fn price_set(set: billing::PriceSet) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.price_set(&opctx, &set).await.map_err(fail)
}

#[server(prefix = "/api/fn", endpoint = "credit_grant")]
pub async fn credit_grant(tenant: TenantUuid, grant: billing::CreditGrant) -> Result<(), Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.credit_grant(&opctx, tenant, &grant).await.map_err(fail)
}
