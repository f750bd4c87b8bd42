//! The fleet as provider admins see it on the admin page: statistics and a map of every
//! host's GPUs by scalable unit, kept live by the event stream.

use leptos::prelude::*;
use portal_types::views::{AgentLink, FleetSummary, HostView, LiveEvent};

use crate::api::fleet_summary;

/// The fleet's statistics and map, read again whenever the fleet changes (a placement, a
/// host's health or agent, a cordon) or `refresh` moves.
#[component]
pub fn FleetPanel(#[prop(into)] refresh: Signal<usize>) -> impl IntoView {
    let changed = RwSignal::new(0u64);
    let connected = StoredValue::new(false);
    crate::live::subscribe(
        move |event| {
            if let LiveEvent::FleetChanged = event {
                changed.update(|t| *t += 1);
            }
        },
        move || {
            // Reconnected: the fleet may have changed while the stream was away.
            if connected.get_value() {
                changed.update(|t| *t += 1);
            }
            connected.set_value(true);
        },
    );
    let fleet = crate::json::resource(move || (changed.get(), refresh.get()), |_| fleet_summary());
    view! {
        <Transition fallback=|| view! { <p class="loading">"Loading fleet…"</p> }>
            {move || fleet.get().map(|f| match f {
                Ok(f) => view! { <FleetStats fleet=f.clone() /> <FleetMap fleet=f /> }.into_any(),
                Err(e) => view! { <p class="error">{e.to_string()}</p> }.into_any(),
            })}
        </Transition>
    }
}

#[component]
fn FleetStats(fleet: FleetSummary) -> impl IntoView {
    let hosts = fleet.hosts.len();
    view! {
        <section class="stats" data-testid="fleet-stats">
            <div class="stat"><span class="value" data-testid="stat-hosts">{fleet.hosts_connected()} " / " {hosts}</span><span class="label">"hosts connected"</span></div>
            <div class="stat"><span class="value" data-testid="stat-gpus-free">{fleet.gpus_free()}</span><span class="label">"GPUs free"</span></div>
            <div class="stat"><span class="value" data-testid="stat-gpus-used">{fleet.gpus_used()}</span><span class="label">"GPUs in use"</span></div>
            <div class="stat"><span class="value">{fleet.gpus_unhealthy()}</span><span class="label">"GPUs unhealthy"</span></div>
            <div class="stat"><span class="value" data-testid="stat-gpus-total">{fleet.gpus_total()}</span><span class="label">"GPUs in total"</span></div>
            <div class="stat"><span class="value">{fleet.dpus}</span><span class="label">"DPUs"</span></div>
            <div class="stat"><span class="value">{fleet.switches}</span><span class="label">"leaf switches"</span></div>
        </section>
    }
}

/// Hosts grouped by scalable unit, each drawn as its eight GPUs.
#[component]
fn FleetMap(fleet: FleetSummary) -> impl IntoView {
    let mut units: Vec<u32> = fleet.hosts.iter().map(|h| h.scalable_unit).collect();
    units.dedup();
    units.sort_unstable();
    units.dedup();
    view! {
        <section class="panel">
            <h2>"Fleet"</h2>
            <p class="legend">
                <span class="gpu free"></span>"free" <span class="gpu used"></span>"in use"
                <span class="gpu bad"></span>"unhealthy"
            </p>
            {units.into_iter().map(|su| {
                let hosts: Vec<HostView> = fleet.hosts.iter().filter(|h| h.scalable_unit == su).cloned().collect();
                view! {
                    <h3><a href=format!("/admin/su/su{su}")>{format!("Scalable unit {su}")}</a></h3>
                    <div class="hosts">
                        {hosts.into_iter().map(|h| view! { <HostCard host=h /> }).collect_view()}
                    </div>
                }
            }).collect_view()}
        </section>
    }
}

#[component]
fn HostCard(host: HostView) -> impl IntoView {
    let title = format!(
        "{} · {} · {} of {} GPUs free{}",
        host.name,
        host.gpu_model,
        host.gpus_free(),
        host.gpus_total,
        match host.agent {
            AgentLink::Connected => "",
            AgentLink::Unreachable => " · agent unreachable",
        }
    ) + if host.cordoned { " · cordoned" } else { "" };
    let cells = (0..host.gpus_total)
        .map(|i| {
            let class = if i < host.gpus_used {
                "gpu used"
            } else if i < host.gpus_used + host.gpus_unhealthy {
                "gpu bad"
            } else {
                "gpu free"
            };
            view! { <span class=class></span> }
        })
        .collect_view();
    view! {
        <a class="host" href=format!("/admin/hosts/{}", host.name) class:down=host.agent == AgentLink::Unreachable class:cordoned=host.cordoned title=title data-testid="host-card">
            <span class="host-name">{host.name.clone()}</span>
            <span class="gpus">{cells}</span>
        </a>
    }
}
