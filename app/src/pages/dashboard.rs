//! The dashboard: the tenant's instances with live state, the one-screen launch form, the
//! quota and what is still launchable. (The fleet itself is on the admin page.)

use leptos::prelude::*;
use portal_types::Role;
use portal_types::views::{
    Capacity, InstanceState, InstanceView, LaunchChoice, LaunchOptions, LiveEvent, Me, TenantQuota,
};

use crate::api::{
    InstanceCreate, InstanceDelete, InstancePower, capacity, instance_list, launch_options,
    quota_get,
};
use crate::form::{FormAction, PostForm};

/// The instance list as the page shows it: the last fetched list with every newer live
/// update laid over it, newest first, without deleted instances.
pub fn merge_instances(base: &[InstanceView], updates: &[InstanceView]) -> Vec<InstanceView> {
    let mut out: Vec<InstanceView> = base
        .iter()
        .map(|i| updates.iter().rev().find(|u| u.id == i.id).unwrap_or(i).clone())
        .collect();
    for u in updates {
        if !out.iter().any(|i| i.id == u.id) {
            let latest = updates.iter().rev().find(|x| x.id == u.id).unwrap_or(u);
            out.push(latest.clone());
        }
    }
    out.retain(|i| i.state != InstanceState::Deleted);
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.name.cmp(&b.name)));
    out
}

#[component]
pub fn DashboardPage() -> impl IntoView {
    super::guarded(|_| true, |me| view! { <Dashboard me /> }.into_any())
}

