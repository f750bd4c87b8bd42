//! The admin topology views: one host drawn as its NUMA nodes, GPUs, paired SuperNICs and
//! Fabric Manager partitions with who holds what, and one scalable unit as its rail leaves
//! and hosts, and that unit's tenant fabric (each leaf's VRFs, its switch and DPU agents).
//!
//! Everything comes from the database (inventory facts, GPU rows, the placements stored on
//! instances that still hold resources, switch rows); only "still launchable" comes from the
//! in-memory scheduler, which is the authority on that figure, and on the fabric picture each
//! leaf's BGP EVPN state from its switch agent, read live (all leaves at once, each given
//! [`EVPN_TIMEOUT`]; one that does not answer is "unknown", the picture does not wait). The
//! reads are separate statements, so a launch finishing meanwhile may show up in one part and
//! not another until the next refresh; that is fine for a picture.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use agent_proto::v1 as pb;
use portal_scheduler::Placement;
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid, TenantUuid, VpcUuid};
use portal_types::topology::{
    DpuView, EvpnPeerView, EvpnRead, FabricDpu, FabricLeaf, GpuHealth, GpuState, GpuTile, Holder,
    HostInstance, HostTopology, Lane, LeafEvpn, LeafView, LeafVrf, NicTile, NumaTopology,
    PartitionSlot, PartitionState, PartitionView, ScalableUnitFabric, ScalableUnitTopology,
    UnitHost, VrfState, parse_scalable_unit,
};
use portal_types::views::{AgentLink, InstanceState};
use uuid::Uuid;

use crate::Controller;
use crate::app::fleet::{HostFacts, PartitionFacts, capacity_view};
use crate::app::scheduling::allocation_of;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::entity::{gpu, gpu_fabric, host, instance, vpc};
use crate::datastore::fabric::UnitFabricRows;
use crate::datastore::topology::{HostRows, UnitRows};

/// How long a leaf's switch agent may take to read its EVPN state for the fabric picture.
const EVPN_TIMEOUT: Duration = Duration::from_secs(2);

/// Asks leaf `leaf`'s switch agent for its EVPN state, for at most [`EVPN_TIMEOUT`]; the
/// error is why it is unknown, as the page shows it.
async fn read_evpn(
    ctl: &Controller,
    leaf: &str,
    connected: bool,
) -> Result<pb::EvpnStatusReply, String> {
    let Some(mut client) = ctl.agents.switch(leaf).filter(|_| connected) else {
        return Err("switch agent not connected".to_owned());
    };
    let call = client.evpn_status(pb::EvpnStatusRequest {});
    match tokio::time::timeout(EVPN_TIMEOUT, call).await {
        Err(_) => Err(format!("no answer within {} s", EVPN_TIMEOUT.as_secs())),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            Err("the switch agent is too old to report it".to_owned())
        }
        Ok(Err(status)) => Err(format!("the switch agent could not read it: {}", status.message())),
        Ok(Ok(reply)) => Ok(reply.into_inner()),
    }
}

/// A leaf's EVPN reply against the VRFs the database gives it: every VNI a VRF of this leaf
/// has (in any state) is expected; those of confirmed VRFs must be there.
fn evpn_read(reply: pb::EvpnStatusReply, vrfs: &[LeafVrf]) -> EvpnRead {
    let vnis_of =
        |v: &LeafVrf| v.l3_vni.into_iter().chain(v.l2_vnis.iter().copied()).collect::<Vec<_>>();
    let known: BTreeSet<u32> = vrfs.iter().flat_map(vnis_of).collect();
    let confirmed: BTreeSet<u32> =
        vrfs.iter().filter(|v| v.state == VrfState::Confirmed).flat_map(vnis_of).collect();
    let held: BTreeSet<u32> = reply.vnis.iter().map(|v| v.vni).collect();
    let mut peers: Vec<EvpnPeerView> = reply
        .peers
        .into_iter()
        .map(|p| EvpnPeerView {
            address: p.address,
            state: p.state,
            prefixes_received: p.prefixes_received,
        })
        .collect();
    peers.sort_by(|a, b| a.address.cmp(&b.address));
    EvpnRead {
        peers,
        vnis: u32::try_from(held.len()).unwrap_or(u32::MAX),
        unexpected_vnis: held.difference(&known).copied().collect(),
        missing_vnis: confirmed.difference(&held).copied().collect(),
        simulated: reply.simulated,
    }
}

