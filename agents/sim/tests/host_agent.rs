//! The host agent over real gRPC on loopback, against the simulated HGX H100 host.

mod common;

use std::time::{Duration, Instant};

use agent_proto::v1 as pb;
use common::*;
use sim_fleet::{GpuHealth, HostOp};
use tonic::Code;

const HOST: &str = "su1-h07";

#[tokio::test]
async fn test_inventory_reports_hgx_h100_facts() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let inv = inventory(&mut client).await;

    assert_eq!(inv.host_id, HOST);
    assert_eq!(inv.scalable_unit, 1);
    assert_eq!(inv.system_model, "HGX H100 8-GPU");
    assert!(!inv.agent_version.is_empty());
    assert_eq!(inv.numa_nodes.len(), 2);
    for node in &inv.numa_nodes {
        assert_eq!(node.cpus.len(), 112);
        assert_eq!(node.memory_mib, 1024 * 1024);
        assert_eq!((node.hugepages_1g_total, node.hugepages_1g_free), (960, 960));
    }
    assert!(inv.numa_nodes[1].cpus.contains(&168));

    // nvidia-smi index order is not module order.
    let modules: Vec<u32> = inv.gpus.iter().map(|g| g.module_id).collect();
    assert_eq!(modules, [3, 1, 4, 2, 7, 5, 8, 6]);
    let mut uuids: Vec<&str> = inv.gpus.iter().map(|g| g.uuid.as_str()).collect();
    uuids.dedup();
    assert_eq!(uuids.len(), 8);
    for gpu in &inv.gpus {
        assert_eq!(gpu.model, "H100-SXM5-80GB");
        assert_eq!(gpu.health(), pb::GpuHealth::Ok);
        // Modules 1-4 on NUMA 0, 5-8 on NUMA 1.
        assert_eq!(gpu.numa_node, u32::from(gpu.module_id >= 5), "module {}", gpu.module_id);
        // Exactly one NIC shares the GPU's PCIe switch, and it has the GPU's index.
        let paired: Vec<&pb::Nic> =
            inv.nics.iter().filter(|nic| nic.pcie_switch == gpu.pcie_switch).collect();
        assert_eq!(paired.len(), 1);
        assert_eq!(paired[0].index, gpu.index);
        assert_eq!(paired[0].numa_node, gpu.numa_node);
    }
    for nic in &inv.nics {
        assert_eq!((nic.rail, nic.speed_gbps), (nic.index, 400));
        assert_eq!(nic.leaf_switch_id, format!("su1-leaf{}", nic.index));
        assert!(fleet.switch(&nic.leaf_switch_id).is_some());
    }
    assert_eq!(inv.dpu_ids, ["su1-h07-dpu0", "su1-h07-dpu1"]);
    assert_eq!(inv.partitions.len(), 15);
    assert_eq!(inv.partitions[0].module_ids, (1..=8).collect::<Vec<_>>());
    assert_eq!(inv.partitions[3].module_ids, [1, 3]);
    assert_eq!(inv.partitions[14].module_ids, [8]);
    assert!(inv.partitions.iter().all(|p| !p.active));
}

#[tokio::test]
async fn test_ensure_is_idempotent_by_vm_id() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let spec = gpu_vm(1, 0, &[1, 2, 3, 4, 5, 6, 7, 8], 0);

    let first = ensure(&mut client, spec.clone()).await.expect("ensure");
    assert_eq!(first.state(), pb::VmState::Provisioning);
    let second = ensure(&mut client, spec.clone()).await.expect("retry");
    assert_eq!(second, first);
    // The id is case-insensitive: still the same VM.
    let upper = pb::VmSpec { vm_id: spec.vm_id.to_uppercase(), ..spec };
    assert_eq!(ensure(&mut client, upper).await.expect("upper").vm_id, first.vm_id);

    let host = fleet.host(HOST).expect("handle");
    assert_eq!(host.vm_count(), 1);
    let inv = inventory(&mut client).await;
    // 64 GiB over two nodes: 32 pages each, taken once.
    let free: Vec<u32> = inv.numa_nodes.iter().map(|n| n.hugepages_1g_free).collect();
    assert_eq!(free, [928, 928]);
    let active: Vec<u32> = inv.partitions.iter().filter(|p| p.active).map(|p| p.id).collect();
    assert_eq!(active, [0]);
}

