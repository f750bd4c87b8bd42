//! [`SimHostDriver`]: a simulated GPU server that behaves like the hardware it describes.
//!
//! It enforces everything a real host would (see [`crate::allocation`]): partitions from the
//! Fabric Manager table, no GPU, NIC, CPU or hugepage given twice, failed GPUs never given.
//! VMs move through their states on timers: `PROVISIONING` for the provision delay (plus up to
//! `jitter` of it, derived from the seed and VM id so runs repeat exactly), then `RUNNING`;
//! `STOPPING` for the remove delay, then `DELETED`, when the resources are freed and the
//! partition deactivated.
//!
//! The in-process handle (this type; clones share one host) is how tests and the simulated
//! fleet misbehave on purpose: [`SimHostDriver::faults`] injects errors and delays per
//! [`HostOp`], [`SimHostDriver::set_gpu_health`] makes a GPU fail at run time.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;
use tracing::{debug, info};

use agent_common::generation::{Applied, Tombstones};
use agent_common::hash::unit_fraction;
use agent_common::watch::EventHub;
use agent_common::{
    DriverError, EnsureAction, EventStream, FaultPlan, InjectedFault, decide_ensure, lock,
    snapshot_then_changes,
};

use super::HostDriver;
use crate::allocation::{Ledger, claim_for};
use crate::model::{
    GpuHealth, GpuStatus, HostDescription, HostEvent, HostInventory, PartitionStatus, VmSpec,
    VmState, VmStatus,
};

/// The operations faults can be injected into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostOp {
    GetInventory,
    EnsureVm,
    RemoveVm,
    Watch,
    ActivatePartition,
    DeactivatePartition,
    /// The asynchronous end of provisioning: a failure here turns the VM `FAILED` instead of
    /// `RUNNING`; a delay here lengthens `PROVISIONING`.
    Boot,
}

impl fmt::Display for HostOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostOp::GetInventory => "get_inventory",
            HostOp::EnsureVm => "ensure_vm",
            HostOp::RemoveVm => "remove_vm",
            HostOp::Watch => "watch",
            HostOp::ActivatePartition => "activate_partition",
            HostOp::DeactivatePartition => "deactivate_partition",
            HostOp::Boot => "boot",
        })
    }
}

/// Timing of the simulated host.
#[derive(Clone, Debug)]
pub struct SimHostOptions {
    /// How long a new VM stays `PROVISIONING`.
    pub provision_delay: Duration,
    /// How long a removed VM stays `STOPPING`.
    pub remove_delay: Duration,
    /// Up to this fraction of a delay is added, the same for the same seed and VM (0..=1).
    pub jitter: f64,
    pub seed: u64,
    /// How many events a watcher may fall behind before it is resynchronised.
    pub event_capacity: usize,
}

impl Default for SimHostOptions {
    fn default() -> Self {
        SimHostOptions {
            provision_delay: Duration::from_millis(1500),
            remove_delay: Duration::from_millis(500),
            jitter: 0.1,
            seed: 0,
            event_capacity: 1024,
        }
    }
}

/// A simulated host. Cloning gives another handle to the same host.
#[derive(Clone)]
pub struct SimHostDriver {
    inner: Arc<Inner>,
}

struct Inner {
    description: HostDescription,
    options: SimHostOptions,
    faults: FaultPlan<HostOp>,
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

#[derive(Clone, Copy, Debug)]
enum Transition {
    Boot,
    Teardown,
}

impl fmt::Debug for SimHostDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHostDriver")
            .field("host_id", &self.inner.description.host_id)
            .finish_non_exhaustive()
    }
}

impl SimHostDriver {
    /// A host with the given hardware (trusted: the topology that built it validated it),
    /// no VMs, and GPU health as the description says.
    pub fn new(description: HostDescription, options: SimHostOptions) -> Self {
        let gpu_health = description
            .gpus
            .iter()
            .map(|gpu| (gpu.module_id, (gpu.health, gpu.health_message.clone())))
            .collect();
        let events = EventHub::new(options.event_capacity);
        SimHostDriver {
            inner: Arc::new(Inner {
                description,
                options,
                faults: FaultPlan::new(),
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

    /// This host's fault plan; rules take effect on the next call.
    pub fn faults(&self) -> &FaultPlan<HostOp> {
        &self.inner.faults
    }

    /// Changes a GPU's health, as an XID error or a repair would, and reports it on the watch
    /// stream. A GPU that turns FAILED under a live VM turns that VM FAILED too.
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
            && matches!(vm.state, VmState::Provisioning | VmState::Running)
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
    pub fn vm_count(&self) -> usize {
        lock(&self.inner.state).vms.len()
    }

    /// Ends every watch stream (after the events already sent) and refuses new ones; used
    /// when the agent shuts down, so open streams do not hold the server up.
    pub fn shutdown(&self) {
        lock(&self.inner.state).events.close();
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
        };
        let delay = jittered(base, options.jitter, options.seed, &vm_id, epoch);
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        runtime.spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            match transition {
                Transition::Boot => {
                    let outcome = inner.faults.check(HostOp::Boot).await;
                    inner.finish_boot(&vm_id, epoch, outcome);
                }
                Transition::Teardown => inner.finish_teardown(&vm_id, epoch),
            }
        });
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
            "the simulated host was called outside a tokio runtime; run it inside one".into(),
        )
    })
}

