//! Fleet model: the plain data host agents report and the scheduler reads.
//!
//! Everything here is input. The control plane fills it from the inventory (the agents' reports
//! plus the admin's cordon flag) and hands it to [`crate::Scheduler::new`], which checks it once
//! and compiles it into bit masks. Allocations are tracked by the scheduler and never written
//! back into these types; only the cordon, reachability and health flags change through the
//! scheduler's setters.
//!
//! Two hardware facts shape these types (DESIGN.md §4):
//! - GPUs are named by **module id**, the baseboard slot Fabric Manager partitions are defined
//!   in. It is neither the nvidia-smi index nor PCI order, and nothing here assumes they agree.
//! - A GPU's SuperNIC is the NIC behind the **same PCIe switch** ([`Host::paired_nic`]), never
//!   "the NIC with the same number".

use serde::{Deserialize, Serialize};

/// A GPU's module id: its 1-based SXM slot on the HGX baseboard, as Fabric Manager numbers it.
pub type ModuleId = u8;

/// The GPU model string [`Host::hgx_h100`] reports.
pub const HGX_H100_MODEL: &str = "H100";

/// One GPU server as its host agent reports it, plus the admin's cordon flag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Unique id of the host (inventory name or UUID).
    pub id: String,
    /// Scalable unit: the group of (up to 32) nodes whose NIC i all go to the SU's rail-i leaf.
    pub scalable_unit: String,
    /// Set by an admin for maintenance: existing VMs stay, nothing new is placed here.
    pub cordoned: bool,
    /// False while the host agent is disconnected; nothing new is placed on a host we cannot
    /// reach.
    pub agent_reachable: bool,
    /// NUMA nodes with the CPUs and hugepages set aside for guests.
    pub numa_nodes: Vec<NumaNode>,
    /// The SXM GPUs on the baseboard.
    pub gpus: Vec<Gpu>,
    /// East-west SuperNICs (one per rail).
    pub nics: Vec<Nic>,
    /// The Fabric Manager shared-NVSwitch partition table; only these GPU sets are allocated.
    pub partitions: Vec<Partition>,
    /// The disk images in the host's image store (the file names the image catalog uses): a
    /// request naming an image goes only to hosts that have it. `None`: not known, any.
    #[serde(default)]
    pub images: Option<Vec<String>>,
}

/// One NUMA node (socket, or sub-NUMA cluster) of a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaNode {
    /// Kernel NUMA node id.
    pub id: u32,
    /// Logical CPUs guests may be pinned to, in the order the scheduler hands them out. List
    /// hyperthread siblings next to each other so that vCPUs take whole cores. Leave the host's
    /// housekeeping CPUs out.
    pub cpus: Vec<u32>,
    /// 1 GiB hugepages reserved for guests on this node (the scheduler subtracts allocations
    /// itself; report the boot-time total, not the currently free count).
    pub hugepages_1g: u32,
}

/// One SXM GPU.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// Baseboard module id (1-based), the id partitions use.
    pub module_id: ModuleId,
    /// nvidia-smi index (PCI enumeration order). Informational; never used for placement.
    pub index: u8,
    /// PCI address, for the VFIO hostdev and the guest PCIe layout.
    #[serde(default)]
    pub pci_address: String,
    /// Model string requests name, e.g. `H100`.
    pub model: String,
    /// NUMA node the GPU's PCIe root sits on.
    pub numa_node: u32,
    /// PCIe switch the GPU sits behind; its SuperNIC is behind the same switch.
    pub pcie_switch: u32,
    /// False when the host agent reports the GPU failed (XID errors, fallen off the bus, ...).
    pub healthy: bool,
}

/// One east-west SuperNIC (ConnectX-7).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// NIC index as the host agent numbers it.
    pub index: u8,
    /// NUMA node of the NIC.
    pub numa_node: u32,
    /// PCIe switch the NIC sits behind.
    pub pcie_switch: u32,
    /// Rail of the rail-optimised fabric this NIC is cabled to.
    pub rail: u8,
    /// Id of the leaf switch the NIC is cabled to.
    pub leaf: String,
}

/// One Fabric Manager partition: a set of GPUs that can be given to one VM together.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Fabric Manager partition id.
    pub id: u8,
    /// GPU module ids in the partition.
    pub modules: Vec<ModuleId>,
}

impl Host {
    /// True when new VMs may be placed here: not cordoned and the agent is connected.
    pub fn schedulable(&self) -> bool {
        !self.cordoned && self.agent_reachable
    }

    /// The NIC paired with GPU `module`: the NIC behind the same PCIe switch. When one switch
    /// carries several GPUs and NICs they pair in order (lowest module id with lowest NIC
    /// index); a GPU left without a NIC gets none. `None` also for an unknown module.
    pub fn paired_nic(&self, module: ModuleId) -> Option<u8> {
        let switch = self.gpus.iter().find(|g| g.module_id == module)?.pcie_switch;
        let mut gpus: Vec<ModuleId> =
            self.gpus.iter().filter(|g| g.pcie_switch == switch).map(|g| g.module_id).collect();
        gpus.sort_unstable();
        let rank = gpus.iter().position(|&m| m == module)?;
        let mut nics: Vec<u8> =
            self.nics.iter().filter(|n| n.pcie_switch == switch).map(|n| n.index).collect();
        nics.sort_unstable();
        nics.get(rank).copied()
    }

