use super::*;
use crate::allocation::tests::{gpu_vm, small_host};
use crate::backend::HostOp;
use crate::backend::sim::SimHost;
use crate::model::tests::cpu_vm;
use futures::StreamExt;

const VM_A: &str = "00000000-0000-4000-8000-00000000000a";
const VM_B: &str = "00000000-0000-4000-8000-00000000000b";

fn sim_host(event_capacity: usize) -> SimHost {
    SimHost::new(
        small_host(),
        HostOptions {
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
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
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
    let host = sim_host(64);
    host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
    // Removed without a generation guard: the same launch may come back once it is gone.
    host.vm_remove(VM_A, 0).await.expect("remove");
    let err = host.vm_ensure(cpu_vm(VM_A)).await.expect_err("stopping");
    assert!(matches!(err, DriverError::Unavailable(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn test_newer_generation_same_spec_keeps_state() {
    let host = sim_host(64);
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
    let host = sim_host(64);
    host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure");
    let mut events = host.watch().expect("watch");
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
    let host = sim_host(64);
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
    let host = sim_host(64);
    host.faults().fail_nth(HostOp::DomainStart, 1);
    host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = host.vm_status(VM_A).expect("held");
    assert_eq!(status.state, VmState::Failed);
    assert!(status.message.starts_with("injected fault: domain_start"));
    // A newer generation of a failed VM provisions it again.
    let retry = VmSpec { generation: 2, ..cpu_vm(VM_A) };
    assert_eq!(host.vm_ensure(retry).await.expect("retry").state, VmState::Provisioning);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(host.vm_status(VM_A).map(|s| s.state), Some(VmState::Running));
}

#[tokio::test(start_paused = true)]
async fn test_lagging_watcher_gets_fresh_snapshot_with_deletions() {
    let host = sim_host(2);
    host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure a");
    let mut events = host.watch().expect("watch");
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

#[tokio::test(start_paused = true)]
async fn test_device_failures_leave_the_vm_as_it_was_or_are_retried() {
    let host = sim_host(64);
    host.vm_ensure(gpu_vm(VM_A)).await.expect("ensure");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The stop fails: the call fails and the VM still runs.
    host.faults().fail_nth(HostOp::DomainStop, 1);
    assert!(matches!(host.vm_remove(VM_A, 2).await, Err(DriverError::Injected(_))));
    assert_eq!(host.vm_status(VM_A).map(|s| s.state), Some(VmState::Running));

    // The undefine fails: the VM stays STOPPING, holding its partition, until it works.
    host.faults().fail_always(HostOp::DomainUndefine);
    assert_eq!(host.vm_remove(VM_A, 2).await.expect("remove").state, VmState::Stopping);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host.vm_status(VM_A).map(|s| s.state), Some(VmState::Stopping));
    assert_eq!(host.inventory().await.expect("inv").active_partitions.len(), 1);
    host.faults().clear();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(host.vm_count(), 0);
    assert!(host.inventory().await.expect("inv").active_partitions.is_empty());

    // A refused partition activation on the device refuses the ensure, nothing held.
    host.faults().fail_nth(HostOp::PartitionActivate, 1);
    let later = VmSpec { generation: 3, ..gpu_vm(VM_A) };
    assert!(host.vm_ensure(later.clone()).await.is_err());
    assert_eq!(host.vm_count(), 0);
    assert_eq!(host.vm_ensure(later).await.expect("retry").state, VmState::Provisioning);
}

/// A CPU-only VM ensured and booted: `RUNNING`, its two events read off `events`.
async fn running_vm(host: &SimHost, events: &mut EventStream<HostEvent>, spec: VmSpec) {
    host.vm_ensure(spec).await.expect("ensure");
    assert_eq!(next_vm(events).await.state, VmState::Provisioning);
    assert_eq!(next_vm(events).await.state, VmState::Running);
}

async fn power(host: &SimHost, action: PowerAction) -> VmState {
    host.vm_power(VM_A, action).await.expect("power").state
}

fn state_of(host: &SimHost) -> Option<VmState> {
    host.vm_status(VM_A).map(|s| s.state)
}

#[tokio::test(start_paused = true)]
async fn test_power_stop_start_reboot_and_idempotent_repeats() {
    use PowerAction::*;
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
    running_vm(&host, &mut events, gpu_vm(VM_A)).await;
    let held = host.inventory().await.expect("inv");

    assert_eq!(power(&host, Stop).await, VmState::ShuttingDown);
    assert_eq!(power(&host, Stop).await, VmState::ShuttingDown);
    assert_eq!(next_vm(&mut events).await.state, VmState::ShuttingDown);
    assert_eq!(next_vm(&mut events).await.state, VmState::Stopped);
    assert_eq!(host.device().domain_running(VM_A), Some(false));
    // Stopped, it keeps everything it held.
    assert_eq!(host.inventory().await.expect("inv"), held);
    assert_eq!(power(&host, Stop).await, VmState::Stopped);
    assert_eq!(power(&host, PowerOff).await, VmState::Stopped);
    // Ensuring the same spec does not boot it, a newer generation neither.
    assert_eq!(host.vm_ensure(gpu_vm(VM_A)).await.expect("same").state, VmState::Stopped);
    let newer = VmSpec { generation: 2, ..gpu_vm(VM_A) };
    assert_eq!(host.vm_ensure(newer).await.expect("newer").state, VmState::Stopped);
    assert_eq!(next_vm(&mut events).await.generation, 2);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.device().domain_running(VM_A), Some(false));

    assert_eq!(power(&host, Start).await, VmState::Starting);
    assert_eq!(power(&host, Start).await, VmState::Starting);
    assert_eq!(next_vm(&mut events).await.state, VmState::Starting);
    assert_eq!(next_vm(&mut events).await.state, VmState::Running);
    assert_eq!(host.device().domain_running(VM_A), Some(true));
    assert_eq!(power(&host, Start).await, VmState::Running);

    assert_eq!(power(&host, Reboot).await, VmState::Rebooting);
    assert_eq!(power(&host, Reboot).await, VmState::Rebooting);
    assert_eq!(power(&host, Start).await, VmState::Rebooting);
    assert_eq!(next_vm(&mut events).await.state, VmState::Rebooting);
    let rebooted = next_vm(&mut events).await;
    assert_eq!((rebooted.state, rebooted.generation), (VmState::Running, 2));
    assert!(rebooted.message.is_empty());
    assert_eq!(host.inventory().await.expect("inv"), held);
}

#[tokio::test(start_paused = true)]
async fn test_power_off_pulls_the_plug_also_during_a_graceful_stop() {
    use PowerAction::*;
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
    running_vm(&host, &mut events, cpu_vm(VM_A)).await;

    assert_eq!(power(&host, PowerOff).await, VmState::ShuttingDown);
    assert_eq!(next_vm(&mut events).await.state, VmState::ShuttingDown);
    // No delay: stopped before a graceful stop (50 ms) could be.
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(state_of(&host), Some(VmState::Stopped));
    assert_eq!(next_vm(&mut events).await.state, VmState::Stopped);

    power(&host, Start).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(next_vm(&mut events).await.state, VmState::Starting);
    assert_eq!(next_vm(&mut events).await.state, VmState::Running);
    assert_eq!(power(&host, Stop).await, VmState::ShuttingDown);
    assert_eq!(power(&host, PowerOff).await, VmState::ShuttingDown);
    assert_eq!(power(&host, PowerOff).await, VmState::ShuttingDown);
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(state_of(&host), Some(VmState::Stopped));
    // One SHUTTING_DOWN, one STOPPED: the power-off changed nothing visible in between,
    // and the graceful stop's timer, overtaken, does nothing.
    assert_eq!(next_vm(&mut events).await.state, VmState::ShuttingDown);
    assert_eq!(next_vm(&mut events).await.state, VmState::Stopped);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state_of(&host), Some(VmState::Stopped));
    host.vm_ensure(VmSpec { generation: 9, ..cpu_vm(VM_A) }).await.expect("newer");
    let next = next_vm(&mut events).await;
    assert_eq!((next.state, next.generation), (VmState::Stopped, 9));
}

#[tokio::test(start_paused = true)]
async fn test_power_refusals() {
    use PowerAction::*;
    let host = sim_host(64);
    let refused = |result: Result<VmStatus, DriverError>| result.expect_err("refused");

    let err = refused(host.vm_power(VM_A, Start).await);
    assert!(matches!(&err, DriverError::NotFound(m) if m.contains("holds no VM")), "{err:?}");

    host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
    let err = refused(host.vm_power(VM_A, Stop).await);
    assert!(matches!(&err, DriverError::FailedPrecondition(m) if m.contains("PROVISIONING")));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Conflicting power operations are retryable.
    power(&host, Stop).await;
    let err = refused(host.vm_power(VM_A, Start).await);
    assert!(matches!(&err, DriverError::Unavailable(m) if m.contains("STOPPED")), "{err:?}");
    assert!(matches!(host.vm_power(VM_A, Reboot).await, Err(DriverError::Unavailable(_))));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = refused(host.vm_power(VM_A, Reboot).await);
    assert!(matches!(&err, DriverError::FailedPrecondition(m) if m.contains("send START")));
    power(&host, Start).await;
    for action in [Stop, PowerOff] {
        let err = refused(host.vm_power(VM_A, action).await);
        assert!(matches!(&err, DriverError::Unavailable(m) if m.contains("RUNNING")));
    }
    // A changed spec must wait too: redefining would race with the start.
    let changed = VmSpec { generation: 2, memory_mib: 2048, ..cpu_vm(VM_A) };
    assert!(matches!(host.vm_ensure(changed).await, Err(DriverError::Unavailable(_))));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state_of(&host), Some(VmState::Running));

    host.set_gpu_health(1, GpuHealth::Ok, "").expect("no-op");
    host.vm_remove(VM_A, 0).await.expect("remove");
    let err = refused(host.vm_power(VM_A, Start).await);
    assert!(matches!(&err, DriverError::FailedPrecondition(m) if m.contains("STOPPING")));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(host.vm_power(VM_A, Start).await, Err(DriverError::NotFound(_))));

    // A failed VM takes RemoveVm or a re-ensure, not power operations.
    host.faults().fail_nth(HostOp::DomainStart, 1);
    host.vm_ensure(cpu_vm(VM_B)).await.expect("ensure b");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = refused(host.vm_power(VM_B, Start).await);
    assert!(matches!(&err, DriverError::FailedPrecondition(m) if m.contains("FAILED")));
}

#[tokio::test(start_paused = true)]
async fn test_removing_a_stopped_or_starting_vm_frees_everything() {
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
    running_vm(&host, &mut events, gpu_vm(VM_A)).await;
    power(&host, PowerAction::Stop).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state_of(&host), Some(VmState::Stopped));
    assert_eq!(host.inventory().await.expect("inv").active_partitions.len(), 1);

    assert_eq!(host.vm_remove(VM_A, 0).await.expect("remove").state, VmState::Stopping);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(host.vm_count(), 0);
    assert_eq!(host.device().domain_running(VM_A), None);
    let inventory = host.inventory().await.expect("inv");
    assert!(inventory.active_partitions.is_empty());
    assert_eq!(inventory.hugepages_1g_free, BTreeMap::from([(0, 16), (1, 16)]));

    // Removed while starting: the start's timer finds it gone and starts nothing.
    let mut events = host.watch().expect("watch again");
    running_vm(&host, &mut events, VmSpec { generation: 2, ..gpu_vm(VM_A) }).await;
    power(&host, PowerAction::PowerOff).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(power(&host, PowerAction::Start).await, VmState::Starting);
    assert_eq!(host.vm_remove(VM_A, 0).await.expect("remove").state, VmState::Stopping);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.vm_count(), 0);
    assert_eq!(host.device().domain_running(VM_A), None);
}