#[tokio::test]
async fn test_generation_rules() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let v2 = pb::VmSpec { generation: 2, ..cpu_vm(1, 0) };
    ensure(&mut client, v2.clone()).await.expect("gen 2");

    let stale = pb::VmSpec { generation: 1, ..v2.clone() };
    assert_refused(
        ensure(&mut client, stale).await,
        Code::FailedPrecondition,
        "already at generation 2",
    );

    let different = pb::VmSpec { memory_mib: 32 * 1024, ..v2.clone() };
    assert_refused(
        ensure(&mut client, different.clone()).await,
        Code::FailedPrecondition,
        "different spec at generation 2",
    );

    let v3 = pb::VmSpec { generation: 3, ..different };
    let status = ensure(&mut client, v3).await.expect("gen 3");
    assert_eq!(status.generation, 3);
    let inv = inventory(&mut client).await;
    assert_eq!(inv.numa_nodes[0].hugepages_1g_free, 960 - 32);

    assert_refused(
        ensure(&mut client, pb::VmSpec { generation: 0, ..cpu_vm(2, 10) }).await,
        Code::InvalidArgument,
        "generation 0",
    );
}

#[tokio::test]
async fn test_partitions_activate_refuse_overlap_and_deactivate() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let pair = gpu_vm(1, 3, &[1, 3], 0);
    ensure(&mut client, pair.clone()).await.expect("partition 3");

    // {1,2,3,4} overlaps the active {1,3}; so does the single GPU 3 and the whole host.
    for (n, partition, modules) in
        [(2, 1, vec![1, 2, 3, 4]), (3, 9, vec![3]), (4, 0, (1..=8).collect())]
    {
        assert_refused(
            ensure(&mut client, gpu_vm(n, partition, &modules, 20)).await,
            Code::FailedPrecondition,
            "overlaps partition 3 (GPU modules [1, 3]), active for VM",
        );
    }
    // The sibling {2,4} and the other half {5,6,7,8} are free.
    ensure(&mut client, gpu_vm(5, 4, &[2, 4], 20)).await.expect("partition 4");
    ensure(&mut client, gpu_vm(6, 2, &[5, 6, 7, 8], 0)).await.expect("partition 2");
    // A CPU-only VM beside them needs no partition.
    ensure(&mut client, cpu_vm(7, 40)).await.expect("CPU-only");

    assert_refused(
        ensure(&mut client, gpu_vm(8, 42, &[1], 45)).await,
        Code::InvalidArgument,
        "partition_id 42 is not in this host's Fabric Manager partition table",
    );
    assert_refused(
        ensure(&mut client, gpu_vm(8, 5, &[5, 6], 45)).await,
        Code::InvalidArgument,
        "partition 5 holds GPU modules [5, 7] but gpu_module_ids is [5, 6]",
    );
    assert_refused(
        ensure(&mut client, pb::VmSpec { partition_id: Some(7), ..cpu_vm(8, 45) }).await,
        Code::InvalidArgument,
        "CPU-only VM has no partition",
    );

    let active = |inv: &pb::HostInventory| -> Vec<u32> {
        inv.partitions.iter().filter(|p| p.active).map(|p| p.id).collect()
    };
    assert_eq!(active(&inventory(&mut client).await), [2, 3, 4]);

    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    snapshot(&mut events, 4).await;
    assert_eq!(remove(&mut client, &pair.vm_id).await.state(), pb::VmState::Stopping);
    // Deactivated only after the VM has stopped.
    assert_eq!(active(&inventory(&mut client).await), [2, 3, 4]);
    assert_eq!(next_vm(&mut events).await.state(), pb::VmState::Stopping);
    assert_eq!(next_vm(&mut events).await.state(), pb::VmState::Deleted);
    assert_eq!(active(&inventory(&mut client).await), [2, 4]);
    ensure(&mut client, gpu_vm(9, 9, &[3], 45)).await.expect("GPU 3 is free again");
}

