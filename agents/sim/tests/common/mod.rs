//! Helpers shared by the gRPC integration tests: a fast simulated fleet with its own PKI
//! directory, clients that dial as the control plane (mutual TLS), VM specs on the HGX H100
//! layout, and watch-stream readers with timeouts.
#![allow(dead_code)]

use std::time::Duration;

use agent_proto::v1 as pb;
use agent_proto::v1::dpu_agent_client::DpuAgentClient;
use agent_proto::v1::host_agent_client::HostAgentClient;
use agent_proto::v1::switch_agent_client::SwitchAgentClient;
use sim_fleet::{PkiDir, SimFleet, SimOptions, Topology};
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

pub const PROVISION: Duration = Duration::from_millis(150);
pub const REMOVE: Duration = Duration::from_millis(80);
/// Longest any single expected event may take.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// One scalable unit (32 hosts, 64 DPUs, 8 leaves) with short delays.
pub async fn fleet() -> SimFleet {
    fleet_with(1).await
}

pub async fn fleet_with(scalable_units: u32) -> SimFleet {
    let topology = Topology::hgx_h100(scalable_units);
    SimFleet::start(
        &topology,
        SimOptions {
            provision_delay: PROVISION,
            remove_delay: REMOVE,
            network_apply_delay: Duration::ZERO,
            seed: 7,
            ..SimOptions::default()
        },
        &temp_pki("fleet"),
    )
    .await
    .expect("fleet starts")
}

