//! The host agent's own types: what a host is made of ([`HostDescription`]), what it currently
//! holds ([`HostInventory`]), what a VM should be ([`VmSpec`]) and what it is ([`VmStatus`]).
//! They mirror the proto messages but are checked: a [`VmSpec`] that passed
//! [`VmSpec::check_shape`] has no duplicate ids and no missing fields.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use agent_common::{DriverError, WatchEvent};
use serde::{Deserialize, Serialize};

/// The static facts of one GPU server, as discovered at start (or given by the simulator's
/// topology, or the `[backend.sim.host]` table of the `host-agent` config). Ids are those the control plane uses in specs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostDescription {
    /// Stable name, e.g. `su1-h07`.
    pub host_id: String,
    /// e.g. `HGX H100 8-GPU`.
    pub system_model: String,
    /// 1-based.
    pub scalable_unit: u32,
    pub numa_nodes: Vec<NumaNode>,
    /// In nvidia-smi index order.
    pub gpus: Vec<Gpu>,
    /// East-west SuperNICs, one per rail.
    pub nics: Vec<Nic>,
    /// BlueField DPUs in this host.
    pub dpu_ids: Vec<String>,
    /// The Fabric Manager partition table, in GPU module ids.
    pub partitions: Vec<Partition>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumaNode {
    pub id: u32,
    /// Logical CPU ids on this node (hyperthread siblings included).
    pub cpus: Vec<u32>,
    pub memory_mib: u64,
    /// 1 GiB hugepages reserved for VMs on this node.
    pub hugepages_1g_total: u32,
}

/// Health as the GPU reports it (XID errors, row remapping, falling off the bus).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpuHealth {
    Ok,
    /// e.g. row remap pending: usable, schedulable only by admin choice.
    Degraded,
    /// XID fault, fell off the bus: never given to a VM.
    Failed,
}

fn healthy() -> GpuHealth {
    GpuHealth::Ok
}

impl fmt::Display for GpuHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GpuHealth::Ok => "OK",
            GpuHealth::Degraded => "DEGRADED",
            GpuHealth::Failed => "FAILED",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// nvidia-smi index; not used for placement.
    pub index: u32,
    /// 1..8: the id Fabric Manager partitions and VM specs are written in.
    pub module_id: u32,
    pub uuid: String,
    pub model: String,
    pub memory_mib: u64,
    pub pci_address: String,
    pub numa_node: u32,
    /// GPUs and NICs behind the same PCIe switch are paired.
    pub pcie_switch: String,
    /// Health at start; the live value is in [`HostInventory::gpu_health`].
    #[serde(default = "healthy")]
    pub health: GpuHealth,
    #[serde(default)]
    pub health_message: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    pub index: u32,
    /// e.g. `mlx5_0`.
    pub name: String,
    pub pci_address: String,
    pub numa_node: u32,
    pub pcie_switch: String,
    /// NIC i goes to the rail-i leaf.
    pub rail: u32,
    pub leaf_switch_id: String,
    pub speed_gbps: u32,
    /// Its MAC, which a passed-through NIC keeps in the guest; empty when unknown.
    #[serde(default)]
    pub mac: String,
}

/// One entry of the Fabric Manager partition table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub id: u32,
    /// Sorted GPU module ids.
    pub module_ids: Vec<u32>,
}

impl HostDescription {
    pub fn gpu_by_module(&self, module_id: u32) -> Option<&Gpu> {
        self.gpus.iter().find(|gpu| gpu.module_id == module_id)
    }

    pub fn nic(&self, index: u32) -> Option<&Nic> {
        self.nics.iter().find(|nic| nic.index == index)
    }

    pub fn partition(&self, id: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.id == id)
    }

    pub fn numa_node(&self, id: u32) -> Option<&NumaNode> {
        self.numa_nodes.iter().find(|node| node.id == id)
    }

    /// The NUMA node a logical CPU belongs to.
    pub fn numa_node_of_cpu(&self, cpu: u32) -> Option<u32> {
        self.numa_nodes.iter().find(|node| node.cpus.contains(&cpu)).map(|node| node.id)
    }
}

