//! The admin topology picture: one host's NUMA nodes with their GPUs, paired SuperNICs and
//! NVSwitch partitions, one scalable unit's rail leaves and hosts, and that unit's tenant
//! fabric (each leaf's VRFs, the switch and DPU agents). Provider admins only.
//!
//! The server does the topology work (pairing, partition tree layout, usage sums); the page
//! only draws what it gets, so these types carry layout hints such as [`Lane`] and
//! [`PartitionSlot`].

use serde::{Deserialize, Serialize};

use crate::ids::{GenericUuid, InstanceUuid, TenantUuid, VpcUuid};
use crate::views::{AgentLink, InstanceState, ModelCapacity};

/// The instance (and its tenant) holding a GPU, NIC or partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Holder {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub tenant_id: TenantUuid,
    pub tenant_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub instance_id: InstanceUuid,
    pub instance_name: String,
}

impl Holder {
    /// The tenant's color on every topology picture.
    pub fn hue(&self) -> u16 {
        tenant_hue(self.tenant_id)
    }
}

/// A stable hue per tenant, kept out of the reds (unhealthy) so that use never reads as
/// failure: 30..330 degrees, spread by a multiplicative hash of the id.
pub fn tenant_hue(tenant: TenantUuid) -> u16 {
    let id = tenant.into_untyped_uuid().as_u128();
    let mixed = ((id >> 64) as u64 ^ id as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    30 + ((mixed >> 32) % 300) as u16
}

/// What a GPU is doing. A used GPU stays `Used` when it turns unhealthy: the VM still has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum GpuState {
    Free,
    Unhealthy,
    Used(Holder),
}

impl GpuState {
    pub fn class(&self) -> &'static str {
        match self {
            GpuState::Free => "free",
            GpuState::Unhealthy => "bad",
            GpuState::Used(_) => "used",
        }
    }
}

/// A GPU's health as its host reports it (XID errors, row remapping, falling off the bus).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum GpuHealth {
    Ok,
    /// Usable (e.g. a row remap pending).
    Degraded,
    /// Never given to a VM.
    Failed,
}

impl GpuHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            GpuHealth::Ok => "ok",
            GpuHealth::Degraded => "degraded",
            GpuHealth::Failed => "failed",
        }
    }

    /// A stored value; anything unknown is treated as failed (never schedulable).
    pub fn parse_or_failed(s: &str) -> Self {
        match s {
            "ok" => GpuHealth::Ok,
            "degraded" => GpuHealth::Degraded,
            _ => GpuHealth::Failed,
        }
    }
}

impl std::fmt::Display for GpuHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuTile {
    pub module_id: u32,
    /// nvidia-smi index (differs from the module id on real boards).
    pub smi_index: u32,
    pub pci_address: String,
    pub model: String,
    pub pcie_switch: String,
    pub health: GpuHealth,
    pub state: GpuState,
    /// The active partition this GPU is in, if any.
    pub partition: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NicTile {
    pub index: u32,
    pub name: String,
    pub pcie_switch: String,
    pub rail: u32,
    pub leaf: String,
    /// The GPU module behind the same PCIe switch, if any.
    pub paired_module: Option<u32>,
    pub holder: Option<Holder>,
}

/// One column of a NUMA node's picture: a GPU over its paired NIC, or a device without a pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Lane {
    pub gpu: Option<GpuTile>,
    pub nic: Option<NicTile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NumaTopology {
    pub id: u32,
    pub cpus_total: u32,
    /// Distinct host CPUs pinned to VMs (vCPUs and emulator threads).
    pub cpus_used: u32,
    /// 1 GiB hugepages.
    pub hugepages_total: u32,
    pub hugepages_used: u32,
    /// GPUs in partition-tree order (NVLink neighbours side by side), then unpaired NICs.
    pub lanes: Vec<Lane>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PartitionState {
    /// Held by a VM.
    Active(Holder),
    /// Every GPU free and healthy: a VM could get it now (CPU and memory permitting).
    Available,
    /// Overlaps an active partition or holds an unhealthy or missing GPU.
    Blocked,
}

/// Where a partition sits in the drawn tree: `level` 0 is the largest, `column` is 1-based in
/// [`HostTopology::module_order`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionSlot {
    pub level: u32,
    pub column: u32,
    pub span: u32,
}

/// A Fabric Manager shared-NVSwitch partition, in module ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionView {
    pub id: u32,
    pub modules: Vec<u32>,
    pub state: PartitionState,
    /// `None` when the table is not a tree in which the partition's modules sit side by side.
    pub slot: Option<PartitionSlot>,
}