    /// A standard HGX H100 8-GPU host, for tests, benchmarks and the simulated fleet.
    ///
    /// Two NUMA nodes: CPUs 0-55 and 112-167 on node 0, 56-111 and 168-223 on node 1 (listed
    /// sibling-adjacent: 0, 112, 1, 113, ...), 960 1 GiB hugepages per node. Modules 1-4 on
    /// node 0 and 5-8 on node 1, but nvidia-smi index order is not module order (index 0 is
    /// module 2, as PCI enumeration gives on real boards). GPU index i and NIC i share PCIe
    /// switch i, and NIC i is cabled to rail i, leaf `"{scalable_unit}-rail{i}"`.
    pub fn hgx_h100(id: impl Into<String>, scalable_unit: impl Into<String>) -> Host {
        let scalable_unit = scalable_unit.into();
        let numa_nodes = (0..2u32)
            .map(|node| NumaNode {
                id: node,
                cpus: (node * 56..(node + 1) * 56).flat_map(|core| [core, core + 112]).collect(),
                hugepages_1g: 960,
            })
            .collect();
        let gpus = (0..8u8)
            .map(|index| Gpu {
                module_id: HGX_H100_MODULE_BY_INDEX[usize::from(index)],
                index,
                pci_address: HGX_H100_PCI_ADDRESSES[usize::from(index)].to_string(),
                model: HGX_H100_MODEL.to_string(),
                numa_node: u32::from(index / 4),
                pcie_switch: u32::from(index),
                healthy: true,
            })
            .collect();
        let nics = (0..8u8)
            .map(|index| Nic {
                index,
                numa_node: u32::from(index / 4),
                pcie_switch: u32::from(index),
                rail: index,
                leaf: format!("{scalable_unit}-rail{index}"),
            })
            .collect();
        Host {
            id: id.into(),
            scalable_unit,
            cordoned: false,
            agent_reachable: true,
            numa_nodes,
            gpus,
            nics,
            partitions: hgx_h100_partitions(),
            images: None,
        }
    }
}

/// nvidia-smi index → module id on the board [`Host::hgx_h100`] models.
const HGX_H100_MODULE_BY_INDEX: [ModuleId; 8] = [2, 4, 1, 3, 6, 8, 5, 7];

const HGX_H100_PCI_ADDRESSES: [&str; 8] = [
    "0000:1b:00.0",
    "0000:43:00.0",
    "0000:52:00.0",
    "0000:61:00.0",
    "0000:9d:00.0",
    "0000:c3:00.0",
    "0000:d1:00.0",
    "0000:df:00.0",
];

/// The Fabric Manager shared-NVSwitch partition table of an HGX H100 8-GPU baseboard, in
/// module ids: 0 = all eight; 1, 2 = the two halves; 3-6 = pairs {1,3} {2,4} {5,7} {6,8};
/// 7-14 = single GPUs 1-8 (no NVLink).
pub fn hgx_h100_partitions() -> Vec<Partition> {
    let mut table = vec![
        Partition { id: 0, modules: (1..=8).collect() },
        Partition { id: 1, modules: vec![1, 2, 3, 4] },
        Partition { id: 2, modules: vec![5, 6, 7, 8] },
        Partition { id: 3, modules: vec![1, 3] },
        Partition { id: 4, modules: vec![2, 4] },
        Partition { id: 5, modules: vec![5, 7] },
        Partition { id: 6, modules: vec![6, 8] },
    ];
    table.extend((1..=8u8).map(|module| Partition { id: module + 6, modules: vec![module] }));
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgx_h100_shape() {
        let host = Host::hgx_h100("h0", "su0");
        assert_eq!(host.numa_nodes[0].cpus.len(), 112);
        assert_eq!(&host.numa_nodes[0].cpus[..4], &[0, 112, 1, 113]);
        assert!(host.numa_nodes[1].cpus.contains(&56));
        assert!(host.numa_nodes[1].cpus.contains(&223));
        for gpu in &host.gpus {
            let expected_node = if gpu.module_id <= 4 { 0 } else { 1 };
            assert_eq!(gpu.numa_node, expected_node);
        }
        assert!(host.gpus.iter().any(|g| u32::from(g.index) + 1 != u32::from(g.module_id)));
        assert_eq!(host.partitions.len(), 15);
        assert_eq!(host.partitions[14].modules, vec![8]);
    }

    #[test]
    fn pairing_follows_the_pcie_switch_not_the_number() {
        let host = Host::hgx_h100("h0", "su0");
        // Module 1 is nvidia-smi index 2, so it shares a switch with NIC 2.
        assert_eq!(host.paired_nic(1), Some(2));
        assert_eq!(host.paired_nic(2), Some(0));
        assert_eq!(host.paired_nic(9), None);
    }
}
