//! [`HostManager`]: the host agent's domain logic, the same over every [`HostBackend`].
//!
//! It keeps the desired state of every VM (its spec and generation), refuses stale and
//! conflicting ensures ([`agent_common::generation`]), remembers removals (tombstones), owns
//! the allocation ledger and partition holders ([`crate::allocation`]), moves each VM through
//! its states and publishes every change on the watch streams. It tells the backend what to
//! do on the device and never holds its state lock across a backend call:
//!
//! - `EnsureVm`: checks, activates the partition if it is not active for the VM, defines the
//!   domain, checks again and commits (`PROVISIONING`); after the provision delay (plus up to
//!   `jitter` of it, derived from the seed and VM id so runs repeat) it starts the domain:
//!   `RUNNING`, or `FAILED` with the backend's error;
//! - `RemoveVm`: stops the domain (an error fails the call, nothing changed), `STOPPING`;
//!   after the remove delay it undefines the domain, deactivates the partition and frees
//!   everything: `DELETED`. A failed undefine is retried after the delay again.
//! - `SetVmPower` ([`HostManager::vm_power`]): `RUNNING` → `SHUTTING_DOWN` → `STOPPED` (stop
//!   after the remove delay, power off at once), `STOPPED` → `STARTING` → `RUNNING` and
//!   `RUNNING` → `REBOOTING` → `RUNNING` (after the provision delay); the VM keeps everything
//!   it holds throughout.
//! - `ActivatePartition`/`DeactivatePartition`: checked against the ledger, then done on the
//!   device, then recorded.
//!
//! A GPU's health changes through [`HostManager::set_gpu_health`] (an XID error reported by
//! the device layer, or a test); a GPU that turns FAILED under a VM fails that VM, stopped or
//! not (unless it is already being removed).
//!
//! [`HostManager::snapshot`] takes all of this as a serializable [`HostSnapshot`] and
//! [`HostManager::restore`] rebuilds it in a new manager.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::broadcast;
use tracing::{debug, info, warn};

use agent_common::generation::{Applied, Tombstones};
use agent_common::hash::unit_fraction;
use agent_common::watch::EventHub;
use agent_common::{
    DriverError, EnsureAction, EventStream, decide_ensure, lock, snapshot_then_changes,
};

mod snapshot;

pub use snapshot::{HostSnapshot, SNAPSHOT_VERSION, Tombstone, VmSnapshot};

use crate::allocation::{Claim, Ledger, claim_for};
use crate::backend::HostBackend;
use crate::console::ConsoleSession;
use crate::model::{
    GpuHealth, GpuStatus, HostDescription, HostEvent, HostInventory, Partition, PartitionStatus,
    PowerAction, VmSpec, VmState, VmStatus,
};

/// Timing of the VM state machine.
#[derive(Clone, Debug)]
pub struct HostOptions {
    /// How long a new VM stays `PROVISIONING` before its domain is started; also how long
    /// `STARTING` and `REBOOTING` last before the domain is started or rebooted.
    pub provision_delay: Duration,
    /// How long a removed VM stays `STOPPING` before its domain is undefined; also how long
    /// `SHUTTING_DOWN` (STOP) lasts before the domain is stopped.
    pub remove_delay: Duration,
    /// Up to this fraction of a delay is added, the same for the same seed and VM (0..=1).
    pub jitter: f64,
    pub seed: u64,
    /// How many events a watcher may fall behind before it is resynchronised.
    pub event_capacity: usize,
}

impl HostOptions {
    /// For a backend on real hardware: no simulated delays, the operations take their own
    /// time.
    pub fn real_hardware() -> Self {
        HostOptions {
            provision_delay: Duration::ZERO,
            remove_delay: Duration::ZERO,
            jitter: 0.0,
            ..HostOptions::default()
        }
    }
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            provision_delay: Duration::from_millis(1500),
            remove_delay: Duration::from_millis(500),
            jitter: 0.1,
            seed: 0,
            event_capacity: 1024,
        }
    }
}

/// One host's manager. Cloning gives another handle to the same host.
#[derive(Clone)]
pub struct HostManager {
    inner: Arc<Inner>,
}

struct Inner {
    description: HostDescription,
    options: HostOptions,
    backend: Arc<dyn HostBackend>,
    state: Mutex<HostState>,
}

struct HostState {
    vms: BTreeMap<String, VmRecord>,
    /// Removed VMs: the generation of the removal, so late ensures stay refused.
    removed: Tombstones,
    ledger: Ledger,
    gpu_health: BTreeMap<u32, (GpuHealth, String)>,
    events: EventHub<HostEvent>,
}