/// The Fabric Manager partition RPCs a launch saga calls before EnsureVm (and as its undo).
#[tokio::test]
async fn test_partition_rpcs_activate_deactivate() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let (a, b) = (uuid(1), uuid(2));
    let active = |vm: &str| pb::PartitionStatus { partition_id: 3, active: true, vm_id: vm.into() };
    let inactive = pb::PartitionStatus { partition_id: 3, active: false, vm_id: String::new() };

    // Idempotent for the same VM; shown active in the inventory.
    assert_eq!(activate(&mut client, &a, 3).await.expect("activate"), active(&a));
    assert_eq!(activate(&mut client, &a, 3).await.expect("again"), active(&a));
    let inv = inventory(&mut client).await;
    assert!(inv.partitions.iter().any(|p| p.id == 3 && p.active));

    // Another VM cannot have it, nor an overlapping one ({1,2,3,4}), nor launch onto it.
    for partition in [3, 1] {
        assert_refused(
            activate(&mut client, &b, partition).await,
            Code::FailedPrecondition,
            "active for VM",
        );
    }
    assert_refused(
        ensure(&mut client, gpu_vm(2, 3, &[1, 3], 0)).await,
        Code::FailedPrecondition,
        "overlaps partition 3",
    );
    assert_refused(activate(&mut client, &a, 42).await, Code::InvalidArgument, "partition_id 42");
    // B's undo leaves A's partition alone and says whose it is.
    assert_eq!(deactivate(&mut client, &b, 3).await.expect("other's"), active(&a));

    // EnsureVm adopts the activation; while the VM is defined it cannot be deactivated.
    let vm = gpu_vm(1, 3, &[1, 3], 0);
    ensure(&mut client, vm.clone()).await.expect("ensure on the active partition");
    assert_refused(deactivate(&mut client, &a, 3).await, Code::FailedPrecondition, "in use");

    // RemoveVm deactivates it once the VM is gone; deactivating again is fine.
    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    snapshot(&mut events, 1).await;
    remove(&mut client, &vm.vm_id).await;
    assert_eq!(next_vm_of(&mut events, &a).await.state(), pb::VmState::Stopping);
    assert_eq!(next_vm_of(&mut events, &a).await.state(), pb::VmState::Deleted);
    assert_eq!(deactivate(&mut client, &a, 3).await.expect("gone"), inactive);

    // Without a VM, activate then deactivate frees it for another VM; a GPU that FAILED
    // keeps its partitions from being activated.
    activate(&mut client, &a, 3).await.expect("activate");
    assert_eq!(deactivate(&mut client, &a, 3).await.expect("undo"), inactive);
    assert_eq!(activate(&mut client, &b, 3).await.expect("free for B"), active(&b));
    let host = fleet.host(HOST).expect("handle");
    host.set_gpu_health(8, GpuHealth::Failed, "XID 79").expect("flip");
    assert_refused(activate(&mut client, &a, 2).await, Code::FailedPrecondition, "FAILED");
}

