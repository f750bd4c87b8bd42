//! The switch agent's own types. A [`VpcSpec`] is only built by decoding (see
//! [`crate::convert`]), so its VRF name, VNIs and subnets are already valid and distinct.

use std::collections::BTreeSet;
use std::fmt;

use agent_common::WatchEvent;
use agent_common::validate::Cidr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchRole {
    RailLeaf,
    Spine,
}

/// One front-panel port and what it is cabled to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchPort {
    /// e.g. `swp7`.
    pub name: String,
    pub peer_host_id: String,
    pub peer_nic_index: u32,
    pub speed_gbps: u32,
}

/// The static facts of one switch (also the `[backend.sim.switch]` table of the
/// `switch-agent` config).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchDescription {
    /// e.g. `su1-leaf3`.
    pub switch_id: String,
    /// e.g. `Spectrum-4 SN5600`.
    pub model: String,
    pub role: SwitchRole,
    /// 1-based.
    pub scalable_unit: u32,
    pub rail: u32,
    pub asn: u32,
    pub loopback_ip: String,
    pub ports: Vec<SwitchPort>,
}

/// One subnet of a VPC: its L2 VNI and network, and the front-panel ports that join it
/// (a GPU fabric rail's host NICs; none for a VPC subnet, reached through the DPUs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub l2_vni: u32,
    pub cidr: Cidr,
    /// Port names of this switch, sorted.
    pub access_ports: Vec<String>,
}

/// What a tenant VPC should be on this switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcSpec {
    /// Lowercase UUID, the idempotency key.
    pub vpc_id: String,
    pub generation: u64,
    pub vrf_name: String,
    pub l3_vni: u32,
    pub segments: Vec<Segment>,
}

impl VpcSpec {
    /// Whether two specs ask for the same VPC, generation aside.
    pub fn same_as(&self, other: &VpcSpec) -> bool {
        VpcSpec { generation: other.generation, ..self.clone() } == *other
    }

    /// Every VNI the VPC uses: its L3 VNI and each segment's L2 VNI.
    pub fn vnis(&self) -> BTreeSet<u32> {
        std::iter::once(self.l3_vni).chain(self.segments.iter().map(|s| s.l2_vni)).collect()
    }

    /// Every front-panel port the VPC's segments hold.
    pub fn access_ports(&self) -> BTreeSet<&str> {
        self.segments.iter().flat_map(|s| s.access_ports.iter().map(String::as_str)).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VpcState {
    /// VRF, L3 VNI and L2 VNIs configured and advertised.
    Ready,
    /// Gone: the agent no longer holds it.
    Removed,
    Failed,
}

impl fmt::Display for VpcState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VpcState::Ready => "READY",
            VpcState::Removed => "REMOVED",
            VpcState::Failed => "FAILED",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VpcStatus {
    pub vpc_id: String,
    pub state: VpcState,
    pub generation: u64,
    pub message: String,
}

impl WatchEvent for VpcStatus {
    type Key = String;

    fn key(&self) -> String {
        self.vpc_id.clone()
    }

    fn is_gone(&self) -> bool {
        self.state == VpcState::Removed
    }

    fn gone(&self) -> Option<Self> {
        Some(VpcStatus { state: VpcState::Removed, message: String::new(), ..self.clone() })
    }
}

/// The switch's BGP EVPN state as a whole: its underlay peers and every VNI its EVPN
/// control plane knows, whoever configured it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EvpnStatus {
    /// Underlay peers with the l2vpn evpn family, by address.
    pub peers: Vec<PeerStatus>,
    /// By VNI.
    pub vnis: Vec<VniStatus>,
    /// Read from a simulated switch (see `SimSwitchBackend`), not from routing daemons.
    pub simulated: bool,
}

impl EvpnStatus {
    pub fn established_peers(&self) -> usize {
        self.peers.iter().filter(|p| p.state == "Established").count()
    }

    pub fn vni(&self, vni: u32) -> Option<&VniStatus> {
        self.vnis.iter().find(|v| v.vni == vni)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub address: String,
    /// FRR's BGP state name: `Established`, `Active`, `Connect`…
    pub state: String,
    /// EVPN prefixes accepted from the peer, when the switch says.
    pub prefixes_received: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VniKind {
    L2,
    L3,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VniStatus {
    pub vni: u32,
    pub kind: VniKind,
    /// The tenant VRF zebra bound the VNI to.
    pub vrf: String,
    /// The VXLAN device zebra found for it; none until it has seen one.
    pub vxlan_if: Option<String>,
    /// Other leaves' VTEPs flooding this L2 VNI (from their type-3 routes); empty for L3.
    pub remote_vteps: Vec<String>,
}