/// A host's description plus what is live right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInventory {
    pub description: HostDescription,
    /// Current health per GPU module id, with its message.
    pub gpu_health: BTreeMap<u32, (GpuHealth, String)>,
    /// Free 1 GiB hugepages per NUMA node id.
    pub hugepages_1g_free: BTreeMap<u32, u32>,
    /// Ids of the Fabric Manager partitions currently active.
    pub active_partitions: BTreeSet<u32>,
    /// The files in the image store, sorted; `None`: any image boots (simulated).
    pub images: Option<Vec<String>>,
}

/// What a VM should be. Field meanings are those of `agent.v1.VmSpec`. Serde is for the
/// simulated host's state file, not the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// Lowercase UUID, the idempotency key.
    pub vm_id: String,
    pub name: String,
    pub generation: u64,
    /// `None` for a CPU-only VM.
    pub partition_id: Option<u32>,
    pub gpu_module_ids: Vec<u32>,
    pub nic_indices: Vec<u32>,
    /// Host CPU for vCPU i.
    pub vcpu_pins: Vec<u32>,
    pub emulator_cpu: u32,
    pub numa_nodes: Vec<u32>,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub image: String,
    /// The guest's hostname; empty: derived from `name`.
    pub hostname: String,
    pub ssh_authorized_keys: Vec<String>,
    /// cloud-init user data; empty: a `#cloud-config` with the SSH keys.
    pub user_data: String,
    /// The guest's NICs, one per tenant port. Absent from older state files.
    #[serde(default)]
    pub nics: Vec<GuestNic>,
    /// The guest's GPU fabric addresses, one per passed-through SuperNIC that joined its
    /// tenant's fabric. Absent from older state files.
    #[serde(default)]
    pub fabric_nics: Vec<FabricNic>,
}

/// A passed-through SuperNIC on the tenant's GPU fabric (`agent.v1.FabricNic`), checked: one
/// of the spec's `nic_indices`, a lowercase unicast MAC, an IPv4 address inside its prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricNic {
    pub nic_index: u32,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
}

/// A tenant port as the guest sees it (`agent.v1.VmNic`), checked: a lowercase UUID, a
/// lowercase unicast MAC, an IPv4 address inside its prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestNic {
    pub port_id: String,
    pub mac: String,
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

impl VmSpec {
    /// Whether two specs ask for the same VM, generation aside.
    pub fn same_as(&self, other: &VmSpec) -> bool {
        VmSpec { generation: other.generation, ..self.clone() } == *other
    }

    /// Checks everything that can be checked without looking at the hardware: required
    /// fields, no id listed twice, a partition exactly when there are GPUs. A failure is
    /// the caller's fault (`InvalidArgument`).
    pub fn check_shape(&self) -> Result<(), DriverError> {
        let invalid = |m: String| Err(DriverError::InvalidArgument(m));
        agent_common::generation::require_generation("VM", self.generation)?;
        if let Some(dup) = first_duplicate(&self.gpu_module_ids) {
            return invalid(format!("gpu_module_ids lists module {dup} twice; list each GPU once"));
        }
        if let Some(dup) = first_duplicate(&self.nic_indices) {
            return invalid(format!("nic_indices lists NIC {dup} twice; list each NIC once"));
        }
        if let Some(dup) = first_duplicate(&self.vcpu_pins) {
            return invalid(format!(
                "vcpu_pins pins two vCPUs on CPU {dup}; give every vCPU its own host CPU"
            ));
        }
        if let Some(dup) = first_duplicate(&self.numa_nodes) {
            return invalid(format!("numa_nodes lists node {dup} twice; list each node once"));
        }
        if self.vcpu_pins.is_empty() {
            return invalid("vcpu_pins is empty; a VM needs at least one pinned vCPU".into());
        }
        if self.vcpu_pins.contains(&self.emulator_cpu) {
            return invalid(format!(
                "emulator_cpu {} is also a vCPU pin; pin the emulator thread apart",
                self.emulator_cpu
            ));
        }
        let ports: Vec<&str> = self.nics.iter().map(|n| n.port_id.as_str()).collect();
        if let Some(dup) = first_duplicate(&ports) {
            return invalid(format!("nics lists port {dup} twice; list each port once"));
        }
        let fabric: Vec<u32> = self.fabric_nics.iter().map(|n| n.nic_index).collect();
        if let Some(dup) = first_duplicate(&fabric) {
            return invalid(format!(
                "fabric_nics lists NIC {dup} twice; give each SuperNIC one fabric address"
            ));
        }
        if let Some(stray) = fabric.iter().find(|n| !self.nic_indices.contains(n)) {
            return invalid(format!(
                "fabric_nics names NIC {stray}, which is not in nic_indices; address only the \
                 NICs the VM is given"
            ));
        }
        if self.numa_nodes.is_empty() {
            return invalid(
                "numa_nodes is empty; list the nodes the VM's memory comes from".into(),
            );
        }
        if self.memory_mib == 0 {
            return invalid("memory_mib is 0; give the VM memory".into());
        }
        if self.disk_gib == 0 {
            return invalid("disk_gib is 0; give the VM a boot disk".into());
        }
        if self.image.trim().is_empty() {
            return invalid("image is empty; name the image the VM boots".into());
        }
        match (self.partition_id, self.gpu_module_ids.is_empty()) {
            (Some(id), true) => invalid(format!(
                "partition_id {id} is set but gpu_module_ids is empty; a CPU-only VM has no \
                 partition"
            )),
            (None, false) => invalid(
                "gpu_module_ids is set but partition_id is absent; a GPU VM needs the Fabric \
                 Manager partition holding exactly its GPUs"
                    .into(),
            ),
            _ => Ok(()),
        }
    }

