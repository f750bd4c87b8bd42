//! The [`HostDescription`] of a libvirt host: what sysfs says (NUMA nodes, CPUs, memory,
//! hugepages, GPUs, NICs, their NUMA nodes and PCIe switches) plus what it cannot say, from
//! the backend's config ([`HostFacts`]: ids, scalable unit, GPU module ids and model, leaf
//! switches, the Fabric Manager partition table).

use agent_common::DriverError;
use serde::Deserialize;

use super::sysfs::SysfsInventory;
use crate::model::{Gpu, GpuHealth, HostDescription, Nic, NumaNode, Partition};

/// The `[backend.libvirt.host]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    pub host_id: String,
    pub system_model: String,
    pub scalable_unit: u32,
    /// Module id of each GPU in PCI address (nvidia-smi index) order; empty: 1, 2, ...
    /// On HGX baseboards they differ: read them once with `nvidia-smi -q` (Module ID).
    #[serde(default)]
    pub gpu_module_ids: Vec<u32>,
    /// GPU UUIDs in the same order; empty: `pci-<address>` placeholders (sysfs has no UUID;
    /// NVML would).
    #[serde(default)]
    pub gpu_uuids: Vec<String>,
    #[serde(default)]
    pub gpu_model: String,
    #[serde(default)]
    pub gpu_memory_mib: u64,
    /// Leaf switch of rail i (NIC i); empty: `su<unit>-leaf<i>`, the fleet's naming.
    #[serde(default)]
    pub leaf_switch_ids: Vec<String>,
    #[serde(default = "default_speed")]
    pub nic_speed_gbps: u32,
    #[serde(default)]
    pub dpu_ids: Vec<String>,
    #[serde(default)]
    pub partitions: Vec<Partition>,
}

impl HostFacts {
    /// A host without GPUs, NICs, DPUs or partitions (a build machine, a laptop).
    pub fn cpu_only(host_id: &str, system_model: &str) -> HostFacts {
        HostFacts {
            host_id: host_id.to_owned(),
            system_model: system_model.to_owned(),
            scalable_unit: 1,
            gpu_module_ids: vec![],
            gpu_uuids: vec![],
            gpu_model: String::new(),
            gpu_memory_mib: 0,
            leaf_switch_ids: vec![],
            nic_speed_gbps: 0,
            dpu_ids: vec![],
            partitions: vec![],
        }
    }
}

fn default_speed() -> u32 {
    400
}

/// Joins sysfs and config. Rail NICs are the NICs behind a GPU's PCIe switch (a DPU or
/// north-south port elsewhere is not a rail); on a host without GPUs, every NIC. NIC i is on
/// rail i. Errors (`InvalidArgument`) name the config field that does not match the machine.
pub fn describe(sysfs: &SysfsInventory, facts: &HostFacts) -> Result<HostDescription, DriverError> {
    let invalid = |m: String| Err(DriverError::InvalidArgument(m));
    let gpus: Vec<_> = sysfs.gpus().collect();
    let count = gpus.len();
    if !facts.gpu_module_ids.is_empty() && facts.gpu_module_ids.len() != count {
        return invalid(format!(
            "gpu_module_ids lists {} modules but sysfs shows {count} NVIDIA GPUs",
            facts.gpu_module_ids.len()
        ));
    }
    if !facts.gpu_uuids.is_empty() && facts.gpu_uuids.len() != count {
        return invalid(format!(
            "gpu_uuids lists {} UUIDs but sysfs shows {count} NVIDIA GPUs",
            facts.gpu_uuids.len()
        ));
    }
    let gpus: Vec<Gpu> = gpus
        .iter()
        .enumerate()
        .map(|(i, dev)| Gpu {
            index: i as u32,
            module_id: facts.gpu_module_ids.get(i).copied().unwrap_or(i as u32 + 1),
            uuid: facts.gpu_uuids.get(i).cloned().unwrap_or_else(|| format!("pci-{}", dev.address)),
            model: facts.gpu_model.clone(),
            memory_mib: facts.gpu_memory_mib,
            pci_address: dev.address.to_string(),
            numa_node: dev.numa_node,
            pcie_switch: dev.pcie_switch.clone(),
            health: GpuHealth::Ok,
            health_message: String::new(),
        })
        .collect();
    let rail_nics: Vec<_> = sysfs
        .nics()
        .filter(|nic| gpus.is_empty() || gpus.iter().any(|g| g.pcie_switch == nic.pcie_switch))
        .collect();
    let nics = rail_nics
        .iter()
        .enumerate()
        .map(|(i, dev)| {
            let rail = i as u32;
            Nic {
                index: rail,
                name: dev.rdma_name.clone().unwrap_or_else(|| dev.address.to_string()),
                pci_address: dev.address.to_string(),
                numa_node: dev.numa_node,
                pcie_switch: dev.pcie_switch.clone(),
                rail,
                leaf_switch_id: facts
                    .leaf_switch_ids
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("su{}-leaf{rail}", facts.scalable_unit)),
                speed_gbps: facts.nic_speed_gbps,
                mac: dev.mac.clone().unwrap_or_default(),
            }
        })
        .collect();
    let numa_nodes = sysfs
        .nodes
        .iter()
        .map(|n| NumaNode {
            id: n.id,
            cpus: n.cpus.clone(),
            memory_mib: n.memory_mib,
            hugepages_1g_total: n.hugepages_1g_total,
        })
        .collect();
    for partition in &facts.partitions {
        if let Some(m) =
            partition.module_ids.iter().find(|m| !gpus.iter().any(|g| g.module_id == **m))
        {
            return invalid(format!(
                "partition {} names GPU module {m}, which this host does not have",
                partition.id
            ));
        }
    }
    Ok(HostDescription {
        host_id: facts.host_id.clone(),
        system_model: facts.system_model.clone(),
        scalable_unit: facts.scalable_unit,
        numa_nodes,
        gpus,
        nics,
        dpu_ids: facts.dpu_ids.clone(),
        partitions: facts.partitions.clone(),
    })
}