struct VmRecord {
    spec: VmSpec,
    state: VmState,
    message: String,
    /// Bumped on every transition, so a timer armed for an older transition does nothing.
    epoch: u64,
    /// The power transition in flight; meaningful only in `SHUTTING_DOWN`, `STARTING` and
    /// `REBOOTING` (to tell a graceful shutdown from a power-off).
    power: Option<PowerOp>,
}

impl VmRecord {
    fn status(&self) -> VmStatus {
        VmStatus {
            vm_id: self.spec.vm_id.clone(),
            state: self.state,
            generation: self.spec.generation,
            message: self.message.clone(),
        }
    }
}

/// What an ensure comes to, decided under the state lock.
enum Plan {
    /// Nothing to do on the device: the current status (already updated if needed).
    Done(VmStatus),
    /// Provision: the claim to commit, and the epoch of the VM's previous record.
    Provision { claim: Claim, previous_epoch: u64 },
}

#[derive(Clone, Copy, Debug)]
enum Transition {
    Boot,
    Teardown,
    Power(PowerOp),
}

/// A power transition of `SetVmPower`: the device operation and the states around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PowerOp {
    Shutdown,
    PowerOff,
    Start,
    Reboot,
}

impl PowerOp {
    /// The state the VM is in while the device works.
    fn transitional(self) -> VmState {
        match self {
            PowerOp::Shutdown | PowerOp::PowerOff => VmState::ShuttingDown,
            PowerOp::Start => VmState::Starting,
            PowerOp::Reboot => VmState::Rebooting,
        }
    }

    /// The state the VM ends in when the device did it.
    fn done(self) -> VmState {
        match self {
            PowerOp::Shutdown | PowerOp::PowerOff => VmState::Stopped,
            PowerOp::Start | PowerOp::Reboot => VmState::Running,
        }
    }

    /// The state the VM ends in when the device refused. A failed start leaves a domain
    /// that does not run: `FAILED`, as for a failed boot. A failed stop, power-off or reboot
    /// leaves the guest as it was, running: `RUNNING`, with the error in the message, so the
    /// control plane can retry (a `FAILED` VM only takes RemoveVm or a re-ensure).
    fn refused(self) -> VmState {
        match self {
            PowerOp::Start => VmState::Failed,
            PowerOp::Shutdown | PowerOp::PowerOff | PowerOp::Reboot => VmState::Running,
        }
    }

    fn action(self) -> PowerAction {
        match self {
            PowerOp::Shutdown => PowerAction::Stop,
            PowerOp::PowerOff => PowerAction::PowerOff,
            PowerOp::Start => PowerAction::Start,
            PowerOp::Reboot => PowerAction::Reboot,
        }
    }

    fn delay(self, options: &HostOptions) -> Duration {
        match self {
            PowerOp::Shutdown => options.remove_delay,
            // Pulling the plug does not wait.
            PowerOp::PowerOff => Duration::ZERO,
            PowerOp::Start | PowerOp::Reboot => options.provision_delay,
        }
    }

    async fn run(self, backend: &dyn HostBackend, vm_id: &str) -> Result<(), DriverError> {
        match self {
            PowerOp::Shutdown => backend.domain_stop(vm_id).await,
            PowerOp::PowerOff => backend.domain_power_off(vm_id).await,
            PowerOp::Start => backend.domain_start(vm_id).await,
            PowerOp::Reboot => backend.domain_reboot(vm_id).await,
        }
    }
}

/// What `action` does to a VM in `state` with `in_flight` power transition: `None` answers
/// the current state (an idempotent repeat), `Some` begins that transition.
fn decide_power(
    vm_id: &str,
    action: PowerAction,
    state: VmState,
    in_flight: Option<PowerOp>,
) -> Result<Option<PowerOp>, DriverError> {
    use PowerAction as A;
    use VmState as S;
    let busy = |until: &str| {
        Err(DriverError::Unavailable(format!(
            "VM {vm_id} is {state}; retry {action} once Watch reports it {until}"
        )))
    };
    match (action, state) {
        (_, S::Provisioning | S::Stopping | S::Failed | S::Deleted) => {
            Err(DriverError::FailedPrecondition(format!(
                "VM {vm_id} is {state}; {action} applies only to a VM that has been RUNNING                  (remove or re-ensure a FAILED VM)"
            )))
        }
        (A::Start, S::Running | S::Starting | S::Rebooting) => Ok(None),
        (A::Start, S::Stopped) => Ok(Some(PowerOp::Start)),
        (A::Start, S::ShuttingDown) => busy("STOPPED"),
        (A::Stop, S::Stopped | S::ShuttingDown) => Ok(None),
        (A::Stop, S::Running) => Ok(Some(PowerOp::Shutdown)),
        (A::PowerOff, S::Stopped) => Ok(None),
        (A::PowerOff, S::ShuttingDown) if in_flight == Some(PowerOp::PowerOff) => Ok(None),
        (A::PowerOff, S::Running | S::ShuttingDown) => Ok(Some(PowerOp::PowerOff)),
        (A::Stop | A::PowerOff, S::Starting | S::Rebooting) => busy("RUNNING"),
        (A::Reboot, S::Rebooting) => Ok(None),
        (A::Reboot, S::Running) => Ok(Some(PowerOp::Reboot)),
        (A::Reboot, S::Starting | S::ShuttingDown) => busy("RUNNING or STOPPED"),
        (A::Reboot, S::Stopped) => Err(DriverError::FailedPrecondition(format!(
            "VM {vm_id} is STOPPED; send START to power it on"
        ))),
    }
}

