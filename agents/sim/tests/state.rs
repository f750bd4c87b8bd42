//! A fleet with a state directory: a new fleet on the same directory holds the VMs the last
//! one held, in their states, with their resources; a corrupt host file is set aside.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_proto::v1 as pb;
use common::{
    PROVISION, REMOVE, assert_refused, cpu_vm, ensure, gpu_vm, host_client, inventory, next_vm_of,
    set_power, snapshot, temp_pki,
};
use sim_fleet::{PkiDir, SimFleet, SimOptions, Topology};
use tonic::Code;

fn temp_state_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sim-fleet-state-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start(pki: &PkiDir, state_dir: &Path) -> SimFleet {
    let options = SimOptions {
        provision_delay: PROVISION,
        remove_delay: REMOVE,
        network_apply_delay: Duration::ZERO,
        seed: 7,
        state_dir: Some(state_dir.to_path_buf()),
        ..SimOptions::default()
    };
    SimFleet::start(&Topology::hgx_h100(1), options, pki).await.expect("fleet starts")
}

fn active_partitions(inventory: &pb::HostInventory) -> Vec<u32> {
    inventory.partitions.iter().filter(|p| p.active).map(|p| p.id).collect()
}

#[tokio::test]
async fn test_a_new_fleet_on_the_same_state_dir_keeps_the_vms() {
    let state_dir = temp_state_dir("restart");
    let pki = temp_pki("state");
    let fleet = start(&pki, &state_dir).await;
    let mut h01 = host_client(&fleet, "su1-h01").await;
    let mut h02 = host_client(&fleet, "su1-h02").await;
    let mut events = h01.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    snapshot(&mut events, 0).await;
    let gpu = gpu_vm(1, 3, &[1, 3], 0);
    let cpu = cpu_vm(2, 20);
    ensure(&mut h01, gpu.clone()).await.expect("ensure gpu vm");
    ensure(&mut h01, cpu.clone()).await.expect("ensure cpu vm");
    for vm_id in [&gpu.vm_id, &cpu.vm_id] {
        while next_vm_of(&mut events, vm_id).await.state() != pb::VmState::Running {}
    }
    let stopped = cpu_vm(3, 0);
    ensure(&mut h02, stopped.clone()).await.expect("ensure on h02");
    tokio::time::sleep(PROVISION * 3).await;
    set_power(&mut h02, &stopped.vm_id, pb::VmPowerAction::Stop).await.expect("stop");
    tokio::time::sleep(REMOVE * 3).await;
    let before = inventory(&mut h01).await;
    // Written while the fleet runs, not only when it stops.
    tokio::time::sleep(sim_fleet::state::SAVE_INTERVAL * 3).await;
    let file = std::fs::read_to_string(state_dir.join("hosts/su1-h02.json")).expect("file");
    assert!(file.contains(&stopped.vm_id) && file.contains("Stopped"), "{file}");
    drop(fleet);

    let fleet = start(&pki, &state_dir).await;
    let mut h01 = host_client(&fleet, "su1-h01").await;
    let mut events = h01.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    let (vms, _) = snapshot(&mut events, 2).await;
    for vm in &vms {
        assert_eq!((vm.state(), vm.generation), (pb::VmState::Running, 1), "{vm:?}");
    }
    let after = inventory(&mut h01).await;
    assert_eq!(active_partitions(&after), [3]);
    assert_eq!(after.numa_nodes, before.numa_nodes, "the same hugepages are held");
    assert_eq!(ensure(&mut h01, gpu).await.expect("repeat").state(), pb::VmState::Running);
    // Its CPUs are held again.
    assert_refused(ensure(&mut h01, cpu_vm(4, 20)).await, Code::FailedPrecondition, "CPU 20");

    let mut h02 = host_client(&fleet, "su1-h02").await;
    let mut events = h02.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    let (vms, _) = snapshot(&mut events, 1).await;
    assert_eq!(
        (vms[0].vm_id.as_str(), vms[0].state()),
        (stopped.vm_id.as_str(), pb::VmState::Stopped)
    );
    fleet.shutdown().await;
    let _ = std::fs::remove_dir_all(&state_dir);
}

#[tokio::test]
async fn test_a_corrupt_host_file_is_set_aside_and_the_host_starts_empty() {
    let state_dir = temp_state_dir("corrupt");
    let hosts = state_dir.join("hosts");
    std::fs::create_dir_all(&hosts).expect("mkdir");
    std::fs::write(hosts.join("su1-h05.json"), "{\"version\": 1, \"vms\": [").expect("write");
    let fleet = start(&temp_pki("state-corrupt"), &state_dir).await;

    let mut h05 = host_client(&fleet, "su1-h05").await;
    let mut events = h05.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    snapshot(&mut events, 0).await;
    assert!(hosts.join("su1-h05.json.refused").exists(), "kept for a look");
    ensure(&mut h05, cpu_vm(1, 0)).await.expect("the host works");
    fleet.shutdown().await;
    let saved = std::fs::read_to_string(hosts.join("su1-h05.json")).expect("saved at stop");
    assert!(saved.contains(&common::uuid(1)), "{saved}");
    let _ = std::fs::remove_dir_all(&state_dir);
}