fn link(connected: bool) -> AgentLink {
    if connected { AgentLink::Connected } else { AgentLink::Unreachable }
}

fn facts_of(row: &host::Model) -> Result<HostFacts, Error> {
    serde_json::from_str(&row.inventory)
        .map_err(|e| Error::internal(format!("host {} facts: {e}", row.name)))
}

/// A VM that holds resources on a host, with its placement and who owns it.
struct Held {
    row: instance::Model,
    placement: Placement,
    holder: Holder,
}

/// Instances still holding resources on `host_ids`, with their placements and owners.
async fn held_on(
    ctl: &Controller,
    opctx: &OpContext,
    host_ids: Vec<Uuid>,
) -> Result<Vec<Held>, Error> {
    let rows = ctl.datastore.instances_holding_on(opctx, host_ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(row, tenant_name)| {
            let placement = allocation_of(&row)?.placement;
            let holder = Holder {
                tenant_id: TenantUuid::from_untyped_uuid(row.tenant_id),
                tenant_name,
                instance_id: InstanceUuid::from_untyped_uuid(row.id),
                instance_name: row.name.clone(),
            };
            Some(Held { row, placement, holder })
        })
        .collect())
}

/// The order GPU modules are drawn in and each partition's place in the drawn tree.
///
/// Each partition's parent is the smallest partition strictly containing it; walking the tree
/// depth first puts NVLink neighbours side by side (HGX H100: 1 3 2 4 5 7 6 8), so every
/// partition covers one run of columns. A table that is not a tree (two partitions overlap
/// without one containing the other) gets no slots; the page then lists the partitions.
fn partition_layout(
    partitions: &[PartitionFacts],
    modules: &[u32],
) -> (Vec<u32>, Vec<Option<PartitionSlot>>) {
    let sets: Vec<BTreeSet<u32>> =
        partitions.iter().map(|p| p.module_ids.iter().copied().collect()).collect();
    let laminar = sets.iter().enumerate().all(|(i, a)| {
        sets[i + 1..].iter().all(|b| a.is_disjoint(b) || a.is_subset(b) || b.is_subset(a))
    });
    let parent: Vec<Option<usize>> = (0..sets.len())
        .map(|i| {
            (0..sets.len())
                .filter(|&j| sets[j].len() > sets[i].len() && sets[i].is_subset(&sets[j]))
                .min_by_key(|&j| (sets[j].len(), partitions[j].id))
        })
        .collect();
    let by_first = |&i: &usize| (sets[i].first().copied(), partitions[i].id);
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); sets.len()];
    let mut roots = Vec::new();
    for (i, p) in parent.iter().enumerate() {
        match p {
            Some(p) => children[*p].push(i),
            None => roots.push(i),
        }
    }
    roots.sort_by_key(by_first);
    for c in &mut children {
        c.sort_by_key(by_first);
    }

    fn walk(
        i: usize,
        sets: &[BTreeSet<u32>],
        children: &[Vec<usize>],
        order: &mut Vec<u32>,
        seen: &mut BTreeSet<u32>,
    ) {
        for &c in &children[i] {
            walk(c, sets, children, order, seen);
        }
        for &m in &sets[i] {
            if seen.insert(m) {
                order.push(m);
            }
        }
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for &r in &roots {
        walk(r, &sets, &children, &mut order, &mut seen);
    }
    let mut rest: Vec<u32> = modules.iter().copied().filter(|m| !seen.contains(m)).collect();
    rest.sort_unstable();
    rest.dedup();
    order.extend(rest);

    let depth = |mut i: usize| {
        let mut d = 0;
        while let Some(p) = parent[i] {
            d += 1;
            i = p;
        }
        d
    };
    let slots = (0..sets.len())
        .map(|i| {
            let positions: Vec<usize> =
                sets[i].iter().filter_map(|m| order.iter().position(|o| o == m)).collect();
            let (first, last) = (*positions.iter().min()?, *positions.iter().max()?);
            (laminar && last - first + 1 == sets[i].len()).then(|| PartitionSlot {
                level: depth(i),
                column: first as u32 + 1,
                span: sets[i].len() as u32,
            })
        })
        .collect();
    (order, slots)
}