impl Inner {
    fn finish_boot(&self, vm_id: &str, epoch: u64, outcome: Result<(), InjectedFault>) {
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
            Err(fault) => {
                vm.state = VmState::Failed;
                vm.message = fault.to_string();
                info!(host_id = %self.description.host_id, vm_id, %fault, "VM failed to boot");
            }
        }
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
        // The domain is gone: now the partition can be deactivated and the rest freed.
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

#[async_trait]
impl HostDriver for SimHostDriver {
    async fn inventory(&self) -> Result<HostInventory, DriverError> {
        self.inner.faults.check(HostOp::GetInventory).await?;
        let state = lock(&self.inner.state);
        Ok(HostInventory {
            description: self.inner.description.clone(),
            gpu_health: state.gpu_health.clone(),
            hugepages_1g_free: state.ledger.hugepages_free(&self.inner.description),
            active_partitions: state.ledger.active_partitions(),
        })
    }

    async fn vm_ensure(&self, spec: VmSpec) -> Result<VmStatus, DriverError> {
        spec.check_shape()?;
        self.inner.faults.check(HostOp::EnsureVm).await?;
        let runtime = runtime()?;
        let host = &self.inner.description;
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;

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
        let applied = existing.map(|vm| Applied {
            generation: vm.spec.generation,
            same_spec: vm.spec.same_as(&spec),
        });
        let action = decide_ensure("VM", &spec.vm_id, applied, spec.generation)?;
        let (previous_epoch, reprovision) = match existing {
            None => (0, true),
            Some(vm) => (vm.epoch, !vm.spec.same_as(&spec) || vm.state == VmState::Failed),
        };
        match (action, state.vms.get_mut(&spec.vm_id)) {
            (EnsureAction::Unchanged, Some(vm)) => return Ok(vm.status()),
            // A newer generation of the same VM: nothing to redo.
            (EnsureAction::Replace, Some(vm)) if !reprovision => {
                vm.spec = spec;
                let status = vm.status();
                state.events.publish(HostEvent::Vm(status.clone()));
                return Ok(status);
            }
            _ => {}
        }

        let claim = claim_for(host, &state.gpu_health, &spec)?;
        state.ledger.check(host, &spec.vm_id, &claim)?;
        state.ledger.commit(&spec.vm_id, claim);
        let vm = VmRecord {
            spec,
            state: VmState::Provisioning,
            message: String::new(),
            epoch: previous_epoch + 1,
        };
        let status = vm.status();
        let epoch = vm.epoch;
        state.vms.insert(status.vm_id.clone(), vm);
        state.events.publish(HostEvent::Vm(status.clone()));
        drop(guard);

        info!(host_id = %host.host_id, vm_id = %status.vm_id, generation = status.generation,
              "VM provisioning");
        self.schedule(&runtime, status.vm_id.clone(), epoch, Transition::Boot);
        Ok(status)
    }

    async fn partition_activate(
        &self,
        vm_id: &str,
        partition_id: u32,
        generation: u64,
    ) -> Result<PartitionStatus, DriverError> {
        self.inner.faults.check(HostOp::ActivatePartition).await?;
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        state.removed.check_ensure("VM", vm_id, generation)?;
        let status = state.ledger.activate(
            &self.inner.description,
            &state.gpu_health,
            partition_id,
            vm_id,
        )?;
        info!(host_id = %self.host_id(), vm_id, partition_id, "partition active");
        Ok(status)
    }

    async fn partition_deactivate(
        &self,
        vm_id: &str,
        partition_id: u32,
    ) -> Result<PartitionStatus, DriverError> {
        self.inner.faults.check(HostOp::DeactivatePartition).await?;
        let mut guard = lock(&self.inner.state);
        let status = guard.ledger.deactivate(&self.inner.description, partition_id, vm_id)?;
        debug!(host_id = %self.host_id(), vm_id, partition_id, holder = %status.vm_id,
               "partition deactivate");
        Ok(status)
    }