impl fmt::Debug for HostManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostManager")
            .field("host_id", &self.inner.description.host_id)
            .finish_non_exhaustive()
    }
}

impl HostManager {
    /// A manager for the host `description` describes (read from `backend` at start), with
    /// no VMs and GPU health as the description says.
    pub fn new(
        description: HostDescription,
        backend: Arc<dyn HostBackend>,
        options: HostOptions,
    ) -> Self {
        let gpu_health = description
            .gpus
            .iter()
            .map(|gpu| (gpu.module_id, (gpu.health, gpu.health_message.clone())))
            .collect();
        let events = EventHub::new(options.event_capacity);
        HostManager {
            inner: Arc::new(Inner {
                description,
                options,
                backend,
                state: Mutex::new(HostState {
                    vms: BTreeMap::new(),
                    removed: Tombstones::default(),
                    ledger: Ledger::default(),
                    gpu_health,
                    events,
                }),
            }),
        }
    }

    pub fn host_id(&self) -> &str {
        &self.inner.description.host_id
    }

    pub fn description(&self) -> &HostDescription {
        &self.inner.description
    }

    /// Changes a GPU's health, as an XID error or a repair would, and reports it on the watch
    /// stream. A GPU that turns FAILED under a VM turns that VM FAILED too, also a stopped
    /// one (it could not start again); a VM being removed is left to its removal.
    /// Errors: `InvalidArgument` if the host has no GPU with this module id.
    pub fn set_gpu_health(
        &self,
        module_id: u32,
        health: GpuHealth,
        message: impl Into<String>,
    ) -> Result<(), DriverError> {
        let message = message.into();
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        let Some(current) = state.gpu_health.get_mut(&module_id) else {
            return Err(DriverError::InvalidArgument(format!(
                "host {} has no GPU module {module_id}; use module ids from its inventory",
                self.host_id()
            )));
        };
        if *current == (health, message.clone()) {
            return Ok(());
        }
        *current = (health, message.clone());
        info!(host_id = %self.host_id(), module_id, %health, %message, "GPU health changed");
        state.events.publish(HostEvent::Gpu(GpuStatus {
            module_id,
            health,
            message: message.clone(),
        }));

        if health == GpuHealth::Failed
            && let Some(owner) = state.ledger.gpu_owner(module_id).map(str::to_owned)
            && let Some(vm) = state.vms.get_mut(&owner)
            && !matches!(vm.state, VmState::Stopping | VmState::Failed | VmState::Deleted)
        {
            vm.state = VmState::Failed;
            vm.epoch += 1;
            vm.message = format!(
                "GPU module {module_id} failed ({message}); remove the VM or re-ensure it on \
                 healthy GPUs"
            );
            info!(host_id = %self.host_id(), vm_id = %owner, "VM failed with its GPU");
            state.events.publish(HostEvent::Vm(vm.status()));
        }
        Ok(())
    }

    /// The status of a VM this host holds.
    pub fn vm_status(&self, vm_id: &str) -> Option<VmStatus> {
        lock(&self.inner.state).vms.get(vm_id).map(VmRecord::status)
    }

    /// How many VMs this host holds (in any state but deleted).
    /// The spec a VM was last ensured with (what its domain was defined from).
    pub fn vm_spec(&self, vm_id: &str) -> Option<VmSpec> {
        lock(&self.inner.state).vms.get(vm_id).map(|vm| vm.spec.clone())
    }

    pub fn vm_count(&self) -> usize {
        lock(&self.inner.state).vms.len()
    }

    /// Ends every watch stream (after the events already sent) and refuses new ones; used
    /// when the agent shuts down, so open streams do not hold the server up.
    pub fn shutdown(&self) {
        lock(&self.inner.state).events.close();
    }

    /// The host's hardware, current GPU health, free hugepages and active partitions.
    /// Errors: `Unavailable` when the device layer cannot be read right now (retry).
    pub async fn inventory(&self) -> Result<HostInventory, DriverError> {
        let description = self.inner.backend.hardware().await?;
        let images = self.inner.backend.images().await?;
        let state = lock(&self.inner.state);
        Ok(HostInventory {
            images,
            hugepages_1g_free: state.ledger.hugepages_free(&description),
            description,
            gpu_health: state.gpu_health.clone(),
            active_partitions: state.ledger.active_partitions(),
        })
    }