#[tokio::test]
async fn test_resources_are_never_given_twice() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    // Modules 1 and 3 with NICs 1 and 0, vCPUs 0-7, emulator 8.
    ensure(&mut client, gpu_vm(1, 3, &[1, 3], 0)).await.expect("first VM");

    let with = |f: &dyn Fn(&mut pb::VmSpec)| {
        let mut spec = cpu_vm(2, 20);
        f(&mut spec);
        spec
    };
    let cases: [(pb::VmSpec, Code, &str); 9] = [
        (
            with(&|s| s.nic_indices = vec![0]),
            Code::FailedPrecondition,
            "NIC 0 is already given to VM",
        ),
        (with(&|s| s.vcpu_pins = vec![20, 7]), Code::FailedPrecondition, "CPU 7 is already pinned"),
        (with(&|s| s.emulator_cpu = 8), Code::FailedPrecondition, "CPU 8 is already pinned"),
        (
            with(&|s| s.nic_indices = vec![8]),
            Code::InvalidArgument,
            "NIC 8, which this host does not have",
        ),
        (
            with(&|s| s.vcpu_pins = vec![224]),
            Code::InvalidArgument,
            "CPU 224, which this host does not have",
        ),
        (with(&|s| s.emulator_cpu = 999), Code::InvalidArgument, "emulator_cpu 999"),
        (
            with(&|s| s.vcpu_pins = vec![20, 60]),
            Code::InvalidArgument,
            "vCPU pin CPU 60 sits on NUMA node 1",
        ),
        (with(&|s| s.numa_nodes = vec![2]), Code::InvalidArgument, "numa_nodes names node 2"),
        (
            with(&|s| s.memory_mib = 950 * 1024),
            Code::ResourceExhausted,
            "NUMA node 0 has 896 free 1 GiB hugepages but the VM needs 950",
        ),
    ];
    for (spec, code, text) in cases {
        assert_refused(ensure(&mut client, spec).await, code, text);
    }
    let unknown_gpu =
        pb::VmSpec { partition_id: Some(13), gpu_module_ids: vec![9], ..cpu_vm(3, 20) };
    assert_refused(
        ensure(&mut client, unknown_gpu).await,
        Code::InvalidArgument,
        "module 9, which this host does not have",
    );

    // Memory rounds up to whole 1 GiB pages: 896 GiB fit exactly, one MiB more does not.
    let rest = with(&|s| s.memory_mib = 896 * 1024);
    ensure(&mut client, rest).await.expect("exactly the free pages");
    assert_refused(
        ensure(&mut client, pb::VmSpec { memory_mib: 1, ..cpu_vm(4, 30) }).await,
        Code::ResourceExhausted,
        "has 0 free",
    );

    // Nothing of the refused requests was taken.
    let inv = inventory(&mut client).await;
    assert_eq!(inv.numa_nodes[0].hugepages_1g_free, 0);
    assert_eq!(fleet.host(HOST).expect("handle").vm_count(), 2);
}

#[tokio::test]
async fn test_failed_gpu_cannot_be_given_and_flip_is_reported() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let host = fleet.host(HOST).expect("handle");
    ensure(&mut client, gpu_vm(1, 5, &[5, 7], 0)).await.expect("VM on modules 5, 7");
    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    let (vms, gpus) = snapshot(&mut events, 1).await;
    assert_eq!(vms.len(), 1);
    assert_eq!(gpus.iter().map(|g| g.module_id).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6, 7, 8]);

    host.set_gpu_health(7, GpuHealth::Failed, "XID 79: GPU has fallen off the bus").expect("flip");
    let event = next(&mut events).await;
    let Some(pb::host_event::Event::Gpu(gpu)) = event.event else {
        panic!("expected a GPU event, got {event:?}");
    };
    assert_eq!((gpu.module_id, gpu.health()), (7, pb::GpuHealth::Failed));
    assert!(gpu.message.contains("XID 79"));
    let vm = next_vm(&mut events).await;
    assert_eq!(vm.state(), pb::VmState::Failed);
    assert!(vm.message.contains("GPU module 7 failed"), "{}", vm.message);

    let inv = inventory(&mut client).await;
    let health = |m: u32| inv.gpus.iter().find(|g| g.module_id == m).map(|g| g.health());
    assert_eq!(health(7), Some(pb::GpuHealth::Failed));

    remove(&mut client, &uuid(1)).await;
    assert_eq!(next_vm(&mut events).await.state(), pb::VmState::Stopping);
    assert_eq!(next_vm(&mut events).await.state(), pb::VmState::Deleted);
    assert_refused(
        ensure(&mut client, gpu_vm(2, 13, &[7], 0)).await,
        Code::FailedPrecondition,
        "GPU module 7 has FAILED health (XID 79",
    );
    // A degraded GPU can still be given (by admin choice, which is the caller's).
    host.set_gpu_health(8, GpuHealth::Degraded, "row remap pending").expect("flip");
    ensure(&mut client, gpu_vm(3, 14, &[8], 0)).await.expect("degraded GPU");
}

