//! A rail leaf's switch agent that restarts (a new boot id, holding nothing) is noticed by
//! its watch stream: the leaf is shown unreachable while it is down, then connected again
//! and sent every tenant VPC and GPU fabric the database gives it, at the database's
//! generation; the restart is audited once; a GPU launch made while the leaf was down
//! completes once it is back. The agents are served by hand on loopback (mutual TLS, a
//! per-test PKI) so that one leaf can be stopped and started again on the same address.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use portal_controller::Controller;
use portal_types::topology::{FabricLeaf, LeafVrf, VrfState};
use portal_types::views::{AgentLink, FabricLinkState, InstanceDetail, InstanceState};
use switch_agent::model::{SwitchDescription, VpcSpec};

/// Serves a fresh switch agent (a new boot id, holding nothing) for `description` at `addr`.
async fn serve_switch(
    pki: &agent_common::tls::PkiDir,
    description: SwitchDescription,
    addr: SocketAddr,
) -> (switch_agent::SimSwitch, tokio::sync::watch::Sender<bool>) {
    let name = agent_common::tls::AgentName { kind: "switch", id: &description.switch_id };
    let credentials = pki.agent(name).unwrap();
    let switch = switch_agent::SimSwitch::new(description, Default::default());
    assert_eq!(switch.vpc_count(), 0, "a new switch agent holds nothing");
    let router = switch_agent::SwitchAgentService::new(switch.manager().clone())
        .into_router(&credentials)
        .unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The agent before may still hold the address for a moment while it stops.
    let mut tries = 0;
    while let Err(e) = sim_fleet::serve::serve_on(addr, router.clone(), stopped.clone()).await {
        tries += 1;
        assert!(tries < 100, "cannot serve the switch at {addr}: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (switch, stop)
}

/// Serves a host agent and its DPU agent for good; the stop senders keep them serving.
async fn serve_host(
    pki: &agent_common::tls::PkiDir,
    host: host_agent::HostDescription,
    dpu: dpu_agent::DpuDescription,
    host_addr: SocketAddr,
    dpu_addr: SocketAddr,
) -> (host_agent::SimHost, dpu_agent::SimDpu, [tokio::sync::watch::Sender<bool>; 2]) {
    let host_name = agent_common::tls::AgentName { kind: "host", id: &host.host_id };
    let dpu_name = agent_common::tls::AgentName { kind: "dpu", id: &dpu.dpu_id };
    let sim_host = host_agent::SimHost::new(host.clone(), Default::default());
    let router = host_agent::HostAgentService::new(sim_host.manager().clone())
        .into_router(&pki.agent(host_name).unwrap())
        .unwrap();
    let (host_stop, stopped) = tokio::sync::watch::channel(false);
    sim_fleet::serve::serve_on(host_addr, router, stopped).await.unwrap();
    let dpu_credentials = pki.agent(dpu_name).unwrap();
    let sim_dpu = dpu_agent::SimDpu::new(dpu, Default::default());
    let router = dpu_agent::DpuAgentService::new(sim_dpu.manager().clone())
        .into_router(&dpu_credentials)
        .unwrap();
    let (dpu_stop, stopped) = tokio::sync::watch::channel(false);
    sim_fleet::serve::serve_on(dpu_addr, router, stopped).await.unwrap();
    (sim_host, sim_dpu, [host_stop, dpu_stop])
}

async fn launched(ctl: &Arc<Controller>, who: &OpContext, name: &str, ty: &str) -> InstanceDetail {
    let id = ctl.instance_create(who, &launch(name, ty)).await.unwrap()[0].id;
    ctl.instance_get(who, id).await.unwrap()
}

async fn running(ctl: &Arc<Controller>, who: &OpContext, vm: &InstanceDetail) -> InstanceDetail {
    let id = vm.instance.id;
    eventually(20, &format!("{} running", vm.instance.name), async || {
        ctl.instance_get(who, id).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    ctl.instance_get(who, id).await.unwrap()
}

/// The leaf as the provider's fabric picture shows it now.
async fn leaf_picture(ctl: &Controller, admin: &OpContext, leaf: &str) -> FabricLeaf {
    let picture = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
    picture.leaves.into_iter().find(|l| l.name == leaf).expect("the leaf is in the picture")
}

/// The picture's VRF of `vpc` on the leaf.
fn vrf_of<'a>(leaf: &'a FabricLeaf, vpc: &str) -> Option<&'a LeafVrf> {
    leaf.vrfs.iter().find(|v| v.vpc_id.to_string() == vpc)
}

/// Whether the switch holds `vpc` at the generation the database has for it, and the picture
/// shows it confirmed there.
fn held_as_the_database_says(
    switch: &switch_agent::SimSwitch,
    leaf: &FabricLeaf,
    vpc: &str,
) -> bool {
    let (Some(held), Some(vrf)) = (switch.vpc(vpc), vrf_of(leaf, vpc)) else { return false };
    vrf.state == VrfState::Confirmed
        && vrf.confirmed_generation == Some(vrf.generation)
        && held.generation == vrf.generation as u64
}

/// The access ports of the GPU fabric's segments on the leaf.
fn access_ports(spec: &VpcSpec) -> Vec<String> {
    let mut ports: Vec<String> =
        spec.segments.iter().flat_map(|s| s.access_ports.iter().cloned()).collect();
    ports.sort();
    ports
}

/// A leaf's switch agent restarts: the control plane shows it unreachable, then connected,
/// sends it the tenant's VPC and GPU fabric again at the database's generation, audits the
/// restart once (not again from another replica with the same boot id), and a GPU launch
/// that waited for the leaf meanwhile completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_switch_agent_gets_its_vpcs_again_and_admins_are_told() {
    let topology = sim_fleet::Topology::hgx_h100(1);
    let hosts: Vec<_> = topology.hosts().into_iter().take(2).collect();
    let dpus: Vec<_> = hosts
        .iter()
        .map(|h| topology.dpus().into_iter().find(|d| d.host_id == h.host_id).expect("a DPU"))
        .collect();
    let leaves = topology.switches();
    assert!(leaves.len() >= 2, "one leaf per rail");

    let pki = temp_pki("switch-restart");
    let mut names: Vec<agent_common::tls::AgentName> = Vec::new();
    for (h, d) in hosts.iter().zip(&dpus) {
        names.push(agent_common::tls::AgentName { kind: "host", id: &h.host_id });
        names.push(agent_common::tls::AgentName { kind: "dpu", id: &d.dpu_id });
    }
    for l in &leaves {
        names.push(agent_common::tls::AgentName { kind: "switch", id: &l.switch_id });
    }
    pki.ensure(&names, false).unwrap();
    let tls = pki.control_plane().unwrap();

    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let endpoint = |kind, id: &str, addr: SocketAddr| agent_proto::AgentEndpoint {
        kind,
        id: id.to_owned(),
        url: format!("https://{addr}"),
    };
    let mut agents = Vec::new();
    let mut serving = Vec::new();
    for (h, d) in hosts.iter().zip(&dpus) {
        let (host_addr, dpu_addr) = (free(), free());
        serving.push(serve_host(&pki, h.clone(), d.clone(), host_addr, dpu_addr).await);
        agents.push(endpoint(agent_proto::AgentKind::Host, &h.host_id, host_addr));
        agents.push(endpoint(agent_proto::AgentKind::Dpu, &d.dpu_id, dpu_addr));
    }
    // Every leaf of the unit: (description, address, switch, stop).
    let mut switches = Vec::new();
    for l in &leaves {
        let addr = free();
        let (switch, stop) = serve_switch(&pki, l.clone(), addr).await;
        agents.push(endpoint(agent_proto::AgentKind::Switch, &l.switch_id, addr));
        switches.push((l.clone(), addr, switch, stop));
    }

    let config = portal_controller::ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..portal_controller::ControllerConfig::new(sqlite_url("switch-restart"))
    };
    let ctl = Controller::open(&config).await.unwrap();
    assert!(ctl.attach_agents(&agents, &tls).await.unwrap().is_empty());
    let user = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin = &op(&ctl.actor(user).await.unwrap().unwrap());

    // A CPU-only VM puts the tenant's default VPC on every leaf of the unit; a 1-GPU VM
    // puts the tenant's GPU fabric on the leaf of its SuperNIC's rail.
    let cpu = launched(&ctl, admin, "cpu", "c1m1").await;
    let gpu = launched(&ctl, admin, "gpu", "h100x1").await;
    running(&ctl, admin, &cpu).await;
    let gpu = running(&ctl, admin, &gpu).await;
    let vpc = ctl.network_overview(admin).await.unwrap().vpcs[0].id.to_string();
    assert_eq!(gpu.nics.len(), 1, "{:?}", gpu.nics);
    let leaf_name = gpu.nics[0].fabric_leaf.clone().expect("the NIC's rail leaf");
    let first_host = gpu.host.clone().expect("placed");
    let index = switches.iter().position(|s| s.0.switch_id == leaf_name).expect("a served leaf");
    let (description, addr, first, first_stop) = switches.remove(index);
    let port_to = |host: &str| {
        let port = description.ports.iter().find(|p| p.peer_host_id == host);
        port.expect("the leaf is cabled to the host").name.clone()
    };

    let picture = leaf_picture(&ctl, admin, &leaf_name).await;
    let fabric = picture
        .vrfs
        .iter()
        .find(|v| v.vrf_name.starts_with("gpu"))
        .expect("the GPU fabric belongs on the leaf")
        .vpc_id
        .to_string();
    eventually(10, "the leaf holds the VPC and the GPU fabric", async || {
        let leaf = leaf_picture(&ctl, admin, &leaf_name).await;
        held_as_the_database_says(&first, &leaf, &vpc)
            && held_as_the_database_says(&first, &leaf, &fabric)
    })
    .await;
    assert_eq!(access_ports(&first.vpc(&fabric).unwrap()), [port_to(&first_host)]);
    let fabric_generation_before = first.vpc(&fabric).unwrap().generation;
    assert_eq!(leaf_picture(&ctl, admin, &leaf_name).await.agent, AgentLink::Connected);

    // The agent goes away: its stream breaks, and the leaf is shown unreachable.
    let first_boot = first.boot_id().to_owned();
    first.manager().shutdown();
    first_stop.send(true).unwrap();
    eventually(20, "the leaf shown unreachable", async || {
        leaf_picture(&ctl, admin, &leaf_name).await.agent == AgentLink::Unreachable
    })
    .await;

    // A launch while it is down: 8 GPUs fit only the other host, and one of its SuperNICs
    // is on this leaf's rail, so it waits for the leaf to hold the tenant's GPU fabric.
    let late = launched(&ctl, admin, "late", "h100x8").await;
    eventually(10, "the late launch waits for the leaf", async || {
        let now = ctl.instance_get(admin, late.instance.id).await.unwrap();
        now.instance.state == InstanceState::Provisioning
            && now.nics.iter().any(|n| n.fabric_leaf.as_deref() == Some(leaf_name.as_str()))
    })
    .await;
    let late_now = ctl.instance_get(admin, late.instance.id).await.unwrap();
    let second_host = late_now.host.clone().expect("placed");
    let waiting = late_now.nics.iter().find(|n| n.fabric_leaf.as_deref() == Some(&leaf_name));
    assert_ne!(waiting.unwrap().fabric_state, Some(FabricLinkState::Ready), "{waiting:?}");
    assert_ne!(second_host, first_host, "8 GPUs fit only the other host");
    let no_restart = ctl.audit_list(admin, Some("switch.restarted"), None, &newest()).await;
    assert!(no_restart.unwrap().items.is_empty(), "nothing restarted yet");

    // It comes back empty, as a restarted agent does: it gets the VPC and the GPU fabric
    // again, at the database's generation (the fabric's now with the late VM's NIC).
    let (second, _second_stop) = serve_switch(&pki, description.clone(), addr).await;
    assert_ne!(second.boot_id(), first_boot);
    eventually(20, "the leaf shown connected again", async || {
        leaf_picture(&ctl, admin, &leaf_name).await.agent == AgentLink::Connected
    })
    .await;
    eventually(20, "the restarted leaf holds the VPC and the GPU fabric again", async || {
        let leaf = leaf_picture(&ctl, admin, &leaf_name).await;
        held_as_the_database_says(&second, &leaf, &vpc)
            && held_as_the_database_says(&second, &leaf, &fabric)
            && second.vpc(&fabric).is_some_and(|f| f.generation > fabric_generation_before)
    })
    .await;
    let mut both = vec![port_to(&first_host), port_to(&second_host)];
    both.sort();
    assert_eq!(access_ports(&second.vpc(&fabric).unwrap()), both);
    assert_eq!(second.vpc_count(), 2, "{:?}", second.vpcs());

    // The launch that waited for the leaf does not stay stuck.
    let late = running(&ctl, admin, &late).await;
    assert_eq!(late.nics.len(), 8);

    // Provider admins are told, once, and only about this leaf.
    let audit = ctl.audit_list(admin, Some("switch.restarted"), None, &newest()).await.unwrap();
    let restarts: Vec<_> = audit.items.iter().filter(|e| e.action == "switch.restarted").collect();
    assert_eq!(restarts.len(), 1, "{restarts:?}");
    let entry = restarts[0];
    assert_eq!(
        (entry.object_id.as_str(), entry.actor.as_str()),
        (leaf_name.as_str(), "control plane")
    );
    assert_eq!(entry.outcome, "restarted holding none of its 2 tenant VPCs; all sent again");

    // Another replica attaching the same agents (the same boot ids) reports no restart.
    let other = Controller::open(&config).await.unwrap();
    assert!(other.attach_agents(&agents, &tls).await.unwrap().is_empty());
    let audit = other.audit_list(admin, Some("switch.restarted"), None, &newest()).await.unwrap();
    assert_eq!(audit.items.iter().filter(|e| e.action == "switch.restarted").count(), 1);
    let leaf = leaf_picture(&other, admin, &leaf_name).await;
    assert!(held_as_the_database_says(&second, &leaf, &vpc), "not marked for sending again");
    assert!(held_as_the_database_says(&second, &leaf, &fabric), "not marked for sending again");
    other.stop();
    ctl.stop();
}