    /// Creates, adopts or updates the VM `spec.vm_id`, and returns its status at once: a new
    /// VM is `PROVISIONING` and becomes `RUNNING` later, reported on [`watch`](Self::watch).
    ///
    /// Idempotent by `vm_id`: the same spec at the same generation returns the VM's current
    /// status and changes nothing. A higher generation replaces the spec (re-provisioning the
    /// VM if anything but the generation changed, or if it had FAILED).
    ///
    /// Errors, all the caller's fault unless noted:
    /// - `InvalidArgument`: the spec is malformed or names GPUs, partitions, NICs, CPUs or
    ///   NUMA nodes this host does not have, or places them on nodes the spec does not list;
    /// - `FailedPrecondition`: a lower generation than applied, a different spec at the same
    ///   generation, a partition overlapping one active for another VM, a NIC or CPU held by
    ///   another VM, a GPU with FAILED health, a VM removed at this generation or later;
    /// - `ResourceExhausted`: not enough free 1 GiB hugepages on a listed NUMA node;
    /// - `Unavailable`: the VM is still being removed, or the device is busy (retry);
    /// - `Internal`: the backend misbehaved (an operator must look).
    pub async fn vm_ensure(&self, spec: VmSpec) -> Result<VmStatus, DriverError> {
        spec.check_shape()?;
        let runtime = runtime()?;
        let host = &self.inner.description;
        let backend = &self.inner.backend;
        let claim = match self.plan(&spec)? {
            Plan::Done(status) => return Ok(status),
            Plan::Provision { claim, .. } => claim,
        };
        // On the device first, so a refusal there changes nothing here.
        let activated = match claim.partition.and_then(|id| host.partition(id)) {
            Some(partition)
                if !lock(&self.inner.state).ledger.partition_status(partition.id).active =>
            {
                backend.partition_activate(partition).await?;
                Some(partition)
            }
            _ => None,
        };
        if let Err(err) = backend.domain_define(&spec).await {
            if let Some(partition) = activated {
                self.undo_activate(partition).await;
            }
            return Err(err);
        }

        // Meanwhile another call may have changed the picture: decide again, then commit.
        let vm_id = spec.vm_id.clone();
        let decided = {
            let mut guard = lock(&self.inner.state);
            let state = &mut *guard;
            match Self::plan_locked(host, state, &spec) {
                Ok(Plan::Done(status)) => return Ok(status),
                Ok(Plan::Provision { claim, previous_epoch }) => {
                    state.ledger.commit(&vm_id, claim);
                    let vm = VmRecord {
                        spec,
                        state: VmState::Provisioning,
                        message: String::new(),
                        epoch: previous_epoch + 1,
                        power: None,
                    };
                    let status = vm.status();
                    let epoch = vm.epoch;
                    state.vms.insert(vm_id.clone(), vm);
                    state.events.publish(HostEvent::Vm(status.clone()));
                    Ok((status, epoch))
                }
                Err(err) => Err((err, state.vms.contains_key(&vm_id))),
            }
        };
        let (status, epoch) = match decided {
            Ok(committed) => committed,
            Err((err, held)) => {
                if !held {
                    self.undo_define(&vm_id).await;
                }
                if let Some(partition) = activated {
                    self.undo_activate(partition).await;
                }
                return Err(err);
            }
        };

        info!(host_id = %host.host_id, vm_id = %status.vm_id, generation = status.generation,
              "VM provisioning");
        self.schedule(&runtime, status.vm_id.clone(), epoch, Transition::Boot);
        Ok(status)
    }

    fn plan(&self, spec: &VmSpec) -> Result<Plan, DriverError> {
        Self::plan_locked(&self.inner.description, &mut lock(&self.inner.state), spec)
    }