#[tokio::test(start_paused = true)]
async fn test_a_stale_shutdown_timer_does_nothing_after_a_fast_stop_and_start() {
    use PowerAction::*;
    // Starting is faster than shutting down, so an old STOP's timer outlives a START.
    let host = SimHost::new(
        small_host(),
        HostOptions {
            provision_delay: Duration::from_millis(10),
            remove_delay: Duration::from_millis(100),
            jitter: 0.0,
            seed: 1,
            event_capacity: 64,
        },
    );
    host.vm_ensure(cpu_vm(VM_A)).await.expect("ensure");
    tokio::time::sleep(Duration::from_millis(20)).await;
    // t=20: graceful STOP (its timer at t=120), overtaken by POWER_OFF, then START.
    power(&host, Stop).await;
    power(&host, PowerOff).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(power(&host, Start).await, VmState::Starting);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(state_of(&host), Some(VmState::Running));
    // t=41: a new STOP, due at t=141; the old timer fires at t=120 and must not stop it.
    power(&host, Stop).await;
    tokio::time::sleep(Duration::from_millis(89)).await;
    assert_eq!(state_of(&host), Some(VmState::ShuttingDown));
    assert_eq!(host.device().domain_running(VM_A), Some(true));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(state_of(&host), Some(VmState::Stopped));
    assert_eq!(host.device().domain_running(VM_A), Some(false));
}

