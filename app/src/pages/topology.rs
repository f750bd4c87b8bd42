//! Provider-admin topology pictures: one host (`/admin/hosts/:name`) as its NUMA nodes, GPUs
//! over their paired SuperNICs, NVSwitch partition tree and CPU/hugepage use, colored by
//! tenant, free or unhealthy; one scalable unit (`/admin/su/:su`) as its rail leaves over its
//! hosts; that unit's tenant fabric (`/admin/su/:su/fabric`): each leaf's tenant VRFs with
//! their VNIs and whether the leaf confirmed them, the switch and DPU agents. The server
//! functions live here, beside the only pages that call them.

use leptos::prelude::*;
use leptos_router::components::Redirect;
use leptos_router::hooks::use_params_map;
use portal_types::Error;
// Not the two view types by name: `#[server]` names its argument structs `HostTopology` and
// `ScalableUnitTopology` after the functions.
use portal_types::topology::{
    self as topo, EvpnRead, FabricDpu, FabricLeaf, GpuHealth, GpuState, GpuTile, Holder,
    HostInstance, Lane, LeafEvpn, LeafVrf, NicTile, PartitionState, PartitionView, UnitHost,
    VrfState,
};
use portal_types::views::{AgentLink, LiveEvent, ModelCapacity};

#[cfg(feature = "ssr")]
use crate::ssr::{context, fail};

#[server(prefix = "/api/fn", endpoint = "host_topology")]
pub async fn host_topology(name: String) -> Result<topo::HostTopology, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.host_topology(&opctx, &name).await.map_err(fail)
}

/// `su` as in the URL: "su1" (or "1").
#[server(prefix = "/api/fn", endpoint = "scalable_unit_topology")]
pub async fn scalable_unit_topology(su: String) -> Result<topo::ScalableUnitTopology, Error> {
    let (ctl, _, opctx) = context().await?;
    match topo::parse_scalable_unit(&su) {
        Some(number) => ctl.scalable_unit_topology(&opctx, number).await.map_err(fail),
        // Not a unit name: the caller's permissions still answer first (401/403), then the
        // answer names what they typed.
        None => match ctl.scalable_unit_topology(&opctx, 0).await {
            Err(e @ (Error::Unauthenticated | Error::Forbidden { .. })) => Err(fail(e)),
            _ => Err(fail(Error::not_found("scalable unit", su))),
        },
    }
}

/// `su` as in the URL: "su1" (or "1").
#[server(prefix = "/api/fn", endpoint = "scalable_unit_fabric")]
pub async fn scalable_unit_fabric(su: String) -> Result<topo::ScalableUnitFabric, Error> {
    let (ctl, _, opctx) = context().await?;
    ctl.scalable_unit_fabric_named(&opctx, &su).await.map_err(fail)
}

/// Inline style giving an element its tenant's hue (`--hue`), or nothing.
fn hue_style(holder: Option<&Holder>) -> String {
    holder.map(|h| format!("--hue:{}", h.hue())).unwrap_or_default()
}

/// What every topology page does with its one fetch: draw it, send anonymous callers to
/// sign in, or say in one sentence why not (403 for non-admins, 404 for unknown names).
fn outcome<T: 'static>(result: Result<T, Error>, draw: impl FnOnce(T) -> AnyView) -> AnyView {
    match result {
        Ok(t) => draw(t),
        Err(Error::Unauthenticated) => view! { <Redirect path="/login" /> }.into_any(),
        Err(e) => {
            view! { <p class="error" data-testid="topology-error">{e.to_string()}</p> }.into_any()
        }
    }
}

/// Where on the fleet this picture is, and a refresh button, under the page's top bar.
#[component]
fn Crumbs(
    #[prop(into)] trail: Vec<(String, Option<String>)>,
    refresh: RwSignal<u64>,
) -> impl IntoView {
    view! {
        <div class="subbar">
            <nav class="crumbs">
                {trail.into_iter().map(|(label, href)| match href {
                    Some(href) => view! { <a href=href>{label}</a> }.into_any(),
                    None => view! { <span>{label}</span> }.into_any(),
                }).collect_view()}
            </nav>
            <button class="link" data-testid="topology-refresh" on:click=move |_| refresh.update(|t| *t += 1)>
                "↻ Refresh"
            </button>
        </div>
    }
}