    async fn vm_remove(&self, vm_id: &str, generation: u64) -> Result<VmStatus, DriverError> {
        self.inner.faults.check(HostOp::RemoveVm).await?;
        let runtime = runtime()?;
        let mut guard = lock(&self.inner.state);
        let state = &mut *guard;
        state.removed.record(vm_id, generation);
        let Some(vm) = state.vms.get_mut(vm_id) else {
            debug!(host_id = %self.host_id(), vm_id, "remove of an absent VM");
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

    async fn watch(&self) -> Result<EventStream<HostEvent>, DriverError> {
        self.inner.faults.check(HostOp::Watch).await?;
        let weak = Arc::downgrade(&self.inner);
        snapshot_then_changes(move || weak.upgrade()?.subscribe()).ok_or_else(|| {
            DriverError::Unavailable(format!(
                "host agent {} is shutting down; reconnect once it is back",
                self.host_id()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocation::tests::{gpu_vm, small_host};
    use crate::model::tests::cpu_vm;
    use futures::StreamExt;

    const VM_A: &str = "00000000-0000-4000-8000-00000000000a";
    const VM_B: &str = "00000000-0000-4000-8000-00000000000b";

    fn driver(event_capacity: usize) -> SimHostDriver {
        SimHostDriver::new(
            small_host(),
            SimHostOptions {
                provision_delay: Duration::from_millis(100),
                remove_delay: Duration::from_millis(50),
                jitter: 0.1,
                seed: 1,
                event_capacity,
            },
        )
    }

    async fn next_vm(stream: &mut EventStream<HostEvent>) -> VmStatus {
        loop {
            match stream.next().await {
                Some(HostEvent::Vm(vm)) => return vm,
                Some(HostEvent::Gpu(_) | HostEvent::SnapshotEnd) => continue,
                None => panic!("watch stream ended"),
            }
        }
    }

    #[test]
    fn test_jitter_is_deterministic_and_bounded() {
        let base = Duration::from_millis(1000);
        let a = jittered(base, 0.1, 7, VM_A, 1);
        assert_eq!(a, jittered(base, 0.1, 7, VM_A, 1));
        assert!(a >= base && a <= Duration::from_millis(1100));
        assert_ne!(a, jittered(base, 0.1, 8, VM_A, 1));
        assert_eq!(jittered(base, f64::NAN, 7, VM_A, 1), base);
    }

    #[tokio::test(start_paused = true)]
    async fn test_lifecycle_provisioning_running_stopping_deleted() {
        let host = driver(64);
        let mut events = host.watch().await.expect("watch");
        let status = host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure");
        assert_eq!(status.state, VmState::Provisioning);
        assert_eq!(next_vm(&mut events).await.state, VmState::Provisioning);
        assert_eq!(next_vm(&mut events).await.state, VmState::Running);
        assert_eq!(host.inventory().await.expect("inv").active_partitions.len(), 1);

        let status = host.vm_remove(VM_A, 2).await.expect("remove");
        assert_eq!(status.state, VmState::Stopping);
        // Still held while stopping.
        assert_eq!(host.inventory().await.expect("inv").active_partitions.len(), 1);
        assert_eq!(host.vm_remove(VM_A, 2).await.expect("again").state, VmState::Stopping);
        assert_eq!(next_vm(&mut events).await.state, VmState::Stopping);
        assert_eq!(next_vm(&mut events).await.state, VmState::Deleted);
        let inventory = host.inventory().await.expect("inv");
        assert!(inventory.active_partitions.is_empty());
        assert_eq!(inventory.hugepages_1g_free, BTreeMap::from([(0, 16), (1, 16)]));
        assert_eq!(host.vm_remove(VM_A, 2).await.expect("absent").state, VmState::Deleted);
    }

    #[tokio::test(start_paused = true)]
    async fn test_ensure_while_stopping_is_retryable() {
        let host = driver(64);
        host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
        // Removed without a generation guard: the same launch may come back once it is gone.
        host.vm_remove(VM_A, 0).await.expect("remove");
        let err = host.vm_ensure(cpu_vm(VM_A)).await.expect_err("stopping");
        assert!(matches!(err, DriverError::Unavailable(_)), "{err}");
    }

    #[tokio::test(start_paused = true)]
    async fn test_newer_generation_same_spec_keeps_state() {
        let host = driver(64);
        host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let newer = VmSpec { generation: 2, ..cpu_vm(VM_A) };
        let status = host.vm_ensure(newer).await.expect("ensure gen 2");
        assert_eq!((status.state, status.generation), (VmState::Running, 2));

        let changed = VmSpec { generation: 3, memory_mib: 2048, ..cpu_vm(VM_A) };
        let status = host.vm_ensure(changed).await.expect("ensure gen 3");
        assert_eq!((status.state, status.generation), (VmState::Provisioning, 3));
        let inventory = host.inventory().await.expect("inv");
        assert_eq!(inventory.hugepages_1g_free[&0], 14);
    }

    #[tokio::test(start_paused = true)]
    async fn test_failed_gpu_fails_its_vm_and_is_reported() {
        let host = driver(64);
        host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure");
        let mut events = host.watch().await.expect("watch");
        // Snapshot: one VM, four GPUs.
        let mut snapshot = Vec::new();
        for _ in 0..5 {
            snapshot.push(events.next().await.expect("snapshot"));
        }
        assert!(matches!(&snapshot[0], HostEvent::Vm(vm) if vm.vm_id == VM_A));
        assert!(snapshot[1..].iter().all(|e| matches!(e, HostEvent::Gpu(_))));
        assert_eq!(events.next().await, Some(HostEvent::SnapshotEnd));

        host.set_gpu_health(2, GpuHealth::Failed, "XID 79").expect("flip");
        assert_eq!(
            events.next().await,
            Some(HostEvent::Gpu(GpuStatus {
                module_id: 2,
                health: GpuHealth::Failed,
                message: "XID 79".into()
            }))
        );
        let vm = next_vm(&mut events).await;
        assert_eq!(vm.state, VmState::Failed);
        assert!(vm.message.contains("GPU module 2 failed"), "{}", vm.message);
        // The boot timer must not resurrect it.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(host.vm_status(VM_A).map(|s| s.state), Some(VmState::Failed));
        assert!(host.set_gpu_health(9, GpuHealth::Ok, "").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn test_a_removed_vm_is_not_brought_back_by_a_late_ensure() {
        let host = driver(64);
        host.vm_remove(VM_A, 2).await.expect("remove before the launch arrived");
        let late = host.vm_ensure(cpu_vm(VM_A)).await.unwrap_err();
        assert!(
            matches!(&late, DriverError::FailedPrecondition(m) if m.contains("removed at generation 2")),
            "{late:?}"
        );
        assert_eq!(host.vm_count(), 0);
        // A newer generation is a new decision of the control plane and goes through.
        let newer = VmSpec { generation: 3, ..cpu_vm(VM_A) };
        assert_eq!(host.vm_ensure(newer).await.expect("newer").state, VmState::Provisioning);
    }

    #[tokio::test(start_paused = true)]
    async fn test_boot_fault_fails_the_vm() {
        let host = driver(64);
        host.faults().fail_nth(HostOp::Boot, 1);
        host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let status = host.vm_status(VM_A).expect("held");
        assert_eq!(status.state, VmState::Failed);
        assert!(status.message.starts_with("injected fault: boot"));
        // A newer generation of a failed VM provisions it again.
        let retry = VmSpec { generation: 2, ..cpu_vm(VM_A) };
        assert_eq!(host.vm_ensure(retry).await.expect("retry").state, VmState::Provisioning);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(host.vm_status(VM_A).map(|s| s.state), Some(VmState::Running));
    }

    #[tokio::test(start_paused = true)]
    async fn test_lagging_watcher_gets_fresh_snapshot_with_deletions() {
        let host = driver(2);
        host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure a");
        let mut events = host.watch().await.expect("watch");
        assert!(matches!(events.next().await, Some(HostEvent::Vm(vm)) if vm.vm_id == VM_A));
        for _ in 0..4 {
            assert!(matches!(events.next().await, Some(HostEvent::Gpu(_))));
        }
        assert_eq!(events.next().await, Some(HostEvent::SnapshotEnd));
        // Many changes while the watcher does not read: more than the capacity of 2.
        host.vm_remove(VM_A, 2).await.expect("remove a");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let b = VmSpec { vcpu_pins: vec![5], emulator_cpu: 6, ..cpu_vm(VM_B) };
        host.vm_ensure(b).await.expect("ensure b");
        for module in 1..=3 {
            host.set_gpu_health(module, GpuHealth::Degraded, "row remap").expect("flip");
        }
        // The watcher is told A is gone, then gets the fresh state.
        let deleted = next_vm(&mut events).await;
        assert_eq!((deleted.vm_id.as_str(), deleted.state), (VM_A, VmState::Deleted));
        let b_status = next_vm(&mut events).await;
        assert_eq!((b_status.vm_id.as_str(), b_status.state), (VM_B, VmState::Provisioning));
        let mut degraded = 0;
        for _ in 0..4 {
            if let Some(HostEvent::Gpu(gpu)) = events.next().await
                && gpu.health == GpuHealth::Degraded
            {
                degraded += 1;
            }
        }
        assert_eq!(degraded, 3);
        // The fresh state is complete, and says so.
        assert_eq!(events.next().await, Some(HostEvent::SnapshotEnd));
    }

    #[tokio::test]
    async fn test_shutdown_ends_watch_streams() {
        let host = driver(16);
        let mut events = host.watch().await.expect("watch");
        host.shutdown();
        // The snapshot (four GPUs and its end) is still delivered.
        for _ in 0..5 {
            assert!(events.next().await.is_some());
        }
        assert!(events.next().await.is_none());
        assert!(matches!(host.watch().await, Err(DriverError::Unavailable(_))));
    }
}