    /// Decides what ensuring `spec` takes. A newer generation of an unchanged VM is applied
    /// here and now (nothing to do on the device).
    fn plan_locked(
        host: &HostDescription,
        state: &mut HostState,
        spec: &VmSpec,
    ) -> Result<Plan, DriverError> {
        state.removed.check_ensure("VM", &spec.vm_id, spec.generation)?;
        let existing = state.vms.get(&spec.vm_id);
        if let Some(vm) = existing
            && vm.state == VmState::Stopping
        {
            return Err(DriverError::Unavailable(format!(
                "VM {} is being removed; retry once RemoveVm or Watch reports it DELETED",
                spec.vm_id
            )));
        }
        let applied = existing
            .map(|vm| Applied { generation: vm.spec.generation, same_spec: vm.spec.same_as(spec) });
        let action = decide_ensure("VM", &spec.vm_id, applied, spec.generation)?;
        let (previous_epoch, reprovision) = match existing {
            None => (0, true),
            Some(vm) => (vm.epoch, !vm.spec.same_as(spec) || vm.state == VmState::Failed),
        };
        match (action, state.vms.get_mut(&spec.vm_id)) {
            (EnsureAction::Unchanged, Some(vm)) => return Ok(Plan::Done(vm.status())),
            (EnsureAction::Replace, Some(vm)) if !reprovision => {
                if vm.spec.generation != spec.generation {
                    vm.spec = spec.clone();
                    state.events.publish(HostEvent::Vm(vm.status()));
                }
                return Ok(Plan::Done(vm.status()));
            }
            _ => {}
        }
        // Redefining a domain the device is powering on or off would race with that task.
        if let Some(vm) = state.vms.get(&spec.vm_id)
            && matches!(vm.state, VmState::ShuttingDown | VmState::Starting | VmState::Rebooting)
        {
            return Err(DriverError::Unavailable(format!(
                "VM {} is {}; retry the changed spec once Watch reports it STOPPED or RUNNING",
                spec.vm_id, vm.state
            )));
        }
        let claim = claim_for(host, &state.gpu_health, spec)?;
        state.ledger.check(host, &spec.vm_id, &claim)?;
        Ok(Plan::Provision { claim, previous_epoch })
    }

    /// Deactivates on the device a partition activated for a call that was then refused,
    /// unless the ledger meanwhile holds it active (for a call that won the race).
    async fn undo_activate(&self, partition: &Partition) {
        if lock(&self.inner.state).ledger.partition_status(partition.id).active {
            return;
        }
        if let Err(err) = self.inner.backend.partition_deactivate(partition).await {
            warn!(host_id = %self.host_id(), partition_id = partition.id, %err,
                  "cannot deactivate a partition activated for a refused ensure");
        }
    }

    async fn undo_define(&self, vm_id: &str) {
        if let Err(err) = self.inner.backend.domain_undefine(vm_id).await {
            warn!(host_id = %self.host_id(), vm_id, %err,
                  "cannot undefine a domain defined for a refused ensure");
        }
    }

    /// Activates Fabric Manager partition `partition_id` for VM `vm_id` (before the VM is
    /// ensured; `vm_ensure` activates a VM's partition itself if this was not called).
    ///
    /// Idempotent: a partition already active for `vm_id` returns its status. `generation` is
    /// the VM's: a VM removed at a generation at or above it is refused, like `vm_ensure`.
    /// Errors, all the caller's fault unless noted:
    /// - `InvalidArgument`: the partition is not in the host's table;
    /// - `FailedPrecondition`: it (or an overlapping one) is active for another VM, one of
    ///   its GPUs has FAILED health, or the VM was removed at this generation or later;
    /// - `Unavailable`: the device is busy (retry).
    pub async fn partition_activate(
        &self,
        vm_id: &str,
        partition_id: u32,
        generation: u64,
    ) -> Result<PartitionStatus, DriverError> {
        let host = &self.inner.description;
        // A dry run on a copy of the ledger: the device is told before the ledger records.
        let changes = |state: &HostState| -> Result<bool, DriverError> {
            state.removed.check_ensure("VM", vm_id, generation)?;
            let mut ledger = state.ledger.clone();
            let before = ledger.partition_status(partition_id);
            Ok(ledger.activate(host, &state.gpu_health, partition_id, vm_id)? != before)
        };
        if !changes(&lock(&self.inner.state))? {
            return Ok(lock(&self.inner.state).ledger.partition_status(partition_id));
        }
        let partition = host.partition(partition_id).ok_or_else(|| {
            DriverError::Internal(format!("partition {partition_id} vanished from the table"))
        })?;
        self.inner.backend.partition_activate(partition).await?;
        let recorded = {
            let mut guard = lock(&self.inner.state);
            let state = &mut *guard;
            state
                .removed
                .check_ensure("VM", vm_id, generation)
                .and_then(|()| state.ledger.activate(host, &state.gpu_health, partition_id, vm_id))
        };
        match recorded {
            Ok(status) => {
                info!(host_id = %self.host_id(), vm_id, partition_id, "partition active");
                Ok(status)
            }
            Err(err) => {
                self.undo_activate(partition).await;
                Err(err)
            }
        }
    }