    /// 1 GiB hugepages the VM needs, rounding up.
    pub fn hugepages_1g(&self) -> u64 {
        self.memory_mib.div_ceil(1024)
    }
}

fn first_duplicate<T: Ord + Copy>(values: &[T]) -> Option<T> {
    let mut seen = BTreeSet::new();
    values.iter().copied().find(|v| !seen.insert(*v))
}

/// The life of a VM on this host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VmState {
    /// Partition activated, devices bound, domain defined and booting.
    Provisioning,
    Running,
    /// Being shut down; its resources are still held.
    Stopping,
    /// Removed: the agent no longer holds it.
    Deleted,
    /// Broken (e.g. a GPU failed); resources held until removed or re-ensured.
    Failed,
    /// Being powered off (`SetVmPower` STOP or POWER_OFF); its resources are still held.
    ShuttingDown,
    /// Powered off; its devices, partition, CPUs, hugepages and disk are still held.
    Stopped,
    /// Being powered on again (`SetVmPower` START).
    Starting,
    /// Being rebooted (`SetVmPower` REBOOT).
    Rebooting,
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VmState::Provisioning => "PROVISIONING",
            VmState::Running => "RUNNING",
            VmState::Stopping => "STOPPING",
            VmState::Deleted => "DELETED",
            VmState::Failed => "FAILED",
            VmState::ShuttingDown => "SHUTTING_DOWN",
            VmState::Stopped => "STOPPED",
            VmState::Starting => "STARTING",
            VmState::Rebooting => "REBOOTING",
        })
    }
}

/// What `SetVmPower` asks of a VM. Meanings are those of `agent.v1.VmPowerAction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PowerAction {
    Start,
    /// Ask the guest to shut down; power it off after the backend's timeout.
    Stop,
    Reboot,
    /// Power off at once, without asking the guest.
    PowerOff,
}

impl fmt::Display for PowerAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PowerAction::Start => "START",
            PowerAction::Stop => "STOP",
            PowerAction::Reboot => "REBOOT",
            PowerAction::PowerOff => "POWER_OFF",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStatus {
    pub vm_id: String,
    pub state: VmState,
    pub generation: u64,
    /// Human-readable detail: why it FAILED, or why the last power operation did not happen.
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuStatus {
    pub module_id: u32,
    pub health: GpuHealth,
    pub message: String,
}

/// One item of the host's watch stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostEvent {
    Vm(VmStatus),
    Gpu(GpuStatus),
    /// Ends a full snapshot: every VM on the host was listed before it.
    SnapshotEnd,
}

/// Identifies the resource a [`HostEvent`] is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostEventKey {
    Vm(String),
    Gpu(u32),
    SnapshotEnd,
}

impl WatchEvent for HostEvent {
    type Key = HostEventKey;