/// A VM on the host and exactly what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostInstance {
    pub holder: Holder,
    pub state: InstanceState,
    pub instance_type: String,
    pub partition: Option<u32>,
    pub gpus: Vec<u32>,
    pub nics: Vec<u32>,
    pub numa_nodes: Vec<u32>,
    pub vcpus: u32,
    pub memory_gib: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DpuView {
    pub name: String,
    pub model: String,
    pub agent: AgentLink,
}

/// One host as the topology page draws it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostTopology {
    pub name: String,
    pub scalable_unit: u32,
    pub system_model: String,
    pub agent: AgentLink,
    pub cordoned: bool,
    pub numa_nodes: Vec<NumaTopology>,
    pub partitions: Vec<PartitionView>,
    /// GPU module ids in the order the partition tree is drawn.
    pub module_order: Vec<u32>,
    pub instances: Vec<HostInstance>,
    pub dpus: Vec<DpuView>,
    /// Still launchable here, per GPU model; empty while the scheduler is not loaded.
    pub launchable: Vec<ModelCapacity>,
}

impl HostTopology {
    pub fn gpus(&self) -> impl Iterator<Item = &GpuTile> {
        self.numa_nodes.iter().flat_map(|n| n.lanes.iter().filter_map(|l| l.gpu.as_ref()))
    }

    pub fn nics(&self) -> impl Iterator<Item = &NicTile> {
        self.numa_nodes.iter().flat_map(|n| n.lanes.iter().filter_map(|l| l.nic.as_ref()))
    }
}

/// A rail leaf switch of a scalable unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeafView {
    pub name: String,
    pub rail: u32,
    /// Empty when the switch never reported (only the hosts' cabling names it).
    pub model: String,
    pub agent: AgentLink,
    /// False when only the hosts' cabling names this leaf.
    pub reported: bool,
    /// Hosts of the unit with a NIC cabled to this leaf.
    pub hosts_cabled: u32,
}

/// A host card on the scalable-unit picture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnitHost {
    pub name: String,
    pub agent: AgentLink,
    pub cordoned: bool,
    /// By module id.
    pub gpus: Vec<GpuState>,
}

impl UnitHost {
    pub fn count(&self, class: &str) -> usize {
        self.gpus.iter().filter(|g| g.class() == class).count()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScalableUnitTopology {
    pub number: u32,
    /// "su1", as the scheduler and the leaf names spell it.
    pub name: String,
    /// By rail.
    pub leaves: Vec<LeafView>,
    /// By name.
    pub hosts: Vec<UnitHost>,
    pub launchable: Vec<ModelCapacity>,
}

/// Where a leaf stands with a tenant VPC (its VRF and VNIs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum VrfState {
    /// The leaf confirmed the VPC's latest generation.
    Confirmed,
    /// Wanted on the leaf (a VM of the VPC is in the unit); the leaf has not confirmed its
    /// latest generation yet.
    Pending,
    /// Still on the leaf, no longer wanted there: the network reconciler is removing it.
    Removing,
}

impl VrfState {
    pub fn as_str(self) -> &'static str {
        match self {
            VrfState::Confirmed => "confirmed",
            VrfState::Pending => "pending",
            VrfState::Removing => "removing",
        }
    }
}

/// A tenant VPC on a leaf: its VRF with the L3 VNI, and the L2 VNI of each of its subnets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeafVrf {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub vpc_id: VpcUuid,
    /// Empty when the VPC was deleted and the leaf still holds it (`removing`).
    pub vpc_name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub tenant_id: Option<TenantUuid>,
    pub tenant_name: String,
    /// `vpc<L3 VNI>`, the VRF's name on the leaf; empty when the VPC was deleted.
    pub vrf_name: String,
    /// None when the VPC was deleted.
    pub l3_vni: Option<u32>,
    /// Its subnets' L2 VNIs, ascending.
    pub l2_vnis: Vec<u32>,
    /// The VPC's latest generation (0 when it was deleted).
    pub generation: i64,
    /// The generation the leaf confirmed; none: never (or it is to be sent again).
    pub confirmed_generation: Option<i64>,
    pub state: VrfState,
}

impl LeafVrf {
    /// The tenant's color, as on the other topology pictures.
    pub fn hue(&self) -> Option<u16> {
        self.tenant_id.map(tenant_hue)
    }
}

