//! The DPU agent: one per BlueField DPU. It owns the host's tenant ports: one VF representor
//! per VM NIC, attached to its subnet's VXLAN (L2 VNI), with the port's security group
//! enforced on the DPU rather than in the guest.
//!
//! Layers, from the wire inwards: [`service`] (gRPC: decode with [`convert`], call the
//! manager, encode), [`manager`] (the [`DpuManager`]: desired ports, generations, limits,
//! watch), [`backend`] (the [`DpuBackend`] trait of device operations, the simulated backend
//! and [`SimDpu`], the fault-injecting wrapper) and [`model`] (checked port specs and
//! statuses). The agent never depends on the control plane.

pub mod backend;
pub mod convert;
pub mod manager;
pub mod model;
pub mod service;

pub use agent_common::{DriverError, FaultPlan};
pub use backend::linux::counters::{DirectionCounters, PortCounters};
pub use backend::linux::names::vm_device_name;
pub use backend::linux::{LinuxDpuBackend, LinuxDpuConfig, UplinkConfig};
pub use backend::sim::{SimDpu, SimDpuBackend, SimDpuOptions};
pub use backend::{DpuBackend, DpuOp};
pub use manager::DpuManager;
pub use model::{
    Counter, Direction, DpuDescription, Gateway, PortCountersReport, PortSpec, PortState,
    PortStatus, PortTraffic, Protocol, SecurityRule, TrafficCounters,
};
pub use service::DpuAgentService;

/// The version reported in `GetInventory`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
