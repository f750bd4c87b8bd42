//! Public IPs. "Networking › Public IPs" (`/networking/public-ips`): the tenant's public
//! addresses (name, address, pool, state, the instance each is attached to and the private
//! address it maps to), and for members and admins the forms that take one from a pool,
//! attach a free one to an instance without one, detach it and release it. While one is
//! still being mapped on its instance's DPU (`attaching`) the list is read again every few
//! seconds until it is `attached`. "IP pools" (`/admin/public-ip-pools`, provider admins):
//! the pools of public addresses, each checked as it is typed, and their deletion.

use std::collections::{HashMap, HashSet};

use leptos::ev::SubmitEvent;
use leptos::prelude::*;
use portal_types::Role;
use portal_types::ids::{InstanceUuid, PublicIpUuid};
use portal_types::public_ip::{
    PublicIpCreate, PublicIpPoolCreate, PublicIpPoolView, PublicIpState, PublicIpView,
};
use portal_types::views::{InstanceState, InstanceView, LiveEvent, Me};

use crate::api::{
    PublicIpAllocate, PublicIpAttach, PublicIpDetach, PublicIpPoolCreate as AddPool,
    PublicIpPoolDelete, PublicIpRelease, instance_list, public_ip_list, public_ip_pool_list,
};

/// How often the list is read again while an address is still `attaching`.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const ATTACHING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// An action's refusal, as the sentence to show.
fn error_of<T>(value: Option<Result<T, portal_types::Error>>) -> Option<String> {
    value.and_then(|r| r.err()).map(|e| e.to_string())
}

/// The two networking pages, as tabs (also on `/networking`).
pub(crate) fn networking_tabs(public_ips: bool) -> impl IntoView {
    view! {
        <nav class="tabs" data-testid="networking-tabs">
            <a href="/networking" class:active=!public_ips data-testid="tab-networks">"VPCs and security groups"</a>
            <a href="/networking/public-ips" class:active=public_ips data-testid="tab-public-ips">"Public IPs"</a>
        </nav>
    }
}

#[component]
pub fn PublicIpsPage() -> impl IntoView {
    super::guarded(|_| true, |me| view! { <PublicIps me /> }.into_any())
}

/// Every action of the page, so that any of them refreshes the list.
#[derive(Clone, Copy)]
struct Actions {
    allocate: ServerAction<PublicIpAllocate>,
    attach: ServerAction<PublicIpAttach>,
    detach: ServerAction<PublicIpDetach>,
    release: ServerAction<PublicIpRelease>,
}

impl Actions {
    fn new() -> Self {
        Actions {
            allocate: ServerAction::new(),
            attach: ServerAction::new(),
            detach: ServerAction::new(),
            release: ServerAction::new(),
        }
    }

    fn versions(&self) -> [usize; 4] {
        [
            self.allocate.version().get(),
            self.attach.version().get(),
            self.detach.version().get(),
            self.release.version().get(),
        ]
    }

    /// The latest refusal of an attach, detach or release, for the line above the list.
    fn row_error(&self) -> Option<String> {
        error_of(self.attach.value().get())
            .or_else(|| error_of(self.detach.value().get()))
            .or_else(|| error_of(self.release.value().get()))
    }
}

/// The instances an address may go to: not being deleted or failed, and without one
/// (`taken`).
fn attachable(
    taken: &HashSet<InstanceUuid>,
    instances: &[InstanceView],
) -> Vec<(InstanceUuid, String)> {
    instances
        .iter()
        .filter(|i| {
            !matches!(
                i.state,
                InstanceState::Deleting | InstanceState::Deleted | InstanceState::Failed
            )
        })
        .filter(|i| !taken.contains(&i.id))
        .map(|i| (i.id, i.name.clone()))
        .collect()
}