/// A rail leaf with the tenant VRFs it holds or should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FabricLeaf {
    pub name: String,
    pub rail: u32,
    pub model: String,
    pub agent: AgentLink,
    /// By tenant name, then VPC name.
    pub vrfs: Vec<LeafVrf>,
    /// The leaf's BGP EVPN state, read from its switch agent as the picture was drawn.
    pub evpn: LeafEvpn,
}

/// A leaf's BGP EVPN state as its switch agent read it now, or why it is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LeafEvpn {
    Read(EvpnRead),
    /// Not read: the reason (agent not connected, failed, or no answer in time).
    Unknown(String),
}

/// One leaf's EVPN peers and how the VNIs its routing daemons hold compare with the
/// database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvpnRead {
    /// Underlay BGP peers with the EVPN family, by address.
    pub peers: Vec<EvpnPeerView>,
    /// VNIs the leaf holds, of any VRF.
    pub vnis: u32,
    /// VNIs the leaf holds that no VRF of this leaf in the database has (ascending): left
    /// behind, configured by hand, or of a VPC deleted while the leaf still holds it.
    pub unexpected_vnis: Vec<u32>,
    /// VNIs of the VRFs this leaf confirmed that it does not hold (ascending). VRFs not
    /// confirmed yet are not counted: they are still on their way.
    pub missing_vnis: Vec<u32>,
    /// A simulated switch: its VNIs are its VPCs', it has no routing daemons and no peers.
    pub simulated: bool,
}

impl EvpnRead {
    pub fn established(&self) -> usize {
        self.peers.iter().filter(|p| p.established()).count()
    }

    /// No VNI missing or unexpected.
    pub fn in_sync(&self) -> bool {
        self.unexpected_vnis.is_empty() && self.missing_vnis.is_empty()
    }
}

/// An underlay EVPN peer of a leaf.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvpnPeerView {
    pub address: String,
    /// FRR's BGP state name: "Established", "Active", "Connect"…
    pub state: String,
    /// EVPN prefixes accepted from it, when the switch says.
    pub prefixes_received: Option<u64>,
}

impl EvpnPeerView {
    pub fn established(&self) -> bool {
        self.state == "Established"
    }
}

/// A DPU of one of the unit's hosts: where tenant ports (and their security groups) live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FabricDpu {
    pub name: String,
    pub host: String,
    pub model: String,
    pub agent: AgentLink,
    /// Tenant ports the DPU holds or should hold.
    pub ports: u32,
    /// Of those, the ones whose latest change it has not confirmed yet.
    pub ports_pending: u32,
}

/// One scalable unit's tenant fabric: each leaf's VRFs and whether the leaf confirmed them,
/// the switch and DPU agents' links. Provider admins only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScalableUnitFabric {
    pub number: u32,
    /// "su1".
    pub name: String,
    /// By rail, then name.
    pub leaves: Vec<FabricLeaf>,
    /// By host, then name.
    pub dpus: Vec<FabricDpu>,
}

impl ScalableUnitFabric {
    /// How many (leaf, VRF) pairs are in each state: (confirmed, pending, removing).
    pub fn counts(&self) -> (usize, usize, usize) {
        let vrfs = || self.leaves.iter().flat_map(|l| l.vrfs.iter());
        let count = |s: VrfState| vrfs().filter(|v| v.state == s).count();
        (count(VrfState::Confirmed), count(VrfState::Pending), count(VrfState::Removing))
    }
}

/// "su3" or "3" → 3; `None` for anything else.
pub fn parse_scalable_unit(text: &str) -> Option<u32> {
    let digits = text.trim();
    let digits = digits.strip_prefix("su").unwrap_or(digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalable_units_parse_with_or_without_prefix() {
        assert_eq!(parse_scalable_unit("su1"), Some(1));
        assert_eq!(parse_scalable_unit("12"), Some(12));
        for bad in ["", "su", "su-1", "su1a", "s1", "+1", "su99999999999"] {
            assert_eq!(parse_scalable_unit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tenant_hues_are_stable_and_never_red() {
        for n in 0..2000u128 {
            let id =
                TenantUuid::from_untyped_uuid(uuid::Uuid::from_u128(n * 0x1234_5678_9abc_def1));
            let hue = tenant_hue(id);
            assert!((30..330).contains(&hue), "{hue}");
            assert_eq!(hue, tenant_hue(id));
        }
        let a = TenantUuid::from_untyped_uuid(uuid::Uuid::from_u128(1));
        let b = TenantUuid::from_untyped_uuid(uuid::Uuid::from_u128(2));
        assert_ne!(tenant_hue(a), tenant_hue(b));
    }
}
