//! Semantic checks of a topology file. Each failure names the field (`host.gpu[2].numa_node`)
//! and says how to fix it, in one sentence.

use std::collections::{BTreeMap, BTreeSet};

use super::cpu_list;
use super::file::TopologyFile;
use super::naming;

/// The largest fleet the simulator accepts: enough for the 5,000-host benchmarks, small
/// enough that addresses stay within their ranges.
pub const MAX_SCALABLE_UNITS: u32 = 500;
pub const MAX_HOSTS_PER_UNIT: u32 = 256;

/// A failed check: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

fn fail<T>(field: impl Into<String>, message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid { field: field.into(), message: message.into() })
}

fn require_text(field: &str, value: &str) -> Result<(), Invalid> {
    if value.trim().is_empty() { fail(field, "is empty; give it a value") } else { Ok(()) }
}

/// Checks everything the TOML types cannot express.
pub fn validate(file: &TopologyFile) -> Result<(), Invalid> {
    let fleet = &file.fleet;
    if !(1..=MAX_SCALABLE_UNITS).contains(&fleet.scalable_units) {
        return fail(
            "fleet.scalable_units",
            format!("is {}; use 1 to {MAX_SCALABLE_UNITS}", fleet.scalable_units),
        );
    }
    if !(1..=MAX_HOSTS_PER_UNIT).contains(&fleet.hosts_per_unit) {
        return fail(
            "fleet.hosts_per_unit",
            format!("is {}; use 1 to {MAX_HOSTS_PER_UNIT}", fleet.hosts_per_unit),
        );
    }
    require_text("fleet.leaf_model", &fleet.leaf_model)?;

    let host = &file.host;
    require_text("host.system_model", &host.system_model)?;
    require_text("host.gpu_model", &host.gpu_model)?;
    require_text("host.dpu_model", &host.dpu_model)?;
    if host.gpu_memory_mib == 0 {
        return fail("host.gpu_memory_mib", "is 0; give the GPUs' memory in MiB");
    }
    if !host.dpus.is_empty() && host.dpu_max_ports == 0 {
        return fail("host.dpu_max_ports", "is 0; a DPU needs room for tenant ports");
    }

    let cpus_by_node = validate_numa_nodes(file)?;
    let mut pci_seen: BTreeMap<String, String> = BTreeMap::new();
    let mut check_pci = |field: String, address: &str| -> Result<(), Invalid> {
        if !is_pci_address(address) {
            return fail(
                field,
                format!("{address:?} is not a PCI address; write it like 0000:18:00.0"),
            );
        }
        if let Some(other) = pci_seen.insert(address.to_owned(), field.clone()) {
            return fail(
                field,
                format!("{address} is already used by {other}; give each device its own address"),
            );
        }
        Ok(())
    };

    if host.gpus.is_empty() {
        return fail("host.gpu", "is empty; describe at least one GPU");
    }
    let mut indices = BTreeSet::new();
    let mut modules = BTreeSet::new();
    for (i, gpu) in host.gpus.iter().enumerate() {
        let field = |name: &str| format!("host.gpu[{i}].{name}");
        if !indices.insert(gpu.index) {
            return fail(
                field("index"),
                format!("{} is used by another GPU; give each GPU its own index", gpu.index),
            );
        }
        if gpu.module_id == 0 || !modules.insert(gpu.module_id) {
            return fail(
                field("module_id"),
                format!(
                    "{} is 0 or used by another GPU; module ids start at 1 and are unique",
                    gpu.module_id
                ),
            );
        }
        if !cpus_by_node.contains_key(&gpu.numa_node) {
            return fail(
                field("numa_node"),
                format!(
                    "{} names no [[host.numa_node]]; add that node or fix the GPU",
                    gpu.numa_node
                ),
            );
        }
        require_text(&field("pcie_switch"), &gpu.pcie_switch)?;
        check_pci(field("pci_address"), &gpu.pci_address)?;
    }

    let mut nic_indices = BTreeSet::new();
    let mut rails = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, nic) in host.nics.iter().enumerate() {
        let field = |name: &str| format!("host.nic[{i}].{name}");
        if !nic_indices.insert(nic.index) {
            return fail(
                field("index"),
                format!("{} is used by another NIC; give each NIC its own index", nic.index),
            );
        }
        if !rails.insert(nic.rail) {
            return fail(
                field("rail"),
                format!("{} is used by another NIC; each NIC goes to its own rail", nic.rail),
            );
        }
        require_text(&field("name"), &nic.name)?;
        if !names.insert(nic.name.as_str()) {
            return fail(
                field("name"),
                format!("{:?} is used by another NIC; give each NIC its own name", nic.name),
            );
        }
        if !cpus_by_node.contains_key(&nic.numa_node) {
            return fail(
                field("numa_node"),
                format!(
                    "{} names no [[host.numa_node]]; add that node or fix the NIC",
                    nic.numa_node
                ),
            );
        }
        if nic.speed_gbps == 0 {
            return fail(field("speed_gbps"), "is 0; give the link speed in Gbit/s");
        }
        require_text(&field("pcie_switch"), &nic.pcie_switch)?;
        check_pci(field("pci_address"), &nic.pci_address)?;
    }
    for (i, dpu) in host.dpus.iter().enumerate() {
        check_pci(format!("host.dpu[{i}].pci_address"), &dpu.pci_address)?;
    }

    let mut partition_ids = BTreeSet::new();
    for (i, partition) in host.partitions.iter().enumerate() {
        let field = |name: &str| format!("host.partition[{i}].{name}");
        if !partition_ids.insert(partition.id) {
            return fail(
                field("id"),
                format!("{} is used by another partition; partition ids are unique", partition.id),
            );
        }
        if partition.module_ids.is_empty() {
            return fail(field("module_ids"), "is empty; a partition holds at least one GPU");
        }
        let mut members = BTreeSet::new();
        for module in &partition.module_ids {
            if !modules.contains(module) {
                return fail(
                    field("module_ids"),
                    format!(
                        "names module {module}, which no [[host.gpu]] has; use the GPUs' module ids"
                    ),
                );
            }
            if !members.insert(*module) {
                return fail(
                    field("module_ids"),
                    format!("lists module {module} twice; list each GPU once"),
                );
            }
        }
    }

    validate_fleet_ranges(file)?;
    validate_overrides(file, &modules)
}