/// GPU module → NIC index, by the scheduler's own pairing rule (same PCIe switch, in order).
fn pairing(facts: &HostFacts, gpus: &[gpu::Model]) -> HashMap<u32, u32> {
    let mut switches: HashMap<String, u32> = HashMap::new();
    let mut switch_id = |name: &str| {
        let next = switches.len() as u32;
        *switches.entry(name.to_owned()).or_insert(next)
    };
    // Only the fields `Host::paired_nic` reads matter here.
    let model = portal_scheduler::Host {
        id: String::new(),
        scalable_unit: String::new(),
        cordoned: false,
        agent_reachable: true,
        numa_nodes: Vec::new(),
        gpus: gpus
            .iter()
            .map(|g| portal_scheduler::Gpu {
                module_id: g.module_id as u8,
                index: g.smi_index as u8,
                pci_address: String::new(),
                model: String::new(),
                numa_node: g.numa_node as u32,
                pcie_switch: switch_id(&g.pcie_switch),
                healthy: true,
            })
            .collect(),
        nics: facts
            .nics
            .iter()
            .map(|n| portal_scheduler::Nic {
                index: n.index as u8,
                numa_node: n.numa_node,
                pcie_switch: switch_id(&n.pcie_switch),
                rail: n.rail as u8,
                leaf: String::new(),
            })
            .collect(),
        partitions: Vec::new(),
        images: None,
    };
    gpus.iter()
        .filter_map(|g| {
            let nic = model.paired_nic(g.module_id as u8)?;
            Some((g.module_id as u32, u32::from(nic)))
        })
        .collect()
}

