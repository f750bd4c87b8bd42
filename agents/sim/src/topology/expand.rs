//! Turns a validated topology into one description per host, DPU and leaf switch: ids,
//! addresses, GPU UUIDs and cabling, all derived deterministically from the file.

use agent_common::hash::stable_hash;
use dpu_agent::DpuDescription;
use host_agent::{Gpu, GpuHealth, HostDescription, Nic, NumaNode, Partition};
use switch_agent::{SwitchDescription, SwitchPort, SwitchRole};

use super::cpu_list;
use super::file::TopologyFile;
use super::naming;

/// Every device of the fleet, in a stable order: by unit, then host (or rail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetPlan {
    pub hosts: Vec<HostDescription>,
    pub dpus: Vec<DpuDescription>,
    pub switches: Vec<SwitchDescription>,
}

/// A UUID-shaped GPU id the way nvidia-smi prints it, stable per host and module.
fn gpu_uuid(host_id: &str, module_id: u32) -> String {
    let hi = stable_hash(&[host_id.as_bytes(), &module_id.to_le_bytes(), b"hi"]);
    let lo = stable_hash(&[host_id.as_bytes(), &module_id.to_le_bytes(), b"lo"]);
    format!(
        "GPU-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// Expects a file that passed `validate`; CPU lists that fail to parse come out empty.
pub fn expand(file: &TopologyFile) -> FleetPlan {
    let model = &file.host;
    let fleet = &file.fleet;
    let numa_nodes: Vec<NumaNode> = model
        .numa_nodes
        .iter()
        .map(|node| NumaNode {
            id: node.id,
            cpus: cpu_list::parse(&node.cpus).unwrap_or_default(),
            memory_mib: node.memory_mib,
            hugepages_1g_total: node.hugepages_1g,
        })
        .collect();
    let mut partitions: Vec<Partition> = model
        .partitions
        .iter()
        .map(|p| {
            let mut module_ids = p.module_ids.clone();
            module_ids.sort_unstable();
            Partition { id: p.id, module_ids }
        })
        .collect();
    partitions.sort_by_key(|p| p.id);
    let mut rails: Vec<(u32, u32, u32)> =
        model.nics.iter().map(|nic| (nic.rail, nic.index, nic.speed_gbps)).collect();
    rails.sort_unstable();

    let mut plan = FleetPlan { hosts: Vec::new(), dpus: Vec::new(), switches: Vec::new() };
    for unit in 1..=fleet.scalable_units {
        for number in 1..=fleet.hosts_per_unit {
            let host_id = naming::host_id(unit, number);
            let overrides = file.overrides.iter().find(|o| o.host == host_id);
            let gpus = model
                .gpus
                .iter()
                .map(|gpu| {
                    let health = match overrides {
                        Some(o) if o.failed_gpu_modules.contains(&gpu.module_id) => {
                            GpuHealth::Failed
                        }
                        Some(o) if o.degraded_gpu_modules.contains(&gpu.module_id) => {
                            GpuHealth::Degraded
                        }
                        _ => GpuHealth::Ok,
                    };
                    let health_message = match (health, overrides) {
                        (GpuHealth::Ok, _) | (_, None) => String::new(),
                        (_, Some(o)) => o.health_message.clone(),
                    };
                    Gpu {
                        index: gpu.index,
                        module_id: gpu.module_id,
                        uuid: gpu_uuid(&host_id, gpu.module_id),
                        model: model.gpu_model.clone(),
                        memory_mib: model.gpu_memory_mib,
                        pci_address: gpu.pci_address.clone(),
                        numa_node: gpu.numa_node,
                        pcie_switch: gpu.pcie_switch.clone(),
                        health,
                        health_message,
                    }
                })
                .collect();
            let nics = model
                .nics
                .iter()
                .map(|nic| Nic {
                    index: nic.index,
                    name: nic.name.clone(),
                    pci_address: nic.pci_address.clone(),
                    numa_node: nic.numa_node,
                    pcie_switch: nic.pcie_switch.clone(),
                    rail: nic.rail,
                    leaf_switch_id: naming::leaf_id(unit, nic.rail),
                    speed_gbps: nic.speed_gbps,
                    mac: naming::nic_mac(unit, number, nic.index),
                })
                .collect();
            let mut dpu_ids = Vec::new();
            for (i, dpu) in model.dpus.iter().enumerate() {
                let dpu_id = naming::dpu_id(&host_id, i);
                let vtep = naming::nth_address(naming::VTEP_BASE, plan.dpus.len() as u64);
                plan.dpus.push(DpuDescription {
                    dpu_id: dpu_id.clone(),
                    host_id: host_id.clone(),
                    model: model.dpu_model.clone(),
                    pci_address: dpu.pci_address.clone(),
                    vtep_ip: vtep.to_string(),
                    max_ports: model.dpu_max_ports,
                });
                dpu_ids.push(dpu_id);
            }
            plan.hosts.push(HostDescription {
                host_id,
                system_model: model.system_model.clone(),
                scalable_unit: unit,
                numa_nodes: numa_nodes.clone(),
                gpus,
                nics,
                dpu_ids,
                partitions: partitions.clone(),
            });
        }
        for (position, (rail, nic_index, speed_gbps)) in rails.iter().enumerate() {
            let leaf_number = u64::from(unit - 1) * rails.len() as u64 + position as u64;
            plan.switches.push(SwitchDescription {
                switch_id: naming::leaf_id(unit, *rail),
                model: fleet.leaf_model.clone(),
                role: SwitchRole::RailLeaf,
                scalable_unit: unit,
                rail: *rail,
                // Validation keeps base + leaf count within u32.
                asn: fleet
                    .leaf_asn_base
                    .saturating_add(u32::try_from(leaf_number).unwrap_or(u32::MAX)),
                loopback_ip: naming::nth_address(naming::LOOPBACK_BASE, leaf_number).to_string(),
                ports: (1..=fleet.hosts_per_unit)
                    .map(|number| SwitchPort {
                        name: format!("swp{number}"),
                        peer_host_id: naming::host_id(unit, number),
                        peer_nic_index: *nic_index,
                        speed_gbps: *speed_gbps,
                    })
                    .collect(),
            });
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_gpu_uuid_shape_and_stability() {
        let uuid = gpu_uuid("su1-h01", 3);
        assert_eq!(uuid.len(), 40);
        assert!(uuid.starts_with("GPU-"));
        assert_eq!(uuid, gpu_uuid("su1-h01", 3));
        assert_ne!(uuid, gpu_uuid("su1-h01", 4));
        assert_ne!(uuid, gpu_uuid("su1-h02", 3));
    }
}