/// The page's state that outlives a refetch of the list (which renders the rows again).
#[derive(Clone, Copy)]
struct RowState {
    /// The tenant's instances, to attach to (none for viewers). A resource of its own: a
    /// server function called after another's answer in the same resource would run
    /// without the request's context on the server.
    instances: Resource<Result<Vec<InstanceView>, portal_types::Error>, crate::json::Json>,
    /// The instance picked for each free address.
    picked: RwSignal<HashMap<PublicIpUuid, String>>,
    /// The address whose release is being confirmed: its id and how to name it.
    confirming: RwSignal<Option<(PublicIpUuid, String)>>,
}

#[component]
fn PublicIps(me: Me) -> impl IntoView {
    let actions = Actions::new();
    let can_write = me.role >= Role::Member || me.provider_admin;
    let tick = RwSignal::new(0u64);
    let listing =
        crate::json::resource(move || (actions.versions(), tick.get()), |_| public_ip_list());
    let instances = crate::json::resource(
        move || (actions.versions(), tick.get()),
        move |_| async move { if can_write { instance_list().await } else { Ok(Vec::new()) } },
    );
    // Read again while an address is being mapped, until its DPU has it.
    Effect::new(move |_| {
        let attaching = listing
            .get()
            .and_then(Result::ok)
            .is_some_and(|ips| ips.iter().any(|ip| ip.state == PublicIpState::Attaching));
        #[cfg(feature = "hydrate")]
        if attaching {
            set_timeout(
                move || {
                    let _ = tick.try_update(|t| *t += 1);
                },
                ATTACHING_EVERY,
            );
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = attaching;
    });
    // An instance that changed (launched, deleted: its address detached) changes the list;
    // so may anything missed while the stream was away.
    let connected = StoredValue::new(false);
    crate::live::subscribe(
        move |event| {
            if let LiveEvent::Instance(_) = event {
                tick.update(|t| *t += 1);
            }
        },
        move || {
            if connected.get_value() {
                tick.update(|t| *t += 1);
            }
            connected.set_value(true);
        },
    );
    let rows = RowState {
        instances,
        picked: RwSignal::new(HashMap::new()),
        confirming: RwSignal::new(None),
    };
    Effect::new(move |_| {
        if let Some(Ok(())) = actions.release.value().get() {
            rows.confirming.set(None);
        }
    });
    view! {
        <main class="dashboard">
            {networking_tabs(true)}
            <section class="panel" data-testid="public-ips">
                <h2>"Public IPs"</h2>
                <p class="muted">"An address from the provider's pools, reachable from the internet. Attached to an instance, it maps one to one to the instance's private address on its DPU; its security groups still decide what gets in. It is billed by the hour while attached, whether the instance runs or not."</p>
                <Show when=move || actions.row_error().is_some()>
                    <p class="error" role="alert" data-testid="public-ip-error">{move || actions.row_error()}</p>
                </Show>
                <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match listing.await {
                            Ok(ips) => view! { <IpTable ips actions rows can_write /> }.into_any(),
                            Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                        }
                    })}
                </Transition>
                <ReleaseConfirmation actions rows />
            </section>
            {can_write.then(|| view! { <Allocate actions /> })}
        </main>
    }
}

