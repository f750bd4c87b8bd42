//! Who holds what on a host, and the rules a VM spec must meet against the hardware.
//!
//! A VM's [`Claim`] is everything it takes: its Fabric Manager partition (and so its GPUs),
//! its SuperNICs, its pinned CPUs (vCPUs and the emulator thread) and its 1 GiB hugepages per
//! NUMA node. The [`Ledger`] keeps the claims of all VMs on the host. Ensuring a VM is:
//!
//! ```text
//! claim = claim_for(host, health, spec)   // InvalidArgument: the spec names hardware that
//!                                         //   is not there or not where the spec says;
//!                                         // FailedPrecondition: a GPU has FAILED health
//! ledger.check(host, vm_id, &claim)       // FailedPrecondition: overlaps another VM's
//!                                         //   partition, NIC or CPU;
//!                                         // ResourceExhausted: hugepages short on a node
//! ledger.commit(vm_id, claim)             // replaces the VM's previous claim, if any
//! ```
//!
//! `check` ignores what `vm_id` itself already holds, so a newer generation of a VM can keep
//! its resources while changing others. Nothing is ever given to two VMs.

use std::collections::{BTreeMap, BTreeSet};

use agent_common::DriverError;

use crate::model::{GpuHealth, HostDescription, PartitionStatus, VmSpec};

/// Everything one VM holds on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claim {
    pub partition: Option<u32>,
    pub gpus: BTreeSet<u32>,
    pub nics: BTreeSet<u32>,
    /// vCPU pins and the emulator CPU.
    pub cpus: BTreeSet<u32>,
    /// 1 GiB hugepages per NUMA node id.
    pub hugepages: BTreeMap<u32, u32>,
}

fn invalid(message: String) -> DriverError {
    DriverError::InvalidArgument(message)
}

fn unknown(partition_id: u32) -> DriverError {
    invalid(format!(
        "partition_id {partition_id} is not in this host's Fabric Manager partition table; \
         pick one from GetInventory"
    ))
}

fn list(values: impl IntoIterator<Item = u32>) -> String {
    let items: Vec<String> = values.into_iter().map(|v| v.to_string()).collect();
    format!("[{}]", items.join(", "))
}

/// Works out what `spec` takes on `host`, checking it against the hardware and GPU health.
pub fn claim_for(
    host: &HostDescription,
    gpu_health: &BTreeMap<u32, (GpuHealth, String)>,
    spec: &VmSpec,
) -> Result<Claim, DriverError> {
    let nodes: BTreeSet<u32> = spec.numa_nodes.iter().copied().collect();
    for node in &nodes {
        if host.numa_node(*node).is_none() {
            return Err(invalid(format!(
                "numa_nodes names node {node}, which this host does not have; use node ids \
                 from GetInventory"
            )));
        }
    }
    let outside = |what: String, node: u32| {
        invalid(format!(
            "{what} sits on NUMA node {node}, which numa_nodes {} does not list; list every node \
             the VM's GPUs, NICs and vCPUs sit on",
            list(nodes.iter().copied())
        ))
    };

    let mut gpus = BTreeSet::new();
    for module in &spec.gpu_module_ids {
        let gpu = host.gpu_by_module(*module).ok_or_else(|| {
            invalid(format!(
                "gpu_module_ids names module {module}, which this host does not have; use \
                 module ids from GetInventory"
            ))
        })?;
        if !nodes.contains(&gpu.numa_node) {
            return Err(outside(format!("GPU module {module}"), gpu.numa_node));
        }
        gpus.insert(*module);
    }

    if let Some(id) = spec.partition_id {
        let partition = host.partition(id).ok_or_else(|| {
            invalid(format!(
                "partition_id {id} is not in this host's Fabric Manager partition table; pick \
                 one from GetInventory"
            ))
        })?;
        let modules: BTreeSet<u32> = partition.module_ids.iter().copied().collect();
        if modules != gpus {
            return Err(invalid(format!(
                "partition {id} holds GPU modules {} but gpu_module_ids is {}; send the \
                 partition's exact module set",
                list(modules),
                list(gpus)
            )));
        }
    }

    let mut nics = BTreeSet::new();
    for index in &spec.nic_indices {
        let nic = host.nic(*index).ok_or_else(|| {
            invalid(format!(
                "nic_indices names NIC {index}, which this host does not have; use NIC indices \
                 from GetInventory"
            ))
        })?;
        if !nodes.contains(&nic.numa_node) {
            return Err(outside(format!("NIC {index}"), nic.numa_node));
        }
        nics.insert(*index);
    }

    let mut cpus = BTreeSet::new();
    for cpu in &spec.vcpu_pins {
        let node = host.numa_node_of_cpu(*cpu).ok_or_else(|| {
            invalid(format!(
                "vcpu_pins names CPU {cpu}, which this host does not have; use CPU ids from \
                 GetInventory"
            ))
        })?;
        if !nodes.contains(&node) {
            return Err(outside(format!("vCPU pin CPU {cpu}"), node));
        }
        cpus.insert(*cpu);
    }
    if host.numa_node_of_cpu(spec.emulator_cpu).is_none() {
        return Err(invalid(format!(
            "emulator_cpu {} is not a CPU of this host; use CPU ids from GetInventory",
            spec.emulator_cpu
        )));
    }
    cpus.insert(spec.emulator_cpu);

    let hugepages = split_hugepages(spec, &nodes)?;

    // Health is state, not shape: checked after everything the caller could get wrong.
    for module in &gpus {
        if let Some((GpuHealth::Failed, message)) = gpu_health.get(module) {
            let why = if message.is_empty() { String::new() } else { format!(" ({message})") };
            return Err(DriverError::FailedPrecondition(format!(
                "GPU module {module} has FAILED health{why}; place the VM on healthy GPUs"
            )));
        }
    }

    Ok(Claim { partition: spec.partition_id, gpus, nics, cpus, hugepages })
}

