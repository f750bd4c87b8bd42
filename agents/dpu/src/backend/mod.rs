//! The [`DpuBackend`] trait: the device operations the DPU agent's manager needs. Desired
//! state, generations, tombstones, the port limit, address checks and watch streams live in
//! [`crate::manager`], once for every backend.
//!
//! Backends: [`sim::SimDpuBackend`] (in memory, with an apply delay) and
//! [`linux::LinuxDpuBackend`] (a bridge and VXLAN device per VNI over netlink, a veth pair
//! standing in for each port's VF, nftables security groups; in a network namespace of its
//! own if configured). [`faulty::FaultyBackend`] wraps any backend to inject faults per
//! [`DpuOp`].
//!
//! Every operation is idempotent (attaching an attached port or VNI, detaching an absent
//! one, applying the rules in place succeed). Errors: `Unavailable` = busy or unreachable,
//! retry; `Internal` = the device misbehaved, an operator must look.

pub mod faulty;
pub mod linux;
pub mod sim;

use std::fmt;

use async_trait::async_trait;

use agent_common::DriverError;

use crate::model::{DpuDescription, PortSpec, PortTraffic, SecurityRule};

#[async_trait]
pub trait DpuBackend: Send + Sync + 'static {
    /// Reads the DPU's static facts. Read-only.
    async fn hardware(&self) -> Result<DpuDescription, DriverError>;

    /// Creates the VXLAN device and bridge of `vni` (with this DPU's VTEP).
    async fn vni_attach(&self, vni: u32) -> Result<(), DriverError>;

    /// Deletes the VXLAN device and bridge of `vni`; no port uses it any more.
    async fn vni_detach(&self, vni: u32) -> Result<(), DriverError>;

    /// Attaches a VF for the port to its VNI's bridge with its MAC and IP (moving it if it
    /// was on another VNI). The VNI is attached.
    async fn port_attach(&self, spec: &PortSpec) -> Result<(), DriverError>;

    /// Detaches and frees the port's VF.
    async fn port_detach(&self, port_id: &str) -> Result<(), DriverError>;

    /// Replaces the port's security group with `rules` (atomically: old or new, never half).
    async fn rules_apply(&self, port_id: &str, rules: &[SecurityRule]) -> Result<(), DriverError>;

    /// Reads the port's counters (since its rules were last replaced), with one rule counter
    /// per rule last given to `rules_apply`. Read-only. Errors: `NotFound` for a port not
    /// attached here.
    async fn counters(&self, port_id: &str) -> Result<PortTraffic, DriverError>;
}

/// The backend operations, by name: what [`faulty::FaultyBackend`] injects faults into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DpuOp {
    Hardware,
    VniAttach,
    VniDetach,
    PortAttach,
    PortDetach,
    RulesApply,
    Counters,
}

impl fmt::Display for DpuOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DpuOp::Hardware => "hardware",
            DpuOp::VniAttach => "vni_attach",
            DpuOp::VniDetach => "vni_detach",
            DpuOp::PortAttach => "port_attach",
            DpuOp::PortDetach => "port_detach",
            DpuOp::RulesApply => "rules_apply",
            DpuOp::Counters => "counters",
        })
    }
}
