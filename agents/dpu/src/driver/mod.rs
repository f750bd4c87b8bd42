//! The [`DpuDriver`] trait: what the DPU agent needs from whatever programs the BlueField.
//!
//! Backends: [`sim::SimDpuDriver`] (in memory, with latency and fault injection). A Linux
//! backend (VF representors, VXLAN devices and bridges per VNI, nftables security groups)
//! implements the same contract.

pub mod sim;

use async_trait::async_trait;

use agent_common::{DriverError, EventStream};

use crate::model::{DpuDescription, PortSpec, PortStatus};

#[async_trait]
pub trait DpuDriver: Send + Sync + 'static {
    /// The DPU's static facts. Read-only. Errors: `Unavailable` when the device cannot be read
    /// right now (retry).
    async fn inventory(&self) -> Result<DpuDescription, DriverError>;

    /// Creates, adopts or updates the tenant port `spec.port_id` and returns `READY` once it
    /// is programmed (VF attached to the VNI's bridge, security group loaded).
    ///
    /// Idempotent by `port_id`: the same spec at the same generation changes nothing; a
    /// higher generation replaces the spec in place.
    ///
    /// Errors, the caller's fault unless noted:
    /// - `FailedPrecondition`: a lower generation than applied, a different spec at the same
    ///   generation, or the MAC or IP already used by another port on the same VNI;
    /// - `ResourceExhausted`: the DPU already holds `max_ports` ports;
    /// - `Unavailable`: the device is busy (retry); `Internal`: the backend misbehaved.
    async fn port_ensure(&self, spec: PortSpec) -> Result<PortStatus, DriverError>;

    /// Detaches and deletes the port; returns `REMOVED`, also for a port this DPU does not
    /// hold. Idempotent. Errors: `Unavailable` (retry), `Internal` (backend misbehaved).
    /// A `generation` above 0 is remembered: a later ensure of this id up to it is refused
    /// with `FailedPrecondition` (a late retry must not bring it back).
    async fn port_remove(&self, port_id: &str, generation: u64) -> Result<PortStatus, DriverError>;

    /// One status per port held, then every change; a lagging subscriber is resynchronised
    /// (see `agent_common::watch`). Ends when the agent shuts down. Errors: `Unavailable`.
    async fn watch(&self) -> Result<EventStream<PortStatus>, DriverError>;
}