fn launchable_line(launchable: &[ModelCapacity]) -> impl IntoView + use<> {
    let text = if launchable.is_empty() {
        "unknown until the agents are attached".to_owned()
    } else {
        launchable
            .iter()
            .map(|m| format!("{} {} ({} GPUs free)", m.model, m.launchable, m.free_gpus))
            .collect::<Vec<_>>()
            .join(" · ")
    };
    view! { <p class="topo-launchable">"Still launchable: " <strong data-testid="topology-launchable">{text}</strong></p> }
}

/// The tenants on a picture, each with its color, beside free and unhealthy.
fn legend(holders: &[Holder]) -> impl IntoView + use<> {
    let mut tenants: Vec<(String, u16)> =
        holders.iter().map(|h| (h.tenant_name.clone(), h.hue())).collect();
    tenants.sort();
    tenants.dedup();
    view! {
        <p class="legend topo-legend">
            <span class="swatch free"></span>"free"
            <span class="swatch bad"></span>"unhealthy"
            {tenants.into_iter().map(|(name, hue)| view! {
                <span class="swatch used" style=format!("--hue:{hue}")></span>{name}
            }).collect_view()}
        </p>
    }
}

/// Claims, releases and cordons anywhere redraw the picture, as does every (re)connect of
/// the live stream: changes made before it was open would be missed otherwise.
fn redraw_on_fleet_changes(refresh: RwSignal<u64>) {
    crate::live::subscribe(
        move |event| {
            if matches!(event, LiveEvent::FleetChanged) {
                refresh.update(|t| *t += 1);
            }
        },
        move || refresh.update(|t| *t += 1),
    );
}

#[component]
pub fn HostTopologyPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <HostTopology /> }.into_any())
}

#[component]
fn HostTopology() -> impl IntoView {
    let params = use_params_map();
    let refresh = RwSignal::new(0u64);
    let name = move || params.read().get("name").unwrap_or_default();
    redraw_on_fleet_changes(refresh);
    let picture =
        crate::json::resource(move || (name(), refresh.get()), |(name, _)| host_topology(name));
    view! {
        // Transition: a refresh keeps the old picture up until the new one arrives.
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move { outcome(picture.await, |t| {
                let trail = vec![
                    ("Fleet".to_owned(), Some("/".to_owned())),
                    (format!("su{}", t.scalable_unit), Some(format!("/admin/su/su{}", t.scalable_unit))),
                    (t.name.clone(), None),
                ];
                view! { <main class="dashboard"><Crumbs trail refresh /><HostPicture host=t /></main> }.into_any()
            })})}
        </Transition>
    }
}