#[tokio::test]
async fn test_state_machine_and_watch_for_several_subscribers() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    ensure(&mut client, cpu_vm(1, 0)).await.expect("existing VM");
    let mut a = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    let mut b = host_client(&fleet, HOST)
        .await
        .watch(pb::WatchRequest {})
        .await
        .expect("watch")
        .into_inner();
    for events in [&mut a, &mut b] {
        let (vms, gpus) = snapshot(events, 1).await;
        assert_eq!(vms[0].vm_id, uuid(1));
        assert_eq!(gpus.len(), 8);
    }

    let started = Instant::now();
    let spec = gpu_vm(2, 1, &[1, 2, 3, 4], 20);
    assert_eq!(ensure(&mut client, spec).await.expect("ensure").state(), pb::VmState::Provisioning);
    for events in [&mut a, &mut b] {
        let mut states = Vec::new();
        while states.last() != Some(&pb::VmState::Running) {
            states.push(next_vm_of(events, &uuid(2)).await.state());
        }
        assert_eq!(states, [pb::VmState::Provisioning, pb::VmState::Running]);
    }
    // Provisioning took the configured delay (plus at most 10 % jitter).
    let took = started.elapsed();
    assert!(took >= PROVISION, "RUNNING after {took:?}");

    assert_eq!(remove(&mut client, &uuid(2)).await.state(), pb::VmState::Stopping);
    assert_eq!(remove(&mut client, &uuid(2)).await.state(), pb::VmState::Stopping);
    for events in [&mut a, &mut b] {
        let stopping = next_vm_of(events, &uuid(2)).await;
        assert_eq!(stopping.state(), pb::VmState::Stopping);
        let deleted = next_vm_of(events, &uuid(2)).await;
        assert_eq!((deleted.state(), deleted.generation), (pb::VmState::Deleted, 1));
    }
    let absent = remove(&mut client, &uuid(2)).await;
    assert_eq!(absent.state(), pb::VmState::Deleted);
    assert_refused(
        client.remove_vm(pb::RemoveVmRequest { vm_id: "vm-2".into(), generation: 0 }).await,
        Code::InvalidArgument,
        "is not a UUID",
    );
    let inv = inventory(&mut client).await;
    assert_eq!(inv.numa_nodes[0].hugepages_1g_free, 960 - 16);
    assert!(inv.partitions.iter().all(|p| !p.active));
}

#[tokio::test]
async fn test_set_vm_power_over_grpc() {
    use pb::VmPowerAction as Action;
    use pb::VmState as State;
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let vm = uuid(1);
    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    snapshot(&mut events, 0).await;
    ensure(&mut client, gpu_vm(1, 3, &[1, 3], 0)).await.expect("ensure");
    assert_refused(
        set_power(&mut client, &vm, Action::Stop).await,
        Code::FailedPrecondition,
        "is PROVISIONING",
    );
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Provisioning);
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Running);
    let held = inventory(&mut client).await;

    // Each answer is the transitional state; the watch stream reports the end.
    let steps = [
        (Action::Stop, State::ShuttingDown, State::Stopped),
        (Action::Start, State::Starting, State::Running),
        (Action::Reboot, State::Rebooting, State::Running),
        (Action::PowerOff, State::ShuttingDown, State::Stopped),
    ];
    for (action, during, after) in steps {
        let answer = set_power(&mut client, &vm, action).await.expect("power");
        assert_eq!((answer.state(), answer.generation), (during, 1), "{action:?}");
        // The same request again changes nothing (POWER_OFF, without delay, may be done).
        let repeat = set_power(&mut client, &vm, action).await.expect("again");
        assert!([during, after].contains(&repeat.state()), "{action:?}: {repeat:?}");
        assert_eq!(next_vm_of(&mut events, &vm).await.state(), during);
        assert_eq!(next_vm_of(&mut events, &vm).await.state(), after, "{action:?}");
    }
    // Stopped, it keeps its partition, hugepages and GPUs; the same ensure does not boot it.
    assert_eq!(inventory(&mut client).await, held);
    let again = ensure(&mut client, gpu_vm(1, 3, &[1, 3], 0)).await.expect("same spec");
    assert_eq!(again.state(), State::Stopped);
    assert_refused(
        set_power(&mut client, &vm, Action::Reboot).await,
        Code::FailedPrecondition,
        "send START",
    );
    assert_refused(
        set_power(&mut client, &vm, Action::Unspecified).await,
        Code::InvalidArgument,
        "send START, STOP, REBOOT or POWER_OFF",
    );
    assert_refused(
        set_power(&mut client, &uuid(9), Action::Start).await,
        Code::NotFound,
        "holds no VM",
    );
    assert_refused(
        set_power(&mut client, "vm-1", Action::Start).await,
        Code::InvalidArgument,
        "UUID",
    );

    // A refused stop leaves it running and says why; a stopped VM is removed as any other.
    set_power(&mut client, &vm, Action::Start).await.expect("start");
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Starting);
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Running);
    fleet.host(HOST).expect("handle").faults().fail_nth(HostOp::DomainStop, 1);
    set_power(&mut client, &vm, Action::Stop).await.expect("stop");
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::ShuttingDown);
    let refused = next_vm_of(&mut events, &vm).await;
    assert_eq!(refused.state(), State::Running);
    assert!(refused.message.starts_with("STOP failed: injected fault"), "{}", refused.message);
    set_power(&mut client, &vm, Action::PowerOff).await.expect("power off");
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::ShuttingDown);
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Stopped);
    assert_eq!(remove(&mut client, &vm).await.state(), State::Stopping);
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Stopping);
    assert_eq!(next_vm_of(&mut events, &vm).await.state(), State::Deleted);
    assert!(inventory(&mut client).await.partitions.iter().all(|p| !p.active));
}

