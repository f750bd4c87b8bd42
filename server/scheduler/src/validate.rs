//! An independent checker for allocations: every invariant of DESIGN.md §4, verified from the
//! public fleet data alone (it shares no state or code path with the scheduler's bit masks,
//! only the definition of GPU↔NIC pairing, [`Host::paired_nic`]).
//!
//! Used by the property tests, by `placement-bench --check` on a `--dump` file, and usable by
//! the control plane as a consistency check of the database.
//!
//! Invariants per allocation: the host exists (and, for new decisions, is schedulable); the GPUs
//! are exactly one Fabric Manager partition of one model (healthy, for new decisions); the NICs
//! are exactly the GPUs' paired NICs; the NUMA nodes are exactly the GPUs' nodes (one node for a
//! CPU-only VM); every vCPU, the emulator CPU and every hugepage is on those nodes; the
//! emulator CPU is not a vCPU. Across allocations: no GPU, CPU or hugepage is used twice and no
//! node's hugepages are oversubscribed.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use thiserror::Error;

use crate::allocation::{Allocation, Placement};
use crate::model::Host;
use crate::request::{GroupPolicy, PlacementRequest};

/// How strictly host state is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strictness {
    /// Fresh decisions: the host must be schedulable and the GPUs healthy.
    NewDecision,
    /// Allocations that already exist: the host may have been cordoned or a GPU may have
    /// failed since.
    Existing,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("VM {vm}: {problem}")]
pub struct Violation {
    pub vm: String,
    pub problem: String,
}

#[derive(Clone, Debug, Default)]
struct Ledger {
    gpus: BTreeSet<u8>,
    cpus: BTreeSet<u32>,
    pages: BTreeMap<u32, u32>,
}

/// Checks allocations one at a time against the ones already accepted (and releases), so a
/// stream of allocate/release events can be replayed.
#[derive(Clone, Debug, Default)]
pub struct Checker {
    hosts: HashMap<String, (Host, Ledger)>,
    vms: HashMap<String, Allocation>,
}

impl Checker {
    pub fn new(hosts: impl IntoIterator<Item = Host>) -> Self {
        let mut checker = Checker::default();
        for host in hosts {
            checker.set_host(host);
        }
        checker
    }

    /// Adds a host or replaces its description (e.g. new health flags), keeping its usage.
    pub fn set_host(&mut self, host: Host) {
        match self.hosts.get_mut(&host.id) {
            Some(entry) => entry.0 = host,
            None => {
                self.hosts.insert(host.id.clone(), (host, Ledger::default()));
            }
        }
    }

    /// Live allocations.
    pub fn len(&self) -> usize {
        self.vms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vms.is_empty()
    }

    /// Checks `a` and, if it is valid, records it.
    pub fn allocate(&mut self, a: &Allocation, strictness: Strictness) -> Result<(), Violation> {
        let fail = |problem: String| Violation { vm: a.vm.clone(), problem };
        if self.vms.contains_key(&a.vm) {
            return Err(fail("allocated twice".into()));
        }
        let p = &a.placement;
        let (host, ledger) =
            self.hosts.get(&p.host).ok_or_else(|| fail(format!("unknown host {}", p.host)))?;
        check_placement(host, p, strictness).map_err(fail)?;
        if let Some(g) = p.gpus.iter().find(|g| ledger.gpus.contains(g)) {
            return Err(fail(format!("GPU module {g} is already in use")));
        }
        if let Some(c) = p.vcpus.iter().chain([&p.emulator_cpu]).find(|c| ledger.cpus.contains(c)) {
            return Err(fail(format!("CPU {c} is already in use")));
        }
        for hp in &p.hugepages {
            let capacity =
                host.numa_nodes.iter().find(|n| n.id == hp.node).map_or(0, |n| n.hugepages_1g);
            let used = ledger.pages.get(&hp.node).copied().unwrap_or(0);
            if used + hp.pages > capacity {
                return Err(fail(format!(
                    "node {} hugepages oversubscribed: {used} used + {} > {capacity}",
                    hp.node, hp.pages
                )));
            }
        }
        let ledger = match self.hosts.get_mut(&p.host) {
            Some((_, ledger)) => ledger,
            None => return Err(fail(format!("unknown host {}", p.host))),
        };
        ledger.gpus.extend(p.gpus.iter().copied());
        ledger.cpus.extend(p.vcpus.iter().chain([&p.emulator_cpu]).copied());
        for hp in &p.hugepages {
            *ledger.pages.entry(hp.node).or_default() += hp.pages;
        }
        self.vms.insert(a.vm.clone(), a.clone());
        Ok(())
    }