    fn key(&self) -> HostEventKey {
        match self {
            HostEvent::Vm(vm) => HostEventKey::Vm(vm.vm_id.clone()),
            HostEvent::Gpu(gpu) => HostEventKey::Gpu(gpu.module_id),
            HostEvent::SnapshotEnd => HostEventKey::SnapshotEnd,
        }
    }

    fn is_gone(&self) -> bool {
        matches!(self, HostEvent::Vm(vm) if vm.state == VmState::Deleted)
    }

    fn gone(&self) -> Option<Self> {
        match self {
            HostEvent::Vm(vm) => Some(HostEvent::Vm(VmStatus {
                vm_id: vm.vm_id.clone(),
                state: VmState::Deleted,
                generation: vm.generation,
                message: String::new(),
            })),
            HostEvent::Gpu(_) | HostEvent::SnapshotEnd => None,
        }
    }

    fn snapshot_end() -> Option<Self> {
        Some(HostEvent::SnapshotEnd)
    }

    fn is_snapshot_end(&self) -> bool {
        matches!(self, HostEvent::SnapshotEnd)
    }
}

/// Whether a partition is active, and for which VM.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStatus {
    pub partition_id: u32,
    pub active: bool,
    /// The VM it is active for; empty when inactive.
    pub vm_id: String,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn cpu_vm(vm_id: &str) -> VmSpec {
        VmSpec {
            vm_id: vm_id.into(),
            name: "cpu".into(),
            generation: 1,
            partition_id: None,
            gpu_module_ids: vec![],
            nic_indices: vec![],
            vcpu_pins: vec![0, 1],
            emulator_cpu: 2,
            numa_nodes: vec![0],
            memory_mib: 4096,
            disk_gib: 20,
            image: "ubuntu-24.04".into(),
            hostname: String::new(),
            ssh_authorized_keys: vec![],
            user_data: String::new(),
            nics: vec![],
            fabric_nics: vec![],
        }
    }

    #[test]
    fn test_shape_checks() {
        let ok = cpu_vm("a");
        assert_eq!(ok.check_shape(), Ok(()));
        let cases: Vec<(VmSpec, &str)> = vec![
            (VmSpec { generation: 0, ..ok.clone() }, "generation 0"),
            (VmSpec { vcpu_pins: vec![1, 1], ..ok.clone() }, "two vCPUs on CPU 1"),
            (VmSpec { emulator_cpu: 1, ..ok.clone() }, "emulator_cpu 1"),
            (VmSpec { vcpu_pins: vec![], ..ok.clone() }, "vcpu_pins is empty"),
            (VmSpec { numa_nodes: vec![], ..ok.clone() }, "numa_nodes is empty"),
            (VmSpec { memory_mib: 0, ..ok.clone() }, "memory_mib is 0"),
            (VmSpec { image: " ".into(), ..ok.clone() }, "image is empty"),
            (VmSpec { partition_id: Some(7), ..ok.clone() }, "CPU-only VM has no partition"),
            (VmSpec { gpu_module_ids: vec![1], ..ok.clone() }, "partition_id is absent"),
            (
                VmSpec { gpu_module_ids: vec![1, 1], partition_id: Some(3), ..ok.clone() },
                "module 1 twice",
            ),
        ];
        for (spec, expected) in cases {
            let err = spec.check_shape().expect_err(expected);
            assert!(matches!(err, DriverError::InvalidArgument(_)));
            assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
        }
    }

    #[test]
    fn test_hugepages_round_up() {
        let spec = cpu_vm("a");
        assert_eq!(VmSpec { memory_mib: 1, ..spec.clone() }.hugepages_1g(), 1);
        assert_eq!(VmSpec { memory_mib: 1024, ..spec.clone() }.hugepages_1g(), 1);
        assert_eq!(VmSpec { memory_mib: 1025, ..spec }.hugepages_1g(), 2);
    }

    #[test]
    fn test_same_as_ignores_generation_only() {
        let a = cpu_vm("a");
        assert!(a.same_as(&VmSpec { generation: 9, ..a.clone() }));
        assert!(!a.same_as(&VmSpec { memory_mib: 1, ..a.clone() }));
    }
}
