//! A real guest under libvirt with QEMU (TCG here): the host agent's manager over the libvirt
//! backend on this machine as a CPU-only host, booting the tiny test guest
//! (`agents/host/guest/build-tiny-guest.sh`):
//!
//! - launch → RUNNING once the guest printed its boot line → the console shows the boot line
//!   and the hostname from the cloud-init drive, and a typed command runs → stop, start,
//!   reboot → remove → no domain, overlay, config drive or console log left;
//! - with the DPU agent's Linux backend in a network namespace this test makes: the guest's
//!   virtio NIC is wired to its port's VF stand-in, takes its address from the drive's
//!   network-config, reaches its tenant's namespace (VNI 100) and not tenant B's (VNI 200),
//!   even at the same address; its tap goes with it.
//!
//! Needs libvirtd (qemu:///system) and the tiny guest image: `.ci/test` starts the one and
//! builds the other, and sets `PORTAL_TEST_LIBVIRT_URI` and `PORTAL_TEST_IMAGE_DIR`; without
//! them the test says so and does nothing (as the PostgreSQL variants do). The network test
//! also needs root, `ip`, `tc` and `nft`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use agent_common::netns_testing::{self, Netns};
use agent_common::port_names::{guest_tap_name, vm_device_name};
use dpu_agent::{
    Direction, DpuBackend, DpuDescription, LinuxDpuBackend, LinuxDpuConfig, PortSpec, Protocol,
    SecurityRule,
};
use futures::StreamExt;
use host_agent::backend::libvirt::{DomainType, HostFacts, VmFiles};
use host_agent::{
    ConsoleSession, GuestNic, HostEvent, HostManager, HostOptions, LibvirtBackend, LibvirtConfig,
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

/// The manager over the libvirt backend on this machine as CPU-only host `local-1`, its
/// per-VM files under `state_dir`; `vf_netns`: the DPU namespace guests' NICs are wired to.
async fn manager_here(
    uri: &str,
    image_dir: PathBuf,
    state_dir: &Path,
    vf_netns: Option<String>,
) -> HostManager {
    let config = LibvirtConfig {
        uri: uri.to_owned(),
        domain_type: DomainType::Qemu,
        image_dir,
        state_dir: state_dir.to_owned(),
        sysfs_root: "/sys".into(),
        cpu_only_hugepages: false,
        fm_tool: None,
        shutdown_timeout_secs: 20,
        boot_wait_secs: 120,
        guest_memory_gib: Some(2),
        vf_netns,
        host: HostFacts::cpu_only("local-1", "build machine"),
    };
    let backend = tokio::task::spawn_blocking(move || LibvirtBackend::open(config))
        .await
        .unwrap()
        .expect("libvirtd answers (.ci/test starts it)");
    let host = backend.description().clone();
    HostManager::new(host, Arc::new(backend), HostOptions::real_hardware())
}

/// The tiny guest on the first NUMA node's CPUs, with one SSH key and `nics`.
fn tiny_spec(manager: &HostManager, vm_id: &str, nics: Vec<GuestNic>) -> VmSpec {
    let host = manager.description();
    let cpus: Vec<u32> = host.numa_nodes[0].cpus.clone();
    VmSpec {
        vm_id: vm_id.to_owned(),
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
        nics,
        fabric_nics: vec![],
    }
}

/// Destroys and undefines the domain when the test ends, whatever happened (a passing test
/// has removed it already).
struct DomainGuard<'a> {
    uri: &'a str,
    vm_id: String,
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        for verb in ["destroy", "undefine"] {
            let _ = std::process::Command::new("virsh")
                .args(["-c", self.uri, verb, &self.vm_id])
                .output();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_real_guest_boots_shows_its_console_and_goes_away() {
    let Some((uri, image_dir)) = environment() else { return };
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    let manager = manager_here(&uri, image_dir, &state_dir, None).await;
    let mut events = manager.watch().unwrap();
    let vm_id = uuid_for_this_run();
    let _guard = DomainGuard { uri: &uri, vm_id: vm_id.clone() };
    let spec = tiny_spec(&manager, &vm_id, vec![]);
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

/// A tenant port on the DPU backend, allowing everything from its subnet and every egress.
fn port(n: u8, vni: u32, ip: &str) -> PortSpec {
    let cidr = |net: &str| agent_common::validate::cidr("cidr", net).unwrap();
    PortSpec {
        port_id: format!("0190c2f4-7a1b-4c3d-8e9f-0000000000{n:02x}"),
        vm_id: format!("vm-{n}"),
        gateway: None,
        public_ip: None,
        generation: 1,
        vni,
        mac: format!("52:54:00:00:00:{n:02x}"),
        ip: ip.parse().unwrap(),
        rules: vec![
            SecurityRule {
                direction: Direction::Ingress,
                protocol: Protocol::Any,
                ports: None,
                cidr: cidr("10.1.0.0/24"),
            },
            SecurityRule {
                direction: Direction::Egress,
                protocol: Protocol::Any,
                ports: None,
                cidr: cidr("0.0.0.0/0"),
            },
        ],
    }
}

/// Attaches `spec` on the DPU; unless it is the guest's, moves its VM side into a new
/// namespace with the port's address, where a TCP server on port 22 answers `banner`.
async fn plug(dpu: &LinuxDpuBackend, dpu_ns: &Netns, spec: &PortSpec, banner: &str) -> Netns {
    dpu.vni_attach(spec.vni).await.unwrap();
    dpu.port_attach(spec).await.unwrap();
    dpu.rules_apply(&spec.port_id, &spec.rules).await.unwrap();
    let vm = Netns::new("hgt", &format!("vm{}", &spec.mac[15..]));
    let device = vm_device_name(&spec.port_id);
    dpu_ns.ip(&["link", "set", &device, "netns", &vm.name]);
    vm.ip(&["addr", "add", &format!("{}/24", spec.ip), "dev", &device]);
    vm.ip(&["link", "set", &device, "up"]);
    let listener = vm.enter(|| std::net::TcpListener::bind(("0.0.0.0", 22)).unwrap());
    let banner = format!("{banner}\n");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut stream, banner.as_bytes());
        }
    });
    vm
}

