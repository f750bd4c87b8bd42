//! [`SimDpuBackend`]: a simulated BlueField's device layer, in memory: attached VNIs, ports
//! and their rules. Programming or removing a port takes `apply_delay`, like a real
//! VF/VXLAN/nftables update.
//!
//! [`SimDpu`] is a simulated DPU as tests and the simulated fleet hold it: a [`DpuManager`]
//! over this backend wrapped in a [`FaultyBackend`], and its fault plan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use agent_common::{DriverError, FaultPlan, lock};

use super::faulty::FaultyBackend;
use super::{DpuBackend, DpuOp};
use crate::manager::DpuManager;
use crate::model::{DpuDescription, PortSpec, SecurityRule};

#[derive(Clone, Debug)]
pub struct SimDpuOptions {
    /// How long programming or removing a port takes.
    pub apply_delay: Duration,
    /// How many events a watcher may fall behind before it is resynchronised.
    pub event_capacity: usize,
}

impl Default for SimDpuOptions {
    fn default() -> Self {
        SimDpuOptions { apply_delay: Duration::from_millis(5), event_capacity: 1024 }
    }
}

pub struct SimDpuBackend {
    description: DpuDescription,
    apply_delay: Duration,
    device: Mutex<Device>,
}

#[derive(Default)]
struct Device {
    vnis: BTreeSet<u32>,
    /// Port id → its VNI and security rules.
    ports: BTreeMap<String, (u32, Vec<SecurityRule>)>,
}

impl SimDpuBackend {
    pub fn new(description: DpuDescription, apply_delay: Duration) -> Self {
        SimDpuBackend { description, apply_delay, device: Mutex::new(Device::default()) }
    }

    async fn latency(&self) {
        if !self.apply_delay.is_zero() {
            tokio::time::sleep(self.apply_delay).await;
        }
    }
}

#[async_trait]
impl DpuBackend for SimDpuBackend {
    async fn hardware(&self) -> Result<DpuDescription, DriverError> {
        Ok(self.description.clone())
    }

    async fn vni_attach(&self, vni: u32) -> Result<(), DriverError> {
        lock(&self.device).vnis.insert(vni);
        Ok(())
    }

    async fn vni_detach(&self, vni: u32) -> Result<(), DriverError> {
        lock(&self.device).vnis.remove(&vni);
        Ok(())
    }

    async fn port_attach(&self, spec: &PortSpec) -> Result<(), DriverError> {
        self.latency().await;
        let mut device = lock(&self.device);
        if !device.vnis.contains(&spec.vni) {
            return Err(DriverError::Internal(format!(
                "VNI {} has no bridge on this DPU; the manager must attach it first",
                spec.vni
            )));
        }
        let rules = device.ports.get(&spec.port_id).map(|(_, r)| r.clone()).unwrap_or_default();
        device.ports.insert(spec.port_id.clone(), (spec.vni, rules));
        Ok(())
    }

    async fn port_detach(&self, port_id: &str) -> Result<(), DriverError> {
        self.latency().await;
        lock(&self.device).ports.remove(port_id);
        Ok(())
    }

    async fn rules_apply(&self, port_id: &str, rules: &[SecurityRule]) -> Result<(), DriverError> {
        match lock(&self.device).ports.get_mut(port_id) {
            Some((_, applied)) => {
                *applied = rules.to_vec();
                Ok(())
            }
            None => Err(DriverError::Internal(format!(
                "port {port_id} is not attached; the manager must attach it first"
            ))),
        }
    }
}

/// A simulated DPU: its manager over the sim backend, and that backend's fault plan.
/// Cloning gives another handle to the same DPU; it derefs to its [`DpuManager`].
#[derive(Clone)]
pub struct SimDpu {
    manager: DpuManager,
    faults: FaultPlan<DpuOp>,
}

impl SimDpu {
    pub fn new(description: DpuDescription, options: SimDpuOptions) -> Self {
        let faults = FaultPlan::new();
        let sim = SimDpuBackend::new(description.clone(), options.apply_delay);
        let backend = Arc::new(FaultyBackend::new(sim, faults.clone()));
        SimDpu { manager: DpuManager::new(description, backend, options.event_capacity), faults }
    }

    /// This DPU's fault plan; rules take effect on the next backend operation.
    pub fn faults(&self) -> &FaultPlan<DpuOp> {
        &self.faults
    }

    pub fn manager(&self) -> &DpuManager {
        &self.manager
    }
}

impl Deref for SimDpu {
    type Target = DpuManager;

    fn deref(&self) -> &DpuManager {
        &self.manager
    }
}
