//! The [`SwitchDriver`] trait: what the switch agent needs from whatever configures the leaf.
//!
//! Backends: [`sim::SimSwitchDriver`] (in memory, with latency and fault injection). An FRR
//! backend (per-tenant VRF with its L3 VNI, L2 VNIs, BGP EVPN) implements the same contract.

pub mod sim;

use async_trait::async_trait;

use agent_common::{DriverError, EventStream};

use crate::model::{SwitchDescription, VpcSpec, VpcStatus};

#[async_trait]
pub trait SwitchDriver: Send + Sync + 'static {
    /// The switch's static facts and cabling. Read-only. Errors: `Unavailable` when the
    /// switch cannot be read right now (retry).
    async fn inventory(&self) -> Result<SwitchDescription, DriverError>;

    /// Creates, adopts or updates the VPC `spec.vpc_id` (VRF, L3 VNI, one L2 VNI per segment)
    /// and returns `READY` once it is configured and advertised.
    ///
    /// Idempotent by `vpc_id`: the same spec at the same generation changes nothing; a
    /// higher generation replaces the spec in place.
    ///
    /// Errors, the caller's fault unless noted:
    /// - `FailedPrecondition`: a lower generation than applied, a different spec at the same
    ///   generation, a VNI or VRF name already used by another VPC on this switch;
    /// - `Unavailable`: the switch is busy (retry); `Internal`: the backend misbehaved.
    async fn vpc_ensure(&self, spec: VpcSpec) -> Result<VpcStatus, DriverError>;

    /// Removes the VPC's VRF and VNIs; returns `REMOVED`, also for a VPC this switch does not
    /// hold. Idempotent. Errors: `Unavailable` (retry), `Internal` (backend misbehaved).
    /// A `generation` above 0 is remembered: a later ensure of this id up to it is refused
    /// with `FailedPrecondition` (a late retry must not bring it back).
    async fn vpc_remove(&self, vpc_id: &str, generation: u64) -> Result<VpcStatus, DriverError>;

    /// One status per VPC held, then every change; a lagging subscriber is resynchronised
    /// (see `agent_common::watch`). Ends when the agent shuts down. Errors: `Unavailable`.
    async fn watch(&self) -> Result<EventStream<VpcStatus>, DriverError>;
}
