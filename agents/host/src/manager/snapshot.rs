//! A host's state as a value: what [`HostManager::snapshot`] takes and
//! [`HostManager::restore`] rebuilds, so a simulated host outlives its process (the
//! simulated fleet keeps it in its data directory).
//!
//! The ledger is not stored: restore claims every VM's CPUs, GPUs, NICs, hugepages and
//! partition again from its spec, so a file that no longer fits the hardware (another
//! topology, a hand edit) is refused instead of double-booking anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use agent_common::generation::Tombstones;
use agent_common::lock;

use super::{HostManager, PowerOp, Transition, VmRecord, runtime};
use crate::allocation::{Ledger, claim_for};
use crate::model::{GpuHealth, HostDescription, PowerAction, VmSpec, VmState};

/// The snapshot format this agent writes and reads; a snapshot of another version is
/// refused (the host starts empty).
pub const SNAPSHOT_VERSION: u32 = 1;

/// Everything a host holds: VMs, removal tombstones, active partitions, GPU health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSnapshot {
    pub version: u32,
    pub host_id: String,
    pub vms: Vec<VmSnapshot>,
    /// Oldest first, as they are forgotten.
    pub removed: Vec<Tombstone>,
    /// Active partition id → the VM it is active for (possibly one not ensured yet).
    pub partitions: BTreeMap<u32, String>,
    /// GPU module id → current health and its message.
    pub gpu_health: BTreeMap<u32, (GpuHealth, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSnapshot {
    pub spec: VmSpec,
    pub state: VmState,
    pub message: String,
    /// The power action under way in SHUTTING_DOWN (STOP or POWER_OFF), STARTING, REBOOTING.
    #[serde(default)]
    pub power: Option<PowerAction>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub vm_id: String,
    pub generation: u64,
}

/// The state a snapshot rebuilds, checked against the hardware before it replaces anything.
struct Rebuilt {
    vms: BTreeMap<String, VmRecord>,
    removed: Tombstones,
    ledger: Ledger,
    gpu_health: BTreeMap<u32, (GpuHealth, String)>,
}

impl HostManager {
    /// What this host holds right now.
    pub fn snapshot(&self) -> HostSnapshot {
        let state = lock(&self.inner.state);
        let partitions = state
            .ledger
            .active_partitions()
            .into_iter()
            .map(|id| (id, state.ledger.partition_status(id).vm_id))
            .collect();
        HostSnapshot {
            version: SNAPSHOT_VERSION,
            host_id: self.host_id().to_owned(),
            vms: state
                .vms
                .values()
                .map(|vm| VmSnapshot {
                    spec: vm.spec.clone(),
                    state: vm.state,
                    message: vm.message.clone(),
                    // Left over after a transition ended; only a transitional state needs it.
                    power: vm
                        .power
                        .filter(|_| power_op(vm.state, None).is_some())
                        .map(PowerOp::action),
                })
                .collect(),
            removed: state
                .removed
                .entries()
                .map(|(vm_id, generation)| Tombstone { vm_id: vm_id.to_owned(), generation })
                .collect(),
            partitions,
            gpu_health: state.gpu_health.clone(),
        }
    }

    /// Rebuilds the state `snapshot` describes on a manager that holds nothing yet, claims
    /// every VM's resources again and resumes the transitions that were under way:
    /// PROVISIONING boots after the provision delay, STOPPING is torn down, SHUTTING_DOWN,
    /// STARTING and REBOOTING end as their power operation does. Returns how many VMs it
    /// holds. Nothing is published: watchers connect afterwards and get the full state.
    ///
    /// Refused, with a sentence saying why and nothing changed, when the snapshot is of
    /// another format version or host, does not fit this host's hardware (unknown GPUs,
    /// partitions, CPUs…), double-books anything, or the manager already holds VMs.
    pub fn restore(&self, snapshot: &HostSnapshot) -> Result<usize, String> {
        let runtime = runtime().map_err(|e| e.to_string())?;
        let rebuilt = rebuild(&self.inner.description, snapshot)?;
        let resume: Vec<(String, u64, Transition)> = {
            let mut state = lock(&self.inner.state);
            if !state.vms.is_empty() || !state.ledger.active_partitions().is_empty() {
                return Err(format!(
                    "host {} already holds VMs or partitions; restore only into a new manager",
                    self.host_id()
                ));
            }
            state.vms = rebuilt.vms;
            state.removed = rebuilt.removed;
            state.ledger = rebuilt.ledger;
            state.gpu_health = rebuilt.gpu_health;
            state
                .vms
                .iter()
                .filter_map(|(id, vm)| Some((id.clone(), vm.epoch, resumed(vm)?)))
                .collect()
        };
        let count = lock(&self.inner.state).vms.len();
        for (vm_id, epoch, transition) in resume {
            self.schedule(&runtime, vm_id, epoch, transition);
        }
        Ok(count)
    }
}

/// The timer that ends the transitional state a restored VM is in, if it is in one.
fn resumed(vm: &VmRecord) -> Option<Transition> {
    match vm.state {
        VmState::Provisioning => Some(Transition::Boot),
        VmState::Stopping => Some(Transition::Teardown),
        _ => vm.power.map(Transition::Power),
    }
}

/// The power operation behind a transitional state; a SHUTTING_DOWN VM without one is
/// shut down gracefully.
fn power_op(state: VmState, action: Option<PowerAction>) -> Option<PowerOp> {
    match state {
        VmState::ShuttingDown if action == Some(PowerAction::PowerOff) => Some(PowerOp::PowerOff),
        VmState::ShuttingDown => Some(PowerOp::Shutdown),
        VmState::Starting => Some(PowerOp::Start),
        VmState::Rebooting => Some(PowerOp::Reboot),
        _ => None,
    }
}

fn rebuild(host: &HostDescription, snapshot: &HostSnapshot) -> Result<Rebuilt, String> {
    if snapshot.version != SNAPSHOT_VERSION {
        return Err(format!(
            "it is format version {}, this agent reads version {SNAPSHOT_VERSION}",
            snapshot.version
        ));
    }
    if snapshot.host_id != host.host_id {
        return Err(format!(
            "it is host {}'s state, not host {}'s",
            snapshot.host_id, host.host_id
        ));
    }
    let mut gpu_health: BTreeMap<u32, (GpuHealth, String)> = host
        .gpus
        .iter()
        .map(|gpu| (gpu.module_id, (gpu.health, gpu.health_message.clone())))
        .collect();
    for (module_id, health) in &snapshot.gpu_health {
        let Some(slot) = gpu_health.get_mut(module_id) else {
            return Err(format!("it gives the health of GPU module {module_id}, not on this host"));
        };
        *slot = health.clone();
    }
    let mut ledger = Ledger::default();
    let mut vms = BTreeMap::new();
    for vm in &snapshot.vms {
        let vm_id = vm.spec.vm_id.clone();
        if vms.contains_key(&vm_id) {
            return Err(format!("it lists VM {vm_id} twice"));
        }
        let record = restore_vm(host, &mut ledger, vm).map_err(|e| format!("VM {vm_id}: {e}"))?;
        vms.insert(vm_id, record);
    }
    // Health is not checked on restore: a VM that failed with its GPU still holds it.
    let any_health = BTreeMap::new();
    for (partition_id, vm_id) in &snapshot.partitions {
        ledger
            .activate(host, &any_health, *partition_id, vm_id)
            .map_err(|e| format!("partition {partition_id}: {e}"))?;
    }
    let mut removed = Tombstones::default();
    for tombstone in &snapshot.removed {
        removed.record(&tombstone.vm_id, tombstone.generation);
    }
    Ok(Rebuilt { vms, removed, ledger, gpu_health })
}

/// Checks one VM against the hardware and what the VMs before it hold, and claims what it
/// holds.
fn restore_vm(
    host: &HostDescription,
    ledger: &mut Ledger,
    vm: &VmSnapshot,
) -> Result<VmRecord, String> {
    if vm.state == VmState::Deleted {
        return Err("a DELETED VM is not held; it should not be listed".into());
    }
    vm.spec.check_shape().map_err(|e| e.to_string())?;
    let claim = claim_for(host, &BTreeMap::new(), &vm.spec).map_err(|e| e.to_string())?;
    ledger.check(host, &vm.spec.vm_id, &claim).map_err(|e| e.to_string())?;
    ledger.commit(&vm.spec.vm_id, claim);
    Ok(VmRecord {
        spec: vm.spec.clone(),
        state: vm.state,
        message: vm.message.clone(),
        epoch: 1,
        power: power_op(vm.state, vm.power),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::allocation::tests::{gpu_vm, small_host};
    use crate::backend::sim::SimHost;
    use crate::manager::HostOptions;
    use crate::model::tests::cpu_vm;
    use agent_common::DriverError;

    const VM_A: &str = "00000000-0000-4000-8000-00000000000a";
    const VM_B: &str = "00000000-0000-4000-8000-00000000000b";
    const VM_C: &str = "00000000-0000-4000-8000-00000000000c";
    const PROVISION: Duration = Duration::from_millis(100);

    fn sim_host() -> SimHost {
        SimHost::new(
            small_host(),
            HostOptions {
                provision_delay: PROVISION,
                remove_delay: Duration::from_millis(50),
                jitter: 0.0,
                seed: 1,
                event_capacity: 64,
            },
        )
    }

    /// A CPU-only VM on node 1 (CPUs 8..), apart from `gpu_vm`'s node-0 CPUs.
    fn node1_vm(vm_id: &str) -> VmSpec {
        VmSpec { vcpu_pins: vec![8, 9], emulator_cpu: 10, numa_nodes: vec![1], ..cpu_vm(vm_id) }
    }

    /// Through the file format, as the simulated fleet stores it.
    fn round_trip(snapshot: &HostSnapshot) -> HostSnapshot {
        let text = serde_json::to_string(snapshot).expect("encode");
        serde_json::from_str(&text).expect("decode")
    }

    fn state_of(host: &SimHost, vm_id: &str) -> Option<VmState> {
        host.vm_status(vm_id).map(|s| s.state)
    }

    #[tokio::test(start_paused = true)]
    async fn test_restore_gives_the_same_vms_states_and_ledger() {
        let host = sim_host();
        host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure A");
        host.vm_ensure(node1_vm(VM_B)).await.expect("ensure B");
        tokio::time::sleep(PROVISION * 2).await;
        host.vm_power(VM_B, PowerAction::PowerOff).await.expect("power off B");
        tokio::time::sleep(PROVISION).await;
        host.vm_remove(VM_C, 3).await.expect("tombstone C");
        host.set_gpu_health(4, GpuHealth::Degraded, "row remap pending").expect("health");
        let snapshot = host.snapshot();
        assert_eq!(snapshot.vms.len(), 2);

        let restored = sim_host();
        assert_eq!(restored.restore(&round_trip(&snapshot)), Ok(2));
        assert_eq!(restored.snapshot(), snapshot);
        assert_eq!(state_of(&restored, VM_A), Some(VmState::Running));
        assert_eq!(state_of(&restored, VM_B), Some(VmState::Stopped));
        assert_eq!(restored.inventory().await, host.inventory().await);
        assert_eq!(restored.device().domain_running(VM_A), Some(true));
        assert_eq!(restored.device().domain_running(VM_B), Some(false));

        // The ledger holds again: overlapping GPUs or CPUs are refused, the tombstone too.
        let same_gpus = VmSpec { vcpu_pins: vec![5], emulator_cpu: 6, ..gpu_vm(VM_C) };
        let err = restored.vm_ensure(VmSpec { generation: 4, ..same_gpus }).await;
        assert!(matches!(err, Err(DriverError::FailedPrecondition(_))), "{err:?}");
        let same_cpus = VmSpec { generation: 4, ..cpu_vm(VM_C) };
        let err = restored.vm_ensure(same_cpus).await;
        assert!(matches!(err, Err(DriverError::FailedPrecondition(_))), "{err:?}");
        let late = restored.vm_ensure(VmSpec { generation: 3, ..node1_vm(VM_C) }).await;
        assert!(matches!(late, Err(DriverError::FailedPrecondition(_))), "{late:?}");

        // And it works on: the stopped VM starts, the running one is removed and freed.
        restored.vm_power(VM_B, PowerAction::Start).await.expect("start B");
        restored.vm_remove(VM_A, 2).await.expect("remove A");
        tokio::time::sleep(PROVISION * 2).await;
        assert_eq!(state_of(&restored, VM_B), Some(VmState::Running));
        assert_eq!(state_of(&restored, VM_A), None);
        assert!(restored.inventory().await.expect("inv").active_partitions.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn test_transitional_states_resume_after_restore() {
        let host = sim_host();
        host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure A");
        host.vm_ensure(node1_vm(VM_B)).await.expect("ensure B");
        tokio::time::sleep(PROVISION * 2).await;
        host.vm_power(VM_B, PowerAction::Stop).await.expect("stop B");
        host.vm_ensure(VmSpec { vcpu_pins: vec![12], emulator_cpu: 13, ..node1_vm(VM_C) })
            .await
            .expect("ensure C");
        host.vm_remove(VM_A, 2).await.expect("remove A");
        let snapshot = round_trip(&host.snapshot());
        let states: Vec<VmState> = snapshot.vms.iter().map(|vm| vm.state).collect();
        assert_eq!(states, [VmState::Stopping, VmState::ShuttingDown, VmState::Provisioning]);

        let restored = sim_host();
        assert_eq!(restored.restore(&snapshot), Ok(3));
        tokio::time::sleep(PROVISION * 2).await;
        assert_eq!(state_of(&restored, VM_A), None, "the removal finished");
        assert_eq!(restored.device().domain_running(VM_A), None);
        assert_eq!(state_of(&restored, VM_B), Some(VmState::Stopped));
        assert_eq!(state_of(&restored, VM_C), Some(VmState::Running), "booted");
        assert_eq!(restored.device().domain_running(VM_C), Some(true));
        assert!(restored.inventory().await.expect("inv").active_partitions.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn test_a_corrupt_or_stale_snapshot_is_refused_and_changes_nothing() {
        let host = sim_host();
        host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure A");
        host.vm_ensure(node1_vm(VM_B)).await.expect("ensure B");
        let good = host.snapshot();

        let mut other_host = good.clone();
        other_host.host_id = "su9-h99".into();
        let mut newer = good.clone();
        newer.version = SNAPSHOT_VERSION + 1;
        let mut overlapping = good.clone();
        overlapping.vms[1].spec = VmSpec { vm_id: VM_B.into(), ..cpu_vm(VM_A) };
        let mut off_the_hardware = good.clone();
        off_the_hardware.vms[0].spec.vcpu_pins = vec![99];
        let mut unknown_gpu = good.clone();
        unknown_gpu.gpu_health.insert(42, (GpuHealth::Ok, String::new()));
        let mut foreign_partition = good.clone();
        foreign_partition.partitions.insert(0, VM_C.into());
        let cases = [
            (other_host, "not host"),
            (newer, "format version"),
            (overlapping, "already pinned"),
            (off_the_hardware, "CPU 99"),
            (unknown_gpu, "GPU module 42"),
            (foreign_partition, "partition 0"),
        ];
        for (snapshot, why) in cases {
            let fresh = sim_host();
            let refusal = fresh.restore(&snapshot).expect_err(why);
            assert!(refusal.contains(why), "{why}: {refusal}");
            assert_eq!(fresh.vm_count(), 0, "{why}");
            assert_eq!(fresh.device().domain_running(VM_A), None, "{why}");
            assert!(fresh.inventory().await.expect("inv").active_partitions.is_empty());
        }
        let garbage = serde_json::from_str::<HostSnapshot>("{\"version\": 1, \"vms\": 3}");
        assert!(garbage.is_err());

        // Only into a new manager.
        assert!(host.restore(&good).expect_err("not new").contains("already holds"));
    }
}