#[component]
fn HostPicture(host: topo::HostTopology) -> impl IntoView {
    let used = host.gpus().filter(|g| matches!(g.state, GpuState::Used(_))).count();
    let bad = host.gpus().filter(|g| g.state == GpuState::Unhealthy).count();
    let total = host.gpus().count();
    let holders: Vec<Holder> = host.instances.iter().map(|i| i.holder.clone()).collect();
    let columns = host.module_order.len().max(1);
    let (slotted, unslotted): (Vec<PartitionView>, Vec<PartitionView>) =
        host.partitions.iter().cloned().partition(|p| p.slot.is_some());
    view! {
        <section class="panel topo-host" data-testid="host-topology" data-host=host.name.clone()>
            <div class="topo-head">
                <h2>{host.name.clone()}</h2>
                <span class="chip">{host.system_model.clone()}</span>
                <span class="chip" class:full=host.agent == AgentLink::Unreachable>
                    {match host.agent { AgentLink::Connected => "agent connected", AgentLink::Unreachable => "agent unreachable" }}
                </span>
                {host.cordoned.then(|| view! { <span class="chip full">"cordoned"</span> })}
                <span class="muted">{format!("{} of {total} GPUs free · {used} in use · {bad} unhealthy", total - used - bad)}</span>
            </div>
            {launchable_line(&host.launchable)}
            {legend(&holders)}
            <div class="topo-numa-row">
                {host.numa_nodes.into_iter().map(|n| view! {
                    <div class="numa" data-testid="numa-node" data-node=n.id>
                        <h3>{format!("NUMA node {}", n.id)}</h3>
                        <Meter label="CPUs" used=n.cpus_used total=n.cpus_total unit="" testid="cpu-meter" />
                        <Meter label="Hugepages" used=n.hugepages_used total=n.hugepages_total unit=" GiB" testid="hugepage-meter" />
                        <div class="lanes">
                            {n.lanes.into_iter().map(|lane| view! { <LaneView lane /> }).collect_view()}
                        </div>
                    </div>
                }).collect_view()}
            </div>
            <div class="nvswitch">
                <h3>"NVSwitch partitions"</h3>
                <div class="ptree" style=format!("grid-template-columns:repeat({columns},1fr)") data-testid="partition-tree">
                    {slotted.into_iter().map(|p| view! { <PartitionBox p /> }).collect_view()}
                </div>
                {(!unslotted.is_empty()).then(|| view! {
                    <div class="plist">{unslotted.into_iter().map(|p| view! { <PartitionBox p /> }).collect_view()}</div>
                })}
            </div>
            <div class="topo-vms">
                <h3>"Instances on this host"</h3>
                {if host.instances.is_empty() {
                    view! { <p class="muted">"None."</p> }.into_any()
                } else {
                    host.instances.into_iter().map(|i| view! { <VmLine i /> }).collect_view().into_any()
                }}
            </div>
            <p class="topo-dpus muted">
                "DPUs (north-south): "
                {host.dpus.into_iter().map(|d| view! {
                    <span class="chip" class:full=d.agent == AgentLink::Unreachable title=d.model>{d.name}</span>
                }).collect_view()}
            </p>
        </section>
    }
}

#[component]
fn Meter(
    label: &'static str,
    used: u32,
    total: u32,
    unit: &'static str,
    testid: &'static str,
) -> impl IntoView {
    let percent = if total == 0 { 0.0 } else { f64::from(used) * 100.0 / f64::from(total) };
    view! {
        <div class="meter" data-testid=testid data-used=used data-total=total>
            <span class="meter-label">{label}</span>
            <span class="meter-bar"><span class="meter-fill" style=format!("width:{percent:.1}%")></span></span>
            <span class="meter-value">{format!("{used} / {total}{unit}")}</span>
        </div>
    }
}

/// One column: a GPU over the SuperNIC behind its PCIe switch, joined by a line.
#[component]
fn LaneView(lane: Lane) -> impl IntoView {
    let held = lane.gpu.as_ref().is_some_and(|g| matches!(g.state, GpuState::Used(_)));
    let style = hue_style(lane.nic.as_ref().and_then(|n| n.holder.as_ref()));
    let paired = lane.gpu.is_some() && lane.nic.is_some();
    view! {
        <div class="lane">
            {match lane.gpu {
                Some(g) => view! { <GpuBox g /> }.into_any(),
                None => view! { <div class="gpu-tile empty">"no GPU"</div> }.into_any(),
            }}
            <span class="pcie" class:paired=paired class:held=held style=style></span>
            {match lane.nic {
                Some(n) => view! { <NicBox n /> }.into_any(),
                None => view! { <div class="nic-tile empty">"no NIC"</div> }.into_any(),
            }}
        </div>
    }
}