    /// Deactivates partition `partition_id` if it is active for `vm_id`. Idempotent: an
    /// inactive partition returns `active = false`; one active for another VM is left alone
    /// and returned with that VM's id (never an error, so an undo that lost a race succeeds
    /// without touching someone else's partition).
    /// Errors: `InvalidArgument` for a partition not in the table (caller's fault);
    /// `FailedPrecondition` while VM `vm_id` is still defined on it (remove it first);
    /// `Unavailable` when the device is busy (retry).
    pub async fn partition_deactivate(
        &self,
        vm_id: &str,
        partition_id: u32,
    ) -> Result<PartitionStatus, DriverError> {
        let host = &self.inner.description;
        let dry_run = |state: &HostState| {
            let mut ledger = state.ledger.clone();
            ledger.deactivate(host, partition_id, vm_id)
        };
        let before = lock(&self.inner.state).ledger.partition_status(partition_id);
        let after = dry_run(&lock(&self.inner.state))?;
        if before == after {
            return Ok(after);
        }
        if let Some(partition) = host.partition(partition_id) {
            self.inner.backend.partition_deactivate(partition).await?;
        }
        let status = lock(&self.inner.state).ledger.deactivate(host, partition_id, vm_id)?;
        debug!(host_id = %self.host_id(), vm_id, partition_id, "partition inactive");
        Ok(status)
    }

    /// Powers VM `vm_id` on or off or reboots it (`SetVmPower`), and returns at once with the
    /// transitional state (`SHUTTING_DOWN`, `STARTING`, `REBOOTING`); the device works in
    /// the background and [`watch`](Self::watch) reports the end: `STOPPED` or `RUNNING`.
    /// STOP asks the guest to shut down (the backend powers it off after its timeout),
    /// POWER_OFF pulls the plug, also during a STOP. The VM keeps its GPUs, NICs, CPUs,
    /// hugepages, partition and disk throughout: `vm_ensure` of the same spec answers
    /// `STOPPED` for a stopped VM (it does not boot it) and `vm_remove` works in every state.
    ///
    /// Idempotent: STOP of a stopped or shutting-down VM, POWER_OFF of a stopped one or one
    /// being powered off, START of a running, starting or rebooting one and REBOOT of a
    /// rebooting one answer the current state and change nothing.
    ///
    /// When the device refuses, the watch stream says so in `message` (cleared by the next
    /// transition): a failed START ends `FAILED` (the domain does not run: remove the VM or
    /// re-ensure it at a higher generation); a failed STOP, POWER_OFF or REBOOT ends
    /// `RUNNING` (the guest still runs: send it again).
    ///
    /// Errors, all the caller's fault unless noted:
    /// - `NotFound`: the host holds no VM `vm_id` (never ensured, or removed);
    /// - `FailedPrecondition`: the VM is provisioning, being removed or failed, or REBOOT of
    ///   a stopped VM (START it);
    /// - `Unavailable`: another power transition is under way (START while shutting down;
    ///   STOP, POWER_OFF or REBOOT while starting or rebooting; REBOOT while shutting down):
    ///   retry once the watch stream reports `STOPPED` or `RUNNING`.
    pub async fn vm_power(
        &self,
        vm_id: &str,
        action: PowerAction,
    ) -> Result<VmStatus, DriverError> {
        let runtime = runtime()?;
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        let Some(vm) = state.vms.get_mut(vm_id) else {
            return Err(DriverError::NotFound(format!(
                "host {} holds no VM {vm_id}; ensure it first (or it was removed)",
                self.host_id()
            )));
        };
        let before = vm.status();
        let Some(power) = decide_power(vm_id, action, vm.state, vm.power)? else {
            return Ok(before);
        };
        vm.state = power.transitional();
        vm.message = String::new();
        vm.epoch += 1;
        vm.power = Some(power);
        let status = vm.status();
        let epoch = vm.epoch;
        // POWER_OFF during a STOP stays SHUTTING_DOWN: nothing new to report.
        if status != before {
            state.events.publish(HostEvent::Vm(status.clone()));
        }
        drop(guard);

        info!(host_id = %self.host_id(), vm_id, %action, state = %status.state, "VM power");
        self.schedule(&runtime, vm_id.to_owned(), epoch, Transition::Power(power));
        Ok(status)
    }

    /// A session on the VM's serial console (see [`crate::console`]). Errors: `NotFound` for
    /// a VM this host does not hold; `FailedPrecondition` before its domain first started.
    pub async fn console(&self, vm_id: &str) -> Result<ConsoleSession, DriverError> {
        if !lock(&self.inner.state).vms.contains_key(vm_id) {
            return Err(DriverError::NotFound(format!(
                "host {} holds no VM {vm_id}; it was never launched here or was removed",
                self.host_id()
            )));
        }
        self.inner.backend.console(vm_id).await
    }