/// Spreads the VM's hugepages evenly over its NUMA nodes (lower node ids take the remainder),
/// mirroring a guest NUMA topology with equal cells.
fn split_hugepages(
    spec: &VmSpec,
    nodes: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, u32>, DriverError> {
    let pages = spec.hugepages_1g();
    let count = nodes.len() as u64;
    let (base, remainder) = (pages / count, pages % count);
    nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let share = base + u64::from((i as u64) < remainder);
            let share = u32::try_from(share).map_err(|_| {
                invalid(format!(
                    "memory_mib {} is larger than any host; ask for less memory",
                    spec.memory_mib
                ))
            })?;
            Ok((*node, share))
        })
        .collect()
}

/// The claims of every VM on one host, and the active Fabric Manager partitions with the VM
/// each is active for. A partition is active for a VM from `activate` (or the `commit` of a
/// claim using it) until `deactivate` or the VM's `release`.
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    claims: BTreeMap<String, Claim>,
    partitions: BTreeMap<u32, String>,
}

impl Ledger {
    /// Checks that `claim` conflicts with no other VM's and fits in free memory, not counting
    /// what `vm_id` itself holds.
    pub fn check(
        &self,
        host: &HostDescription,
        vm_id: &str,
        claim: &Claim,
    ) -> Result<(), DriverError> {
        let conflict = |m: String| Err(DriverError::FailedPrecondition(m));
        if let Some(wanted) = claim.partition {
            self.check_partition(host, wanted, vm_id)?;
        }
        let others = self.claims.iter().filter(|(owner, _)| owner.as_str() != vm_id);
        for (owner, held) in others {
            if let Some(gpu) = claim.gpus.intersection(&held.gpus).next() {
                return conflict(format!(
                    "GPU module {gpu} is already given to VM {owner}; choose free GPUs"
                ));
            }
            if let Some(nic) = claim.nics.intersection(&held.nics).next() {
                return conflict(format!(
                    "NIC {nic} is already given to VM {owner}; choose a free NIC"
                ));
            }
            if let Some(cpu) = claim.cpus.intersection(&held.cpus).next() {
                return conflict(format!(
                    "CPU {cpu} is already pinned for VM {owner}; pin the VM on free CPUs"
                ));
            }
        }
        let free = self.hugepages_free_excluding(host, Some(vm_id));
        for (node, need) in &claim.hugepages {
            let available = free.get(node).copied().unwrap_or(0);
            if *need > available {
                return Err(DriverError::ResourceExhausted(format!(
                    "NUMA node {node} has {available} free 1 GiB hugepages but the VM needs \
                     {need} there; place the VM where memory is free or ask for less"
                )));
            }
        }
        Ok(())
    }