#[component]
fn GpuBox(g: GpuTile) -> impl IntoView {
    let class = format!("gpu-tile {}", g.state.class());
    let title = format!(
        "GPU module {} · nvidia-smi {} · {} · {} · PCIe switch {} · health {}",
        g.module_id, g.smi_index, g.pci_address, g.model, g.pcie_switch, g.health
    );
    let (style, who) = match &g.state {
        GpuState::Used(h) => (
            hue_style(Some(h)),
            view! {
                <span class="gpu-who" data-testid="gpu-instance">{h.instance_name.clone()}</span>
                <span class="gpu-tenant" data-testid="gpu-tenant">{h.tenant_name.clone()}</span>
            }
            .into_any(),
        ),
        GpuState::Unhealthy => {
            (String::new(), view! { <span class="gpu-who">"unhealthy"</span> }.into_any())
        }
        GpuState::Free => (String::new(), view! { <span class="gpu-who">"free"</span> }.into_any()),
    };
    view! {
        <div class=class class:degraded=g.health == GpuHealth::Degraded style=style title=title
            data-testid="gpu-tile" data-module=g.module_id data-state=g.state.class()>
            <span class="gpu-mod">{g.module_id}</span>
            <span class="gpu-idx">{format!("smi {}", g.smi_index)}</span>
            {who}
            {g.partition.map(|p| view! { <span class="gpu-part">{format!("P{p}")}</span> })}
        </div>
    }
}

#[component]
fn NicBox(n: NicTile) -> impl IntoView {
    let title = format!(
        "{} · PCIe switch {} · rail {} → {}{}",
        n.name,
        n.pcie_switch,
        n.rail,
        n.leaf,
        n.paired_module.map(|m| format!(" · pairs with GPU {m}")).unwrap_or_default()
    );
    view! {
        <div class="nic-tile" class:held=n.holder.is_some() style=hue_style(n.holder.as_ref()) title=title
            data-testid="nic-tile" data-rail=n.rail>
            <span class="nic-name">{n.name.clone()}</span>
            <span class="nic-rail">{format!("rail {}", n.rail)}</span>
            <span class="nic-leaf">{n.leaf.clone()}</span>
        </div>
    }
}

#[component]
fn PartitionBox(p: PartitionView) -> impl IntoView {
    let (class, style, who) = match &p.state {
        PartitionState::Active(h) => {
            ("part active", hue_style(Some(h)), Some(h.instance_name.clone()))
        }
        PartitionState::Available => ("part available", String::new(), None),
        PartitionState::Blocked => ("part blocked", String::new(), None),
    };
    let place = p
        .slot
        .map(|s| format!("grid-row:{};grid-column:{} / span {};", s.level + 1, s.column, s.span))
        .unwrap_or_default();
    let modules = p.modules.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let title = format!(
        "Fabric Manager partition {} · GPU modules {modules} · {}",
        p.id,
        match &p.state {
            PartitionState::Active(h) =>
                format!("active for {} of {}", h.instance_name, h.tenant_name),
            PartitionState::Available => "available".to_owned(),
            PartitionState::Blocked => "blocked by an active or unhealthy GPU".to_owned(),
        }
    );
    view! {
        <div class=class style=format!("{place}{style}") title=title data-testid="partition" data-id=p.id
            data-state=match p.state { PartitionState::Active(_) => "active", PartitionState::Available => "available", PartitionState::Blocked => "blocked" }>
            <span class="pid">{format!("P{}", p.id)}</span>
            <span class="pmods">{modules}</span>
            {who.map(|w| view! { <span class="pwho">{w}</span> })}
        </div>
    }
}

#[component]
fn VmLine(i: HostInstance) -> impl IntoView {
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let nodes = list(&i.numa_nodes);
    let detail = format!(
        "{} · {} · {}{} · {} vCPUs · {} GiB on NUMA {nodes}",
        i.holder.tenant_name,
        i.instance_type,
        i.partition.map(|p| format!("P{p} · ")).unwrap_or_default(),
        if i.gpus.is_empty() {
            "CPU only".to_owned()
        } else {
            format!("GPUs {} · NICs {}", list(&i.gpus), list(&i.nics))
        },
        i.vcpus,
        i.memory_gib,
    );
    view! {
        <p class="vm-line" data-testid="host-instance">
            <span class="swatch used" style=hue_style(Some(&i.holder))></span>
            <strong>{i.holder.instance_name.clone()}</strong>
            <span class=format!("state {}", i.state)>{i.state.as_str()}</span>
            <span class="muted">{detail}</span>
        </p>
    }
}