#[component]
fn Dashboard(me: Me) -> impl IntoView {
    let fleet_tick = RwSignal::new(0u64);
    let list_tick = RwSignal::new(0u64);
    let capacity = crate::json::resource(move || fleet_tick.get(), |_| capacity());
    let quota = crate::json::resource(move || fleet_tick.get(), |_| quota_get(None));
    let options = crate::json::resource(|| (), |_| launch_options());
    let instances = crate::json::resource(move || list_tick.get(), |_| instance_list());
    let updates = RwSignal::new(Vec::<InstanceView>::new());
    let connected = RwSignal::new(false);
    // The budget percentage the live stream last announced, until dismissed.
    let budget_alert = RwSignal::new(None::<i64>);

    crate::live::subscribe(
        move |event| match event {
            LiveEvent::Instance(view) => updates.update(|u| u.push(*view)),
            LiveEvent::FleetChanged => fleet_tick.update(|t| *t += 1),
            LiveEvent::BudgetAlert { percent, .. } => budget_alert.set(Some(percent)),
        },
        move || {
            // (Re)connected: anything may have changed while we were away.
            if connected.get_untracked() {
                updates.set(Vec::new());
                list_tick.update(|t| *t += 1);
                fleet_tick.update(|t| *t += 1);
            }
            connected.set(true);
        },
    );

    let create = FormAction::<InstanceCreate>::new();
    // The launch's idempotency key, so that a submit sent twice (or repeated after a lost
    // answer) makes one launch: chosen in the browser once hydrated, anew after each answer.
    // Empty before (a form posted without JavaScript carries none).
    let launch_key = RwSignal::new(String::new());
    #[cfg(feature = "hydrate")]
    Effect::new(move |_| {
        create.version().track();
        let part = || (js_sys::Math::random() * 2f64.powi(52)) as u64;
        launch_key.set(format!("web-{:013x}{:013x}", part(), part()));
    });
    let delete = ServerAction::<InstanceDelete>::new();
    Effect::new(move |_| {
        if let Some(Ok(views)) = create.value().get() {
            updates.update(|u| u.extend(views));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(view)) = delete.value().get() {
            updates.update(|u| u.push(view));
        }
    });
    let create_error = move || create.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let delete_error = move || delete.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let power = ServerAction::<InstancePower>::new();
    Effect::new(move |_| {
        if let Some(Ok(view)) = power.value().get() {
            updates.update(|u| u.push(view));
        }
    });
    let power_error = move || power.value().get().and_then(|r| r.err()).map(|e| e.to_string());
    let can_launch = me.provider_admin || me.role != Role::Viewer;

    view! {
        <main class="dashboard">
            {move || budget_alert.get().map(|percent| view! {
                <p class="notice budget-alert" role="alert" data-testid="budget-alert">
                    <a href="/usage">{format!("Your spending reached {percent} % of this month's budget")}</a>
                    " "
                    <button type="button" class="link" data-testid="budget-alert-dismiss"
                        on:click=move |_| budget_alert.set(None)>"Dismiss"</button>
                </p>
            })}
            <section class="panel">
                <h2>
                    "Instances "
                    <span class="live" class:on=move || connected.get() title="Live status stream" data-testid="live-indicator">
                        {move || if connected.get() { "● live" } else { "○ connecting" }}
                    </span>
                </h2>
                <Show when=move || can_launch>
                    <PostForm action=create attr:class="launch" attr:data-testid="launch-form">
                        <input type="hidden" name="create[idempotency_key]" data-testid="launch-key"
                            prop:value=move || launch_key.get() />
                        <label>
                            "Name"
                            <input type="text" name="create[name]" required placeholder="train-01" maxlength="63" data-testid="launch-name" />
                        </label>
                        <Suspense fallback=|| ()>
                            {move || options.get().map(|o| match o {
                                Ok(options) => view! { <LaunchChoices options /> }.into_any(),
                                Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                            })}
                        </Suspense>
                        <details class="advanced">
                            <summary>"User data"</summary>
                            <textarea name="create[user_data]" rows="4" maxlength="16384" data-testid="launch-user-data"
                                placeholder="#cloud-config\npackages: [htop]"></textarea>
                        </details>
                        <label>
                            "Count"
                            <input type="number" name="create[count]" value="1" min="1" max="64" class="narrow" data-testid="launch-count" />
                        </label>
                        <label>
                            "Placement"
                            <select name="create[placement]" data-testid="launch-placement">
                                <option value="any">"best fit"</option>
                                <option value="cluster">"cluster: one scalable unit"</option>
                                <option value="spread">"spread: different hosts"</option>
                            </select>
                        </label>
                        <button type="submit" class="primary" disabled=move || create.pending().get() data-testid="launch-submit">
                            "Launch"
                        </button>
                    </PostForm>
                </Show>
                <Show when=move || create_error().is_some()>
                    <p class="error" role="alert" data-testid="launch-error">{create_error}</p>
                </Show>
                <Show when=move || delete_error().is_some()>
                    <p class="error" role="alert">{delete_error}</p>
                </Show>
                <Show when=move || power_error().is_some()>
                    <p class="error" role="alert" data-testid="power-error">{power_error}</p>
                </Show>
                <Transition fallback=|| ()>
                    {move || quota.get().map(|q| q.ok().map(|q| view! { <QuotaBar quota=q /> }))}
                </Transition>
                <Transition fallback=|| view! { <p class="loading">"Loading instances…"</p> }>
                    {move || instances.get().map(|list| match list {
                        Ok(list) => {
                            let rows = merge_instances(&list, &updates.get());
                            view! { <InstanceTable rows delete power can_delete=can_launch /> }.into_any()
                        }
                        Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
                    })}
                </Transition>
            </section>
            <Transition fallback=|| ()>
                {move || capacity.get().map(|c| c.ok().map(|c| view! { <CapacityPanel capacity=c /> }))}
            </Transition>

        </main>
    }
}

