//! Tenancy pages: tenants (provider admins), users and roles of a tenant, and the audit log
//! (tenant admins for their tenant, provider admins everywhere).

use leptos::prelude::*;
use portal_types::Error;
use portal_types::Role;
use portal_types::ids::TenantUuid;
use portal_types::views::{Me, TenantDeletion};

use crate::api::{
    CreditGrant, TenantCreate, TenantDelete, TenantSetSuspended, UserAddToTenant, UserInvite,
    UserSetDisabled, UserSetRole, audit_list, tenant_deletion_preview, tenant_list, user_list,
};
use crate::form::{FormAction, PostForm};

fn first_error(errors: Vec<Option<Error>>) -> Option<String> {
    errors.into_iter().flatten().next().map(|e| e.to_string())
}

#[component]
pub fn TenantsPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <Tenants /> }.into_any())
}

#[component]
fn Tenants() -> impl IntoView {
    let create = FormAction::<TenantCreate>::new();
    let suspend = ServerAction::<TenantSetSuspended>::new();
    let delete = FormAction::<TenantDelete>::new();
    let credit = FormAction::<CreditGrant>::new();
    // The tenant whose deletion is being confirmed, and what it would take away.
    let confirming = RwSignal::new(None::<TenantUuid>);
    let impact = crate::json::resource(
        move || confirming.get(),
        |id| async move {
            match id {
                Some(id) => tenant_deletion_preview(id).await.map(Some),
                None => Ok(None),
            }
        },
    );
    Effect::new(move |_| {
        if delete.value().get().is_some_and(|r| r.is_ok()) {
            confirming.set(None);
        }
    });
    let tenants = crate::json::resource(
        move || (create.version().get(), suspend.version().get(), delete.version().get()),
        |_| tenant_list(),
    );
    let error = move || {
        first_error(vec![
            create.value().get().and_then(|r| r.err()),
            suspend.value().get().and_then(|r| r.err()),
            delete.value().get().and_then(|r| r.err()),
            credit.value().get().and_then(|r| r.err()),
        ])
    };
    let credited = move || matches!(credit.value().get(), Some(Ok(())));
    view! {
        <main class="dashboard">
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="tenancy-error">{error}</p>
            </Show>
            <Show when=credited>
                <p class="notice" data-testid="credit-done">"Credit added: the tenant's Usage page shows what is left."</p>
            </Show>
            <section class="panel">
                <h2>"Tenants"</h2>
                <Transition fallback=|| ()>
                    {move || tenants.get().map(|list| view! {
                        <table class="instances" data-testid="tenant-table">
                            <thead><tr><th>"Name"</th><th>"Instances"</th><th>"Members"</th><th>"State"</th><th></th><th></th><th>"Prepaid credit"</th></tr></thead>
                            <tbody>
                                {list.unwrap_or_default().into_iter().map(|t| {
                                    let id = t.id;
                                    let suspended = t.suspended;
                                    view! {
                                        <tr data-testid="tenant-row" data-name=t.name.clone()>
                                            <td class="name"><a href=format!("/users?tenant={id}")>{t.name.clone()}</a></td>
                                            <td>{t.instances}</td>
                                            <td>{t.members}</td>
                                            <td>{if suspended { "suspended" } else { "active" }}</td>
                                            <td><a href=format!("/admin?tenant={id}") data-testid="tenant-quotas">"Quotas"</a></td>
                                            <td>
                                                <button on:click=move |_| { suspend.dispatch(TenantSetSuspended { tenant_id: id, suspended: !suspended }); }>
                                                    {if suspended { "Resume" } else { "Suspend" }}
                                                </button>
                                                " "
                                                <button class="danger" data-testid="tenant-delete" on:click=move |_| confirming.set(Some(id))>"Delete…"</button>
                                            </td>
                                            <td>
                                                <PostForm action=credit attr:class="inline" attr:data-testid="credit-form">
                                                    <input type="hidden" name="tenant" value=id.to_string() />
                                                    <input type="text" name="grant[amount]" required inputmode="decimal" placeholder="500.00" class="narrow" data-testid="credit-amount" />
                                                    <input type="text" name="grant[note]" maxlength="200" placeholder="note" class="narrow" data-testid="credit-note" />
                                                    <button type="submit" data-testid="credit-submit">"Add credit"</button>
                                                </PostForm>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    })}
                </Transition>
                <Transition fallback=|| ()>
                    {move || impact.get().and_then(|r| r.ok()).flatten().map(|d| deletion_confirmation(d, delete, confirming))}
                </Transition>
                <PostForm action=create attr:class="launch" attr:data-testid="tenant-form">
                    <label>"Name" <input type="text" name="name" required placeholder="acme" /></label>
                    <button type="submit" class="primary">"Create tenant"</button>
                </PostForm>
            </section>
        </main>
    }
}

/// Names what deleting the tenant takes away, then asks for its name.
fn deletion_confirmation(
    d: TenantDeletion,
    delete: FormAction<TenantDelete>,
    confirming: RwSignal<Option<TenantUuid>>,
) -> impl IntoView {
    let plural = |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    // "dora belongs", "dora and eve belong".
    let verb = |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
    let mut lost = Vec::new();
    if !d.members.is_empty() {
        let n = d.members.len();
        lost.push(format!(
            "{} {} access: {}",
            plural(n as u64, "member", "members"),
            verb(n, "loses", "lose"),
            d.members.join(", ")
        ));
    }
    if !d.stranded.is_empty() {
        lost.push(format!(
            "{} {} to no other tenant and can no longer sign in",
            d.stranded.join(", "),
            verb(d.stranded.len(), "belongs", "belong")
        ));
    }
    if d.api_tokens > 0 {
        lost.push(format!(
            "{} {} working",
            plural(d.api_tokens, "API token", "API tokens"),
            verb(d.api_tokens as usize, "stops", "stop")
        ));
    }
    if d.ssh_keys > 0 {
        lost.push(format!(
            "{} of its members {} deleted",
            plural(d.ssh_keys, "SSH key", "SSH keys"),
            verb(d.ssh_keys as usize, "is", "are")
        ));
    }
    if d.quotas > 0 {
        lost.push(format!(
            "{} {} removed",
            plural(d.quotas, "quota limit", "quota limits"),
            verb(d.quotas as usize, "is", "are")
        ));
    }
    if !d.identity_providers.is_empty() {
        lost.push(format!(
            "single sign-on through {} is deleted with the tenant",
            d.identity_providers.join(", ")
        ));
    }
    if d.instance_history > 0 {
        lost.push(format!(
            "the history of {} is erased",
            plural(d.instance_history, "deleted instance", "deleted instances")
        ));
    }
    if lost.is_empty() {
        lost.push("nothing else: the tenant is empty".to_owned());
    }
    let blocked = d.instances > 0;
    let tenant_id = d.tenant_id.to_string();
    let placeholder = format!("type {} to confirm", d.name);
    let blocker = format!(
        "{} still has {}; delete them first.",
        d.name,
        plural(d.instances, "instance", "instances")
    );
    view! {
        <div class="confirm-box" role="dialog" data-testid="tenant-deletion" data-name=d.name.clone()>
            <h3>{format!("Delete {}?", d.name)}</h3>
            {blocked.then(|| view! { <p class="error" data-testid="tenant-deletion-blocked">{blocker}</p> })}
            <p>"Deleting it cannot be undone, and:"</p>
            <ul data-testid="tenant-deletion-lost">
                {lost.into_iter().map(|l| view! { <li>{l}</li> }).collect_view()}
            </ul>
            <PostForm action=delete attr:class="inline">
                <input type="hidden" name="tenant_id" value=tenant_id />
                <input type="text" name="confirm_name" placeholder=placeholder
                    class="confirm" data-testid="tenant-deletion-name" disabled=blocked />
                <button type="submit" class="danger" data-testid="tenant-deletion-submit" disabled=blocked>"Delete for good"</button>
                " "
                <button type="button" on:click=move |_| confirming.set(None)>"Cancel"</button>
            </PostForm>
        </div>
    }
}

#[component]
pub fn UsersPage() -> impl IntoView {
    super::guarded(
        |me| me.provider_admin || me.role == Role::TenantAdmin,
        |me| view! { <Users me /> }.into_any(),
    )
}

#[component]
fn Users(me: Me) -> impl IntoView {
    let query = leptos_router::hooks::use_query_map();
    let tenant = move || query.with(|q| q.get("tenant").and_then(|t| t.parse().ok()));
    let invite = FormAction::<UserInvite>::new();
    let set_role = ServerAction::<UserSetRole>::new();
    let disable = ServerAction::<UserSetDisabled>::new();
    let add = FormAction::<UserAddToTenant>::new();
    let users = crate::json::resource(
        move || {
            (
                tenant(),
                invite.version().get(),
                set_role.version().get(),
                disable.version().get(),
                add.version().get(),
            )
        },
        |(tenant, ..)| user_list(tenant),
    );
    let error = move || {
        first_error(vec![
            invite.value().get().and_then(|r| r.err()),
            set_role.value().get().and_then(|r| r.err()),
            disable.value().get().and_then(|r| r.err()),
            add.value().get().and_then(|r| r.err()),
        ])
    };
    let provider_admin = me.provider_admin;
    let own_tenant = me.tenant_id;
    let invited = move || invite.value().get().and_then(|r| r.ok());
    view! {
        <main class="dashboard">
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="tenancy-error">{error}</p>
            </Show>
            {move || invited().map(|i| view! {
                <p class="panel" data-testid="invited">
                    "Invited " <strong>{i.user.username.clone()}</strong> ". One-time password (shown only now): "
                    <code data-testid="one-time-password">{i.one_time_password.clone()}</code>
                </p>
            })}
            <section class="panel">
                <h2>"Users"</h2>
                <Transition fallback=|| ()>
                    {move || users.get().map(|list| view! {
                        <table class="instances" data-testid="user-table">
                            <thead><tr><th>"User"</th><th>"Role"</th><th>"State"</th><th></th></tr></thead>
                            <tbody>
                                {list.unwrap_or_default().into_iter().map(|u| {
                                    let id = u.id;
                                    let disabled = u.disabled;
                                    let current = u.role;
                                    view! {
                                        <tr data-testid="user-row" data-name=u.username.clone()>
                                            <td class="name">{u.username.clone()}{u.provider_admin.then_some(" (provider admin)")}{u.provider.clone().map(|p| view! { <span class="muted" data-testid="user-provider">" · via " {p}</span> })}</td>
                                            <td>
                                                <select on:change=move |ev| {
                                                    set_role.dispatch(UserSetRole { tenant_id: tenant(), user_id: id, role: event_target_value(&ev) });
                                                }>
                                                    {Role::ALL.map(|r| view! { <option value=r.as_str() selected=r == current>{r.as_str()}</option> }).collect_view()}
                                                </select>
                                            </td>
                                            <td>{if disabled { "disabled" } else { "active" }}</td>
                                            <td>
                                                <button on:click=move |_| { disable.dispatch(UserSetDisabled { tenant_id: tenant(), user_id: id, disabled: !disabled }); }>
                                                    {if disabled { "Enable" } else { "Disable" }}
                                                </button>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </tbody>
                        </table>
                    })}
                </Transition>
                <PostForm action=invite attr:class="launch" attr:data-testid="invite-form">
                    {move || tenant().map(|t: portal_types::ids::TenantUuid| view! { <input type="hidden" name="tenant_id" value=t.to_string() /> })}
                    <label>"Username" <input type="text" name="username" required placeholder="alice@example.com" /></label>
                    <label>"Role"
                        <select name="role">{Role::ALL.map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}</select>
                    </label>
                    <button type="submit" class="primary">"Invite"</button>
                </PostForm>
                <Show when=move || provider_admin>
                    <PostForm action=add attr:class="launch" attr:data-testid="add-form">
                        <input type="hidden" name="tenant_id" value=move || tenant().unwrap_or(own_tenant).to_string() />
                        <label>"Existing user" <input type="text" name="username" required placeholder="alice" /></label>
                        <label>"Role"
                            <select name="role">{Role::ALL.map(|r| view! { <option value=r.as_str()>{r.as_str()}</option> }).collect_view()}</select>
                        </label>
                        <button type="submit">"Add to this tenant"</button>
                    </PostForm>
                </Show>
            </section>
        </main>
    }
}

#[component]
pub fn AuditPage() -> impl IntoView {
    super::guarded(
        |me| me.provider_admin || me.role == Role::TenantAdmin,
        |_| view! { <Audit /> }.into_any(),
    )
}

#[component]
fn Audit() -> impl IntoView {
    let action = RwSignal::new(String::new());
    // The page shown: the token of the one after each page seen before it (none: newest).
    let pages = RwSignal::new(vec![None::<String>]);
    let entries = crate::json::resource(
        move || (action.get(), pages.with(|p| p.last().cloned().flatten())),
        |(a, token)| audit_list(Some(a), None, token),
    );
    view! {
        <main class="dashboard">
            <section class="panel">
                <h2>"Audit log"</h2>
                <label class="filter">"Action starts with "
                    <input type="text" placeholder="instance." data-testid="audit-filter"
                        on:change=move |ev| {
                            pages.set(vec![None]);
                            action.set(event_target_value(&ev));
                        } />
                </label>
                <Transition fallback=|| ()>
                    {move || entries.get().map(|page| match page {
                        Ok(page) => {
                            let next = page.next_page_token.clone();
                            let list = page.items;
                            view! {
                            <p class="pager">
                                <button type="button" data-testid="audit-newer"
                                    disabled=move || pages.with(|p| p.len() < 2)
                                    on:click=move |_| pages.update(|p| { p.pop(); })>
                                    "‹ Newer"
                                </button>
                                <span class="muted" data-testid="audit-page">
                                    {move || format!("Page {}", pages.with(Vec::len))}
                                </span>
                                <button type="button" data-testid="audit-older"
                                    disabled=next.is_none()
                                    on:click=move |_| if let Some(token) = next.clone() {
                                        pages.update(|p| p.push(Some(token)));
                                    }>
                                    "Older ›"
                                </button>
                            </p>
                            <table class="instances" data-testid="audit-table">
                                <thead><tr><th>"When"</th><th>"Who"</th><th>"What"</th><th>"Object"</th><th>"From"</th><th>"Result"</th></tr></thead>
                                <tbody>
                                    {list.into_iter().map(|e| {
                                        let failed = e.outcome != "ok";
                                        view! {
                                        <tr data-testid="audit-row">
                                            <td class="muted">{e.at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                                            <td>{e.actor}</td>
                                            <td>{e.action}</td>
                                            <td>{format!("{} {}", e.object_kind, e.object_id)}</td>
                                            <td>{e.client}</td>
                                            <td class:error=failed>{e.outcome}</td>
                                        </tr>
                                    }}).collect_view()}
                                </tbody>
                            </table>
                        }.into_any()
                        }
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    })}
                </Transition>
            </section>
        </main>
    }
}
