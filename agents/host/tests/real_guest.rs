//! A real guest under libvirt with QEMU (TCG here): the host agent's manager over the libvirt
//! backend on this machine as a CPU-only host, booting the tiny test guest
//! (`agents/host/guest/build-tiny-guest.sh`): launch → RUNNING once the guest printed its
//! boot line → the console shows the boot line and the hostname from the cloud-init drive,
//! and a typed command runs → stop, start, reboot → remove → no domain, overlay, config drive
//! or console log left.
//!
//! Needs libvirtd (qemu:///system) and the tiny guest image: `.ci/test` starts the one and
//! builds the other, and sets `PORTAL_TEST_LIBVIRT_URI` and `PORTAL_TEST_IMAGE_DIR`; without
//! them the test says so and does nothing (as the PostgreSQL variants do).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use host_agent::backend::libvirt::{DomainType, HostFacts, VmFiles};
use host_agent::{
    ConsoleSession, HostEvent, HostManager, HostOptions, LibvirtBackend, LibvirtConfig,
    PowerAction, VmSpec, VmState,
};

/// TCG boots the tiny guest in about 6 s on the build machines; generous for a loaded CI.
const BOOT: Duration = Duration::from_secs(120);

fn environment() -> Option<(String, PathBuf)> {
    match (std::env::var("PORTAL_TEST_LIBVIRT_URI"), std::env::var("PORTAL_TEST_IMAGE_DIR")) {
        (Ok(uri), Ok(dir)) => Some((uri, dir.into())),
        _ => {
            eprintln!(
                "PORTAL_TEST_LIBVIRT_URI / PORTAL_TEST_IMAGE_DIR are not set; skipping the real \
                 guest (.ci/test sets them)"
            );
            None
        }
    }
}

/// Reads the console until `needle` appeared in what was read after `seen`'s first `from`
/// bytes.
async fn read_after(console: &mut ConsoleSession, seen: &mut String, from: usize, needle: &str) {
    let wait = async {
        while !seen[from..].contains(needle) {
            let chunk = console.output.recv().await.expect("the console stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    if tokio::time::timeout(BOOT, wait).await.is_err() {
        panic!("the console never showed {needle:?}; it showed:\n{seen}");
    }
}

async fn read_until(console: &mut ConsoleSession, seen: &mut String, needle: &str) {
    read_after(console, seen, 0, needle).await;
}

async fn wait_state(
    events: &mut (impl futures::Stream<Item = HostEvent> + Unpin),
    vm_id: &str,
    want: VmState,
) {
    let wait = async {
        while let Some(event) = events.next().await {
            if let HostEvent::Vm(status) = event
                && status.vm_id == vm_id
            {
                assert_ne!(status.state, VmState::Failed, "{}", status.message);
                if status.state == want {
                    return;
                }
            }
        }
        panic!("the watch stream ended");
    };
    tokio::time::timeout(BOOT, wait).await.unwrap_or_else(|_| panic!("never {want:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_real_guest_boots_shows_its_console_and_goes_away() {
    let Some((uri, image_dir)) = environment() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let config = LibvirtConfig {
        uri: uri.clone(),
        domain_type: DomainType::Qemu,
        image_dir,
        state_dir: state_dir.clone(),
        sysfs_root: "/sys".into(),
        cpu_only_hugepages: false,
        fm_tool: None,
        shutdown_timeout_secs: 20,
        boot_wait_secs: 120,
        guest_memory_gib: Some(2),
        host: HostFacts::cpu_only("local-1", "build machine"),
    };
    let backend = tokio::task::spawn_blocking(move || LibvirtBackend::open(config))
        .await
        .unwrap()
        .expect("libvirtd answers (.ci/test starts it)");
    let host = backend.description().clone();
    let options = HostOptions::real_hardware();
    let manager = HostManager::new(host.clone(), Arc::new(backend), options);
    let mut events = manager.watch().unwrap();

    let cpus: Vec<u32> = host.numa_nodes[0].cpus.clone();
    let vm_id = uuid_for_this_run();
    let spec = VmSpec {
        vm_id: vm_id.clone(),
        name: "real guest".into(),
        generation: 1,
        partition_id: None,
        gpu_module_ids: vec![],
        nic_indices: vec![],
        vcpu_pins: vec![cpus[0]],
        emulator_cpu: cpus[cpus.len() - 1],
        numa_nodes: vec![host.numa_nodes[0].id],
        memory_mib: 256,
        disk_gib: 1,
        image: "tiny-test.qcow2".into(),
        hostname: "guest-from-cidata".into(),
        ssh_authorized_keys: vec!["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ test@portal".into()],
        user_data: String::new(),
    };
    let files = VmFiles::new(&state_dir, &vm_id);

    manager.vm_ensure(spec).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Running).await;
    // RUNNING comes after the guest printed: its first line is already in the log.
    let log = std::fs::read_to_string(&files.console_log).unwrap();
    assert!(log.contains("tiny-guest: booted"), "{log}");

    let mut console = manager.console(&vm_id).await.unwrap();
    let mut seen = String::new();
    read_until(&mut console, &mut seen, "tiny-guest: booted, kernel").await;
    read_until(&mut console, &mut seen, "hostname guest-from-cidata, 1 ssh keys").await;
    read_until(&mut console, &mut seen, "guest-from-cidata:/# ").await;
    // Typing reaches the guest's shell, and its answer comes back.
    console.input.send(b"echo typed-$((6 * 7))\r".to_vec()).await.unwrap();
    read_until(&mut console, &mut seen, "typed-42").await;

    // Stop: ACPI reaches the guest, which powers off by itself.
    manager.vm_power(&vm_id, PowerAction::Stop).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Stopped).await;
    read_until(&mut console, &mut seen, "reboot: Power down").await;

    manager.vm_power(&vm_id, PowerAction::Start).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Running).await;
    let mut console = manager.console(&vm_id).await.unwrap();
    let mut seen = String::new();
    read_until(&mut console, &mut seen, "guest-from-cidata:/# ").await;

    // Reboot: the guest goes down and boots again in the same domain.
    manager.vm_power(&vm_id, PowerAction::Reboot).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Running).await;
    read_until(&mut console, &mut seen, "tiny-guest: going down").await;
    let after = seen.len();
    read_after(&mut console, &mut seen, after, "tiny-guest: booted").await;
    drop(console);

    manager.vm_remove(&vm_id, 2).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Deleted).await;
    let listed = std::process::Command::new("virsh")
        .args(["-c", &uri, "list", "--all", "--name"])
        .output()
        .unwrap();
    let names: BTreeSet<String> =
        String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
    assert!(!names.contains(&vm_id), "the domain is still defined: {names:?}");
    for file in [&files.overlay, &files.config_drive, &files.console_log] {
        assert!(!file.exists(), "{} was left behind", file.display());
    }
}

/// A fresh VM id, so runs never collide on the shared libvirtd.
fn uuid_for_this_run() -> String {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("00000000-0000-4000-8000-{:012x}", nanos & 0xffff_ffff_ffff)
}