/// Types `command` (which prints `<tag>-42` on success, `<tag>-43` otherwise) and returns
/// whether it succeeded.
async fn guest_says(
    console: &mut ConsoleSession,
    seen: &mut String,
    command: &str,
    tag: &str,
) -> bool {
    let line = format!("{command} && echo {tag}-$((40 + 2)) || echo {tag}-$((40 + 3))\r");
    console.input.send(line.into_bytes()).await.unwrap();
    let from = seen.len();
    let (yes, no) = (format!("{tag}-42"), format!("{tag}-43"));
    let wait = async {
        loop {
            let answer = &seen[from..];
            if answer.contains(&yes) || answer.contains(&no) {
                return answer.contains(&yes);
            }
            let chunk = console.output.recv().await.expect("the console stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    tokio::time::timeout(BOOT, wait)
        .await
        .unwrap_or_else(|_| panic!("no answer to {command}:\n{seen}"))
}

/// The guest's virtio NIC lands on its tenant's bridge on the DPU's Linux backend: the
/// guest reaches a namespace of its own tenant (VNI 100), never tenant B's (VNI 200), even
/// at the same address; the wiring goes when the guest does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_real_guests_nic_reaches_its_tenant_and_no_other() {
    let Some((uri, image_dir)) = environment() else { return };
    if !netns_testing::runnable(&["ip", "nft", "tc"]) {
        return;
    }
    let dpu_ns = Netns::new("hgt", "dpu");
    let dpu = LinuxDpuBackend::start(LinuxDpuConfig {
        dpu: DpuDescription {
            dpu_id: "local-1-dpu0".into(),
            host_id: "local-1".into(),
            model: "veth".into(),
            pci_address: "0000:00:00.0".into(),
            vtep_ip: "192.0.2.1".into(),
            max_ports: 8,
        },
        netns: Some(dpu_ns.name.clone()),
        remote_vteps: vec![],
        uplink: None,
    })
    .await
    .expect("the DPU backend starts");
    let guest_port = port(0x10, 100, "10.1.0.10");
    let (a, b, b2) =
        (port(0x11, 100, "10.1.0.11"), port(0x12, 200, "10.1.0.11"), port(0x13, 200, "10.1.0.12"));
    dpu.vni_attach(100).await.unwrap();
    dpu.port_attach(&guest_port).await.unwrap();
    dpu.rules_apply(&guest_port.port_id, &guest_port.rules).await.unwrap();
    let _vm_a = plug(&dpu, &dpu_ns, &a, "tenant-a-answers").await;
    let _vm_b = plug(&dpu, &dpu_ns, &b, "tenant-b-answers").await;
    let _vm_b2 = plug(&dpu, &dpu_ns, &b2, "tenant-b2-answers").await;

    let dir = tempfile::tempdir().unwrap();
    let manager =
        manager_here(&uri, image_dir, &dir.path().join("state"), Some(dpu_ns.name.clone())).await;
    let mut events = manager.watch().unwrap();
    let vm_id = uuid_for_this_run();
    // Dropped before the namespaces: a guest still running would take its tap back out.
    let _guard = DomainGuard { uri: &uri, vm_id: vm_id.clone() };
    let nic = GuestNic {
        port_id: guest_port.port_id.clone(),
        mac: guest_port.mac.clone(),
        ip: "10.1.0.10".parse().unwrap(),
        prefix_len: 24,
        gateway: None,
    };
    manager.vm_ensure(tiny_spec(&manager, &vm_id, vec![nic])).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Running).await;
    let tap = guest_tap_name(&guest_port.port_id);
    assert!(dpu_ns.has_device(&tap), "the guest's tap was moved next to its VF stand-in");

    let mut console = manager.console(&vm_id).await.unwrap();
    let mut seen = String::new();
    read_until(&mut console, &mut seen, "tiny-guest: network eth0 10.1.0.10/24").await;
    read_until(&mut console, &mut seen, "guest-from-cidata:/# ").await;
    assert!(guest_says(&mut console, &mut seen, "ping -c 2 -W 5 10.1.0.11 >/dev/null", "A").await);
    assert!(
        guest_says(
            &mut console,
            &mut seen,
            "nc 10.1.0.11 22 </dev/null | grep -q tenant-a-answers",
            "N"
        )
        .await,
        "10.1.0.11 is tenant A's namespace"
    );
    assert!(!seen.contains("tenant-b-answers"));
    assert!(
        !guest_says(&mut console, &mut seen, "ping -c 2 -W 5 10.1.0.12 >/dev/null", "B").await,
        "tenant B's 10.1.0.12 is out of reach"
    );
    let counters = dpu.nft_counters(&guest_port.port_id).await.unwrap();
    assert!(
        counters.egress.rules[&1].packets >= 2,
        "the guest's packets left through its port: {counters:?}"
    );
    drop(console);

    manager.vm_remove(&vm_id, 2).await.unwrap();
    wait_state(&mut events, &vm_id, VmState::Deleted).await;
    assert!(!dpu_ns.has_device(&tap), "the tap went with the guest");
    assert!(dpu_ns.has_device(&vm_device_name(&guest_port.port_id)), "the port stays the DPU's");
}