    /// Forgets a live allocation.
    pub fn release(&mut self, vm: &str) -> Result<(), Violation> {
        let a = self.vms.remove(vm).ok_or_else(|| Violation {
            vm: vm.to_string(),
            problem: "released but not allocated".into(),
        })?;
        let p = &a.placement;
        if let Some((_, ledger)) = self.hosts.get_mut(&p.host) {
            for g in &p.gpus {
                ledger.gpus.remove(g);
            }
            for c in p.vcpus.iter().chain([&p.emulator_cpu]) {
                ledger.cpus.remove(c);
            }
            for hp in &p.hugepages {
                if let Some(used) = ledger.pages.get_mut(&hp.node) {
                    *used -= hp.pages;
                }
            }
        }
        Ok(())
    }
}

/// Checks a set of allocations against each other and the fleet; all violations are returned.
pub fn validate_allocations(
    hosts: &[Host],
    allocations: &[Allocation],
    strictness: Strictness,
) -> Result<(), Vec<Violation>> {
    let mut checker = Checker::new(hosts.iter().cloned());
    let errors: Vec<Violation> =
        allocations.iter().filter_map(|a| checker.allocate(a, strictness).err()).collect();
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// Checks that `placements` answer `request`: one per VM, of the requested shape and model,
/// and the group's rule (cluster: one scalable unit, with the members; spread: distinct hosts,
/// none of the members'). Violations name VMs by their position (`#0`, `#1`, ...).
pub fn check_request(
    hosts: &[Host],
    request: &PlacementRequest,
    placements: &[Placement],
) -> Result<(), Vec<Violation>> {
    let mut errors = Vec::new();
    let mut fail = |vm: String, problem: String| errors.push(Violation { vm, problem });
    if placements.len() != request.vm_count as usize {
        fail(
            "request".into(),
            format!("{} placements for {} VMs", placements.len(), request.vm_count),
        );
    }
    let by_id: HashMap<&str, &Host> = hosts.iter().map(|h| (h.id.as_str(), h)).collect();
    let mut units = BTreeSet::new();
    let mut seen_hosts = BTreeSet::new();
    let members: Vec<&str> =
        request.group.iter().flat_map(|g| g.member_hosts.iter().map(String::as_str)).collect();
    for m in &members {
        if let Some(h) = by_id.get(m) {
            units.insert(h.scalable_unit.as_str());
        }
    }
    for (i, p) in placements.iter().enumerate() {
        let vm = format!("#{i}");
        let Some(host) = by_id.get(p.host.as_str()) else {
            fail(vm, format!("unknown host {}", p.host));
            continue;
        };
        if p.gpus.len() != request.gpu_count as usize {
            fail(vm.clone(), format!("{} GPUs, {} requested", p.gpus.len(), request.gpu_count));
        }
        if let (Some(image), Some(images)) = (&request.image, &host.images)
            && !images.contains(image)
        {
            fail(vm.clone(), format!("host {} has no image {image}", p.host));
        }
        if request.gpu_count > 0 {
            for g in &p.gpus {
                let model = host.gpus.iter().find(|x| x.module_id == *g).map(|x| &x.model);
                if model != Some(&request.gpu_model) {
                    fail(vm.clone(), format!("GPU {g} is not a {}", request.gpu_model));
                }
            }
        }
        if p.vcpus.len() != request.vcpus as usize {
            fail(vm.clone(), format!("{} vCPUs, {} requested", p.vcpus.len(), request.vcpus));
        }
        if p.memory_gib() != request.memory_gib {
            fail(vm.clone(), format!("{} GiB, {} requested", p.memory_gib(), request.memory_gib));
        }
        units.insert(host.scalable_unit.as_str());
        let new_host = seen_hosts.insert(p.host.as_str());
        match request.group.as_ref().map(|g| g.policy) {
            Some(GroupPolicy::Spread) if !new_host || members.contains(&p.host.as_str()) => {
                fail(vm, format!("spread group shares host {}", p.host));
            }
            _ => {}
        }
    }
    if request.group.as_ref().map(|g| g.policy) == Some(GroupPolicy::Cluster) && units.len() > 1 {
        fail("request".into(), format!("cluster group spans scalable units {units:?}"));
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

/// The per-allocation invariants that need only the host.
fn check_placement(host: &Host, p: &Placement, strictness: Strictness) -> Result<(), String> {
    if strictness == Strictness::NewDecision && !host.schedulable() {
        return Err("placed on a cordoned or unreachable host".into());
    }
    let node_of_cpu =
        |cpu: u32| host.numa_nodes.iter().find(|n| n.cpus.contains(&cpu)).map(|n| n.id);
    let expected_nodes: Vec<u32> = match p.partition {
        Some(id) => {
            let part = host
                .partitions
                .iter()
                .find(|x| x.id == id)
                .ok_or(format!("partition {id} does not exist"))?;
            let mut modules = part.modules.clone();
            modules.sort_unstable();
            if p.gpus != modules {
                return Err(format!("GPUs {:?} are not partition {id} {modules:?}", p.gpus));
            }
            if ![1, 2, 4, 8].contains(&modules.len()) {
                return Err(format!("partition {id} has {} GPUs", modules.len()));
            }
            let mut nodes = BTreeSet::new();
            let mut models = BTreeSet::new();
            for m in &modules {
                let gpu = host
                    .gpus
                    .iter()
                    .find(|g| g.module_id == *m)
                    .ok_or(format!("GPU module {m} does not exist"))?;
                if strictness == Strictness::NewDecision && !gpu.healthy {
                    return Err(format!("GPU module {m} is unhealthy"));
                }
                nodes.insert(gpu.numa_node);
                models.insert(gpu.model.as_str());
            }
            if models.len() != 1 {
                return Err(format!("partition {id} mixes GPU models"));
            }
            let nics: Vec<u8> = modules.iter().filter_map(|&m| host.paired_nic(m)).collect();
            if p.nics != nics {
                return Err(format!("NICs {:?} are not the paired NICs {nics:?}", p.nics));
            }
            nodes.into_iter().collect()
        }
        None => {
            if !p.gpus.is_empty() || !p.nics.is_empty() {
                return Err("CPU-only VM has GPUs or NICs".into());
            }
            if p.numa_nodes.len() != 1 {
                return Err(format!("CPU-only VM on nodes {:?}", p.numa_nodes));
            }
            p.numa_nodes.clone()
        }
    };
    if p.numa_nodes != expected_nodes {
        return Err(format!("NUMA nodes {:?}, expected {expected_nodes:?}", p.numa_nodes));
    }
    if p.vcpus.is_empty() {
        return Err("no vCPUs".into());
    }
    let mut cpus = BTreeSet::new();
    for &cpu in &p.vcpus {
        if !cpus.insert(cpu) {
            return Err(format!("vCPU list repeats CPU {cpu}"));
        }
        match node_of_cpu(cpu) {
            Some(n) if expected_nodes.contains(&n) => {}
            _ => return Err(format!("CPU {cpu} is not on the VM's NUMA nodes")),
        }
    }
    if cpus.contains(&p.emulator_cpu) {
        return Err(format!("emulator CPU {} is also a vCPU", p.emulator_cpu));
    }
    match node_of_cpu(p.emulator_cpu) {
        Some(n) if expected_nodes.contains(&n) => {}
        _ => return Err(format!("emulator CPU {} is off the VM's nodes", p.emulator_cpu)),
    }
    let mut page_nodes = BTreeSet::new();
    for hp in &p.hugepages {
        if !expected_nodes.contains(&hp.node) || !page_nodes.insert(hp.node) {
            return Err(format!("hugepages on node {} (off the VM's nodes or repeated)", hp.node));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocation::NodeHugepages;

    fn vm(host: &str, partition: Option<u8>, gpus: Vec<u8>, nics: Vec<u8>) -> Allocation {
        Allocation::new(
            "vm",
            Placement {
                host: host.into(),
                partition,
                gpus,
                nics,
                numa_nodes: vec![0],
                vcpus: vec![0, 112],
                emulator_cpu: 167,
                hugepages: vec![NodeHugepages { node: 0, pages: 8 }],
            },
        )
    }

    #[test]
    fn catches_broken_invariants() {
        let hosts = vec![Host::hgx_h100("h0", "su0")];
        // Partition 3 = {1,3}: module 1 pairs with NIC 2, module 3 with NIC 3.
        let good = vm("h0", Some(3), vec![1, 3], vec![2, 3]);
        assert_eq!(
            validate_allocations(&hosts, std::slice::from_ref(&good), Strictness::NewDecision),
            Ok(())
        );
        let not_a_partition = vm("h0", Some(3), vec![1, 2], vec![2, 0]);
        let wrong_nics = vm("h0", Some(3), vec![1, 3], vec![0, 1]);
        let mut off_node = good.clone();
        off_node.placement.vcpus = vec![56];
        let mut emulator_is_vcpu = good.clone();
        emulator_is_vcpu.placement.emulator_cpu = 0;
        for bad in [not_a_partition, wrong_nics, off_node, emulator_is_vcpu] {
            assert!(validate_allocations(&hosts, &[bad], Strictness::NewDecision).is_err());
        }
        let mut twin = good.clone();
        twin.vm = "other".into();
        twin.placement.partition = Some(7);
        twin.placement.gpus = vec![1];
        twin.placement.nics = vec![2];
        twin.placement.vcpus = vec![1];
        twin.placement.emulator_cpu = 55;
        let errors = validate_allocations(&hosts, &[good, twin], Strictness::NewDecision)
            .expect_err("GPU 1 twice");
        assert!(errors[0].problem.contains("GPU module 1"), "{errors:?}");
    }
}