    /// Refuses partition `wanted` for `vm_id` if it overlaps a partition active for another
    /// VM (itself included: a partition is active for one VM at a time).
    fn check_partition(
        &self,
        host: &HostDescription,
        wanted: u32,
        vm_id: &str,
    ) -> Result<(), DriverError> {
        let Some(wanted_modules) = host.partition(wanted).map(|p| &p.module_ids) else {
            return Ok(());
        };
        for (active, owner) in self.partitions.iter().filter(|(_, owner)| *owner != vm_id) {
            let Some(active_modules) = host.partition(*active).map(|p| &p.module_ids) else {
                continue;
            };
            if wanted_modules.iter().any(|m| active_modules.contains(m)) {
                return Err(DriverError::FailedPrecondition(format!(
                    "partition {wanted} (GPU modules {}) overlaps partition {active} (GPU \
                     modules {}), active for VM {owner}; remove that VM first or choose a free \
                     partition",
                    list(wanted_modules.iter().copied()),
                    list(active_modules.iter().copied())
                )));
            }
        }
        Ok(())
    }

    /// Activates partition `partition_id` for `vm_id`; already active for it: nothing to do.
    /// Errors: `InvalidArgument` for a partition the host's table does not have;
    /// `FailedPrecondition` if it overlaps a partition active for another VM or one of its
    /// GPUs has FAILED health.
    pub fn activate(
        &mut self,
        host: &HostDescription,
        gpu_health: &BTreeMap<u32, (GpuHealth, String)>,
        partition_id: u32,
        vm_id: &str,
    ) -> Result<PartitionStatus, DriverError> {
        let partition = host.partition(partition_id).ok_or_else(|| unknown(partition_id))?;
        if self.partitions.get(&partition_id).is_some_and(|owner| owner == vm_id) {
            return Ok(self.partition_status(partition_id));
        }
        for module in &partition.module_ids {
            if let Some((GpuHealth::Failed, message)) = gpu_health.get(module) {
                return Err(DriverError::FailedPrecondition(format!(
                    "GPU module {module} of partition {partition_id} has FAILED health \
                     ({message}); choose a partition of healthy GPUs"
                )));
            }
        }
        self.check_partition(host, partition_id, vm_id)?;
        self.partitions.insert(partition_id, vm_id.to_owned());
        Ok(self.partition_status(partition_id))
    }

    /// Deactivates partition `partition_id` if it is active for `vm_id`. Inactive, or active
    /// for another VM: nothing changes, and the status says who holds it (the caller's
    /// undo of its own activation must not take another VM's partition).
    /// Errors: `InvalidArgument` for a partition the host's table does not have;
    /// `FailedPrecondition` while a VM `vm_id` is still defined on it (remove the VM first).
    pub fn deactivate(
        &mut self,
        host: &HostDescription,
        partition_id: u32,
        vm_id: &str,
    ) -> Result<PartitionStatus, DriverError> {
        host.partition(partition_id).ok_or_else(|| unknown(partition_id))?;
        if self.partitions.get(&partition_id).is_some_and(|owner| owner == vm_id) {
            if self.claims.get(vm_id).is_some_and(|c| c.partition == Some(partition_id)) {
                return Err(DriverError::FailedPrecondition(format!(
                    "partition {partition_id} is in use by VM {vm_id}; remove the VM first \
                     (RemoveVm deactivates its partition)"
                )));
            }
            self.partitions.remove(&partition_id);
        }
        Ok(self.partition_status(partition_id))
    }

    pub fn partition_status(&self, partition_id: u32) -> PartitionStatus {
        let owner = self.partitions.get(&partition_id);
        PartitionStatus {
            partition_id,
            active: owner.is_some(),
            vm_id: owner.cloned().unwrap_or_default(),
        }
    }