#[component]
pub fn ScalableUnitPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <ScalableUnit /> }.into_any())
}

#[component]
fn ScalableUnit() -> impl IntoView {
    let params = use_params_map();
    let refresh = RwSignal::new(0u64);
    let su = move || params.read().get("su").unwrap_or_default();
    redraw_on_fleet_changes(refresh);
    let picture =
        crate::json::resource(move || (su(), refresh.get()), |(su, _)| scalable_unit_topology(su));
    view! {
        // Transition: a refresh keeps the old picture up until the new one arrives.
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move { outcome(picture.await, |t| {
                let trail = vec![("Fleet".to_owned(), Some("/".to_owned())), (t.name.clone(), None)];
                view! { <main class="dashboard"><Crumbs trail refresh /><UnitPicture unit=t /></main> }.into_any()
            })})}
        </Transition>
    }
}

#[component]
fn UnitPicture(unit: topo::ScalableUnitTopology) -> impl IntoView {
    let count = |class: &str| unit.hosts.iter().map(|h| h.count(class)).sum::<usize>();
    let summary = format!(
        "{} hosts · {} GPUs free · {} in use · {} unhealthy",
        unit.hosts.len(),
        count("free"),
        count("used"),
        count("bad")
    );
    let holders: Vec<Holder> = unit
        .hosts
        .iter()
        .flat_map(|h| h.gpus.iter())
        .filter_map(|g| match g {
            GpuState::Used(h) => Some(h.clone()),
            _ => None,
        })
        .collect();
    let rails = unit.leaves.len().max(1);
    view! {
        <section class="panel topo-su" data-testid="su-topology">
            <div class="topo-head">
                <h2>{format!("Scalable unit {}", unit.number)}</h2>
                <span class="muted">{summary}</span>
                <a href=format!("/admin/su/{}/fabric", unit.name) data-testid="su-fabric-link">
                    "Tenant fabric →"
                </a>
            </div>
            {launchable_line(&unit.launchable)}
            {legend(&holders)}
            <h3>"Rail leaves"</h3>
            <div class="rails" style=format!("grid-template-columns:repeat({rails},1fr)")>
                {unit.leaves.into_iter().map(|l| {
                    let title = if l.reported {
                        format!("{} · {} · {} hosts cabled", l.name, l.model, l.hosts_cabled)
                    } else {
                        format!("{} never reported; {} hosts are cabled to it", l.name, l.hosts_cabled)
                    };
                    view! {
                        <div class="leaf" class:down=l.agent == AgentLink::Unreachable title=title
                            data-testid="leaf" data-rail=l.rail>
                            <span class="leaf-rail">{format!("rail {}", l.rail)}</span>
                            <span class="leaf-name">{l.name.clone()}</span>
                            <span class="muted">{if l.reported { l.model.clone() } else { "not reporting".to_owned() }}</span>
                            <span class="muted">{format!("{} hosts", l.hosts_cabled)}</span>
                        </div>
                    }
                }).collect_view()}
            </div>
            <div class="rail-bus" title="Every host's NIC i is cabled to the rail-i leaf"></div>
            <h3>"Hosts"</h3>
            <div class="hosts su-hosts">
                {unit.hosts.into_iter().map(|h| view! { <UnitHostCard h /> }).collect_view()}
            </div>
        </section>
    }
}

