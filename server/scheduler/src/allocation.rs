//! The scheduler's output: where one VM goes, down to the CPU. Plain serialisable data, the
//! same shape the database stores and `placement-bench --dump` writes.

use serde::{Deserialize, Serialize};

use crate::model::ModuleId;

/// Where one VM goes and exactly which host resources it gets.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Placement {
    /// Host id.
    pub host: String,
    /// Fabric Manager partition to activate before the VM starts; `None` for CPU-only VMs.
    pub partition: Option<u8>,
    /// GPU module ids of the partition, ascending.
    pub gpus: Vec<ModuleId>,
    /// SuperNICs paired with `gpus` (same PCIe switch), in the same order; a GPU without a NIC
    /// behind its switch contributes none.
    pub nics: Vec<u8>,
    /// NUMA node ids the VM uses, ascending: the GPUs' nodes, or the one node of a CPU-only VM.
    pub numa_nodes: Vec<u32>,
    /// Host CPU of each vCPU (vCPU i is pinned to `vcpus[i]`), grouped by node in
    /// `numa_nodes` order so that the guest's NUMA layout mirrors the host's.
    pub vcpus: Vec<u32>,
    /// Host CPU for the emulator threads: on the primary node (most GPUs), not among `vcpus`.
    pub emulator_cpu: u32,
    /// 1 GiB hugepages per node.
    pub hugepages: Vec<NodeHugepages>,
}

/// Hugepages a VM takes from one NUMA node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeHugepages {
    pub node: u32,
    pub pages: u32,
}

impl Placement {
    /// Memory in GiB (sum of hugepages).
    pub fn memory_gib(&self) -> u32 {
        self.hugepages.iter().map(|h| h.pages).sum()
    }
}

/// A placement applied to a named VM: what [`crate::Scheduler::commit`] takes and what the
/// database stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Allocation {
    /// The VM's id (the caller's instance id).
    pub vm: String,
    #[serde(flatten)]
    pub placement: Placement,
}

impl Allocation {
    pub fn new(vm: impl Into<String>, placement: Placement) -> Self {
        Allocation { vm: vm.into(), placement }
    }
}