    /// Stops the VM's domain at once, then (after the remove delay) undefines it,
    /// deactivates its partition and frees everything it held. Returns `STOPPING` while that
    /// happens (reported as `DELETED` on the watch stream when done) and `DELETED` for a VM
    /// this host does not hold.
    ///
    /// Works in every state, stopped or in a power transition too (that transition's task
    /// then does nothing). Idempotent: removing a stopping VM returns `STOPPING` again;
    /// removing an absent VM succeeds. A `generation` above 0 is remembered: a later `vm_ensure` of this id with a
    /// generation up to it is refused with `FailedPrecondition` (a late launch retry must not
    /// bring the VM back). Errors: `Unavailable` when the device is busy (retry; nothing
    /// changed); `Internal` when the backend misbehaved.
    pub async fn vm_remove(&self, vm_id: &str, generation: u64) -> Result<VmStatus, DriverError> {
        let runtime = runtime()?;
        {
            let mut state = lock(&self.inner.state);
            match state.vms.get(vm_id).map(VmRecord::status) {
                None => {
                    state.removed.record(vm_id, generation);
                    debug!(host_id = %self.host_id(), vm_id, "remove of an absent VM");
                    return Ok(VmStatus {
                        vm_id: vm_id.to_owned(),
                        state: VmState::Deleted,
                        generation: 0,
                        message: String::new(),
                    });
                }
                Some(status) if status.state == VmState::Stopping => {
                    state.removed.record(vm_id, generation);
                    return Ok(status);
                }
                Some(_) => {}
            }
        }
        self.inner.backend.domain_stop(vm_id).await?;

        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        state.removed.record(vm_id, generation);
        let Some(vm) = state.vms.get_mut(vm_id) else {
            return Ok(VmStatus {
                vm_id: vm_id.to_owned(),
                state: VmState::Deleted,
                generation: 0,
                message: String::new(),
            });
        };
        if vm.state == VmState::Stopping {
            return Ok(vm.status());
        }
        vm.state = VmState::Stopping;
        vm.message = String::new();
        vm.epoch += 1;
        let status = vm.status();
        let epoch = vm.epoch;
        state.events.publish(HostEvent::Vm(status.clone()));
        drop(guard);

        info!(host_id = %self.host_id(), vm_id, "VM stopping");
        self.schedule(&runtime, vm_id.to_owned(), epoch, Transition::Teardown);
        Ok(status)
    }

    /// The full current state (one `Vm` event per VM held, one `Gpu` event per GPU), then
    /// every change. Any number of subscribers; one that falls behind receives a fresh
    /// snapshot, preceded by `DELETED` for VMs that vanished meanwhile, instead of missing
    /// events. The stream ends when the agent shuts down.
    ///
    /// Errors: `Unavailable` when the agent is shutting down (retry).
    pub fn watch(&self) -> Result<EventStream<HostEvent>, DriverError> {
        let weak = Arc::downgrade(&self.inner);
        snapshot_then_changes(move || weak.upgrade()?.subscribe()).ok_or_else(|| {
            DriverError::Unavailable(format!(
                "host agent {} is shutting down; reconnect once it is back",
                self.host_id()
            ))
        })
    }

    /// Arms the timer that ends the VM's current transitional state.
    fn schedule(
        &self,
        runtime: &tokio::runtime::Handle,
        vm_id: String,
        epoch: u64,
        transition: Transition,
    ) {
        let options = &self.inner.options;
        let base = match transition {
            Transition::Boot => options.provision_delay,
            Transition::Teardown => options.remove_delay,
            Transition::Power(power) => power.delay(options),
        };
        let delay = jittered(base, options.jitter, options.seed, &vm_id, epoch);
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let manager = HostManager { inner };
            match transition {
                Transition::Boot => {
                    if !manager.inner.is_current(&vm_id, epoch, VmState::Provisioning) {
                        return;
                    }
                    let outcome = manager.inner.backend.domain_start(&vm_id).await;
                    manager.inner.finish_boot(&vm_id, epoch, outcome);
                }
                Transition::Teardown => manager.teardown(vm_id, epoch).await,
                Transition::Power(power) => manager.inner.power(&vm_id, epoch, power).await,
            }
        });
    }

    /// The end of `STOPPING`: stop (again: a boot timer that fired during the removal may
    /// have started the domain after `vm_remove` stopped it), undefine, deactivate the
    /// partition, free the rest.
    async fn teardown(&self, vm_id: String, epoch: u64) {
        let partition = {
            let state = lock(&self.inner.state);
            match state.vms.get(&vm_id) {
                Some(vm) if vm.epoch == epoch && vm.state == VmState::Stopping => {}
                _ => return,
            }
            state.ledger.claim(&vm_id).and_then(|c| c.partition)
        };
        let backend = &self.inner.backend;
        let mut outcome = backend.domain_stop(&vm_id).await;
        if outcome.is_ok() {
            outcome = backend.domain_undefine(&vm_id).await;
        }
        if outcome.is_ok()
            && let Some(partition) = partition.and_then(|id| self.inner.description.partition(id))
        {
            outcome = backend.partition_deactivate(partition).await;
        }
        if let Err(err) = outcome {
            warn!(host_id = %self.host_id(), vm_id, %err, "VM teardown failed; retrying");
            if let Ok(runtime) = runtime() {
                self.schedule(&runtime, vm_id, epoch, Transition::Teardown);
            }
            return;
        }
        self.inner.finish_teardown(&vm_id, epoch);
    }
}