#[tokio::test(start_paused = true)]
async fn test_power_device_faults() {
    use PowerAction::*;
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
    running_vm(&host, &mut events, cpu_vm(VM_A)).await;

    // A refused stop, power-off or reboot: the guest still runs, the message says why.
    for (op, action, name) in [
        (HostOp::DomainStop, Stop, "STOP failed: injected fault: domain_stop"),
        (HostOp::DomainPowerOff, PowerOff, "POWER_OFF failed: injected fault: domain_power_off"),
        (HostOp::DomainReboot, Reboot, "REBOOT failed: injected fault: domain_reboot"),
    ] {
        host.faults().fail_nth(op, 1);
        power(&host, action).await;
        next_vm(&mut events).await;
        let refused = next_vm(&mut events).await;
        assert_eq!(refused.state, VmState::Running, "{action}");
        assert!(refused.message.starts_with(name), "{}", refused.message);
        assert!(refused.message.ends_with(&format!("send {action} again")));
    }
    assert_eq!(host.device().domain_running(VM_A), Some(true));

    // The retry works and clears the message.
    assert_eq!(power(&host, Stop).await, VmState::ShuttingDown);
    assert!(next_vm(&mut events).await.message.is_empty());
    assert_eq!(next_vm(&mut events).await.state, VmState::Stopped);

    // A refused start: FAILED, as a refused boot; a newer generation provisions again.
    host.faults().fail_nth(HostOp::DomainStart, 1);
    power(&host, Start).await;
    next_vm(&mut events).await;
    let failed = next_vm(&mut events).await;
    assert_eq!(failed.state, VmState::Failed);
    assert!(failed.message.starts_with("START failed: injected fault: domain_start"));
    let retry = VmSpec { generation: 2, ..cpu_vm(VM_A) };
    assert_eq!(host.vm_ensure(retry).await.expect("retry").state, VmState::Provisioning);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state_of(&host), Some(VmState::Running));
}