impl Controller {
    /// One host as the topology page draws it.
    pub async fn host_topology(
        &self,
        opctx: &OpContext,
        host_name: &str,
    ) -> Result<HostTopology, Error> {
        opctx.authorize(Action::FleetRead)?;
        let HostRows { host: row, gpus, dpus } =
            self.datastore.host_topology_rows(opctx, host_name).await?;
        let facts = facts_of(&row)?;
        let held = held_on(self, opctx, vec![row.id]).await?;
        let launchable = match self.placer.lock().await.as_ref() {
            Some(p) => p.scheduler.host_capacity(&row.name).unwrap_or_default(),
            None => Vec::new(),
        };

        // Who holds each GPU, NIC and partition, and what each NUMA node has given away.
        let mut gpu_holder: HashMap<u32, (&Holder, Option<u32>)> = HashMap::new();
        let mut nic_holder: HashMap<u32, &Holder> = HashMap::new();
        let mut partition_holder: HashMap<u32, &Holder> = HashMap::new();
        let mut cpus_used: BTreeSet<u32> = BTreeSet::new();
        let mut pages_used: HashMap<u32, u32> = HashMap::new();
        for h in &held {
            let p = &h.placement;
            let partition = p.partition.map(u32::from);
            for &m in &p.gpus {
                gpu_holder.insert(u32::from(m), (&h.holder, partition));
            }
            for &n in &p.nics {
                nic_holder.insert(u32::from(n), &h.holder);
            }
            if let Some(id) = partition {
                partition_holder.insert(id, &h.holder);
            }
            cpus_used.extend(p.vcpus.iter().copied().chain([p.emulator_cpu]));
            for hp in &p.hugepages {
                *pages_used.entry(hp.node).or_default() += hp.pages;
            }
        }

        let module_ids: Vec<u32> = gpus.iter().map(|g| g.module_id as u32).collect();
        let (module_order, slots) = partition_layout(&facts.partitions, &module_ids);
        let rank = |m: u32| module_order.iter().position(|&o| o == m).unwrap_or(usize::MAX);
        let paired = pairing(&facts, &gpus);

        let nic_tile = |index: u32| {
            let n = facts.nics.iter().find(|n| n.index == index)?;
            Some(NicTile {
                index: n.index,
                name: n.name.clone(),
                pcie_switch: n.pcie_switch.clone(),
                rail: n.rail,
                leaf: n.leaf_switch_id.clone(),
                paired_module: paired.iter().find(|(_, nic)| **nic == n.index).map(|(m, _)| *m),
                holder: nic_holder.get(&n.index).map(|h| (*h).clone()),
            })
        };
        let gpu_tile = |g: &gpu::Model| {
            let module = g.module_id as u32;
            let (state, partition) = match gpu_holder.get(&module) {
                Some((h, partition)) => (GpuState::Used((*h).clone()), *partition),
                None if g.gpu_health() == GpuHealth::Failed => (GpuState::Unhealthy, None),
                None => (GpuState::Free, None),
            };
            GpuTile {
                module_id: module,
                smi_index: g.smi_index as u32,
                pci_address: g.pci_address.clone(),
                model: g.model.clone(),
                pcie_switch: g.pcie_switch.clone(),
                health: g.gpu_health(),
                state,
                partition,
            }
        };

        // Every node the host reports, plus any a device names that the facts lack.
        let mut node_ids: BTreeSet<u32> = facts.numa_nodes.iter().map(|n| n.id).collect();
        node_ids.extend(gpus.iter().map(|g| g.numa_node as u32));
        node_ids.extend(facts.nics.iter().map(|n| n.numa_node));
        let mut lanes_of: BTreeMap<u32, Vec<Lane>> = BTreeMap::new();
        let mut ordered: Vec<&gpu::Model> = gpus.iter().collect();
        ordered.sort_by_key(|g| rank(g.module_id as u32));
        let mut drawn_nics = BTreeSet::new();
        for g in ordered {
            let node = g.numa_node as u32;
            // A NIC on another node than its GPU is drawn on its own node, unpaired there.
            let nic = paired
                .get(&(g.module_id as u32))
                .and_then(|&i| facts.nics.iter().find(|n| n.index == i))
                .filter(|n| n.numa_node == node)
                .and_then(|n| nic_tile(n.index));
            if let Some(n) = &nic {
                drawn_nics.insert(n.index);
            }
            lanes_of.entry(node).or_default().push(Lane { gpu: Some(gpu_tile(g)), nic });
        }
        let mut rest: Vec<_> =
            facts.nics.iter().filter(|n| !drawn_nics.contains(&n.index)).collect();
        rest.sort_by_key(|n| n.index);
        for n in rest {
            lanes_of
                .entry(n.numa_node)
                .or_default()
                .push(Lane { gpu: None, nic: nic_tile(n.index) });
        }
        let numa_nodes = node_ids
            .into_iter()
            .map(|id| {
                let cpus = facts.numa_nodes.iter().find(|n| n.id == id);
                let node_cpus: &[u32] = cpus.map_or(&[], |n| &n.cpus);
                NumaTopology {
                    id,
                    cpus_total: node_cpus.len() as u32,
                    cpus_used: node_cpus.iter().filter(|c| cpus_used.contains(c)).count() as u32,
                    hugepages_total: cpus.map_or(0, |n| n.hugepages_1g_total),
                    hugepages_used: pages_used.get(&id).copied().unwrap_or(0),
                    lanes: lanes_of.remove(&id).unwrap_or_default(),
                }
            })
            .collect();

        let usable = |m: &u32| {
            !gpu_holder.contains_key(m)
                && gpus
                    .iter()
                    .any(|g| g.module_id as u32 == *m && g.gpu_health() != GpuHealth::Failed)
        };
        let partitions = facts
            .partitions
            .iter()
            .zip(slots)
            .map(|(p, slot)| PartitionView {
                id: p.id,
                modules: p.module_ids.clone(),
                state: match partition_holder.get(&p.id) {
                    Some(h) => PartitionState::Active((*h).clone()),
                    None if p.module_ids.iter().all(usable) => PartitionState::Available,
                    None => PartitionState::Blocked,
                },
                slot,
            })
            .collect();

        let instances = held
            .iter()
            .map(|h| HostInstance {
                holder: h.holder.clone(),
                state: InstanceState::parse(&h.row.state).unwrap_or(InstanceState::Failed),
                instance_type: h.row.instance_type.clone(),
                partition: h.placement.partition.map(u32::from),
                gpus: h.placement.gpus.iter().map(|&m| u32::from(m)).collect(),
                nics: h.placement.nics.iter().map(|&n| u32::from(n)).collect(),
                numa_nodes: h.placement.numa_nodes.clone(),
                vcpus: h.placement.vcpus.len() as u32,
                memory_gib: h.placement.memory_gib(),
            })
            .collect();

        Ok(HostTopology {
            name: row.name.clone(),
            scalable_unit: row.scalable_unit as u32,
            system_model: row.system_model.clone(),
            agent: link(row.agent_connected),
            cordoned: row.cordoned,
            numa_nodes,
            partitions,
            module_order,
            instances,
            dpus: dpus
                .into_iter()
                .map(|d| DpuView { name: d.name, model: d.model, agent: link(d.agent_connected) })
                .collect(),
            launchable: launchable.iter().map(capacity_view).collect(),
        })
    }

