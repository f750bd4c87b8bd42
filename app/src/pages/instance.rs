//! One instance (`/instances/:id`): its live state with the power and delete buttons, then
//! two tabs: the overview (where it runs: host, GPU modules with their PCI addresses, NICs,
//! NUMA nodes, pinned CPUs; its image and default user, SSH keys, how to reach it, and the
//! steps of its sagas; a public IP, when attached, beside its address and in the SSH
//! command) and its serial console (`?tab=console`, see `console`). The network
//! section's port counters are read from the DPU again every 5 s while the page is open.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::{use_params_map, use_query_map};
use portal_types::ids::InstanceUuid;
use portal_types::network::{PacketCount, PortCountersView};
use portal_types::views::{InstanceDetail, InstanceState, InstanceView, LiveEvent, Me};
use portal_types::{Error, Role};

use super::console::ConsoleTab;
use crate::api::{InstanceDelete, InstancePower, instance_get, instance_port_counters};

#[component]
pub fn InstancePage() -> impl IntoView {
    super::guarded(|_| true, |me| view! { <Instance me /> }.into_any())
}

/// An RFC 3339 time as "2026-12-03 12:03:04", with its milliseconds when asked.
fn short_time(at: &str, millis: bool) -> String {
    at.replace('T', " ").chars().take(if millis { 23 } else { 19 }).collect()
}