/// NUMA ids unique, CPU lists valid and disjoint, hugepages within memory.
fn validate_numa_nodes(file: &TopologyFile) -> Result<BTreeMap<u32, Vec<u32>>, Invalid> {
    let nodes = &file.host.numa_nodes;
    if nodes.is_empty() {
        return fail("host.numa_node", "is empty; describe at least one NUMA node");
    }
    let mut cpus_by_node = BTreeMap::new();
    let mut owner_of_cpu: BTreeMap<u32, u32> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        let field = |name: &str| format!("host.numa_node[{i}].{name}");
        if cpus_by_node.contains_key(&node.id) {
            return fail(
                field("id"),
                format!("{} is used by another node; NUMA ids are unique", node.id),
            );
        }
        let cpus = cpu_list::parse(&node.cpus).or_else(|why| {
            fail(
                field("cpus"),
                format!("{:?} is not a CPU list: {why}; write it like \"0-55,112-167\"", node.cpus),
            )
        })?;
        for cpu in &cpus {
            if let Some(other) = owner_of_cpu.insert(*cpu, node.id) {
                return fail(
                    field("cpus"),
                    format!(
                        "contains CPU {cpu}, which node {other} has too; a CPU belongs to one node"
                    ),
                );
            }
        }
        if u64::from(node.hugepages_1g) * 1024 > node.memory_mib {
            return fail(
                field("hugepages_1g"),
                format!(
                    "{} GiB exceeds the node's memory_mib {}; reserve fewer hugepages",
                    node.hugepages_1g, node.memory_mib
                ),
            );
        }
        cpus_by_node.insert(node.id, cpus);
    }
    Ok(cpus_by_node)
}

/// Address and ASN ranges the generated ids must fit in.
fn validate_fleet_ranges(file: &TopologyFile) -> Result<(), Invalid> {
    let units = u64::from(file.fleet.scalable_units);
    let hosts = units * u64::from(file.fleet.hosts_per_unit);
    let dpus = hosts * file.host.dpus.len() as u64;
    let leaves = units * file.host.nics.len() as u64;
    if dpus >= naming::MAX_ADDRESSES {
        return fail(
            "fleet.scalable_units",
            format!(
                "gives {dpus} DPUs, more than the {} VTEP addresses the simulator assigns; \
                 simulate fewer hosts",
                naming::MAX_ADDRESSES - 1
            ),
        );
    }
    if leaves >= naming::MAX_ADDRESSES {
        return fail(
            "fleet.scalable_units",
            format!(
                "gives {leaves} leaves, more than the {} loopback addresses the simulator \
                 assigns; simulate fewer units",
                naming::MAX_ADDRESSES - 1
            ),
        );
    }
    if u64::from(file.fleet.leaf_asn_base) + leaves > u64::from(u32::MAX) {
        return fail(
            "fleet.leaf_asn_base",
            format!(
                "{} leaves no room for {leaves} leaf ASNs below 4294967295; lower it",
                file.fleet.leaf_asn_base
            ),
        );
    }
    Ok(())
}

fn validate_overrides(file: &TopologyFile, modules: &BTreeSet<u32>) -> Result<(), Invalid> {
    let mut hosts_seen = BTreeSet::new();
    for (i, entry) in file.overrides.iter().enumerate() {
        let field = |name: &str| format!("override[{i}].{name}");
        let in_fleet = naming::parse_host_id(&entry.host).is_some_and(|(unit, host)| {
            unit <= file.fleet.scalable_units && host <= file.fleet.hosts_per_unit
        });
        if !in_fleet {
            return fail(
                field("host"),
                format!(
                    "{:?} is not a host of this fleet ({} scalable units of {} hosts, ids like \
                     su1-h07)",
                    entry.host, file.fleet.scalable_units, file.fleet.hosts_per_unit
                ),
            );
        }
        if !hosts_seen.insert(entry.host.as_str()) {
            return fail(
                field("host"),
                format!("{} has another override; merge them into one", entry.host),
            );
        }
        for (name, list) in [
            ("failed_gpu_modules", &entry.failed_gpu_modules),
            ("degraded_gpu_modules", &entry.degraded_gpu_modules),
        ] {
            if let Some(module) = list.iter().find(|m| !modules.contains(m)) {
                return fail(
                    field(name),
                    format!(
                        "names module {module}, which no [[host.gpu]] has; use the GPUs' module ids"
                    ),
                );
            }
        }
        if let Some(module) =
            entry.failed_gpu_modules.iter().find(|m| entry.degraded_gpu_modules.contains(m))
        {
            return fail(
                field("degraded_gpu_modules"),
                format!("lists module {module}, which is also failed; a GPU has one health"),
            );
        }
    }
    Ok(())
}

/// `dddd:bb:dd.f` in hex.
fn is_pci_address(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 12
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b':',
            10 => *b == b'.',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_pci_address_shape() {
        assert!(is_pci_address("0000:18:00.0"));
        assert!(!is_pci_address("18:00.0"));
        assert!(!is_pci_address("0000:18:00:0"));
    }
}