    /// One scalable unit: its rail leaves in rail order and its hosts with their GPUs.
    pub async fn scalable_unit_topology(
        &self,
        opctx: &OpContext,
        su: u32,
    ) -> Result<ScalableUnitTopology, Error> {
        opctx.authorize(Action::FleetRead)?;
        let name = format!("su{su}");
        let UnitRows { hosts, switches, gpus } =
            self.datastore.scalable_unit_rows(opctx, su).await?;
        let host_ids: Vec<Uuid> = hosts.iter().map(|h| h.id).collect();
        let held = held_on(self, opctx, host_ids).await?;
        let launchable = match self.placer.lock().await.as_ref() {
            Some(p) => p.scheduler.scalable_unit_capacity(&name).unwrap_or_default(),
            None => Vec::new(),
        };

        let mut holders: HashMap<(Uuid, u32), &Holder> = HashMap::new();
        for h in &held {
            if let Some(host_id) = h.row.host_id {
                for &m in &h.placement.gpus {
                    holders.insert((host_id, u32::from(m)), &h.holder);
                }
            }
        }

        // Leaves the switches reported, and any the hosts' cabling names besides.
        let mut leaves: BTreeMap<String, LeafView> = switches
            .into_iter()
            .map(|s| {
                let leaf = LeafView {
                    name: s.name.clone(),
                    rail: s.rail as u32,
                    model: s.model,
                    agent: link(s.agent_connected),
                    reported: true,
                    hosts_cabled: 0,
                };
                (s.name, leaf)
            })
            .collect();
        let mut unit_hosts = Vec::with_capacity(hosts.len());
        for h in &hosts {
            let facts = facts_of(h)?;
            let cabled: BTreeSet<(&str, u32)> =
                facts.nics.iter().map(|n| (n.leaf_switch_id.as_str(), n.rail)).collect();
            for (leaf, rail) in cabled {
                leaves
                    .entry(leaf.to_owned())
                    .or_insert_with(|| LeafView {
                        name: leaf.to_owned(),
                        rail,
                        model: String::new(),
                        agent: AgentLink::Unreachable,
                        reported: false,
                        hosts_cabled: 0,
                    })
                    .hosts_cabled += 1;
            }
            unit_hosts.push(UnitHost {
                name: h.name.clone(),
                agent: link(h.agent_connected),
                cordoned: h.cordoned,
                gpus: gpus
                    .iter()
                    .filter(|g| g.host_id == h.id)
                    .map(|g| match holders.get(&(h.id, g.module_id as u32)) {
                        Some(holder) => GpuState::Used((*holder).clone()),
                        None if g.gpu_health() == GpuHealth::Failed => GpuState::Unhealthy,
                        None => GpuState::Free,
                    })
                    .collect(),
            });
        }
        let mut leaves: Vec<LeafView> = leaves.into_values().collect();
        leaves.sort_by(|a, b| a.rail.cmp(&b.rail).then_with(|| a.name.cmp(&b.name)));

        Ok(ScalableUnitTopology {
            number: su,
            name,
            leaves,
            hosts: unit_hosts,
            launchable: launchable.iter().map(capacity_view).collect(),
        })
    }
}