#[tokio::test]
async fn test_fault_injection() {
    let fleet = fleet().await;
    let mut client = host_client(&fleet, HOST).await;
    let faults = fleet.host(HOST).expect("handle").faults();

    // The 2nd EnsureVm from now fails, once, without side effects.
    faults.fail_nth(HostOp::DomainDefine, 2);
    ensure(&mut client, cpu_vm(1, 0)).await.expect("1st call");
    let status = ensure(&mut client, cpu_vm(2, 10)).await.expect_err("2nd call is injected");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().starts_with("injected fault: domain_define"), "{}", status.message());
    assert_eq!(status.metadata().get("x-fault").and_then(|v| v.to_str().ok()), Some("injected"));
    assert_eq!(fleet.host(HOST).expect("handle").vm_count(), 1);
    ensure(&mut client, cpu_vm(2, 10)).await.expect("the retry succeeds");

    // Always fail, until cleared.
    faults.fail_always(HostOp::Hardware);
    for _ in 0..3 {
        let status = client.get_inventory(pb::InventoryRequest {}).await.expect_err("injected");
        assert_eq!(status.code(), Code::Unavailable);
    }
    faults.clear_op(HostOp::Hardware);
    inventory(&mut client).await;

    // Delay an operation.
    faults.delay(HostOp::DomainStop, Duration::from_millis(300));
    let started = Instant::now();
    remove(&mut client, &uuid(1)).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    faults.clear();

    // Seeded chaos fails the same calls on every run.
    let pattern = |seed: u64| {
        let client = client.clone();
        async move {
            let mut client = client;
            faults.chaos_on(&[HostOp::Hardware], 0.5, seed);
            let mut failed = Vec::new();
            for _ in 0..20 {
                failed.push(client.get_inventory(pb::InventoryRequest {}).await.is_err());
            }
            faults.clear();
            failed
        }
    };
    let first = pattern(11).await;
    assert_eq!(first, pattern(11).await);
    assert!(first.contains(&true) && first.contains(&false), "{first:?}");

    // A failed boot: the VM ends FAILED with the injected message.
    faults.fail_nth(HostOp::DomainStart, 1);
    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    ensure(&mut client, cpu_vm(3, 20)).await.expect("ensure");
    let failed = loop {
        let vm = next_vm_of(&mut events, &uuid(3)).await;
        if vm.state() == pb::VmState::Failed {
            break vm;
        }
    };
    assert!(failed.message.starts_with("injected fault: domain_start"), "{}", failed.message);
    assert!(faults.injected_count() >= 6);
}
