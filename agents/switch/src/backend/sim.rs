//! [`SimSwitchBackend`]: a simulated Spectrum-X leaf's configuration, in memory: its VRFs
//! and their VNIs. Each change takes `apply_delay`, like an FRR reload. Its EVPN status is
//! what it holds: each VRF's L3 VNI and L2 VNIs, no remote VTEPs and no underlay peers (the
//! simulated switch has no routing daemons and its description names no peers).
//!
//! [`SimSwitch`] is a simulated switch as tests and the simulated fleet hold it: a
//! [`SwitchManager`] over this backend wrapped in a [`FaultyBackend`], and its fault plan.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use agent_common::{DriverError, FaultPlan, lock};

use super::faulty::FaultyBackend;
use super::{SwitchBackend, SwitchOp};
use crate::manager::SwitchManager;
use crate::model::{EvpnStatus, SwitchDescription, VniKind, VniStatus, VpcSpec};

#[derive(Clone, Debug)]
pub struct SimSwitchOptions {
    /// How long configuring or removing a VPC takes.
    pub apply_delay: Duration,
    /// How many events a watcher may fall behind before it is resynchronised.
    pub event_capacity: usize,
}

impl Default for SimSwitchOptions {
    fn default() -> Self {
        SimSwitchOptions { apply_delay: Duration::from_millis(5), event_capacity: 1024 }
    }
}

pub struct SimSwitchBackend {
    description: SwitchDescription,
    apply_delay: Duration,
    /// VRF name → the VPC configured in it.
    vrfs: Mutex<BTreeMap<String, VpcSpec>>,
}

impl SimSwitchBackend {
    pub fn new(description: SwitchDescription, apply_delay: Duration) -> Self {
        SimSwitchBackend { description, apply_delay, vrfs: Mutex::new(BTreeMap::new()) }
    }

    async fn latency(&self) {
        if !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
    }
}

#[async_trait]
impl SwitchBackend for SimSwitchBackend {
    async fn hardware(&self) -> Result<SwitchDescription, DriverError> {
        Ok(self.description.clone())
    }

    async fn vrf_apply(&self, spec: &VpcSpec) -> Result<(), DriverError> {
        self.latency().await;
        lock(&self.vrfs).insert(spec.vrf_name.clone(), spec.clone());
        Ok(())
    }

    async fn vrf_remove(&self, vrf_name: &str) -> Result<(), DriverError> {
        self.latency().await;
        lock(&self.vrfs).remove(vrf_name);
        Ok(())
    }

    async fn evpn_status(&self) -> Result<EvpnStatus, DriverError> {
        let vni = |vni: u32, kind: VniKind, vrf: &str| VniStatus {
            vni,
            kind,
            vrf: vrf.to_owned(),
            // The device the FRR backend would make for it.
            vxlan_if: Some(format!("vxlan{vni}")),
            remote_vteps: Vec::new(),
        };
        let mut vnis: Vec<VniStatus> = lock(&self.vrfs)
            .values()
            .flat_map(|spec| {
                std::iter::once(vni(spec.l3_vni, VniKind::L3, &spec.vrf_name))
                    .chain(spec.segments.iter().map(|s| vni(s.l2_vni, VniKind::L2, &spec.vrf_name)))
            })
            .collect();
        vnis.sort_by_key(|v| v.vni);
        Ok(EvpnStatus { peers: Vec::new(), vnis, simulated: true })
    }
}

/// A simulated switch: its manager over the sim backend, and that backend's fault plan.
/// Cloning gives another handle to the same switch; it derefs to its [`SwitchManager`].
#[derive(Clone)]
pub struct SimSwitch {
    manager: SwitchManager,
    faults: FaultPlan<SwitchOp>,
}

impl SimSwitch {
    pub fn new(description: SwitchDescription, options: SimSwitchOptions) -> Self {
        let faults = FaultPlan::new();
        let sim = SimSwitchBackend::new(description.clone(), options.apply_delay);
        let backend = Arc::new(FaultyBackend::new(sim, faults.clone()));
        let manager = SwitchManager::new(description, backend, options.event_capacity);
        SimSwitch { manager, faults }
    }

    /// This switch's fault plan; rules take effect on the next backend operation.
    pub fn faults(&self) -> &FaultPlan<SwitchOp> {
        &self.faults
    }

    pub fn manager(&self) -> &SwitchManager {
        &self.manager
    }
}

impl Deref for SimSwitch {
    type Target = SwitchManager;

    fn deref(&self) -> &SwitchManager {
        &self.manager
    }
}
