//! The host agent: one per GPU server. It owns the server's VMs with passthrough GPUs and
//! SuperNICs, their pinned CPUs and hugepage memory, and the Fabric Manager partitions that
//! connect their GPUs over NVSwitch.
//!
//! Layers, from the wire inwards:
//! - [`service`]: the `HostAgent` gRPC service: decodes proto ([`convert`]), calls the
//!   manager, encodes; nothing else;
//! - [`manager`]: the [`HostManager`], the domain logic every backend shares: desired state,
//!   generations, tombstones, the VM state machine and its timing, watch streams;
//! - [`backend`]: the [`HostBackend`] trait of device operations (partitions, domains,
//!   hardware), the simulated backend and [`SimHost`] (a manager over it, with faults), and
//!   the fault-injecting wrapper around any backend;
//! - [`allocation`]: which VM holds which GPU, NIC, CPU, hugepage and partition; the rules a
//!   spec must meet against the hardware. Backend-independent, so every backend enforces the
//!   same rules;
//! - [`model`]: the typed host description, VM spec and status the layers exchange.
//!
//! The agent never depends on the control plane; the only contract is `agent-proto`.

pub mod allocation;
pub mod backend;
pub mod console;
pub mod convert;
pub mod manager;
pub mod model;
pub mod service;

pub use agent_common::{DriverError, FaultPlan};
pub use backend::libvirt::{LibvirtBackend, LibvirtConfig};
pub use backend::sim::{SimHost, SimHostBackend};
pub use backend::{HostBackend, HostOp};
pub use console::ConsoleSession;
pub use manager::{HostManager, HostOptions, HostSnapshot, VmSnapshot};
pub use model::{
    Gpu, GpuHealth, GpuStatus, GuestNic, HostDescription, HostEvent, HostInventory, Nic, NumaNode,
    Partition, PartitionStatus, PowerAction, VmSpec, VmState, VmStatus,
};
pub use service::HostAgentService;

/// The version reported in `GetInventory`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");