impl Controller {
    /// One scalable unit's tenant fabric: each leaf with the VRFs it holds or should hold
    /// and whether it confirmed their latest generation, its EVPN peers and VNIs read live
    /// from its switch agent against those VRFs, and the DPUs of the unit's hosts.
    /// A VPC belongs on every leaf of a unit where one of its VMs has a port (the rule the
    /// network reconciler follows, `datastore::fabric`).
    pub async fn scalable_unit_fabric(
        &self,
        opctx: &OpContext,
        su: u32,
    ) -> Result<ScalableUnitFabric, Error> {
        opctx.authorize(Action::FleetRead)?;
        let UnitFabricRows {
            switches,
            dpus,
            ports,
            confirmed,
            vpcs,
            subnets,
            tenants,
            gpu_wanted,
            gpu_fabrics,
        } = self.datastore.scalable_unit_fabric_rows(opctx, su).await?;

        let vpc_of: HashMap<Uuid, Uuid> = subnets.iter().map(|s| (s.id, s.vpc_id)).collect();
        let wanted: BTreeSet<Uuid> =
            ports.iter().filter_map(|p| vpc_of.get(&p.subnet_id).copied()).collect();
        let vpcs: HashMap<Uuid, &vpc::Model> = vpcs.iter().map(|v| (v.id, v)).collect();
        // Each VPC's L2 VNIs, ascending (the subnets come ordered by VNI).
        let mut l2_of: HashMap<Uuid, Vec<u32>> = HashMap::new();
        for s in &subnets {
            l2_of.entry(s.vpc_id).or_default().push(s.vni as u32);
        }
        let mut held: HashMap<&str, HashMap<Uuid, i64>> = HashMap::new();
        for c in &confirmed {
            held.entry(c.switch_name.as_str()).or_default().insert(c.vpc_id, c.generation);
        }

        // Per leaf, the GPU fabrics it should hold with their rails' L2 VNIs there.
        let mut gpu_on: HashMap<&str, HashMap<Uuid, &[u32]>> = HashMap::new();
        for (leaf, id, l2) in &gpu_wanted {
            gpu_on.entry(leaf.as_str()).or_default().insert(*id, l2.as_slice());
        }
        let gpu_fabrics: HashMap<Uuid, &gpu_fabric::Model> =
            gpu_fabrics.iter().map(|f| (f.id, f)).collect();
        let state = |wanted: bool, generation: i64, confirmed_generation: Option<i64>| {
            if !wanted {
                VrfState::Removing
            } else if confirmed_generation == Some(generation) {
                VrfState::Confirmed
            } else {
                VrfState::Pending
            }
        };

        let vrf = |leaf: &str, vpc_id: Uuid, on_leaf: Option<i64>| {
            // Generation 0 is "to be sent again" (the leaf's agent reattached).
            let confirmed_generation = on_leaf.filter(|g| *g > 0);
            if let Some(fabric) = gpu_fabrics.get(&vpc_id) {
                let l2 = gpu_on.get(leaf).and_then(|on| on.get(&vpc_id));
                return LeafVrf {
                    vpc_id: VpcUuid::from_untyped_uuid(vpc_id),
                    vpc_name: "GPU fabric".to_owned(),
                    tenant_id: Some(TenantUuid::from_untyped_uuid(fabric.tenant_id)),
                    tenant_name: tenants.get(&fabric.tenant_id).cloned().unwrap_or_default(),
                    vrf_name: format!("gpu{}", fabric.vni),
                    l3_vni: Some(fabric.vni as u32),
                    l2_vnis: l2.map(|l2| l2.to_vec()).unwrap_or_default(),
                    generation: fabric.generation,
                    confirmed_generation,
                    state: state(l2.is_some(), fabric.generation, confirmed_generation),
                };
            }
            let row = vpcs.get(&vpc_id);
            let generation = row.map_or(0, |v| v.generation);
            LeafVrf {
                vpc_id: VpcUuid::from_untyped_uuid(vpc_id),
                vpc_name: row.map(|v| v.name.clone()).unwrap_or_default(),
                tenant_id: row.map(|v| TenantUuid::from_untyped_uuid(v.tenant_id)),
                tenant_name: row
                    .and_then(|v| tenants.get(&v.tenant_id).cloned())
                    .unwrap_or_default(),
                vrf_name: row.map(|v| format!("vpc{}", v.vni)).unwrap_or_default(),
                l3_vni: row.map(|v| v.vni as u32),
                l2_vnis: l2_of.get(&vpc_id).cloned().unwrap_or_default(),
                generation,
                confirmed_generation,
                state: state(wanted.contains(&vpc_id), generation, confirmed_generation),
            }
        };

        // Every leaf's EVPN state, read at once; each read is bounded by EVPN_TIMEOUT.
        let evpn = futures::future::join_all(
            switches.iter().map(|s| read_evpn(self, &s.name, s.agent_connected)),
        )
        .await;
        let leaves = switches
            .into_iter()
            .zip(evpn)
            .map(|(s, evpn)| {
                let on_leaf = held.remove(s.name.as_str()).unwrap_or_default();
                let mut ids: BTreeSet<Uuid> = wanted.clone();
                ids.extend(on_leaf.keys().copied());
                ids.extend(gpu_on.get(s.name.as_str()).into_iter().flat_map(|on| on.keys()));
                let mut vrfs: Vec<LeafVrf> =
                    ids.into_iter().map(|id| vrf(&s.name, id, on_leaf.get(&id).copied())).collect();
                vrfs.sort_by(|a, b| {
                    (&a.tenant_name, &a.vpc_name, a.l3_vni).cmp(&(
                        &b.tenant_name,
                        &b.vpc_name,
                        b.l3_vni,
                    ))
                });
                let evpn = match evpn {
                    Ok(reply) => LeafEvpn::Read(evpn_read(reply, &vrfs)),
                    Err(why) => LeafEvpn::Unknown(why),
                };
                FabricLeaf {
                    name: s.name,
                    rail: s.rail as u32,
                    model: s.model,
                    agent: link(s.agent_connected),
                    vrfs,
                    evpn,
                }
            })
            .collect();

        let mut port_counts: HashMap<&str, (u32, u32)> = HashMap::new();
        for p in &ports {
            if let Some(dpu) = &p.dpu_name {
                let count = port_counts.entry(dpu.as_str()).or_default();
                count.0 += 1;
                count.1 += u32::from(p.pending);
            }
        }
        let dpus = dpus
            .into_iter()
            .map(|d| {
                let (ports, ports_pending) =
                    port_counts.get(d.name.as_str()).copied().unwrap_or_default();
                FabricDpu {
                    agent: link(d.agent_connected),
                    name: d.name,
                    host: d.host_name,
                    model: d.model,
                    ports,
                    ports_pending,
                }
            })
            .collect();

        Ok(ScalableUnitFabric { number: su, name: format!("su{su}"), leaves, dpus })
    }