#[component]
fn Instance(me: Me) -> impl IntoView {
    let params = use_params_map();
    let id = move || params.read().get("id").unwrap_or_default();
    let refresh = RwSignal::new(0u64);
    // The newest state the stream or a button brought, laid over the fetched one.
    let live = RwSignal::new(None::<InstanceView>);
    let detail = crate::json::resource(
        move || (id(), refresh.get()),
        |(id, _)| async move {
            match id.parse::<InstanceUuid>() {
                Ok(id) => instance_get(id).await,
                Err(_) => Err(Error::invalid(format!("\"{id}\" is not an instance id."))),
            }
        },
    );
    crate::live::subscribe(
        move |event| {
            if let LiveEvent::Instance(view) = event
                && view.id.to_string() == id()
            {
                let gone = view.state == InstanceState::Deleted;
                live.set(Some(*view));
                // Its new steps are in the timeline; a deleted one is not found any more.
                if !gone {
                    refresh.update(|t| *t += 1);
                }
            }
        },
        move || refresh.update(|t| *t += 1),
    );
    let power = ServerAction::<InstancePower>::new();
    let delete = ServerAction::<InstanceDelete>::new();
    Effect::new(move |_| {
        if let Some(Ok(view)) = power.value().get() {
            live.set(Some(view));
        }
    });
    Effect::new(move |_| {
        if let Some(Ok(view)) = delete.value().get() {
            live.set(Some(view));
        }
    });
    let error = move || {
        power
            .value()
            .get()
            .and_then(|r| r.err())
            .or_else(|| delete.value().get().and_then(|r| r.err()))
            .map(|e| e.to_string())
    };
    let can_act = me.provider_admin || me.role != Role::Viewer;
    view! {
        <main class="dashboard instance-page">
            <div class="subbar">
                <nav class="crumbs"><a href="/">"Instances"</a><span>"Instance"</span></nav>
            </div>
            // Transition: a refetch keeps the page up until the new answer arrives.
            <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
                {move || Suspend::new(async move {
                    match detail.await {
                        Ok(d) => view! { <Detail detail=d live power delete can_act error /> }.into_any(),
                        Err(Error::Unauthenticated) => view! { <Redirect path="/login" /> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="instance-error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </main>
    }
}

#[component]
fn Detail(
    detail: InstanceDetail,
    live: RwSignal<Option<InstanceView>>,
    power: ServerAction<InstancePower>,
    delete: ServerAction<InstanceDelete>,
    can_act: bool,
    error: impl Fn() -> Option<String> + Send + Sync + Copy + 'static,
) -> impl IntoView {
    let fetched = detail.instance.clone();
    let id = fetched.id;
    let current = Signal::derive(move || {
        live.get().filter(|v| v.id == id).unwrap_or_else(|| fetched.clone())
    });
    let state = move || current.read().state;
    let message = move || current.read().message.clone();
    let query = use_query_map();
    let console_open = move || query.read().get("tab").as_deref() == Some("console");
    let d = detail;
    view! {
        <section class="panel">
            <h2>
                <span data-testid="instance-name">{d.instance.name.clone()}</span> " "
                <span class=move || format!("state {}", state()) data-testid="instance-state">{move || state().as_str()}</span>
            </h2>
            <Show when=move || message().is_some()>
                <p class="message">{message}</p>
            </Show>
            <p class="muted">
                {d.instance.instance_type.clone()} " · "
                {if d.instance.gpu_count == 0 { "CPU only".to_owned() } else { format!("{} × {}", d.instance.gpu_count, d.instance.gpu_model) }}
                {format!(" · {} vCPUs · {} GiB · created {}", d.instance.vcpus, d.instance.memory_gib, short_time(&d.instance.created_at, false))}
            </p>
            <Show when=move || can_act>
                <p class="actions">
                    {move || state().power_actions().iter().map(|&action| view! {
                        <button data-testid="instance-power" data-action=action.as_str()
                            on:click=move |_| { power.dispatch(InstancePower { id, action }); }>
                            {action.label()}
                        </button>
                    }).collect_view()}
                    <Show when=move || !matches!(state(), InstanceState::Deleting | InstanceState::Deleted)>
                        <button class="danger" data-testid="instance-delete"
                            on:click=move |_| { delete.dispatch(InstanceDelete { id }); }>
                            "Delete"
                        </button>
                    </Show>
                </p>
            </Show>
            <Show when=move || error().is_some()>
                <p class="error" role="alert" data-testid="power-error">{error}</p>
            </Show>
        </section>
        <nav class="tabs" data-testid="instance-tabs">
            <a href=format!("/instances/{id}") class:active=move || !console_open() data-testid="tab-overview">"Overview"</a>
            <a href=format!("/instances/{id}?tab=console") class:active=console_open data-testid="tab-console">"Console"</a>
        </nav>
        <Show when=console_open>
            <ConsoleTab id />
        </Show>
        <div class="tab-body" class:hidden=console_open>
        <section class="panel" data-testid="instance-placement">
            <h2>"Placement"</h2>
            {match d.host.clone() {
                None => view! { <p class="muted">"Not placed on a host (any more)."</p> }.into_any(),
                Some(host) => view! {
                    <p>
                        "Host " <strong data-testid="instance-host">{host}</strong>
                        {d.partition.map(|p| format!(" · NVSwitch partition {p}"))}
                        " · NUMA nodes "
                        {d.numa_nodes.iter().map(|n| view! { <span class="chip" data-testid="instance-numa">{n.to_string()}</span> " " }).collect_view()}
                    </p>
                    <p>
                        "vCPUs pinned to host CPUs "
                        <span data-testid="instance-vcpus">{d.vcpu_pins.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")}</span>
                        {d.emulator_cpu.map(|c| format!(" · emulator on CPU {c}"))}
                    </p>
                }.into_any(),
            }}
            {(!d.gpus.is_empty()).then(|| view! {
                <table class="instances" data-testid="instance-gpus">
                    <thead><tr><th>"GPU module"</th><th>"Model"</th><th>"PCI address"</th><th>"NUMA node"</th></tr></thead>
                    <tbody>
                        {d.gpus.iter().map(|g| view! {
                            <tr data-testid="instance-gpu" data-module=g.module_id.to_string()>
                                <td>{g.module_id}</td><td>{g.model.clone()}</td>
                                <td><code>{g.pci_address.clone()}</code></td><td>{g.numa_node}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
            {(!d.nics.is_empty()).then(|| view! {
                <table class="instances" data-testid="instance-nics">
                    <thead><tr>
                        <th>"NIC"</th><th>"Name"</th><th>"PCI address"</th><th>"Rail"</th>
                        <th title="Its address on your tenant's GPU fabric, and its rail leaf">"GPU fabric"</th>
                    </tr></thead>
                    <tbody>
                        {d.nics.iter().map(|n| view! {
                            <tr data-testid="instance-nic">
                                <td>{n.index}</td><td>{n.name.clone()}</td>
                                <td><code>{if n.pci_address.is_empty() { "—".to_owned() } else { n.pci_address.clone() }}</code></td>
                                <td>{n.rail}</td>
                                <td data-testid="instance-nic-fabric">{match (&n.fabric_address, &n.fabric_leaf, n.fabric_state) {
                                    (Some(address), Some(leaf), Some(state)) => view! {
                                        <code>{address.clone()}</code>" on "{leaf.clone()}" · "
                                        <span class=format!("state {}", state.label().replace(' ', "-"))>{state.label()}</span>
                                    }.into_any(),
                                    _ => view! { <span class="muted">"not joined"</span> }.into_any(),
                                }}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </section>
        <section class="panel" data-testid="instance-network">
            <h2>"Network"</h2>
            {if d.ports.is_empty() {
                view! { <p class="muted">"No network port yet."</p> }.into_any()
            } else {
                view! {
                    <table class="instances">
                        <thead><tr><th>"Address"</th><th>"Public IP"</th><th>"MAC"</th><th>"VPC / subnet"</th><th>"Gateway"</th><th>"Security groups"</th><th>"DPU"</th><th>"State"</th></tr></thead>
                        <tbody>
                            {d.ports.iter().map(|p| view! {
                                <tr data-testid="port-row" data-state=p.state.clone()>
                                    <td><code data-testid="port-ip">{p.ip.clone()}</code></td>
                                    <td>{match p.public_ip.clone() {
                                        Some(ip) => view! { <code data-testid="port-public-ip">{ip}</code> }.into_any(),
                                        None => view! { <span class="muted" data-testid="port-public-ip-none">"—"</span> }.into_any(),
                                    }}</td>
                                    <td><code>{p.mac.clone()}</code></td>
                                    <td>{format!("{} / {} ({})", p.vpc, p.subnet, p.cidr)}</td>
                                    <td><code>{p.gateway.clone()}</code></td>
                                    <td>{p.security_groups.join(", ")}</td>
                                    <td>{p.dpu.clone().unwrap_or_else(|| "—".into())}</td>
                                    <td data-testid="port-state">
                                        {p.state.clone()}
                                        {p.message.clone().map(|m| view! { <div class="error" data-testid="port-message">{m}</div> })}
                                    </td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                    <AfterHydration>
                        <PortCounters id />
                    </AfterHydration>
                }.into_any()
            }}
        </section>
        <section class="panel" data-testid="instance-access">
            <h2>"Access"</h2>
            <p>
                "Image " <strong data-testid="instance-image">{d.image.clone().unwrap_or_else(|| "—".into())}</strong>
                " · default user " <strong data-testid="instance-user">{d.default_user.clone().unwrap_or_else(|| "—".into())}</strong>
            </p>
            <p>
                "SSH keys "
                {if d.ssh_keys.is_empty() {
                    view! { <span class="muted">"none"</span> }.into_any()
                } else {
                    d.ssh_keys.iter().map(|k| view! { <span class="chip" data-testid="instance-key">{k.clone()}</span> " " }).collect_view().into_any()
                }}
            </p>
            <p data-testid="instance-ssh">
                {match d.ssh_command.clone() {
                    Some(cmd) => view! { <code>{cmd.clone()}</code> " " <CopyButton text=cmd /> }.into_any(),
                    None => view! { <span class="muted">"SSH: no address yet"</span> }.into_any(),
                }}
            </p>
        </section>
        <section class="panel" data-testid="instance-timeline">
            <h2>"Timeline"</h2>
            {if d.timeline.is_empty() {
                view! { <p class="muted">"No recorded steps."</p> }.into_any()
            } else {
                view! {
                    <table class="instances">
                        <thead><tr><th>"When (UTC)"</th><th>"Saga"</th><th>"Step"</th><th>"Event"</th></tr></thead>
                        <tbody>
                            {d.timeline.iter().map(|t| view! {
                                <tr data-testid="timeline-row" data-saga=t.saga.clone() data-step=t.step.clone() data-event=t.event.clone()>
                                    <td class="muted">{short_time(&t.at, true)}</td><td>{t.saga.clone()}</td>
                                    <td>{t.step.clone()}</td><td>{t.event.clone()}</td>
                                </tr>
                            }).collect_view()}
                        </tbody>
                    </table>
                }.into_any()
            }}
        </section>
        </div>
    }
}

/// How often the port counters are read again while the page is open.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// `1234567` as "1.2 MB".
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// "12 pkts · 9.6 kB".
fn packets(count: PacketCount) -> String {
    format!("{} pkts · {}", count.packets, human_bytes(count.bytes))
}

/// The counters of the instance's ports as their DPU reads them, again every
/// [`COUNTERS_EVERY`] (a resource keyed by a tick; the timer runs in the browser only).
#[component]
fn PortCounters(id: InstanceUuid) -> impl IntoView {
    let tick = RwSignal::new(0u64);
    #[cfg(feature = "hydrate")]
    if let Ok(timer) = set_interval_with_handle(
        move || {
            let _ = tick.try_update(|t| *t += 1);
        },
        COUNTERS_EVERY,
    ) {
        on_cleanup(move || timer.clear());
    }
    // Read in the browser only (see `AfterHydration`).
    let counters = LocalResource::new(move || {
        tick.track();
        instance_port_counters(id)
    });
    view! {
        <div class="port-counters" data-testid="port-counters">
            <h3>"Traffic"</h3>
            // Transition: each refresh keeps the last numbers up until the new ones arrive.
            <Transition fallback=|| view! { <p class="loading">"Reading the DPU…"</p> }>
                {move || Suspend::new(async move {
                    match counters.await {
                        Ok(views) => view! { <CountersTable views /> }.into_any(),
                        Err(e) => view! { <p class="error" data-testid="port-counters-error">{e.to_string()}</p> }.into_any(),
                    }
                })}
            </Transition>
        </div>
    }
}

#[component]
fn CountersTable(views: Vec<PortCountersView>) -> impl IntoView {
    if views.is_empty() {
        return view! { <p class="muted">"No port to count yet."</p> }.into_any();
    }
    let simulated = views.iter().any(|v| v.simulated);
    view! {
        <table class="instances">
            <thead><tr>
                <th>"Address"</th><th>"Allowed in"</th><th>"Allowed out"</th>
                <th>"Dropped in"</th><th>"Dropped out"</th><th>"Spoofed"</th><th>"Counting"</th>
            </tr></thead>
            <tbody>
                {views.into_iter().map(|v| {
                    let counting = match v.state.as_str() {
                        "live" => format!("since the rules last changed (change {})", v.rule_changes),
                        "pending" => "not on the DPU yet".to_owned(),
                        _ => "nothing counts without a DPU".to_owned(),
                    };
                    let rules = v.rules.iter().map(|r| format!("{}: {}", r.rule, packets(r.count))).collect::<Vec<_>>().join("\n");
                    view! {
                        <tr data-testid="port-counters-row" data-state=v.state.clone() title=rules>
                            <td><code>{v.ip.clone()}</code></td>
                            <td data-testid="counters-in">{packets(v.ingress.allowed)}</td>
                            <td data-testid="counters-out">{packets(v.egress.allowed)}</td>
                            <td data-testid="counters-dropped-in">{packets(v.ingress.dropped)}</td>
                            <td>{packets(v.egress.dropped)}</td>
                            <td data-testid="counters-spoofed">{packets(v.spoofed)}</td>
                            <td class="muted">{counting}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {simulated.then(|| view! {
            <p class="muted" data-testid="counters-simulated">"Simulated DPU: the traffic is synthetic (a fixed rate per allowed rule), not measured."</p>
        })}
    }.into_any()
}

/// Renders its children only in the browser, once the page is hydrated: for live numbers
/// that move between the server's render and hydration (a mismatch there panics hydration).
#[component]
fn AfterHydration(children: ChildrenFn) -> impl IntoView {
    let mounted = RwSignal::new(false);
    // Effects run only in the browser, after hydration.
    Effect::new(move |_| mounted.set(true));
    view! { <Show when=move || mounted.get()>{children()}</Show> }
}

/// Copies `text` to the clipboard (in the browser; a no-op before hydration).
#[component]
fn CopyButton(text: String) -> impl IntoView {
    view! {
        <button class="link" data-testid="copy-ssh" on:click=move |_| {
            #[cfg(feature = "hydrate")]
            {
                let _ = window().navigator().clipboard().write_text(&text);
            }
            #[cfg(not(feature = "hydrate"))]
            let _ = &text;
        }>"Copy"</button>
    }
}
