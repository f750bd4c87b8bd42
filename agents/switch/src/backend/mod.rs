//! The [`SwitchBackend`] trait: the device operations the switch agent's manager needs.
//! Desired state, generations, tombstones, VNI and VRF uniqueness and watch streams live in
//! [`crate::manager`], once for every backend.
//!
//! Backends: [`sim::SimSwitchBackend`] (in memory, with an apply delay) and
//! [`frr::FrrSwitchBackend`] (a leaf running FRR: per tenant a VRF with its L3 VNI and
//! L2 VNIs advertised over BGP EVPN, the VRF a kernel VRF device or, where the kernel has
//! none, a network namespace; see [`frr::VrfMode`]). [`faulty::FaultyBackend`] wraps any
//! backend to inject faults per [`SwitchOp`].
//!
//! Both changing operations are idempotent (applying the configured VPC, removing an absent VRF
//! succeed). Errors: `Unavailable` = busy or unreachable, retry; `Internal` = the switch
//! misbehaved, an operator must look.

pub mod faulty;
pub mod frr;
pub mod sim;

use std::fmt;

use async_trait::async_trait;

use agent_common::DriverError;

use crate::model::{EvpnStatus, SwitchDescription, VpcSpec};

#[async_trait]
pub trait SwitchBackend: Send + Sync + 'static {
    /// Reads the switch's static facts and cabling. Read-only.
    async fn hardware(&self) -> Result<SwitchDescription, DriverError>;

    /// Configures VRF `spec.vrf_name` with its L3 VNI and one L2 VNI per segment, replacing
    /// what that VRF had, and advertises it over BGP EVPN. The manager has checked that no
    /// other VPC uses these VNIs or this VRF name.
    async fn vrf_apply(&self, spec: &VpcSpec) -> Result<(), DriverError>;

    /// Removes VRF `vrf_name` and its VNIs.
    async fn vrf_remove(&self, vrf_name: &str) -> Result<(), DriverError>;

    /// Reads the switch's BGP EVPN state now: its underlay peers and every VNI its EVPN
    /// control plane knows, also those this agent did not configure. Read-only.
    async fn evpn_status(&self) -> Result<EvpnStatus, DriverError>;
}

/// The backend operations, by name: what [`faulty::FaultyBackend`] injects faults into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SwitchOp {
    Hardware,
    VrfApply,
    VrfRemove,
    EvpnStatus,
}

impl fmt::Display for SwitchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SwitchOp::Hardware => "hardware",
            SwitchOp::VrfApply => "vrf_apply",
            SwitchOp::VrfRemove => "vrf_remove",
            SwitchOp::EvpnStatus => "evpn_status",
        })
    }
}