/// A fresh, empty PKI directory under the system's temporary directory.
pub fn temp_pki(name: &str) -> PkiDir {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("sim-fleet-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    PkiDir::new(dir)
}

async fn channel(fleet: &SimFleet, id: &str) -> Channel {
    fleet.control_plane_channel(id).await.unwrap_or_else(|e| panic!("connect to {id}: {e}"))
}

pub async fn host_client(fleet: &SimFleet, id: &str) -> HostAgentClient<Channel> {
    HostAgentClient::new(channel(fleet, id).await)
}

pub async fn dpu_client(fleet: &SimFleet, id: &str) -> DpuAgentClient<Channel> {
    DpuAgentClient::new(channel(fleet, id).await)
}

pub async fn switch_client(fleet: &SimFleet, id: &str) -> SwitchAgentClient<Channel> {
    SwitchAgentClient::new(channel(fleet, id).await)
}

pub fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// A CPU-only VM: 4 vCPUs on node 0 CPUs `first..first+4`, emulator on `first + 4`, 16 GiB.
pub fn cpu_vm(n: u32, first_cpu: u32) -> pb::VmSpec {
    pb::VmSpec {
        vm_id: uuid(n),
        name: format!("vm-{n}"),
        generation: 1,
        partition_id: None,
        gpu_module_ids: vec![],
        nic_indices: vec![],
        vcpu_pins: (first_cpu..first_cpu + 4).collect(),
        emulator_cpu: first_cpu + 4,
        numa_nodes: vec![0],
        memory_mib: 16 * 1024,
        disk_gib: 100,
        image: "ubuntu-24.04".into(),
        hostname: String::new(),
        ssh_authorized_keys: vec![],
        user_data: String::new(),
        nics: vec![],
        fabric_nics: vec![],
    }
}

/// A GPU VM on `partition` of the HGX H100 table with the paired NICs (NIC index = GPU
/// index: module m sits at index [1,3,0,2,5,7,4,6][m-1]) and CPUs on the GPUs' nodes.
pub fn gpu_vm(n: u32, partition: u32, modules: &[u32], first_cpu: u32) -> pb::VmSpec {
    let index_of_module = [1, 3, 0, 2, 5, 7, 4, 6];
    let nics = modules.iter().map(|m| index_of_module[(*m - 1) as usize]).collect();
    let on_node_1 = modules.iter().any(|m| *m > 4);
    let on_node_0 = modules.iter().any(|m| *m <= 4);
    let numa_nodes = match (on_node_0, on_node_1) {
        (true, true) => vec![0, 1],
        (false, true) => vec![1],
        _ => vec![0],
    };
    // Node 1's CPUs start at 56.
    let base = if numa_nodes == [1] { 56 + first_cpu } else { first_cpu };
    pb::VmSpec {
        partition_id: Some(partition),
        gpu_module_ids: modules.to_vec(),
        nic_indices: nics,
        vcpu_pins: (base..base + 8).collect(),
        emulator_cpu: base + 8,
        numa_nodes,
        memory_mib: 64 * 1024,
        ..cpu_vm(n, first_cpu)
    }
}

pub async fn ensure(
    client: &mut HostAgentClient<Channel>,
    spec: pb::VmSpec,
) -> Result<pb::VmStatus, Status> {
    client
        .ensure_vm(pb::EnsureVmRequest { spec: Some(spec) })
        .await
        .map(tonic::Response::into_inner)
}

pub async fn remove(client: &mut HostAgentClient<Channel>, vm_id: &str) -> pb::VmStatus {
    client
        .remove_vm(pb::RemoveVmRequest { vm_id: vm_id.into(), generation: 0 })
        .await
        .expect("remove")
        .into_inner()
}

pub async fn activate(
    client: &mut HostAgentClient<Channel>,
    vm_id: &str,
    partition_id: u32,
) -> Result<pb::PartitionStatus, Status> {
    let request = pb::ActivatePartitionRequest { vm_id: vm_id.into(), partition_id, generation: 1 };
    client.activate_partition(request).await.map(tonic::Response::into_inner)
}

pub async fn deactivate(
    client: &mut HostAgentClient<Channel>,
    vm_id: &str,
    partition_id: u32,
) -> Result<pb::PartitionStatus, Status> {
    let request = pb::DeactivatePartitionRequest { vm_id: vm_id.into(), partition_id };
    client.deactivate_partition(request).await.map(tonic::Response::into_inner)
}

pub async fn set_power(
    client: &mut HostAgentClient<Channel>,
    vm_id: &str,
    action: pb::VmPowerAction,
) -> Result<pb::VmStatus, Status> {
    let request = pb::SetVmPowerRequest { vm_id: vm_id.into(), action: action.into() };
    client.set_vm_power(request).await.map(tonic::Response::into_inner)
}

pub async fn inventory(client: &mut HostAgentClient<Channel>) -> pb::HostInventory {
    client.get_inventory(pb::InventoryRequest {}).await.expect("inventory").into_inner()
}

/// Asserts the call failed with `code` and a message containing `text`.
pub fn assert_refused<T: std::fmt::Debug>(result: Result<T, Status>, code: Code, text: &str) {
    let status = result.expect_err("call must be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(status.message().contains(text), "{:?} lacks {text:?}", status.message());
}

pub async fn next<T>(stream: &mut Streaming<T>) -> T {
    tokio::time::timeout(EVENT_TIMEOUT, stream.message())
        .await
        .expect("event within the timeout")
        .expect("stream healthy")
        .expect("stream not ended")
}

/// The next VM event, skipping GPU events.
pub async fn next_vm(stream: &mut Streaming<pb::HostEvent>) -> pb::VmStatus {
    loop {
        if let Some(pb::host_event::Event::Vm(vm)) = next(stream).await.event {
            return vm;
        }
    }
}

/// The next event about VM `vm_id`, skipping all others.
pub async fn next_vm_of(stream: &mut Streaming<pb::HostEvent>, vm_id: &str) -> pb::VmStatus {
    loop {
        let vm = next_vm(stream).await;
        if vm.vm_id == vm_id {
            return vm;
        }
    }
}

/// Reads the snapshot of a host with `vms` VMs up to its end marker: returns the VM statuses
/// and GPU statuses.
pub async fn snapshot(
    stream: &mut Streaming<pb::HostEvent>,
    vms: usize,
) -> (Vec<pb::VmStatus>, Vec<pb::GpuStatus>) {
    let (mut vm_events, mut gpu_events) = (Vec::new(), Vec::new());
    loop {
        match next(stream).await.event {
            Some(pb::host_event::Event::Vm(vm)) => vm_events.push(vm),
            Some(pb::host_event::Event::Gpu(gpu)) => gpu_events.push(gpu),
            Some(pb::host_event::Event::SnapshotEnd(_)) => break,
            None => panic!("empty host event"),
        }
    }
    assert_eq!(
        (vm_events.len(), gpu_events.len()),
        (vms, 8),
        "the snapshot lists every VM and GPU"
    );
    (vm_events, gpu_events)
}
