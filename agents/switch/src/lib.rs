//! The switch agent: one per Spectrum-X rail leaf. It owns the tenant VPCs configured on the
//! leaf: one VRF per VPC with its L3 VNI (EVPN type-5 routes) and one L2 VNI per subnet.
//!
//! Layers, from the wire inwards: [`service`] (gRPC: decode with [`convert`], call the
//! driver, encode), [`driver`] (the [`SwitchDriver`] trait and [`SimSwitchDriver`]) and
//! [`model`]. The agent never depends on the control plane.

pub mod convert;
pub mod driver;
pub mod model;
pub mod service;

pub use agent_common::{DriverError, FaultPlan};
pub use driver::SwitchDriver;
pub use driver::sim::{SimSwitchDriver, SimSwitchOptions, SwitchOp};
pub use model::{Segment, SwitchDescription, SwitchPort, SwitchRole, VpcSpec, VpcState, VpcStatus};
pub use service::SwitchAgentService;

/// The version reported in `GetInventory`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
