//! Walking-skeleton placement: picks a host and a Fabric Manager partition for a VM from
//! what agents reported and what is claimed. The topology-aware scheduler (`portal-scheduler`)
//! replaces this; the rules it already keeps are the ones that must never break:
//!
//! - only whole partitions from the host's own partition table, of exactly the VM's size;
//! - only healthy, unclaimed GPUs on connected, uncordoned hosts;
//! - vCPUs pinned on the GPUs' NUMA node(s), an emulator CPU apart, hugepages from the same
//!   node(s), never a CPU or hugepage given twice;
//! - best fit: the host with the fewest free GPUs that still fits, so large partitions stay
//!   whole elsewhere.

use std::collections::{BTreeSet, HashMap, HashSet};

use portal_types::Error;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::db::entity::{gpu, host};
use crate::fleet::HostFacts;

/// What the control plane asks a host agent to run; stored on the instance row so retries
/// and undo send exactly the same spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSpec {
    pub partition_id: Option<u32>,
    pub gpu_module_ids: Vec<u32>,
    pub nic_indices: Vec<u32>,
    pub vcpu_pins: Vec<u32>,
    pub emulator_cpu: u32,
    pub numa_nodes: Vec<u32>,
    pub hugepages_per_node: Vec<(u32, u32)>,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub image: String,
}

/// One host as placement sees it.
pub struct Candidate {
    pub host: host::Model,
    pub facts: HostFacts,
    pub gpus: Vec<gpu::Model>,
    /// Specs of the VMs that still hold resources on this host.
    pub active_specs: Vec<StoredSpec>,
}

pub struct Choice {
    pub host_id: Uuid,
    /// The host's claim generation the decision was made on.
    pub claim_generation: i64,
    pub host_name: String,
    pub gpu_ids: Vec<Uuid>,
    pub spec: StoredSpec,
}

pub struct Shape {
    pub gpu_count: u32,
    pub vcpus: u32,
    pub memory_gib: u32,
}

pub fn choose(
    candidates: &[Candidate],
    claimed: &HashSet<Uuid>,
    shape: &Shape,
) -> Result<Choice, Error> {
    let mut free_total = 0;
    let mut free_max = 0;
    let mut model = String::new();
    let mut usable: Vec<(&Candidate, Vec<&gpu::Model>)> = Vec::new();
    for c in candidates {
        let free: Vec<&gpu::Model> =
            c.gpus.iter().filter(|g| g.health != "failed" && !claimed.contains(&g.id)).collect();
        if let Some(g) = c.gpus.first() {
            model.clone_from(&g.model);
        }
        if !c.host.agent_connected || c.host.cordoned {
            continue;
        }
        free_total += free.len() as u32;
        free_max = free_max.max(free.len() as u32);
        if free.len() as u32 >= shape.gpu_count {
            usable.push((c, free));
        }
    }
    // Best fit first; equally good hosts in random order so concurrent launchers spread
    // out instead of all racing for the same host.
    let mut rng = rand::rng();
    usable.shuffle(&mut rng);
    usable.sort_by_key(|(_, free)| free.len());
    for (c, free) in &usable {
        if let Some(choice) = fit_on_host(c, free, shape) {
            return Ok(choice);
        }
    }
    Err(Error::InsufficientCapacity {
        message: format!(
            "No host has {} free {} GPUs in one NVLink partition with the CPUs and memory to go \
             with them right now ({} GPUs are free, at most {} on one host); try fewer GPUs or \
             try again later.",
            shape.gpu_count,
            if model.is_empty() { "GPU".to_owned() } else { model },
            free_total,
            free_max
        ),
    })
}

fn fit_on_host(c: &Candidate, free: &[&gpu::Model], shape: &Shape) -> Option<Choice> {
    let free_modules: HashMap<u32, &gpu::Model> =
        free.iter().map(|g| (g.module_id as u32, *g)).collect();
    let used_cpus: HashSet<u32> = c
        .active_specs
        .iter()
        .flat_map(|s| s.vcpu_pins.iter().copied().chain([s.emulator_cpu]))
        .collect();
    let mut used_pages: HashMap<u32, u32> = HashMap::new();
    for s in &c.active_specs {
        for (node, pages) in &s.hugepages_per_node {
            *used_pages.entry(*node).or_default() += pages;
        }
    }
    // Smallest fitting partitions first, so a 1-GPU VM takes a single-GPU partition.
    let mut partitions: Vec<_> = c
        .facts
        .partitions
        .iter()
        .filter(|p| p.module_ids.len() as u32 == shape.gpu_count)
        .filter(|p| p.module_ids.iter().all(|m| free_modules.contains_key(m)))
        .collect();
    partitions.sort_by_key(|p| p.id);
    for p in partitions {
        let gpus: Vec<&gpu::Model> = p.module_ids.iter().map(|m| free_modules[m]).collect();
        let nodes: BTreeSet<u32> = gpus.iter().map(|g| g.numa_node as u32).collect();
        let nodes: Vec<u32> = nodes.into_iter().collect();
        let per_node_cpus = shape.vcpus.div_ceil(nodes.len() as u32);
        let per_node_pages = shape.memory_gib.div_ceil(nodes.len() as u32);
        let mut pins = Vec::new();
        let mut emulator = None;
        let mut pages = Vec::new();
        let mut fits = true;
        for node in &nodes {
            let Some(facts) = c.facts.numa_nodes.iter().find(|n| n.id == *node) else {
                fits = false;
                break;
            };
            let mut free_cpus = facts.cpus.iter().copied().filter(|cpu| !used_cpus.contains(cpu));
            let take: Vec<u32> = free_cpus.by_ref().take(per_node_cpus as usize).collect();
            if emulator.is_none() {
                emulator = free_cpus.next();
            }
            let pages_free =
                facts.hugepages_1g_total.saturating_sub(used_pages.get(node).copied().unwrap_or(0));
            if take.len() < per_node_cpus as usize || pages_free < per_node_pages {
                fits = false;
                break;
            }
            pins.extend(take);
            pages.push((*node, per_node_pages));
        }
        let (true, Some(emulator_cpu)) = (fits, emulator) else { continue };
        pins.truncate(shape.vcpus as usize);
        let switches: HashSet<&str> = gpus.iter().map(|g| g.pcie_switch.as_str()).collect();
        let nic_indices = c
            .facts
            .nics
            .iter()
            .filter(|n| switches.contains(n.pcie_switch.as_str()))
            .map(|n| n.index)
            .collect();
        return Some(Choice {
            host_id: c.host.id,
            claim_generation: c.host.claim_generation,
            host_name: c.host.name.clone(),
            gpu_ids: gpus.iter().map(|g| g.id).collect(),
            spec: StoredSpec {
                partition_id: Some(p.id),
                gpu_module_ids: p.module_ids.clone(),
                nic_indices,
                vcpu_pins: pins,
                emulator_cpu,
                numa_nodes: nodes,
                hugepages_per_node: pages,
                memory_mib: u64::from(shape.memory_gib) * 1024,
                disk_gib: 200,
                image: "ubuntu-24.04-cuda".to_owned(),
            },
        });
    }
    None
}
