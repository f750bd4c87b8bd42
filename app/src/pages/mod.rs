pub mod account;
pub mod admin;
pub mod billing_admin;
mod charts;
mod console;
pub mod dashboard;
mod fleet;
pub mod identity;
pub mod images;
pub mod instance;
pub mod invoice;
pub mod keys;
pub mod lazy;
pub mod login;
pub mod networking;
pub mod public_ips;
pub mod tenancy;
pub mod topology;
pub mod usage;

use leptos::prelude::*;
use leptos::server_fn::ServerFn;
use leptos_router::components::Redirect;
use portal_types::Error;
use portal_types::Role;
use portal_types::views::Me;

use crate::api::{Logout, TenantSwitch, get_me};

/// Signs the page in: anonymous visitors go to sign-in, users who must choose their own
/// password to My account, others see the top bar and `page`, or the refusal.
pub(crate) fn guarded(allowed: fn(&Me) -> bool, page: fn(Me) -> AnyView) -> impl IntoView {
    guard(allowed, page, false)
}

/// [`guarded`] for My account, the one page open to users who must choose a password.
pub(crate) fn guarded_account(page: fn(Me) -> AnyView) -> impl IntoView {
    guard(|_| true, page, true)
}

fn guard(allowed: fn(&Me) -> bool, page: fn(Me) -> AnyView, account: bool) -> impl IntoView {
    let me = crate::json::resource(|| (), |_| get_me());
    // The resource is awaited inside `Suspend`, read by this one boundary only (DESIGN §5).
    view! {
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(me) if me.must_change_password && !account => {
                        view! { <Redirect path="/account" /> }.into_any()
                    }
                    Ok(me) if allowed(&me) => view! { <TopBar me=me.clone() /> {page(me)} }.into_any(),
                    Ok(me) => view! {
                        <TopBar me />
                        <main class="dashboard">
                            <p class="error" data-testid="page-refused">"Your role does not allow this page."</p>
                        </main>
                    }.into_any(),
                    Err(Error::Unauthenticated) => view! { <Redirect path="/login" /> }.into_any(),
                    Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The one top bar of every signed-in page: where one can go with one's role, who and
/// where one is, the tenant switch and sign-out.
#[component]
fn TopBar(me: Me) -> impl IntoView {
    let switch = ServerAction::<TenantSwitch>::new();
    // Another tenant means other instances, quota and role: start the page afresh.
    Effect::new(move |_| {
        if let Some(Ok(())) = switch.value().get() {
            let _ = window().location().reload();
        }
    });
    let admin = me.provider_admin;
    let tenant_admin = admin || me.role == Role::TenantAdmin;
    let current = me.tenant_id;
    let memberships = me.memberships.clone();
    view! {
        <header class="topbar">
            <a class="brand" href="/">"GPU Cloud"</a>
            {admin.then(|| view! {
                <a class="nav" href="/admin" data-testid="nav-admin">"Admin"</a>
                <a class="nav" href="/admin/tenants" data-testid="nav-tenants">"Tenants"</a>
                <a class="nav" href="/admin/identity" data-testid="nav-identity">"Identity providers"</a>
                <a class="nav" href="/admin/usage" data-testid="nav-usage-all">"Usage (all tenants)"</a>
                <a class="nav" href="/admin/prices" data-testid="nav-prices">"Prices"</a>
                <a class="nav" href="/admin/public-ip-pools" data-testid="nav-ip-pools">"IP pools"</a>
            })}
            {tenant_admin.then(|| view! {
                <a class="nav" href="/users" data-testid="nav-users">"Users"</a>
                <a class="nav" href="/audit" data-testid="nav-audit">"Audit"</a>
            })}
            <a class="nav" href="/networking" data-testid="nav-networking">"Networking"</a>
            <a class="nav" href="/usage" data-testid="nav-usage">"Usage"</a>
            <a class="nav" href="/keys" data-testid="nav-keys">"SSH keys"</a>
            <a class="nav" href="/account" data-testid="nav-account">"My account"</a>
            <span class="who" data-testid="whoami">
                {me.username.clone()} " · " {me.tenant_name.clone()} " · " {me.role.as_str()}
                {admin.then_some(" · provider admin")}
            </span>
            {(memberships.len() > 1).then(|| view! {
                <select class="switch" data-testid="tenant-switch" on:change=move |ev| {
                    if let Ok(tenant_id) = event_target_value(&ev).parse() {
                        switch.dispatch(TenantSwitch { tenant_id });
                    }
                }>
                    {memberships.iter().map(|m| view! {
                        <option value=m.tenant_id.to_string() selected=m.tenant_id == current>
                            {format!("{} ({})", m.tenant_name, m.role)}
                        </option>
                    }).collect_view()}
                </select>
            })}
            // Signing out leaves the page (for the identity provider's, after single sign-on):
            // the browser posts it natively and follows the server's redirect.
            <form method="post" action=Logout::PATH>
                <button type="submit" class="link" data-testid="logout">"Sign out"</button>
            </form>
        </header>
    }
}