/// The launch form's choices: instance type, image, SSH keys, subnet and security groups.
/// Checkbox names are indexed so that the form sends only the checked ones.
#[component]
fn LaunchChoices(options: LaunchOptions) -> impl IntoView {
    let select = |choices: Vec<LaunchChoice>| {
        choices
            .into_iter()
            .map(|c| view! { <option value=c.value selected=c.preselected>{c.label}</option> })
            .collect_view()
    };
    let checks =
        |field: &'static str, testid: &'static str, choices: Vec<LaunchChoice>| {
            choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| view! {
                <label class="check">
                    <input type="checkbox" name=format!("create[{field}][{i}]") value=c.value
                        checked=c.preselected data-testid=testid />
                    {c.label}
                </label>
            })
            .collect_view()
        };
    let no_keys = options.ssh_keys.is_empty();
    view! {
        <label>
            "Instance type"
            <select name="create[instance_type]" data-testid="launch-type">{select(options.instance_types)}</select>
        </label>
        <label>
            "Image"
            // The newest image first: the default, as for API launches without one.
            <select name="create[image]" data-testid="launch-image">{select(options.images)}</select>
        </label>
        <fieldset class="keys" data-testid="launch-keys">
            <legend>"SSH keys"</legend>
            {no_keys.then(|| view! { <a href="/keys" class="muted">"Add an SSH key"</a> })}
            {checks("ssh_keys", "launch-key-choice", options.ssh_keys)}
        </fieldset>
        <fieldset class="keys" data-testid="launch-network">
            <legend>"Network"</legend>
            <select name="create[subnet]" data-testid="launch-subnet">{select(options.subnets)}</select>
            {checks("security_groups", "launch-group", options.security_groups)}
        </fieldset>
    }
}

/// The tenant's usage against its quota, one chip per resource.
#[component]
fn QuotaBar(quota: TenantQuota) -> impl IntoView {
    view! {
        <p class="quota" data-testid="quota">
            "Usage in " {quota.tenant_name.clone()} ":"
            {quota.lines.into_iter().map(|l| {
                let limit = l.limit_text();
                let full = l.limit.is_some_and(|m| l.used >= m);
                view! {
                    <span class="chip" class:full=full data-testid="quota-line" data-resource=l.resource.clone()>
                        {format!("{} {} / {}", l.resource, l.used, limit)}
                    </span>
                }
            }).collect_view()}
        </p>
    }
}

/// Still launchable, fleet-wide and (for provider admins) per scalable unit.
#[component]
fn CapacityPanel(capacity: Capacity) -> impl IntoView {
    view! {
        <section class="panel capacity" data-testid="capacity">
            <h2>"Capacity"</h2>
            {capacity.fleet.into_iter().map(|m| view! {
                <p>
                    <strong>{m.model.clone()}</strong> " still launchable: "
                    <span data-testid="launchable">{m.launchable.to_string()}</span>
                    <span class="muted">{format!(" · {} GPUs free, {} not launchable as 8", m.free_gpus, m.fragmented_gpus)}</span>
                </p>
            }).collect_view()}
            {(!capacity.scalable_units.is_empty()).then(|| view! {
                <details>
                    <summary>"Per scalable unit"</summary>
                    <table class="instances">
                        <thead><tr><th>"Scalable unit"</th><th>"Model"</th><th>"Still launchable"</th><th>"Free GPUs"</th></tr></thead>
                        <tbody>
                            {capacity.scalable_units.into_iter().flat_map(|(su, models)| models.into_iter().map(move |m| view! {
                                <tr><td>{su.clone()}</td><td>{m.model}</td><td>{m.launchable.to_string()}</td><td>{m.free_gpus}</td></tr>
                            })).collect_view()}
                        </tbody>
                    </table>
                </details>
            })}
        </section>
    }
}