#[component]
fn IpTable(
    ips: Vec<PublicIpView>,
    actions: Actions,
    rows: RowState,
    can_write: bool,
) -> impl IntoView {
    if ips.is_empty() {
        return view! { <p class="empty" data-testid="no-public-ips">"No public IPs yet."</p> }
            .into_any();
    }
    let taken: HashSet<InstanceUuid> = ips.iter().filter_map(|ip| ip.instance).collect();
    view! {
        <table class="instances" data-testid="public-ip-table">
            <thead><tr>
                <th>"Name"</th><th>"Address"</th><th>"Pool"</th><th>"State"</th>
                <th>"Instance"</th><th>"Private IP"</th>{can_write.then(|| view! { <th></th> })}
            </tr></thead>
            <tbody>
                {ips.into_iter().map(|ip| {
                    let id = ip.id;
                    let state = ip.state;
                    let label = format!("{} ({})", ip.address, ip.name);
                    view! {
                        <tr data-testid="public-ip-row" data-name=ip.name.clone() data-state=state.as_str()>
                            <td class="name">{ip.name.clone()}</td>
                            <td><code data-testid="public-ip-address">{ip.address.clone()}</code></td>
                            <td>{ip.pool.clone()}</td>
                            <td>
                                <span class=format!("state {}", state.as_str()) data-testid="public-ip-state">{state.as_str()}</span>
                                {ip.message.clone().map(|m| view! { <div class="error" data-testid="public-ip-message">{m}</div> })}
                            </td>
                            <td data-testid="public-ip-instance">
                                {match (ip.instance, ip.instance_name.clone()) {
                                    (Some(vm), name) => view! {
                                        <a href=format!("/instances/{vm}") data-testid="public-ip-instance-link">
                                            {name.unwrap_or_else(|| vm.to_string())}
                                        </a>
                                    }.into_any(),
                                    (None, _) => view! { <span class="muted">"—"</span> }.into_any(),
                                }}
                            </td>
                            <td><code data-testid="public-ip-private">{ip.private_ip.clone().unwrap_or_else(|| "—".into())}</code></td>
                            {can_write.then(|| view! {
                                <td class="actions">
                                    {if state == PublicIpState::Free {
                                        view! {
                                            <AttachForm id taken=taken.clone() actions rows />
                                            <button class="danger small" data-testid="public-ip-release"
                                                on:click=move |_| rows.confirming.set(Some((id, label.clone())))>"Release…"</button>
                                        }.into_any()
                                    } else {
                                        view! {
                                            <button class="small" data-testid="public-ip-detach"
                                                on:click=move |_| { actions.detach.dispatch(PublicIpDetach { id }); }>"Detach"</button>
                                        }.into_any()
                                    }}
                                </td>
                            })}
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// Attaches the free address `id` to one of the tenant's instances (those not `taken`).
#[component]
fn AttachForm(
    id: PublicIpUuid,
    taken: HashSet<InstanceUuid>,
    actions: Actions,
    rows: RowState,
) -> impl IntoView {
    view! {
        <Transition fallback=|| ()>
            {move || {
                let taken = taken.clone();
                Suspend::new(async move {
                    let targets = attachable(&taken, &rows.instances.await.unwrap_or_default());
                    view! { <AttachTargets id targets actions rows /> }
                })
            }}
        </Transition>
    }
}

#[component]
fn AttachTargets(
    id: PublicIpUuid,
    targets: Vec<(InstanceUuid, String)>,
    actions: Actions,
    rows: RowState,
) -> impl IntoView {
    if targets.is_empty() {
        return view! { <span class="muted" data-testid="attach-none">"no instance without one"</span> }
            .into_any();
    }
    let picked = move || rows.picked.with(|p| p.get(&id).cloned()).unwrap_or_default();
    let instance = move || picked().parse::<InstanceUuid>().ok();
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Some(instance) = instance() {
            actions.attach.dispatch(PublicIpAttach { id, instance });
        }
    };
    view! {
        <form class="inline" data-testid="attach-form" on:submit=on_submit>
            <select data-testid="attach-instance" on:change=move |ev| {
                let value = event_target_value(&ev);
                rows.picked.update(|p| { p.insert(id, value); });
            }>
                <option value="" selected=move || instance().is_none()>"an instance…"</option>
                {targets.into_iter().map(|(vm, name)| {
                    let value = vm.to_string();
                    view! { <option value=value.clone() selected=move || picked() == value>{name}</option> }
                }).collect_view()}
            </select>
            <button type="submit" class="small" data-testid="public-ip-attach" disabled=move || instance().is_none()>"Attach"</button>
        </form>
    }
    .into_any()
}

/// "Release 203.0.113.7 (web)?", asked before the address goes back to its pool.
#[component]
fn ReleaseConfirmation(actions: Actions, rows: RowState) -> impl IntoView {
    move || {
        rows.confirming.get().map(|(id, label)| {
            view! {
                <div class="confirm-box" role="dialog" data-testid="release-confirm">
                    <h3>{format!("Release {label}?")}</h3>
                    <p>"The address goes back to the provider's pool; another tenant may get it next."</p>
                    <button class="danger" data-testid="release-yes"
                        on:click=move |_| { actions.release.dispatch(PublicIpRelease { id }); }>"Release"</button>
                    " "
                    <button type="button" data-testid="release-cancel" on:click=move |_| rows.confirming.set(None)>"Cancel"</button>
                </div>
            }
        })
    }
}

/// Takes an address, from a chosen pool or any with one free; the name is checked as typed.
#[component]
fn Allocate(actions: Actions) -> impl IntoView {
    // Read again when an address is taken or given back: the free counts change.
    let pools = crate::json::resource(
        move || (actions.allocate.version().get(), actions.release.version().get()),
        |_| public_ip_pool_list(),
    );
    let name = RwSignal::new(String::new());
    let pool = RwSignal::new(String::new());
    let check = move || -> Result<PublicIpCreate, String> {
        let create =
            PublicIpCreate { name: name.get().trim().to_owned(), pool: pool.get().parse().ok() };
        create.validate().map_err(|e| e.to_string())?;
        Ok(create)
    };
    let refused = move || error_of(actions.allocate.value().get());
    // Only say what is wrong once something was typed.
    let hint = move || (!name.get().is_empty()).then(|| check().err()).flatten().or_else(refused);
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Ok(create) = check() {
            actions.allocate.dispatch(PublicIpAllocate { create });
        }
    };
    Effect::new(move |_| {
        if let Some(Ok(_)) = actions.allocate.value().get() {
            name.set(String::new());
        }
    });
    view! {
        <section class="panel">
            <h2>"New public IP"</h2>
            <form class="launch" data-testid="allocate-form" on:submit=on_submit>
                <label>"Name"
                    <input type="text" required maxlength="63" placeholder="web" data-testid="allocate-name"
                        prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                </label>
                <label>"Pool"
                    <Transition fallback=|| view! { <select disabled><option>"any pool"</option></select> }>
                        {move || Suspend::new(async move {
                            let list = pools.await.unwrap_or_default();
                            view! { <PoolSelect list pool /> }
                        })}
                    </Transition>
                </label>
                <button type="submit" class="primary" data-testid="allocate-add" disabled=move || check().is_err()>"Allocate"</button>
            </form>
            <Show when=move || hint().is_some()>
                <p class="error" role="alert" data-testid="allocate-error">{hint}</p>
            </Show>
        </section>
    }
}

#[component]
fn PoolSelect(list: Vec<PublicIpPoolView>, pool: RwSignal<String>) -> impl IntoView {
    view! {
        <select data-testid="allocate-pool" on:change=move |ev| pool.set(event_target_value(&ev))>
            <option value="" selected=move || pool.get().is_empty()>"any pool"</option>
            {list.into_iter().map(|p| {
                let value = p.id.to_string();
                let free = p.size.saturating_sub(p.allocated);
                let text = format!("{} · {} ({free} free)", p.name, p.cidr);
                view! { <option value=value.clone() selected=move || pool.get() == value>{text}</option> }
            }).collect_view()}
        </select>
    }
}

#[component]
pub fn PublicIpPoolsPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <Pools /> }.into_any())
}

#[component]
fn Pools() -> impl IntoView {
    let create = ServerAction::<AddPool>::new();
    let delete = ServerAction::<PublicIpPoolDelete>::new();
    let pools = crate::json::resource(
        move || (create.version().get(), delete.version().get()),
        |_| public_ip_pool_list(),
    );
    let delete_error = move || error_of(delete.value().get());
    view! {
        <main class="dashboard">
            <section class="panel" data-testid="ip-pools">
                <h2>"Public IP pools"</h2>
                <p class="muted">"Networks of public IPv4 addresses your uplink routes to this cloud. Tenants take addresses from them within their public_ips quota; a pool goes only when no tenant holds one of its addresses."</p>
                <Show when=move || delete_error().is_some()>
                    <p class="error" role="alert" data-testid="pool-delete-error">{delete_error}</p>
                </Show>
                <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                    {move || Suspend::new(async move {
                        match pools.await {
                            Ok(list) => view! { <PoolTable list delete /> }.into_any(),
                            Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                        }
                    })}
                </Transition>
            </section>
            <NewPool create />
        </main>
    }
}

#[component]
fn PoolTable(
    list: Vec<PublicIpPoolView>,
    delete: ServerAction<PublicIpPoolDelete>,
) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="empty" data-testid="no-pools">"No pools yet: tenants cannot take public IPs."</p> }
            .into_any();
    }
    view! {
        <table class="instances" data-testid="pool-table">
            <thead><tr><th>"Name"</th><th>"Network"</th><th>"Addresses"</th><th>"Held"</th><th>"Created"</th><th></th></tr></thead>
            <tbody>
                {list.into_iter().map(|p| {
                    let id = p.id;
                    view! {
                        <tr data-testid="pool-row" data-name=p.name.clone()>
                            <td class="name">{p.name.clone()}</td>
                            <td><code data-testid="pool-cidr">{p.cidr.clone()}</code></td>
                            <td data-testid="pool-size">{p.size}</td>
                            <td data-testid="pool-held">{p.allocated}</td>
                            <td class="muted">{p.created_at.replace('T', " ").chars().take(16).collect::<String>()}</td>
                            <td>
                                <button class="danger small" data-testid="pool-delete"
                                    on:click=move |_| { delete.dispatch(PublicIpPoolDelete { id }); }>"Delete"</button>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

/// A new pool, checked on every keystroke with the code the server runs.
#[component]
fn NewPool(create: ServerAction<AddPool>) -> impl IntoView {
    let name = RwSignal::new(String::new());
    let cidr = RwSignal::new(String::new());
    let check = move || -> Result<PublicIpPoolCreate, String> {
        let pool = PublicIpPoolCreate {
            name: name.get().trim().to_owned(),
            cidr: cidr.get().trim().to_owned(),
        };
        pool.validate().map_err(|e| e.to_string())?;
        Ok(pool)
    };
    let refused = move || error_of(create.value().get());
    // Only say what is wrong once something was typed.
    let hint = move || {
        (!name.get().is_empty() || !cidr.get().is_empty())
            .then(|| check().err())
            .flatten()
            .or_else(refused)
    };
    let on_submit = move |ev: SubmitEvent| {
        ev.prevent_default();
        if let Ok(create_pool) = check() {
            create.dispatch(AddPool { create: create_pool });
        }
    };
    Effect::new(move |_| {
        if let Some(Ok(_)) = create.value().get() {
            name.set(String::new());
            cidr.set(String::new());
        }
    });
    view! {
        <section class="panel">
            <h2>"New pool"</h2>
            <form class="launch" data-testid="pool-form" on:submit=on_submit>
                <label>"Name"
                    <input type="text" required maxlength="63" placeholder="internet" data-testid="pool-name"
                        prop:value=move || name.get() on:input=move |ev| name.set(event_target_value(&ev)) />
                </label>
                <label>"Network"
                    <input type="text" required placeholder="203.0.113.0/24" data-testid="pool-cidr-input"
                        prop:value=move || cidr.get() on:input=move |ev| cidr.set(event_target_value(&ev)) />
                </label>
                <button type="submit" class="primary" data-testid="pool-add" disabled=move || check().is_err()>"Add pool"</button>
            </form>
            <Show when=move || hint().is_some()>
                <p class="error" role="alert" data-testid="pool-error">{hint}</p>
            </Show>
        </section>
    }
}