    /// [`scalable_unit_fabric`](Self::scalable_unit_fabric) by the unit's name as typed in a
    /// URL ("su1" or "1"); anything else is not found, once the caller may look at all.
    pub async fn scalable_unit_fabric_named(
        &self,
        opctx: &OpContext,
        su: &str,
    ) -> Result<ScalableUnitFabric, Error> {
        opctx.authorize(Action::FleetRead)?;
        match parse_scalable_unit(su) {
            Some(number) => self.scalable_unit_fabric(opctx, number).await,
            None => Err(Error::not_found("scalable unit", su.trim())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hgx() -> Vec<PartitionFacts> {
        portal_scheduler::hgx_h100_partitions()
            .into_iter()
            .map(|p| PartitionFacts {
                id: u32::from(p.id),
                module_ids: p.modules.iter().map(|&m| u32::from(m)).collect(),
            })
            .collect()
    }

    #[test]
    fn evpn_drift_is_counted_against_the_leafs_vrfs() {
        let vrf = |l3: u32, l2: &[u32], state: VrfState| LeafVrf {
            vpc_id: portal_types::ids::VpcUuid::from_untyped_uuid(Uuid::new_v4()),
            vpc_name: String::new(),
            tenant_id: None,
            tenant_name: String::new(),
            vrf_name: format!("vpc{l3}"),
            l3_vni: Some(l3),
            l2_vnis: l2.to_vec(),
            generation: 1,
            confirmed_generation: None,
            state,
        };
        let vni = |vni: u32| pb::EvpnVni { vni, kind: 0, vrf: String::new(), remote_vteps: 0 };
        let peer = |address: &str, state: &str| pb::EvpnPeer {
            address: address.into(),
            state: state.into(),
            prefixes_received: None,
        };
        let reply = pb::EvpnStatusReply {
            peers: vec![peer("swp2", "Active"), peer("swp1", "Established")],
            // 500 and its 1000 confirmed (1001 missing); 600 pending and not there yet is
            // no drift; 700 is nobody's; 800 is being removed and still there.
            vnis: [500, 1000, 700, 800].map(vni).to_vec(),
            simulated: false,
        };
        let vrfs = [
            vrf(500, &[1000, 1001], VrfState::Confirmed),
            vrf(600, &[], VrfState::Pending),
            vrf(800, &[], VrfState::Removing),
        ];
        let read = evpn_read(reply, &vrfs);
        assert_eq!((read.established(), read.peers.len()), (1, 2));
        assert_eq!(read.peers[0].address, "swp1");
        assert_eq!(read.vnis, 4);
        assert_eq!(read.unexpected_vnis, [700]);
        assert_eq!(read.missing_vnis, [1001]);
        assert!(!read.in_sync());
    }

    #[test]
    fn the_hgx_tree_puts_nvlink_pairs_side_by_side() {
        let (order, slots) = partition_layout(&hgx(), &(1..=8).collect::<Vec<_>>());
        assert_eq!(order, [1, 3, 2, 4, 5, 7, 6, 8]);
        let slot = |id: usize| slots[id].expect("every HGX partition has a slot");
        assert_eq!(slot(0), PartitionSlot { level: 0, column: 1, span: 8 });
        assert_eq!(slot(2), PartitionSlot { level: 1, column: 5, span: 4 });
        // {2,4} sits in columns 3-4, {6,8} in 7-8.
        assert_eq!(slot(4), PartitionSlot { level: 2, column: 3, span: 2 });
        assert_eq!(slot(6), PartitionSlot { level: 2, column: 7, span: 2 });
        // Single GPU 3 (partition 9) in column 2, GPU 8 (partition 14) in column 8.
        assert_eq!(slot(9), PartitionSlot { level: 3, column: 2, span: 1 });
        assert_eq!(slot(14), PartitionSlot { level: 3, column: 8, span: 1 });
    }

    #[test]
    fn a_table_that_is_not_a_tree_gets_no_slots_and_stray_gpus_come_last() {
        let parts = vec![
            PartitionFacts { id: 0, module_ids: vec![1, 2] },
            PartitionFacts { id: 1, module_ids: vec![2, 3] },
        ];
        let (order, slots) = partition_layout(&parts, &[4, 3, 2, 1]);
        assert_eq!(order, [1, 2, 3, 4]);
        assert!(slots.iter().all(Option::is_none));
        let (order, slots) = partition_layout(&[], &[2, 1]);
        assert_eq!((order, slots.len()), (vec![1, 2], 0));
    }

    #[test]
    fn gpus_pair_with_the_nic_behind_their_pcie_switch() {
        let gpu = |module: i32, switch: &str| gpu::Model {
            id: Uuid::new_v4(),
            host_id: Uuid::nil(),
            module_id: module,
            smi_index: module - 1,
            model: "H100".into(),
            pci_address: String::new(),
            numa_node: 0,
            pcie_switch: switch.into(),
            health: "ok".into(),
        };
        let nic = |index: u32, switch: &str| crate::app::fleet::NicFacts {
            index,
            name: format!("nic{index}"),
            pci_address: String::new(),
            numa_node: 0,
            pcie_switch: switch.into(),
            rail: index,
            leaf_switch_id: format!("leaf{index}"),
            mac: String::new(),
        };
        let facts = HostFacts {
            numa_nodes: Vec::new(),
            nics: vec![nic(0, "sw-b"), nic(1, "sw-a"), nic(2, "sw-c")],
            partitions: Vec::new(),
            dpu_ids: Vec::new(),
            images: None,
        };
        let pairs = pairing(&facts, &[gpu(1, "sw-a"), gpu(2, "sw-b"), gpu(3, "sw-b")]);
        // Two GPUs on sw-b share its one NIC: the lower module gets it, the other none.
        assert_eq!(pairs, HashMap::from([(1, 1), (2, 0)]));
    }
}