    /// Records `claim` as what `vm_id` holds, replacing its previous claim, and activates its
    /// partition for it (deactivating the partition of the previous claim, if another).
    pub fn commit(&mut self, vm_id: &str, claim: Claim) {
        if let Some(previous) = self.claims.get(vm_id).and_then(|c| c.partition)
            && claim.partition != Some(previous)
        {
            self.partitions.remove(&previous);
        }
        if let Some(partition) = claim.partition {
            self.partitions.insert(partition, vm_id.to_owned());
        }
        self.claims.insert(vm_id.to_owned(), claim);
    }

    /// Frees everything `vm_id` holds and deactivates every partition active for it.
    pub fn release(&mut self, vm_id: &str) -> Option<Claim> {
        self.partitions.retain(|_, owner| owner != vm_id);
        self.claims.remove(vm_id)
    }

    pub fn claim(&self, vm_id: &str) -> Option<&Claim> {
        self.claims.get(vm_id)
    }

    /// The VM holding GPU `module_id`, if any.
    pub fn gpu_owner(&self, module_id: u32) -> Option<&str> {
        self.claims
            .iter()
            .find(|(_, claim)| claim.gpus.contains(&module_id))
            .map(|(owner, _)| owner.as_str())
    }

    /// Partitions active on the host.
    pub fn active_partitions(&self) -> BTreeSet<u32> {
        self.partitions.keys().copied().collect()
    }

    /// Free 1 GiB hugepages per NUMA node.
    pub fn hugepages_free(&self, host: &HostDescription) -> BTreeMap<u32, u32> {
        self.hugepages_free_excluding(host, None)
    }