#[component]
fn UnitHostCard(h: UnitHost) -> impl IntoView {
    let bad = h.count("bad");
    let counts = format!(
        "{} free · {} used{}",
        h.count("free"),
        h.count("used"),
        if bad > 0 { format!(" · {bad} unhealthy") } else { String::new() }
    );
    let title = format!(
        "{}{}{}",
        h.name,
        if h.agent == AgentLink::Unreachable { " · agent unreachable" } else { "" },
        if h.cordoned { " · cordoned" } else { "" }
    );
    view! {
        <a class="host su-host" class:down=h.agent == AgentLink::Unreachable class:cordoned=h.cordoned
            href=format!("/admin/hosts/{}", h.name) title=title data-testid="su-host-card" data-host=h.name.clone()>
            <span class="host-name">{h.name.clone()}</span>
            <span class="gpus">
                {h.gpus.iter().map(|g| {
                    let (class, style) = match g {
                        GpuState::Used(holder) => ("gpu used tenant", hue_style(Some(holder))),
                        GpuState::Unhealthy => ("gpu bad", String::new()),
                        GpuState::Free => ("gpu free", String::new()),
                    };
                    view! { <span class=class style=style></span> }
                }).collect_view()}
            </span>
            <span class="su-host-counts">{counts}</span>
        </a>
    }
}

/// How often the fabric picture is read again while open: leaves confirming a VRF send no
/// live event (claims, releases and agents coming and going do, and redraw it at once).
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
const FABRIC_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[component]
pub fn ScalableUnitFabricPage() -> impl IntoView {
    super::guarded(|me| me.provider_admin, |_| view! { <ScalableUnitFabric /> }.into_any())
}

#[component]
fn ScalableUnitFabric() -> impl IntoView {
    let params = use_params_map();
    let refresh = RwSignal::new(0u64);
    let su = move || params.read().get("su").unwrap_or_default();
    redraw_on_fleet_changes(refresh);
    #[cfg(feature = "hydrate")]
    if let Ok(timer) = set_interval_with_handle(
        move || {
            let _ = refresh.try_update(|t| *t += 1);
        },
        FABRIC_EVERY,
    ) {
        on_cleanup(move || timer.clear());
    }
    let picture =
        crate::json::resource(move || (su(), refresh.get()), |(su, _)| scalable_unit_fabric(su));
    view! {
        // Transition: a refresh keeps the old picture up until the new one arrives.
        <Transition fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move { outcome(picture.await, |f| {
                let trail = vec![
                    ("Fleet".to_owned(), Some("/".to_owned())),
                    (f.name.clone(), Some(format!("/admin/su/{}", f.name))),
                    ("Tenant fabric".to_owned(), None),
                ];
                view! { <main class="dashboard"><Crumbs trail refresh /><FabricPicture fabric=f /></main> }.into_any()
            })})}
        </Transition>
    }
}