#[component]
fn InstanceTable(
    rows: Vec<InstanceView>,
    delete: ServerAction<InstanceDelete>,
    power: ServerAction<InstancePower>,
    can_delete: bool,
) -> impl IntoView {
    if rows.is_empty() {
        return view! { <p class="empty" data-testid="no-instances">"No instances yet. Launch one above."</p> }.into_any();
    }
    view! {
        <table class="instances" data-testid="instances">
            <thead>
                <tr><th>"Name"</th><th>"State"</th><th>"GPUs"</th><th>"vCPUs"</th><th>"Memory"</th><th>"Host"</th><th>"Created"</th><th></th></tr>
            </thead>
            <tbody>
                {rows.into_iter().map(|i| {
                    let id = i.id;
                    let state = i.state;
                    view! {
                        <tr data-testid="instance-row" data-name=i.name.clone()>
                            <td class="name"><a href=format!("/instances/{id}") data-testid="instance-link">{i.name.clone()}</a></td>
                            <td>
                                <span class=format!("state {state}") data-testid="instance-state">{state.as_str()}</span>
                                {i.message.clone().map(|m| view! { <div class="message">{m}</div> })}
                            </td>
                            <td>
                                {if i.gpu_count == 0 { "CPU only".to_owned() } else { format!("{} × {}", i.gpu_count, i.gpu_model) }}
                                <div class="muted">{i.instance_type.clone()}</div>
                                {i.image.clone().map(|image| view! { <div class="muted" data-testid="instance-image">{image}</div> })}
                                {(!i.ssh_keys.is_empty()).then(|| view! { <div class="muted" data-testid="instance-keys">{format!("keys: {}", i.ssh_keys.join(", "))}</div> })}
                            </td>
                            <td>{i.vcpus}</td>
                            <td>{format!("{} GiB", i.memory_gib)}</td>
                            <td>{i.host_name.clone().unwrap_or_else(|| "—".into())}</td>
                            <td class="muted">{i.created_at.replace('T', " ").chars().take(19).collect::<String>()}</td>
                            <td class="actions">
                                {can_delete.then(|| state.power_actions().iter().map(|&action| view! {
                                    <button data-testid="instance-power" data-action=action.as_str()
                                        on:click=move |_| { power.dispatch(InstancePower { id, action }); }>
                                        {action.label()}
                                    </button>
                                }).collect_view())}
                                <Show when=move || can_delete && state != InstanceState::Deleting>
                                    <button class="danger" data-testid="instance-delete"
                                        on:click=move |_| { delete.dispatch(InstanceDelete { id }); }>
                                        "Delete"
                                    </button>
                                </Show>
                            </td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;
    use portal_types::ids::{GenericUuid, InstanceUuid};

    fn inst(n: u128, name: &str, state: InstanceState, created: &str) -> InstanceView {
        InstanceView {
            id: InstanceUuid::from_untyped_uuid(uuid::Uuid::from_u128(n)),
            name: name.into(),
            instance_type: "h100x1".into(),
            state,
            gpu_count: 1,
            gpu_model: "H100".into(),
            vcpus: 16,
            memory_gib: 200,
            host_name: None,
            image: None,
            ssh_keys: vec![],
            message: None,
            created_at: created.into(),
        }
    }

    #[test]
    fn live_updates_override_the_fetched_list() {
        let base = vec![inst(1, "a", InstanceState::Provisioning, "2026-01-01T00:00:01Z")];
        let updates = vec![
            inst(1, "a", InstanceState::Running, "2026-01-01T00:00:01Z"),
            inst(2, "b", InstanceState::Provisioning, "2026-01-01T00:00:02Z"),
        ];
        let merged = merge_instances(&base, &updates);
        assert_eq!(merged.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(merged[1].state, InstanceState::Running);
    }

    #[test]
    fn the_latest_update_wins_and_deleted_instances_leave() {
        let base = vec![inst(1, "a", InstanceState::Running, "t1")];
        let updates = vec![
            inst(2, "b", InstanceState::Provisioning, "t2"),
            inst(1, "a", InstanceState::Deleting, "t1"),
            inst(2, "b", InstanceState::Running, "t2"),
            inst(1, "a", InstanceState::Deleted, "t1"),
        ];
        let merged = merge_instances(&base, &updates);
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].state, InstanceState::Running);
    }
}
