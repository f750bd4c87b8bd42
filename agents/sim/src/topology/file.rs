//! The TOML topology format, field for field (see `topologies/hgx-h100.toml` for a commented
//! example). Every table denies unknown keys so a typo is reported instead of ignored.
//! Semantic checks live in [`super::validate`].

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopologyFile {
    pub fleet: FleetShape,
    pub host: HostModel,
    #[serde(default, rename = "override")]
    pub overrides: Vec<HostOverride>,
}

/// How many of what, and the leaf switches' identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetShape {
    pub scalable_units: u32,
    pub hosts_per_unit: u32,
    pub leaf_model: String,
    pub leaf_asn_base: u32,
}

/// The hardware every host has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostModel {
    pub system_model: String,
    pub gpu_model: String,
    pub gpu_memory_mib: u64,
    pub dpu_model: String,
    pub dpu_max_ports: u32,
    #[serde(rename = "numa_node")]
    pub numa_nodes: Vec<NumaNodeModel>,
    #[serde(rename = "gpu")]
    pub gpus: Vec<GpuModel>,
    #[serde(default, rename = "nic")]
    pub nics: Vec<NicModel>,
    #[serde(default, rename = "dpu")]
    pub dpus: Vec<DpuModel>,
    #[serde(default, rename = "partition")]
    pub partitions: Vec<PartitionModel>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaNodeModel {
    pub id: u32,
    /// Linux cpulist syntax: `0-55,112-167`.
    pub cpus: String,
    pub memory_mib: u64,
    pub hugepages_1g: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuModel {
    pub index: u32,
    pub module_id: u32,
    pub pci_address: String,
    pub numa_node: u32,
    pub pcie_switch: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NicModel {
    pub index: u32,
    pub name: String,
    pub pci_address: String,
    pub numa_node: u32,
    pub pcie_switch: String,
    pub rail: u32,
    pub speed_gbps: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpuModel {
    pub pci_address: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionModel {
    pub id: u32,
    pub module_ids: Vec<u32>,
}

/// A host that deviates from the model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostOverride {
    /// e.g. `su1-h03`.
    pub host: String,
    #[serde(default)]
    pub failed_gpu_modules: Vec<u32>,
    #[serde(default)]
    pub degraded_gpu_modules: Vec<u32>,
    #[serde(default)]
    pub health_message: String,
}