#[component]
fn FabricPicture(fabric: topo::ScalableUnitFabric) -> impl IntoView {
    let (confirmed, pending, removing) = fabric.counts();
    let up = |link: AgentLink| usize::from(link == AgentLink::Connected);
    let (leaves, leaves_up) =
        (fabric.leaves.len(), fabric.leaves.iter().map(|l| up(l.agent)).sum::<usize>());
    let (dpus, dpus_up) =
        (fabric.dpus.len(), fabric.dpus.iter().map(|d| up(d.agent)).sum::<usize>());
    let ports: u32 = fabric.dpus.iter().map(|d| d.ports).sum();
    let ports_pending: u32 = fabric.dpus.iter().map(|d| d.ports_pending).sum();
    let mut tenants: Vec<(String, u16)> = fabric
        .leaves
        .iter()
        .flat_map(|l| l.vrfs.iter())
        .filter_map(|v| Some((v.tenant_name.clone(), v.hue()?)))
        .collect();
    tenants.sort();
    tenants.dedup();
    let vpcs = {
        let mut ids: Vec<_> =
            fabric.leaves.iter().flat_map(|l| l.vrfs.iter().map(|v| v.vpc_id)).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    };
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    let summary = format!(
        "{leaves_up} of {leaves} leaves reachable · {} · on the leaves: {confirmed} confirmed, \
         {pending} pending{}",
        plural(vpcs, "tenant VRF", "tenant VRFs"),
        if removing > 0 { format!(", {removing} being removed") } else { String::new() }
    );
    let dpu_summary = format!(
        "{dpus_up} of {dpus} DPUs reachable · {}{}",
        plural(ports as usize, "tenant port", "tenant ports"),
        if ports_pending > 0 {
            format!(" ({ports_pending} not yet confirmed)")
        } else {
            String::new()
        }
    );
    view! {
        <section class="panel topo-su" data-testid="su-fabric">
            <div class="topo-head">
                <h2>{format!("Scalable unit {} · tenant fabric", fabric.number)}</h2>
                <span class="muted" data-testid="fabric-summary">{summary}</span>
            </div>
            <p class="muted">
                "A tenant VPC is a VRF (its L3 VNI) with an L2 VNI per subnet, on every leaf of each \
                 unit where one of its VMs runs; a leaf confirms each generation it is sent."
            </p>
            <p class="legend topo-legend">
                {tenants.into_iter().map(|(name, hue)| view! {
                    <span class="swatch used" style=format!("--hue:{hue}")></span>{name}
                }).collect_view()}
            </p>
            <h3>"Rail leaves"</h3>
            <div class="fabric-leaves">
                {fabric.leaves.into_iter().map(|leaf| view! { <FabricLeafCard leaf /> }).collect_view()}
            </div>
            <h3>"DPUs"</h3>
            <p class="muted" data-testid="fabric-dpu-summary">{dpu_summary}</p>
            <div class="fabric-dpus">
                {fabric.dpus.into_iter().map(|d| view! { <FabricDpuChip d /> }).collect_view()}
            </div>
        </section>
    }
}

#[component]
fn FabricLeafCard(leaf: FabricLeaf) -> impl IntoView {
    let down = leaf.agent == AgentLink::Unreachable;
    let empty = leaf.vrfs.is_empty();
    view! {
        <div class="fabric-leaf" class:down=down data-testid="fabric-leaf" data-leaf=leaf.name.clone()>
            <div class="fabric-leaf-head">
                <span class="leaf-rail">{format!("rail {}", leaf.rail)}</span>
                <span class="leaf-name">{leaf.name.clone()}</span>
                <span class="muted">{leaf.model.clone()}</span>
                <span class="agent" class:bad=down data-testid="fabric-leaf-agent">
                    {if down { "switch agent unreachable" } else { "switch agent connected" }}
                </span>
            </div>
            <LeafEvpnLine evpn=leaf.evpn.clone() />
            {if empty {
                view! { <p class="muted fabric-none">"No tenant VRF."</p> }.into_any()
            } else {
                view! {
                    <table class="fabric-vrfs">
                        <thead><tr><th>"Tenant"</th><th>"VPC"</th><th>"VRF · L3 VNI"</th><th>"L2 VNIs"</th><th>"State"</th></tr></thead>
                        <tbody>{leaf.vrfs.into_iter().map(|v| view! { <VrfRow v /> }).collect_view()}</tbody>
                    </table>
                }.into_any()
            }}
        </div>
    }
}

/// VNIs as "1, 2, 3", at most eight of them, then how many more.
fn vni_list(vnis: &[u32]) -> String {
    let mut text = vnis.iter().take(8).map(u32::to_string).collect::<Vec<_>>().join(", ");
    if vnis.len() > 8 {
        text.push_str(&format!(" +{} more", vnis.len() - 8));
    }
    text
}

