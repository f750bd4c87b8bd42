//! [`SimHostBackend`]: a simulated GPU server's device layer, in memory: which domains are
//! defined and running and which partitions are active. It refuses what real hardware would
//! (starting an undefined domain, undefining a running one, a partition that is not in the
//! table) and nothing else: the rules live in the manager.
//!
//! [`SimHost`] is a simulated host as tests and the simulated fleet hold it: a
//! [`HostManager`] over this backend wrapped in a [`FaultyBackend`], and its fault plan.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use agent_common::{DriverError, FaultPlan, lock};

use super::faulty::FaultyBackend;
use super::sim_console::SimConsoles;
use super::{HostBackend, HostOp};
use crate::console::ConsoleSession;
use crate::manager::{HostManager, HostOptions, HostSnapshot};
use crate::model::{HostDescription, Partition, VmSpec, VmState};

/// Cloning gives another handle to the same device.
#[derive(Clone)]
pub struct SimHostBackend {
    description: HostDescription,
    device: Arc<Mutex<Device>>,
    consoles: SimConsoles,
}

#[derive(Default)]
struct Device {
    /// Defined domains, and whether each runs.
    domains: BTreeMap<String, (VmSpec, bool)>,
    partitions: BTreeSet<u32>,
}

impl Device {
    /// The device a host in `snapshot` has: every VM's domain defined, running where the
    /// guest was up (and a resumed transition expects it so), and the active partitions.
    fn from_snapshot(snapshot: &HostSnapshot) -> Device {
        let runs =
            |state| matches!(state, VmState::Running | VmState::ShuttingDown | VmState::Rebooting);
        Device {
            domains: snapshot
                .vms
                .iter()
                .map(|vm| (vm.spec.vm_id.clone(), (vm.spec.clone(), runs(vm.state))))
                .collect(),
            partitions: snapshot.partitions.keys().copied().collect(),
        }
    }
}

impl SimHostBackend {
    /// A host with the given hardware, no domains and no active partitions.
    pub fn new(description: HostDescription) -> Self {
        SimHostBackend {
            description,
            device: Arc::new(Mutex::new(Device::default())),
            consoles: SimConsoles::default(),
        }
    }

    /// Whether domain `vm_id` is defined (`Some`) and running (`Some(true)`).
    pub fn domain_running(&self, vm_id: &str) -> Option<bool> {
        lock(&self.device).domains.get(vm_id).map(|(_, running)| *running)
    }

    fn known(&self, partition: &Partition) -> Result<(), DriverError> {
        if self.description.partition(partition.id).is_some() {
            return Ok(());
        }
        Err(DriverError::Internal(format!(
            "Fabric Manager has no partition {}; the manager asked for one outside the table",
            partition.id
        )))
    }
}

#[async_trait]
impl HostBackend for SimHostBackend {
    async fn hardware(&self) -> Result<HostDescription, DriverError> {
        Ok(self.description.clone())
    }

    async fn images(&self) -> Result<Option<Vec<String>>, DriverError> {
        // A simulated disk can be "copied" from any image the catalog names.
        Ok(None)
    }

    async fn partition_activate(&self, partition: &Partition) -> Result<(), DriverError> {
        self.known(partition)?;
        lock(&self.device).partitions.insert(partition.id);
        Ok(())
    }

    async fn partition_deactivate(&self, partition: &Partition) -> Result<(), DriverError> {
        self.known(partition)?;
        lock(&self.device).partitions.remove(&partition.id);
        Ok(())
    }

    async fn domain_define(&self, spec: &VmSpec) -> Result<(), DriverError> {
        let mut device = lock(&self.device);
        let running = device.domains.get(&spec.vm_id).is_some_and(|(_, running)| *running);
        device.domains.insert(spec.vm_id.clone(), (spec.clone(), running));
        Ok(())
    }