    fn hugepages_free_excluding(
        &self,
        host: &HostDescription,
        excluded: Option<&str>,
    ) -> BTreeMap<u32, u32> {
        let mut free: BTreeMap<u32, u32> =
            host.numa_nodes.iter().map(|node| (node.id, node.hugepages_1g_total)).collect();
        for (owner, claim) in &self.claims {
            if Some(owner.as_str()) == excluded {
                continue;
            }
            for (node, pages) in &claim.hugepages {
                if let Some(left) = free.get_mut(node) {
                    *left = left.saturating_sub(*pages);
                }
            }
        }
        free
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::tests::cpu_vm;
    use crate::model::{Gpu, Nic, NumaNode, Partition};

    /// A small two-socket host: CPUs 0-7 on node 0 and 8-15 on node 1, GPU modules 1-2 (and
    /// NICs 0-1) on node 0, modules 3-4 (NICs 2-3) on node 1, 16 hugepages per node, and a
    /// partition table 0 = {1..4}, 1 = {1,2}, 2 = {3,4}, 3..6 = single GPUs 1..4.
    pub(crate) fn small_host() -> HostDescription {
        let node = |id: u32| NumaNode {
            id,
            cpus: (id * 8..id * 8 + 8).collect(),
            memory_mib: 32 * 1024,
            hugepages_1g_total: 16,
        };
        let gpu = |index: u32| Gpu {
            index,
            module_id: index + 1,
            uuid: format!("GPU-{index}"),
            model: "H100-SXM5-80GB".into(),
            memory_mib: 81559,
            pci_address: format!("0000:{:02x}:00.0", 0x18 + index),
            numa_node: index / 2,
            pcie_switch: format!("PEX{index}"),
            health: GpuHealth::Ok,
            health_message: String::new(),
        };
        let nic = |index: u32| Nic {
            index,
            name: format!("mlx5_{index}"),
            pci_address: format!("0000:{:02x}:00.0", 0x40 + index),
            numa_node: index / 2,
            pcie_switch: format!("PEX{index}"),
            rail: index,
            leaf_switch_id: format!("su1-leaf{index}"),
            speed_gbps: 400,
            mac: format!("02:5a:00:00:00:{index:02x}"),
        };
        let mut partitions = vec![
            Partition { id: 0, module_ids: vec![1, 2, 3, 4] },
            Partition { id: 1, module_ids: vec![1, 2] },
            Partition { id: 2, module_ids: vec![3, 4] },
        ];
        partitions.extend((1..=4).map(|m| Partition { id: m + 2, module_ids: vec![m] }));
        HostDescription {
            host_id: "su1-h01".into(),
            system_model: "test host".into(),
            scalable_unit: 1,
            numa_nodes: vec![node(0), node(1)],
            gpus: (0..4).map(gpu).collect(),
            nics: (0..4).map(nic).collect(),
            dpu_ids: vec!["su1-h01-dpu0".into()],
            partitions,
        }
    }

    pub(crate) fn healthy() -> BTreeMap<u32, (GpuHealth, String)> {
        (1..=4).map(|m| (m, (GpuHealth::Ok, String::new()))).collect()
    }

    /// A VM on partition 1 (modules 1, 2) with NICs 0-1 and CPUs 0-3 (+4) on node 0.
    pub(crate) fn gpu_vm(vm_id: &str) -> VmSpec {
        VmSpec {
            partition_id: Some(1),
            gpu_module_ids: vec![1, 2],
            nic_indices: vec![0, 1],
            vcpu_pins: vec![0, 1, 2, 3],
            emulator_cpu: 4,
            memory_mib: 8 * 1024,
            ..cpu_vm(vm_id)
        }
    }

    fn err_of(result: Result<Claim, DriverError>) -> DriverError {
        result.expect_err("spec must be refused")
    }

    #[test]
    fn test_claim_for_valid_gpu_vm() {
        let claim = claim_for(&small_host(), &healthy(), &gpu_vm("a")).expect("valid");
        assert_eq!(claim.partition, Some(1));
        assert_eq!(claim.gpus, BTreeSet::from([1, 2]));
        assert_eq!(claim.cpus, BTreeSet::from([0, 1, 2, 3, 4]));
        assert_eq!(claim.hugepages, BTreeMap::from([(0, 8)]));
    }

    #[test]
    fn test_claim_for_refuses_unknown_hardware() {
        let host = small_host();
        let base = gpu_vm("a");
        let cases = [
            (VmSpec { gpu_module_ids: vec![1, 9], ..base.clone() }, "module 9"),
            (VmSpec { partition_id: Some(42), ..base.clone() }, "partition_id 42"),
            (VmSpec { partition_id: Some(0), ..base.clone() }, "exact module set"),
            (VmSpec { nic_indices: vec![7], ..base.clone() }, "NIC 7"),
            (VmSpec { vcpu_pins: vec![0, 99], ..base.clone() }, "CPU 99"),
            (VmSpec { emulator_cpu: 500, ..base.clone() }, "emulator_cpu 500"),
            (VmSpec { numa_nodes: vec![0, 5], ..base.clone() }, "node 5"),
            (VmSpec { vcpu_pins: vec![0, 9], ..base.clone() }, "vCPU pin CPU 9"),
            (VmSpec { nic_indices: vec![0, 2], ..base.clone() }, "NIC 2 sits on NUMA node 1"),
        ];
        for (spec, expected) in cases {
            let err = err_of(claim_for(&host, &healthy(), &spec));
            assert!(matches!(err, DriverError::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
        }
    }

    #[test]
    fn test_claim_for_refuses_failed_gpu_but_not_degraded() {
        let host = small_host();
        let mut health = healthy();
        health.insert(2, (GpuHealth::Degraded, "row remap pending".into()));
        assert!(claim_for(&host, &health, &gpu_vm("a")).is_ok());
        health.insert(2, (GpuHealth::Failed, "XID 79".into()));
        let err = err_of(claim_for(&host, &health, &gpu_vm("a")));
        assert!(matches!(err, DriverError::FailedPrecondition(_)));
        assert!(err.to_string().contains("GPU module 2 has FAILED health (XID 79)"));
    }

    #[test]
    fn test_hugepages_split_evenly_over_nodes() {
        let spec = VmSpec { numa_nodes: vec![1, 0], memory_mib: 5 * 1024 - 10, ..cpu_vm("a") };
        let claim = claim_for(&small_host(), &healthy(), &spec).expect("valid");
        assert_eq!(claim.hugepages, BTreeMap::from([(0, 3), (1, 2)]));
    }

    #[test]
    fn test_ledger_refuses_overlap_and_double_use() {
        let host = small_host();
        let mut ledger = Ledger::default();
        let claim = claim_for(&host, &healthy(), &gpu_vm("a")).expect("valid");
        ledger.check(&host, "a", &claim).expect("free host");
        ledger.commit("a", claim);
        assert_eq!(ledger.active_partitions(), BTreeSet::from([1]));
        assert_eq!(ledger.gpu_owner(2), Some("a"));

        // Partition 3 = module 1 overlaps the active partition 1.
        let single = VmSpec {
            partition_id: Some(3),
            gpu_module_ids: vec![1],
            nic_indices: vec![],
            vcpu_pins: vec![5],
            emulator_cpu: 6,
            ..cpu_vm("b")
        };
        let claim = claim_for(&host, &healthy(), &single).expect("valid");
        let err = ledger.check(&host, "b", &claim).expect_err("overlap");
        assert!(matches!(err, DriverError::FailedPrecondition(_)));
        assert!(err.to_string().contains("overlaps partition 1"), "{err}");

        // The whole-host partition overlaps too.
        let whole = VmSpec {
            partition_id: Some(0),
            gpu_module_ids: vec![1, 2, 3, 4],
            numa_nodes: vec![0, 1],
            vcpu_pins: vec![8],
            emulator_cpu: 9,
            ..cpu_vm("c")
        };
        let claim = claim_for(&host, &healthy(), &whole).expect("valid");
        assert!(ledger.check(&host, "c", &claim).is_err());

        for (spec, expected) in [
            (VmSpec { nic_indices: vec![1], ..cpu_vm("d") }, "NIC 1 is already given"),
            (VmSpec { vcpu_pins: vec![3], emulator_cpu: 7, ..cpu_vm("d") }, "CPU 3"),
            (VmSpec { vcpu_pins: vec![7], emulator_cpu: 4, ..cpu_vm("d") }, "CPU 4"),
        ] {
            let claim = claim_for(&host, &healthy(), &spec).expect("valid");
            let err = ledger.check(&host, "d", &claim).expect_err(expected);
            assert!(err.to_string().contains(expected), "{err}");
        }

        // The disjoint partition 2 on node 1 fits.
        let other = VmSpec {
            partition_id: Some(2),
            gpu_module_ids: vec![3, 4],
            numa_nodes: vec![1],
            vcpu_pins: vec![8, 9],
            emulator_cpu: 10,
            ..cpu_vm("e")
        };
        let claim = claim_for(&host, &healthy(), &other).expect("valid");
        ledger.check(&host, "e", &claim).expect("disjoint partition fits");

        // A VM's own holdings never conflict with its next generation.
        let again = claim_for(&host, &healthy(), &gpu_vm("a")).expect("valid");
        ledger.check(&host, "a", &again).expect("own claim");

        ledger.release("a");
        assert!(ledger.active_partitions().is_empty());
        let claim = claim_for(&host, &healthy(), &single).expect("valid");
        ledger.check(&host, "b", &claim).expect("free after release");
    }

    #[test]
    fn test_ledger_hugepages_exhausted() {
        let host = small_host();
        let mut ledger = Ledger::default();
        let big = VmSpec { memory_mib: 12 * 1024, ..cpu_vm("a") };
        let claim = claim_for(&host, &healthy(), &big).expect("valid");
        ledger.check(&host, "a", &claim).expect("fits");
        ledger.commit("a", claim);
        assert_eq!(ledger.hugepages_free(&host), BTreeMap::from([(0, 4), (1, 16)]));

        let second =
            VmSpec { memory_mib: 5 * 1024, vcpu_pins: vec![5], emulator_cpu: 6, ..cpu_vm("b") };
        let claim = claim_for(&host, &healthy(), &second).expect("valid");
        let err = ledger.check(&host, "b", &claim).expect_err("short");
        assert!(matches!(err, DriverError::ResourceExhausted(_)));
        assert!(err.to_string().contains("NUMA node 0 has 4 free"), "{err}");

        // Growing the same VM counts its own pages as available.
        let grown = VmSpec { memory_mib: 16 * 1024, ..big };
        let claim = claim_for(&host, &healthy(), &grown).expect("valid");
        ledger.check(&host, "a", &claim).expect("own pages count");
    }
}