/// The leaf's EVPN peers and VNIs as read live, then any drift from the database in one
/// short line.
#[component]
fn LeafEvpnLine(evpn: LeafEvpn) -> impl IntoView {
    let bad = "color: var(--bad)";
    let read: EvpnRead = match evpn {
        LeafEvpn::Unknown(why) => {
            return view! {
                <p class="muted fabric-none" data-testid="fabric-leaf-evpn" data-evpn="unknown">
                    "EVPN: unknown ("{why}")"
                </p>
            }
            .into_any();
        }
        LeafEvpn::Read(read) => read,
    };
    let established = read.established();
    let peers = match (read.peers.len(), read.simulated) {
        (0, true) => "simulated, no peers".to_owned(),
        (0, false) => "no peers".to_owned(),
        (total, _) => format!("{established}/{total} peers established"),
    };
    let peers_title = read
        .peers
        .iter()
        .map(|p| match p.prefixes_received {
            Some(n) => format!("{} {} ({n} prefixes)", p.address, p.state),
            None => format!("{} {}", p.address, p.state),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let peers_down = established < read.peers.len();
    let mut drift = Vec::new();
    if !read.unexpected_vnis.is_empty() {
        drift.push(format!("not in the database: {}", vni_list(&read.unexpected_vnis)));
    }
    if !read.missing_vnis.is_empty() {
        drift.push(format!("missing on the leaf: {}", vni_list(&read.missing_vnis)));
    }
    let in_sync = drift.is_empty();
    view! {
        <p class="muted fabric-none" data-testid="fabric-leaf-evpn" data-evpn=if in_sync { "in-sync" } else { "drift" }>
            "EVPN: "
            <span title=peers_title style=if peers_down { bad } else { "" }>{peers}</span>
            {format!(" · {} VNI{}", read.vnis, if read.vnis == 1 { "" } else { "s" })}
            {(!in_sync).then(|| view! {
                <span style=bad title="the VNIs the leaf holds against the VRFs the database gives it">
                    {format!(" · drift: {}", drift.join("; "))}
                </span>
            })}
        </p>
    }
    .into_any()
}

#[component]
fn VrfRow(v: LeafVrf) -> impl IntoView {
    let style = v.hue().map(|h| format!("--hue:{h}")).unwrap_or_default();
    let deleted = v.l3_vni.is_none();
    let state_title = match (v.state, v.confirmed_generation) {
        (VrfState::Confirmed, _) => format!("the leaf confirmed generation {}", v.generation),
        (VrfState::Pending, Some(g)) => {
            format!("the leaf holds generation {g}; generation {} is being sent", v.generation)
        }
        (VrfState::Pending, None) => {
            format!("generation {} is being sent; the leaf has not confirmed it", v.generation)
        }
        (VrfState::Removing, _) => "no VM of this VPC is in the unit any more; the leaf is \
                                    being told to drop it"
            .to_owned(),
    };
    let l2 = if v.l2_vnis.is_empty() {
        "—".to_owned()
    } else {
        v.l2_vnis.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    };
    view! {
        <tr data-testid="fabric-vrf" data-tenant=v.tenant_name.clone() data-state=v.state.as_str()>
            <td><span class="swatch used" style=style></span>" "{if deleted { "(deleted)".to_owned() } else { v.tenant_name.clone() }}</td>
            <td>{v.vpc_name.clone()}</td>
            <td class="mono">{match v.l3_vni {
                Some(vni) => format!("{} · {vni}", v.vrf_name),
                None => "—".to_owned(),
            }}</td>
            <td class="mono wrap">{l2}</td>
            <td><span class=format!("vrf-state {}", v.state.as_str()) title=state_title>{v.state.as_str()}</span></td>
        </tr>
    }
}

#[component]
fn FabricDpuChip(d: FabricDpu) -> impl IntoView {
    let down = d.agent == AgentLink::Unreachable;
    let busy = d.ports > 0;
    let title = format!(
        "{} on {} · {} · agent {}{}",
        d.name,
        d.host,
        d.model,
        if down { "unreachable" } else { "connected" },
        if d.ports_pending > 0 {
            format!(" · {} ports not yet confirmed", d.ports_pending)
        } else {
            String::new()
        }
    );
    view! {
        <a class="chip fabric-dpu" class:down=down class:busy=busy href=format!("/admin/hosts/{}", d.host)
            title=title data-testid="fabric-dpu" data-dpu=d.name.clone()>
            <span class="mono">{d.name.clone()}</span>
            " · "{format!("{} port{}", d.ports, if d.ports == 1 { "" } else { "s" })}
        </a>
    }
}
