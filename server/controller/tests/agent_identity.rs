//! Which agent the control plane believes: only one whose certificate names the agents file's
//! id and whose inventory reports that same id, and for a VM only the host it is placed on.

use std::sync::Arc;
use std::time::Duration;

use agent_common::tls::AgentName;
use agent_proto::v1 as pb;
use agent_proto::{AgentEndpoint, AgentKind};
use portal_controller::{Controller, ControllerConfig, StartError};
use portal_types::views::InstanceState;

mod common;

use common::*;

async fn controller(name: &str) -> Arc<Controller> {
    Controller::open(&ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(sqlite_url(name))
    })
    .await
    .unwrap()
}

/// Whether the controller's fleet is still empty (a refused agent registers nothing).
async fn no_hosts(ctl: &Controller) -> bool {
    let user = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin = op(&ctl.actor(user).await.unwrap().unwrap());
    ctl.fleet_summary(&admin).await.unwrap().hosts.is_empty()
}

fn host(id: &str, url: &str) -> AgentEndpoint {
    AgentEndpoint { kind: AgentKind::Host, id: id.into(), url: url.into() }
}

/// su1-h01's port (and su1-h01's valid certificate) listed as su1-h02: refused at the
/// handshake, with both names in the sentence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_certificate_names_another_id_is_refused() {
    let stack = start(&sqlite_url("wrong-cert"), 1).await;
    let url = stack.fleet.endpoint("su1-h01").unwrap().url.clone();
    let ctl = controller("wrong-cert-2").await;
    let mut unattached = ctl.attach_agents(&[host("su1-h02", &url)], &stack.tls).await.unwrap();
    let err = unattached.pop().expect("the agent is named");
    assert!(matches!(err, StartError::AgentUnreachable(_)), "{err}");
    assert!(no_hosts(&ctl).await);
    let text = err.to_string();
    assert!(text.contains("not valid for name \"su1-h02.host.agents.gpucloud\""), "{text}");
    assert!(text.contains("su1-h01.host.agents.gpucloud"), "{text}");
}

#[tokio::test]
async fn a_plain_text_agent_url_is_refused_before_dialling() {
    let pki = temp_pki("plain-url");
    pki.ensure(&[], false).unwrap();
    let ctl = controller("plain-url").await;
    let endpoint = host("su1-h01", "http://127.0.0.1:1");
    let err = ctl.attach_agents(&[endpoint], &pki.control_plane().unwrap()).await.unwrap_err();
    assert!(matches!(err, StartError::AgentConfig { .. }), "{err}");
    assert!(err.to_string().contains("write its URL as https://host:port"), "{err}");
}

/// An agent with a valid certificate for su1-h05 whose inventory says su1-h01: refused with
/// both ids, and nothing registered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inventory_that_reports_another_id_is_refused() {
    let pki = temp_pki("wrong-inventory");
    let listed = AgentName { kind: "host", id: "su1-h05" };
    pki.ensure(&[listed], false).unwrap();
    let description = sim_fleet::Topology::hgx_h100(1).hosts().remove(0);
    assert_eq!(description.host_id, "su1-h01");
    let sim = host_agent::SimHost::new(description, Default::default());
    let router = host_agent::HostAgentService::new(sim.manager().clone())
        .into_router(&pki.agent(listed).unwrap())
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = sim_fleet::serve::serve_on_loopback(router, stopped).await.unwrap();

    let ctl = controller("wrong-inventory").await;
    let url = format!("https://{}", server.addr);
    let tls = pki.control_plane().unwrap();
    let mut unattached = ctl.attach_agents(&[host("su1-h05", &url)], &tls).await.unwrap();
    let err = unattached.pop().expect("the agent is named");
    assert!(matches!(err, StartError::AgentIdMismatch { .. }), "{err}");
    assert!(no_hosts(&ctl).await);
    assert_eq!(
        err.to_string(),
        format!(
            "the host agent at {url} reports the id su1-h01, but the agents file lists it as \
             su1-h05; correct the agents file or the agent"
        )
    );
    let _ = stop.send(true);
}

/// Host B reports a VM with the id of an instance running on host A (creates it, then
/// removes it, so B's stream says "deleted"): the instance stays running on A.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vm_status_from_a_host_it_is_not_placed_on_is_ignored() {
    let stack = start(&sqlite_url("wrong-host"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("placed", "h100x1")).await.unwrap().remove(0);
    wait_for_state(&mut events, "placed", InstanceState::Running).await;
    let placed_on = vm.host_name.clone().unwrap();
    let other = if placed_on == "su1-h01" { "su1-h02" } else { "su1-h01" };

    let mut client = host_client(&stack, other).await;
    let vm_id = vm.id.to_string();
    let spec = pb::VmSpec {
        vm_id: vm_id.clone(),
        name: "impostor".into(),
        generation: 1,
        partition_id: None,
        gpu_module_ids: vec![],
        nic_indices: vec![],
        vcpu_pins: (40..44).collect(),
        emulator_cpu: 44,
        numa_nodes: vec![0],
        memory_mib: 16 * 1024,
        disk_gib: 10,
        image: "ubuntu-24.04".into(),
        ..Default::default()
    };
    client.ensure_vm(pb::EnsureVmRequest { spec: Some(spec) }).await.expect("ensure on B");
    let sim = stack.fleet.host(other).unwrap();
    wait_until(|| sim.vm_status(&vm_id).is_some_and(|s| s.state == host_agent::VmState::Running))
        .await;
    client
        .remove_vm(pb::RemoveVmRequest { vm_id: vm_id.clone(), generation: 0 })
        .await
        .expect("remove on B");
    wait_until(|| sim.vm_status(&vm_id).is_none()).await;
    // Time for B's "running" and "deleted" to reach the control plane.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let list = ctl.instance_list(admin).await.unwrap();
    let still = list.iter().find(|i| i.id == vm.id).unwrap();
    assert_eq!(still.state, InstanceState::Running, "{:?}", still.message);
    assert_eq!(still.host_name.as_deref(), Some(placed_on.as_str()));
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition within 10 s");
}