#[tokio::test(start_paused = true)]
async fn test_failed_gpu_fails_a_stopped_vm() {
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
    running_vm(&host, &mut events, gpu_vm(VM_A)).await;
    power(&host, PowerAction::PowerOff).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    host.set_gpu_health(1, GpuHealth::Failed, "XID 79").expect("flip");
    let status = host.vm_status(VM_A).expect("held");
    assert_eq!(status.state, VmState::Failed);
    assert!(status.message.contains("GPU module 1 failed"), "{}", status.message);
    let err = host.vm_power(VM_A, PowerAction::Start).await.expect_err("failed VM");
    assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err:?}");
}

#[tokio::test]
async fn test_shutdown_ends_watch_streams() {
    let host = sim_host(16);
    let mut events = host.watch().expect("watch");
    host.shutdown();
    // The snapshot (four GPUs and its end) is still delivered.
    for _ in 0..5 {
        assert!(events.next().await.is_some());
    }
    assert!(events.next().await.is_none());
    assert!(matches!(host.watch(), Err(DriverError::Unavailable(_))));
}

/// Reads the console until `needle` appears in what was read after `from` bytes of `seen`.
async fn console_shows(
    console: &mut crate::console::ConsoleSession,
    seen: &mut String,
    from: usize,
    needle: &str,
) {
    while !seen[from..].contains(needle) {
        let chunk = console.output.recv().await.expect("console open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(start_paused = true)]
async fn test_sim_console_boot_lines_echo_and_power_cycle() {
    let host = sim_host(64);
    let mut events = host.watch().expect("watch");
    let err = host.console(VM_A).await.err().expect("unknown VM");
    assert!(matches!(err, DriverError::NotFound(_)), "{err}");

    let spec = VmSpec { hostname: "trainer-1".into(), ..cpu_vm(VM_A) };
    host.vm_ensure(spec).await.expect("ensure");
    // Defined but not started yet: nothing printed, nothing to open.
    let err = host.console(VM_A).await.err().expect("not started");
    assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err}");
    assert_eq!(next_vm(&mut events).await.state, VmState::Provisioning);
    assert_eq!(next_vm(&mut events).await.state, VmState::Running);

    // Two viewers see the same history, typed keys and answers.
    let mut first = host.console(VM_A).await.expect("console");
    let mut second = host.console(VM_A).await.expect("console");
    let (mut a, mut b) = (String::new(), String::new());
    console_shows(&mut first, &mut a, 0, "cloud-init: hostname trainer-1").await;
    console_shows(&mut first, &mut a, 0, "trainer-1:~$ ").await;
    first.input.send(b"ls\r".to_vec()).await.expect("type");
    console_shows(
        &mut second,
        &mut b,
        0,
        "trainer-1:~$ ls\r\n[sim] a simulated guest has no shell",
    )
    .await;

    assert_eq!(power(&host, PowerAction::Reboot).await, VmState::Rebooting);
    let from = a.len();
    console_shows(&mut first, &mut a, from, "[sim] powered off").await;
    console_shows(&mut first, &mut a, from, "powered on").await;
    drop(second);

    host.vm_remove(VM_A, 2).await.expect("remove");
    loop {
        if next_vm(&mut events).await.state == VmState::Deleted {
            break;
        }
    }
    let err = host.console(VM_A).await.err().expect("removed");
    assert!(matches!(err, DriverError::NotFound(_)), "{err}");
}
