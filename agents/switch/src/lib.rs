//! The switch agent: one per Spectrum-X rail leaf. It owns the tenant VPCs configured on the
//! leaf: one VRF per VPC with its L3 VNI (EVPN type-5 routes) and one L2 VNI per subnet.
//!
//! Layers, from the wire inwards: [`service`] (gRPC: decode with [`convert`], call the
//! manager, encode), [`manager`] (the [`SwitchManager`]: desired VPCs, generations,
//! collisions, watch), [`backend`] (the [`SwitchBackend`] trait of device operations, the
//! simulated backend and [`SimSwitch`], the FRR backend, the fault-injecting wrapper) and [`model`]. The agent never depends on the control plane.

pub mod backend;
pub mod convert;
pub mod manager;
pub mod model;
pub mod service;

pub use agent_common::{DriverError, FaultPlan};
pub use backend::frr::{FrrSettings, FrrSwitchBackend, VrfMode};
pub use backend::sim::{SimSwitch, SimSwitchBackend, SimSwitchOptions};
pub use backend::{SwitchBackend, SwitchOp};
pub use manager::SwitchManager;
pub use model::{
    EvpnStatus, PeerStatus, Segment, SwitchDescription, SwitchPort, SwitchRole, VniKind, VniStatus,
    VpcSpec, VpcState, VpcStatus,
};
pub use service::SwitchAgentService;

/// The version reported in `GetInventory`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