    async fn domain_start(&self, vm_id: &str) -> Result<(), DriverError> {
        match lock(&self.device).domains.get_mut(vm_id) {
            Some((spec, running)) => {
                if !*running {
                    self.consoles.boot(spec);
                }
                *running = true;
                Ok(())
            }
            None => Err(DriverError::FailedPrecondition(format!(
                "domain {vm_id} is not defined; define it first"
            ))),
        }
    }

    async fn domain_stop(&self, vm_id: &str) -> Result<(), DriverError> {
        if let Some((_, running)) = lock(&self.device).domains.get_mut(vm_id) {
            if *running {
                self.consoles.power_off(vm_id);
            }
            *running = false;
        }
        Ok(())
    }

    async fn domain_reboot(&self, vm_id: &str) -> Result<(), DriverError> {
        match lock(&self.device).domains.get(vm_id) {
            Some((spec, true)) => {
                self.consoles.power_off(vm_id);
                self.consoles.boot(spec);
                Ok(())
            }
            _ => Err(DriverError::FailedPrecondition(format!(
                "domain {vm_id} is not running; start it first"
            ))),
        }
    }

    async fn domain_power_off(&self, vm_id: &str) -> Result<(), DriverError> {
        // No guest to ask in memory: the same as a stop.
        self.domain_stop(vm_id).await
    }

    async fn domain_undefine(&self, vm_id: &str) -> Result<(), DriverError> {
        let mut device = lock(&self.device);
        if device.domains.get(vm_id).is_some_and(|(_, running)| *running) {
            return Err(DriverError::FailedPrecondition(format!(
                "domain {vm_id} is running; stop it first"
            )));
        }
        device.domains.remove(vm_id);
        self.consoles.remove(vm_id);
        Ok(())
    }

    async fn console(&self, vm_id: &str) -> Result<ConsoleSession, DriverError> {
        // A host restored from its state file has running domains but no console history
        // yet: they print their boot lines again, as a guest on a restarted simulator would.
        if let Some((spec, true)) = lock(&self.device).domains.get(vm_id) {
            self.consoles.boot_unless_printed(spec);
        }
        self.consoles.open(vm_id)
    }
}

/// A simulated host: its manager over the sim backend, and the fault plan of that backend.
/// Cloning gives another handle to the same host; it derefs to its [`HostManager`].
#[derive(Clone)]
pub struct SimHost {
    manager: HostManager,
    faults: FaultPlan<HostOp>,
    device: SimHostBackend,
}

impl SimHost {
    /// A host with the given hardware (trusted: the topology or config that gave it was
    /// validated), no VMs, and GPU health as the description says.
    pub fn new(description: HostDescription, options: HostOptions) -> Self {
        let faults = FaultPlan::new();
        let device = SimHostBackend::new(description.clone());
        let backend = FaultyBackend::new(device.clone(), faults.clone());
        SimHost {
            manager: HostManager::new(description, Arc::new(backend), options),
            faults,
            device,
        }
    }

    /// The simulated device under the manager, to check what it was told.
    pub fn device(&self) -> &SimHostBackend {
        &self.device
    }

    /// This host's fault plan; rules take effect on the next backend operation.
    pub fn faults(&self) -> &FaultPlan<HostOp> {
        &self.faults
    }

    pub fn manager(&self) -> &HostManager {
        &self.manager
    }

    /// Restores a new host from `snapshot` (see [`HostManager::restore`]). The simulated
    /// device is derived from the snapshot rather than stored: it holds nothing the
    /// manager's state does not imply. Refused with a sentence, nothing changed.
    pub fn restore(&self, snapshot: &HostSnapshot) -> Result<usize, String> {
        // The device first: resumed timers may fire at once and must find their domains.
        let previous =
            std::mem::replace(&mut *lock(&self.device.device), Device::from_snapshot(snapshot));
        self.manager.restore(snapshot).inspect_err(|_| *lock(&self.device.device) = previous)
    }
}

impl Deref for SimHost {
    type Target = HostManager;

    fn deref(&self) -> &HostManager {
        &self.manager
    }
}
