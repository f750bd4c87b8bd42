//! The DPU agent's own types. A [`PortSpec`] is only built by decoding (see
//! [`crate::convert`]), so its addresses, VNI and rules are already valid.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use agent_common::WatchEvent;
use agent_common::validate::Cidr;

/// The static facts of one DPU (also the `[backend.sim.dpu]` table of the `dpu-agent` config).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpuDescription {
    /// e.g. `su1-h07-dpu0`.
    pub dpu_id: String,
    pub host_id: String,
    /// e.g. `BlueField-3 B3220`.
    pub model: String,
    pub pci_address: String,
    /// The VXLAN tunnel endpoint address.
    pub vtep_ip: String,
    /// VFs available for tenant ports.
    pub max_ports: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Ingress,
    Egress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Any,
}

/// One allow rule of a port's security group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityRule {
    pub direction: Direction,
    pub protocol: Protocol,
    /// Inclusive port range for TCP and UDP (`1..=65535` when the request left it open);
    /// `None` for ICMP and "any".
    pub ports: Option<(u16, u16)>,
    /// The remote network the rule allows.
    pub cidr: Cidr,
}

/// What a tenant port should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    /// Lowercase UUID, the idempotency key.
    pub port_id: String,
    pub vm_id: String,
    pub generation: u64,
    /// L2 VNI of the port's subnet.
    pub vni: u32,
    /// Lowercase, unicast.
    pub mac: String,
    pub ip: IpAddr,
    pub rules: Vec<SecurityRule>,
    /// The subnet's gateway as the guest knows it; `None` when the control plane sent none.
    pub gateway: Option<Gateway>,
    /// A public IPv4 address mapped one to one to `ip` (then `ip` is IPv4 and `gateway` is
    /// set, in the same network).
    pub public_ip: Option<Ipv4Addr>,
}

/// A subnet's gateway: its address and the subnet's prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gateway {
    pub address: IpAddr,
    pub prefix_len: u8,
}

impl PortSpec {
    /// Whether two specs ask for the same port, generation aside.
    pub fn same_as(&self, other: &PortSpec) -> bool {
        PortSpec { generation: other.generation, ..self.clone() } == *other
    }
}

/// Packets and the bytes they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

impl Counter {
    /// Adds `other` in place (saturating: counters never wrap).
    pub fn add(&mut self, other: Counter) {
        self.packets = self.packets.saturating_add(other.packets);
        self.bytes = self.bytes.saturating_add(other.bytes);
    }
}

/// One direction of a port's security group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounters {
    /// Let through: established connections and the first packets a rule allowed.
    pub allowed: Counter,
    /// Dropped because no rule allowed them (the default deny).
    pub dropped: Counter,
}

/// A port's counters as a backend reads them, since its rules were last replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortTraffic {
    /// Traffic to the VM.
    pub ingress: TrafficCounters,
    /// Traffic from the VM.
    pub egress: TrafficCounters,
    /// Frames from the VM with another MAC or IP than its own, dropped.
    pub spoofed: Counter,
    /// One per rule given to `rules_apply`, in its order: the first packets each allowed.
    pub rules: Vec<Counter>,
    /// How often the port's rules were replaced since it was attached.
    pub rule_changes: u64,
    /// Synthetic traffic (the simulated backend), not measured.
    pub simulated: bool,
}

/// A port's counters as the agent answers `PortCounters`: the traffic of the spec it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortCountersReport {
    pub port_id: String,
    /// The generation of the spec held.
    pub generation: u64,
    pub traffic: PortTraffic,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortState {
    /// Programmed: VF attached, VXLAN and security group in place.
    Ready,
    /// Gone: the agent no longer holds it.
    Removed,
    Failed,
}

impl fmt::Display for PortState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortState::Ready => "READY",
            PortState::Removed => "REMOVED",
            PortState::Failed => "FAILED",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortStatus {
    pub port_id: String,
    pub state: PortState,
    pub generation: u64,
    pub message: String,
}

impl WatchEvent for PortStatus {
    type Key = String;

    fn key(&self) -> String {
        self.port_id.clone()
    }

    fn is_gone(&self) -> bool {
        self.state == PortState::Removed
    }

    fn gone(&self) -> Option<Self> {
        Some(PortStatus { state: PortState::Removed, message: String::new(), ..self.clone() })
    }
}
