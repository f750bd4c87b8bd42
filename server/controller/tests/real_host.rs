//! The whole path to a real guest: the control plane launches a CPU-only VM, which the
//! scheduler puts on this machine (a real host beside a simulated scalable unit, served by the
//! host agent's libvirt backend); `running` once the guest kernel printed; its console (the
//! agent's Console RPC, as the portal reads it) shows the boot line and the hostname and SSH
//! key from cloud-init; stop, start and reboot through the power saga; delete leaves no
//! domain, overlay, config drive or console log.
//!
//! Needs libvirtd and the tiny test guest (`.ci/test` sets `PORTAL_TEST_LIBVIRT_URI` and
//! `PORTAL_TEST_IMAGE_DIR`); without them the test says so and does nothing.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portal_controller::{Controller, ControllerConfig};
use portal_types::params::{InstanceCreate, PowerAction, SshKeyCreate};
use portal_types::views::{InstanceState, LiveEvent};

/// TCG boots the tiny guest in about 6 s here; generous for a loaded CI machine.
const BOOT: Duration = Duration::from_secs(180);

async fn wait_state(
    events: &mut tokio::sync::broadcast::Receiver<portal_controller::events::BusEvent>,
    name: &str,
    state: InstanceState,
) {
    let wait = async {
        loop {
            if let Ok(e) = events.recv().await
                && let LiveEvent::Instance(v) = e.event
                && v.name == name
            {
                assert_ne!(v.state, InstanceState::Failed, "{:?}", v.message);
                if v.state == state {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(BOOT, wait).await.unwrap_or_else(|_| panic!("{name} never {state}"));
}

/// Reads the VM's console through the host agent until `needle` shows after `from` bytes.
async fn console_shows(
    output: &mut tonic::Streaming<agent_proto::v1::ConsoleOutput>,
    seen: &mut String,
    from: usize,
    needle: &str,
) {
    let wait = async {
        while !seen[from..].contains(needle) {
            let chunk = output.message().await.expect("console stream").expect("stays open");
            seen.push_str(&String::from_utf8_lossy(&chunk.data));
        }
    };
    if tokio::time::timeout(BOOT, wait).await.is_err() {
        panic!("the console never showed {needle:?}; it showed:\n{seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_launch_on_a_real_host_boots_a_guest_with_its_console_and_power_cycle() {
    let (Ok(uri), Ok(image_dir)) =
        (std::env::var("PORTAL_TEST_LIBVIRT_URI"), std::env::var("PORTAL_TEST_IMAGE_DIR"))
    else {
        eprintln!("PORTAL_TEST_LIBVIRT_URI / PORTAL_TEST_IMAGE_DIR are not set; skipping");
        return;
    };
    assert_eq!(uri, "qemu:///system", "the real host is this machine's system libvirtd");
    let state = tempfile::tempdir().unwrap();
    let real_host = sim_fleet::real_host::this_machine(
        image_dir.into(),
        state.path().join("vms"),
        sim_fleet::real_host::DomainType::Qemu,
        2,
    );
    let options = sim_fleet::SimOptions {
        provision_delay: Duration::from_millis(50),
        real_host: Some(real_host),
        ..Default::default()
    };
    let pki = temp_pki("real-host");
    let fleet = sim_fleet::SimFleet::start(&sim_fleet::Topology::hgx_h100(1), options, &pki)
        .await
        .expect("the fleet and the real host start");
    let tls = pki.control_plane().unwrap();
    let config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(sqlite_url("real-host"))
    };
    let ctl = Controller::open(&config).await.unwrap();
    attach_all(&ctl, &fleet, &tls).await;
    let user = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin = op(&ctl.actor(user).await.unwrap().unwrap());
    let key = SshKeyCreate {
        name: "laptop".into(),
        public_key: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGb4ZsNcVZjW1B5F3e6l2YbWlGgG2eWtMUs0nqtQSVY2 me@laptop".into(),
    };
    let key = ctl.ssh_key_create(&admin, &key).await.unwrap();

    // A small VM of an image this machine lacks goes to a simulated host instead.
    let ubuntu = InstanceCreate { image: "ubuntu-24.04-cuda-12.8".into(), ..launch("u", "c1m1") };
    let ubuntu = ctl.instance_create(&admin, &ubuntu).await.unwrap().remove(0);
    assert_ne!(ubuntu.host_name.as_deref(), Some(sim_fleet::real_host::REAL_HOST_ID));

    let mut events = ctl.events().subscribe();
    let clicked = Instant::now();
    let create = InstanceCreate {
        image: "tiny-test".into(),
        ssh_keys: vec![key.id],
        ..launch("real-guest", "c1m1")
    };
    let vm = ctl.instance_create(&admin, &create).await.unwrap().remove(0);
    wait_state(&mut events, "real-guest", InstanceState::Running).await;
    let booted = clicked.elapsed();
    let detail = ctl.instance_get(&admin, vm.id).await.unwrap();
    assert_eq!(detail.host.as_deref(), Some(sim_fleet::real_host::REAL_HOST_ID));
    eprintln!("click to running (guest printed): {} ms", booted.as_millis());

    let mut agent = host_client_of(&fleet, sim_fleet::real_host::REAL_HOST_ID).await;
    let vm_id = vm.id.to_string();
    let (keys, typed) = tokio::sync::mpsc::channel(4);
    keys.send(agent_proto::v1::ConsoleRequest { vm_id: vm_id.clone(), input: vec![] })
        .await
        .unwrap();
    let mut output = agent
        .console(tokio_stream::wrappers::ReceiverStream::new(typed))
        .await
        .expect("console opens")
        .into_inner();
    let mut seen = String::new();
    console_shows(&mut output, &mut seen, 0, "tiny-guest: booted, kernel").await;
    console_shows(&mut output, &mut seen, 0, "hostname real-guest, 1 ssh keys").await;
    console_shows(&mut output, &mut seen, 0, "real-guest:/# ").await;
    let input = b"cat /cidata/user-data\r".to_vec();
    keys.send(agent_proto::v1::ConsoleRequest { vm_id: String::new(), input }).await.unwrap();
    console_shows(&mut output, &mut seen, 0, "me@laptop").await;
    // The port's address reaches the guest's cloud-init drive (this host has no DPU wiring,
    // so the guest has no NIC to give it to: `tiny-guest: no NIC`).
    let port = &detail.ports[0];
    let input = b"cat /cidata/network-config\r".to_vec();
    keys.send(agent_proto::v1::ConsoleRequest { vm_id: String::new(), input }).await.unwrap();
    let address = format!("- {}/{}", port.ip, port.cidr.split_once('/').unwrap().1);
    console_shows(&mut output, &mut seen, 0, &address).await;
    console_shows(&mut output, &mut seen, 0, &format!("macaddress: \"{}\"", port.mac)).await;
    assert!(seen.contains("tiny-guest: no NIC with MAC"), "{seen}");

    for (action, end) in [
        (PowerAction::Stop, InstanceState::Stopped),
        (PowerAction::Start, InstanceState::Running),
        (PowerAction::Reboot, InstanceState::Running),
    ] {
        ctl.instance_power(&admin, vm.id, action).await.unwrap();
        wait_state(&mut events, "real-guest", end).await;
    }
    drop((keys, output));

    let files = ["{id}.qcow2", "{id}-cidata.iso", "{id}.console.log"]
        .map(|f| state.path().join("vms").join(f.replace("{id}", &vm_id)));
    assert!(files.iter().all(|f| f.exists()), "{files:?}");
    ctl.instance_delete(&admin, vm.id).await.unwrap();
    eventually(60, "the instance is gone", async || {
        ctl.instance_list(&admin).await.unwrap().iter().all(|i| i.id != vm.id)
    })
    .await;
    let listed =
        std::process::Command::new("virsh").args(["-c", &uri, "list", "--all", "--name"]).output();
    let listed = String::from_utf8_lossy(&listed.unwrap().stdout).into_owned();
    assert!(!listed.lines().any(|l| l == vm_id), "the domain is still defined: {listed}");
    for file in &files {
        assert!(!file.exists(), "{} was left behind", file.display());
    }
    ctl.stop();
    fleet.shutdown().await;
}

async fn host_client_of(
    fleet: &sim_fleet::SimFleet,
    id: &str,
) -> agent_proto::v1::host_agent_client::HostAgentClient<tonic::transport::Channel> {
    let channel = fleet.control_plane_channel(id).await.expect("connect to the host agent");
    agent_proto::v1::host_agent_client::HostAgentClient::new(channel)
}