/// `base` plus up to `jitter` of it, the same for the same seed, VM and epoch.
fn jittered(base: Duration, jitter: f64, seed: u64, vm_id: &str, epoch: u64) -> Duration {
    let jitter = if jitter.is_nan() { 0.0 } else { jitter.clamp(0.0, 1.0) };
    let fraction = unit_fraction(&[&seed.to_le_bytes(), vm_id.as_bytes(), &epoch.to_le_bytes()]);
    Duration::try_from_secs_f64(base.as_secs_f64() * (1.0 + jitter * fraction)).unwrap_or(base)
}

fn runtime() -> Result<tokio::runtime::Handle, DriverError> {
    tokio::runtime::Handle::try_current().map_err(|_| {
        DriverError::Internal(
            "the host manager was called outside a tokio runtime; run it inside one".into(),
        )
    })
}

impl Inner {
    /// Whether the VM is still in `state` at `epoch` (no later transition overtook a timer).
    fn is_current(&self, vm_id: &str, epoch: u64, state: VmState) -> bool {
        lock(&self.state).vms.get(vm_id).is_some_and(|vm| vm.epoch == epoch && vm.state == state)
    }

    fn finish_boot(&self, vm_id: &str, epoch: u64, outcome: Result<(), DriverError>) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(vm) = state.vms.get_mut(vm_id) else {
            return;
        };
        if vm.epoch != epoch || vm.state != VmState::Provisioning {
            return;
        }
        match outcome {
            Ok(()) => {
                vm.state = VmState::Running;
                info!(host_id = %self.description.host_id, vm_id, "VM running");
            }
            Err(err) => {
                vm.state = VmState::Failed;
                vm.message = err.to_string();
                info!(host_id = %self.description.host_id, vm_id, %err, "VM failed to boot");
            }
        }
        state.events.publish(HostEvent::Vm(vm.status()));
    }

    /// The end of a power transition: the device operation, then the state it leads to.
    async fn power(&self, vm_id: &str, epoch: u64, power: PowerOp) {
        if !self.is_current(vm_id, epoch, power.transitional()) {
            return;
        }
        let outcome = power.run(self.backend.as_ref(), vm_id).await;
        self.finish_power(vm_id, epoch, power, outcome);
    }

    fn finish_power(
        &self,
        vm_id: &str,
        epoch: u64,
        power: PowerOp,
        outcome: Result<(), DriverError>,
    ) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        let Some(vm) = state.vms.get_mut(vm_id) else {
            return;
        };
        if vm.epoch != epoch || vm.state != power.transitional() {
            return;
        }
        let host_id = &self.description.host_id;
        let action = power.action();
        match outcome {
            Ok(()) => {
                vm.state = power.done();
                info!(host_id = %host_id, vm_id, %action, state = %vm.state, "VM power done");
            }
            Err(err) => {
                vm.state = power.refused();
                vm.message = match vm.state {
                    VmState::Failed => {
                        format!("{action} failed: {err}; remove the VM or re-ensure it")
                    }
                    _ => format!("{action} failed: {err}; the VM still runs, send {action} again"),
                };
                warn!(host_id = %host_id, vm_id, %action, %err, "VM power operation failed");
            }
        }
        vm.epoch += 1;
        state.events.publish(HostEvent::Vm(vm.status()));
    }

    fn finish_teardown(&self, vm_id: &str, epoch: u64) {
        let mut guard = lock(&self.state);
        let state = &mut *guard;
        match state.vms.get(vm_id) {
            Some(vm) if vm.epoch == epoch && vm.state == VmState::Stopping => {}
            _ => return,
        }
        let Some(vm) = state.vms.remove(vm_id) else {
            return;
        };
        state.ledger.release(vm_id);
        info!(host_id = %self.description.host_id, vm_id, "VM deleted");
        state.events.publish(HostEvent::Vm(VmStatus {
            state: VmState::Deleted,
            message: String::new(),
            ..vm.status()
        }));
    }

    /// Subscribes and snapshots under one lock (see `agent_common::watch`).
    fn subscribe(&self) -> Option<(broadcast::Receiver<HostEvent>, Vec<HostEvent>)> {
        let state = lock(&self.state);
        let receiver = state.events.subscribe()?;
        let vms = state.vms.values().map(|vm| HostEvent::Vm(vm.status()));
        let gpus = state.gpu_health.iter().map(|(module_id, (health, message))| {
            HostEvent::Gpu(GpuStatus {
                module_id: *module_id,
                health: *health,
                message: message.clone(),
            })
        });
        Some((receiver, vms.chain(gpus).collect()))
    }
}

#[cfg(test)]
mod tests;
