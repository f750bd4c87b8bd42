//! Tenant networking through the control plane against the simulated fleet: default VPC,
//! subnet and group; VPCs, subnets, groups and rules with their refusals; a launch gets a
//! port (an address of its subnet, its groups) programmed on its host's DPU; a rule change
//! reaches the DPU; a delete frees the address; another tenant's networks are not found.

mod common;

use common::*;
use portal_controller::Controller;
use portal_types::Error;
use portal_types::network::{
    Direction, NetworkOverview, Protocol, SecurityGroupCreate, SecurityRuleCreate, SubnetCreate,
    VpcCreate,
};
use portal_types::params::InstanceCreate;
use portal_types::views::{AgentLink, InstanceDetail, InstanceState};

async fn overview(ctl: &Controller, who: &OpContext) -> NetworkOverview {
    ctl.network_overview(who).await.unwrap()
}

async fn running(
    ctl: &std::sync::Arc<Controller>,
    who: &OpContext,
    create: InstanceCreate,
) -> InstanceDetail {
    let id = ctl.instance_create(who, &create).await.unwrap()[0].id;
    eventually(20, "running", async || {
        ctl.instance_get(who, id).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    ctl.instance_get(who, id).await.unwrap()
}

/// How many leaves hold the VPC, and the segment counts they hold it with.
fn leaves_with(stack: &Stack, vpc: &str) -> (usize, Vec<usize>) {
    let held: Vec<usize> =
        stack.fleet.switches().filter_map(|s| s.vpc(vpc)).map(|v| v.segments.len()).collect();
    (held.len(), held)
}

/// The rules the simulated DPU holds for a port, as `direction proto ports cidr` lines.
fn dpu_rules(stack: &Stack, dpu: &str, port: &str) -> Vec<String> {
    let spec = stack.fleet.dpu(dpu).expect("the DPU exists").port(port).expect("the DPU has it");
    spec.rules
        .iter()
        .map(|r| format!("{:?} {:?} {:?} {}", r.direction, r.protocol, r.ports, r.cidr))
        .collect()
}

async fn networks_and_ports(url: &str) {
    let stack = start(url, 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    // Every tenant starts with a default VPC, subnet and group.
    let net = overview(ctl, admin).await;
    assert_eq!(net.vpcs.len(), 1);
    let default_vpc = &net.vpcs[0];
    assert!(default_vpc.is_default && default_vpc.vni >= 1_000_000);
    assert_eq!(default_vpc.subnets[0].cidr, "10.0.0.0/20");
    assert_eq!(default_vpc.subnets[0].gateway, "10.0.0.1");
    let default_group = &net.security_groups[0];
    assert!(default_group.is_default && default_group.rules.len() == 4);

    // A VPC and subnets; overlaps within a VPC are refused, across VPCs allowed.
    let research = ctl.vpc_create(admin, &VpcCreate { name: "research".into() }).await.unwrap();
    let subnet =
        |vpc, name: &str, cidr: &str| SubnetCreate { vpc, name: name.into(), cidr: cidr.into() };
    let train =
        ctl.subnet_create(admin, &subnet(research.id, "train", "10.1.0.0/24")).await.unwrap();
    assert_eq!((train.gateway.as_str(), train.free), ("10.1.0.1", 253));
    let overlap = ctl.subnet_create(admin, &subnet(research.id, "more", "10.1.0.128/25")).await;
    let message = overlap.unwrap_err().to_string();
    assert!(message.contains("overlaps subnet \"train\""), "{message}");
    ctl.subnet_create(admin, &subnet(default_vpc.id, "same", "10.1.0.0/24")).await.unwrap();
    let public = ctl.subnet_create(admin, &subnet(research.id, "pub", "8.8.8.0/24")).await;
    assert!(public.unwrap_err().to_string().contains("not a private network"));
    let twice = ctl.vpc_create(admin, &VpcCreate { name: "research".into() }).await;
    assert!(matches!(twice, Err(Error::Conflict { .. })));
    let busy = ctl.vpc_delete(admin, research.id).await.unwrap_err().to_string();
    assert!(busy.contains("delete them first"), "{busy}");
    let keep = ctl.vpc_delete(admin, default_vpc.id).await.unwrap_err().to_string();
    assert!(keep.contains("default VPC stays"), "{keep}");

    // A group that lets HTTP in from one network.
    let web = ctl
        .security_group_create(
            admin,
            &SecurityGroupCreate { name: "web".into(), description: "".into() },
        )
        .await
        .unwrap();
    let http = SecurityRuleCreate {
        group: web.id,
        direction: Direction::Ingress,
        protocol: Protocol::Tcp,
        ports: "8080".into(),
        remote_cidr: "192.168.0.0/16".into(),
        remote_group: None,
    };
    ctl.security_rule_create(admin, &http).await.unwrap();
    let bad = SecurityRuleCreate { ports: "0-9".into(), ..http.clone() };
    assert!(ctl.security_rule_create(admin, &bad).await.is_err());

    // A launch into the default network: the first free address, the default group, on
    // its host's DPU.
    let first = running(ctl, admin, launch("net-a", "h100x1")).await;
    let port = &first.ports[0];
    assert_eq!((port.ip.as_str(), port.subnet.as_str()), ("10.0.0.2", "default"));
    assert_eq!(port.security_groups, ["default"]);
    assert!(port.mac.starts_with("02:"));
    assert_eq!(first.ssh_command.as_deref(), Some("ssh ubuntu@10.0.0.2"));
    let dpu = port.dpu.clone().expect("HGX hosts have a DPU");
    eventually(10, "the port ready", async || {
        ctl.instance_get(admin, first.instance.id).await.unwrap().ports[0].state == "ready"
    })
    .await;
    let port_id = port.id.to_string();
    // The default group's "members talk freely" rule names the port's own address.
    let rules = dpu_rules(&stack, &dpu, &port_id);
    assert!(rules.contains(&"Ingress Any None 10.0.0.2/32".to_owned()), "{rules:?}");
    assert!(rules.contains(&"Ingress Tcp Some((22, 22)) 0.0.0.0/0".to_owned()), "{rules:?}");

    // The VPC reaches every leaf of the VM's scalable unit, with both of its subnets.
    let leaves = stack.fleet.switches().count();
    assert!(leaves > 0);
    let default_id = default_vpc.id.to_string();
    eventually(10, "the default VPC on every leaf", async || {
        leaves_with(&stack, &default_id) == (leaves, vec![2; leaves])
    })
    .await;
    let vrf = stack.fleet.switches().next().unwrap().vpc(&default_id).unwrap().vrf_name;
    assert_eq!(vrf, format!("vpc{}", default_vpc.vni));
    // A new subnet of a carried VPC reaches the leaves too.
    ctl.subnet_create(admin, &subnet(default_vpc.id, "extra", "10.2.0.0/24")).await.unwrap();
    eventually(10, "the new segment on every leaf", async || {
        leaves_with(&stack, &default_id) == (leaves, vec![3; leaves])
    })
    .await;

    // A second VM in the default group: both DPUs' rules now name both addresses.
    let second = running(ctl, admin, launch("net-b", "h100x1")).await;
    assert_eq!(second.ports[0].ip, "10.0.0.3");
    eventually(10, "the first port knows the second VM", async || {
        dpu_rules(&stack, &dpu, &port_id).contains(&"Ingress Any None 10.0.0.3/32".to_owned())
    })
    .await;

    // A launch into a chosen subnet and group.
    let chosen = InstanceCreate {
        subnet: Some(train.id),
        security_groups: vec![web.id],
        ..launch("net-web", "h100x1")
    };
    let web_vm = running(ctl, admin, chosen).await;
    let web_port = &web_vm.ports[0];
    assert_eq!((web_port.ip.as_str(), web_port.vpc.as_str()), ("10.1.0.2", "research"));
    assert_eq!(web_port.security_groups, ["web"]);
    let web_dpu = web_port.dpu.clone().unwrap();
    let research_id = research.id.to_string();
    eventually(10, "the research VPC on every leaf", async || {
        leaves_with(&stack, &research_id).0 == leaves
    })
    .await;
    let web_id = web_port.id.to_string();
    assert_eq!(
        dpu_rules(&stack, &web_dpu, &web_id),
        ["Ingress Tcp Some((8080, 8080)) 192.168.0.0/16"]
    );

    // A new rule reaches the running VM's DPU; deleting it takes it away again.
    let ssh = SecurityRuleCreate { ports: "22".into(), remote_cidr: "10.9.0.0/16".into(), ..http };
    let rule = ctl.security_rule_create(admin, &ssh).await.unwrap();
    eventually(10, "the new rule on the DPU", async || {
        dpu_rules(&stack, &web_dpu, &web_id).len() == 2
    })
    .await;
    ctl.security_rule_delete(admin, rule.id).await.unwrap();
    eventually(10, "the rule gone from the DPU", async || {
        dpu_rules(&stack, &web_dpu, &web_id).len() == 1
    })
    .await;

    // A group in use cannot go; the subnet neither.
    let in_use = ctl.security_group_delete(admin, web.id).await.unwrap_err().to_string();
    assert!(in_use.contains("still in security group"), "{in_use}");
    let used = ctl.subnet_delete(admin, train.id).await.unwrap_err().to_string();
    assert!(used.contains("still have an address"), "{used}");

    // Deleting the VM frees its address and its DPU port; the subnet can go then.
    ctl.instance_delete(admin, web_vm.instance.id).await.unwrap();
    eventually(20, "the web VM's port gone", async || {
        stack.fleet.dpu(&web_dpu).unwrap().port(&web_id).is_none()
    })
    .await;
    eventually(10, "the subnet free", async || ctl.subnet_delete(admin, train.id).await.is_ok())
        .await;
    ctl.security_group_delete(admin, web.id).await.unwrap();

    // Another tenant sees its own defaults only, and none of these objects.
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let alice = member(ctl, &stack.admin, acme.id, "alice", "member").await;
    let alice = &op(&alice);
    let theirs = overview(ctl, alice).await;
    assert_eq!(theirs.vpcs.len(), 1);
    assert_ne!(theirs.vpcs[0].id, default_vpc.id);
    let foreign = ctl.vpc_delete(alice, research.id).await.unwrap_err();
    assert!(matches!(foreign, Error::NotFound { .. }), "{foreign:?}");
    let into_foreign =
        InstanceCreate { subnet: Some(default_vpc.subnets[0].id), ..launch("sneak", "h100x1") };
    let refused = ctl.instance_create(alice, &into_foreign).await.unwrap_err().to_string();
    assert!(refused.contains("not one of your tenant's"), "{refused}");

    // Viewers read, never write.
    let vic = member(ctl, &stack.admin, acme.id, "vic", "viewer").await;
    let vic = &op(&vic);
    assert_eq!(overview(ctl, vic).await.vpcs.len(), 1);
    let denied = ctl.vpc_create(vic, &VpcCreate { name: "nope".into() }).await.unwrap_err();
    assert!(matches!(denied, Error::Forbidden { .. }), "{denied:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_and_ports_on_sqlite_and_postgres() {
    networks_and_ports(&sqlite_url("networking")).await;
    if let Some(url) = postgres_url("networking").await {
        networks_and_ports(&url).await;
    }
}

/// Serves the simulated DPU `description` at `addr` with its own certificate until the
/// sender is dropped or sends `true`; a fresh manager each time, as a restarted agent.
async fn serve_dpu(
    pki: &agent_common::tls::PkiDir,
    description: dpu_agent::DpuDescription,
    addr: std::net::SocketAddr,
) -> (dpu_agent::SimDpu, tokio::sync::watch::Sender<bool>) {
    let name = agent_common::tls::AgentName { kind: "dpu", id: &description.dpu_id };
    let credentials = pki.agent(name).unwrap();
    let dpu = dpu_agent::SimDpu::new(description, Default::default());
    let router =
        dpu_agent::DpuAgentService::new(dpu.manager().clone()).into_router(&credentials).unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // The agent before may still hold the port for a moment while it stops.
    let mut tries = 0;
    while let Err(e) = sim_fleet::serve::serve_on(addr, router.clone(), stopped.clone()).await {
        tries += 1;
        assert!(tries < 100, "cannot serve the DPU at {addr}: {e}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    (dpu, stop)
}

async fn dpu_link(ctl: &Controller, admin: &OpContext, host: &str) -> AgentLink {
    ctl.host_topology(admin, host).await.unwrap().dpus[0].agent
}

/// A DPU agent that restarts (a new boot id, holding nothing) is noticed by its watch
/// stream: shown unreachable while it is down, then sent every port the database gives it
/// again, and the drift is in the audit log for provider admins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_dpu_agent_gets_its_ports_again_and_admins_are_told() {
    let topology = sim_fleet::Topology::hgx_h100(1);
    let host = topology.hosts().remove(0);
    let description =
        topology.dpus().into_iter().find(|d| d.host_id == host.host_id).expect("a DPU");
    let dpu_id = description.dpu_id.clone();
    let pki = temp_pki("dpu-restart");
    let names = [
        agent_common::tls::AgentName { kind: "host", id: &host.host_id },
        agent_common::tls::AgentName { kind: "dpu", id: &dpu_id },
    ];
    pki.ensure(&names, false).unwrap();
    let tls = pki.control_plane().unwrap();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (host_addr, dpu_addr) = (free(), free());
    let sim_host = host_agent::SimHost::new(host.clone(), Default::default());
    let router = host_agent::HostAgentService::new(sim_host.manager().clone())
        .into_router(&pki.agent(names[0]).unwrap())
        .unwrap();
    let (_host_stop, stopped) = tokio::sync::watch::channel(false);
    sim_fleet::serve::serve_on(host_addr, router, stopped).await.unwrap();
    let (first_dpu, first_stop) = serve_dpu(&pki, description.clone(), dpu_addr).await;
    let endpoint = |kind, id: &str, addr| agent_proto::AgentEndpoint {
        kind,
        id: id.to_owned(),
        url: format!("https://{addr}"),
    };
    let agents = [
        endpoint(agent_proto::AgentKind::Host, &host.host_id, host_addr),
        endpoint(agent_proto::AgentKind::Dpu, &dpu_id, dpu_addr),
    ];
    let config = portal_controller::ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..portal_controller::ControllerConfig::new(sqlite_url("dpu-restart"))
    };
    let ctl = Controller::open(&config).await.unwrap();
    assert!(ctl.attach_agents(&agents, &tls).await.unwrap().is_empty());
    let user = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin = &op(&ctl.actor(user).await.unwrap().unwrap());

    let vm = running(&ctl, admin, launch("kept", "h100x1")).await;
    let port_id = vm.ports[0].id.to_string();
    eventually(10, "the DPU holds the port", async || first_dpu.manager().port(&port_id).is_some())
        .await;
    assert_eq!(dpu_link(&ctl, admin, &host.host_id).await, AgentLink::Connected);

    // The agent goes away: its stream breaks, and the DPU is shown unreachable.
    first_dpu.manager().shutdown();
    first_stop.send(true).unwrap();
    eventually(20, "the DPU shown unreachable", async || {
        dpu_link(&ctl, admin, &host.host_id).await == AgentLink::Unreachable
    })
    .await;

    // It comes back empty, as a restarted agent does: it gets its port again.
    let (second_dpu, _second_stop) = serve_dpu(&pki, description, dpu_addr).await;
    assert_eq!(second_dpu.manager().port_count(), 0);
    eventually(30, "the restarted DPU holds the port again", async || {
        second_dpu.manager().port(&port_id).is_some()
    })
    .await;
    assert_eq!(dpu_link(&ctl, admin, &host.host_id).await, AgentLink::Connected);
    let audit = ctl.audit_list(admin, Some("dpu."), None, &newest()).await.unwrap().items;
    let entry = audit.iter().find(|e| e.action == "dpu.restarted").expect("the drift is audited");
    assert_eq!(
        (entry.object_id.as_str(), entry.actor.as_str()),
        (dpu_id.as_str(), "control plane")
    );
    assert_eq!(entry.outcome, "restarted holding none of its 1 ports; all sent again");

    // Another replica attaching the same agent (the same boot id) sends it nothing again,
    // and reports no restart.
    let other = Controller::open(&config).await.unwrap();
    assert!(other.attach_agents(&agents, &tls).await.unwrap().is_empty());
    let audit = other.audit_list(admin, Some("dpu."), None, &newest()).await.unwrap().items;
    assert_eq!(audit.iter().filter(|e| e.action == "dpu.restarted").count(), 1, "{audit:?}");
    let port = &other.instance_get(admin, vm.instance.id).await.unwrap().ports[0];
    assert_eq!(port.state, "ready", "the port was not marked for sending again");
    other.stop();
    ctl.stop();
}

/// A DPU agent that keeps running but loses a port (or gains one nobody sent) is found by
/// the drift check: the lost port is sent again, the stray one removed, and provider admins
/// find both in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dpu_that_drifts_while_running_is_put_back() {
    let stack = start_with(&sqlite_url("dpu-drift"), 1, |c| {
        c.drift_check = std::time::Duration::from_millis(500)
    })
    .await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let vm = running(ctl, admin, launch("drifter", "h100x1")).await;
    let port_id = vm.ports[0].id.to_string();
    let dpu_name = vm.ports[0].dpu.clone().expect("HGX hosts have a DPU");
    let dpu = stack.fleet.dpu(&dpu_name).expect("the DPU").manager();
    eventually(10, "the DPU holds the port", async || dpu.port(&port_id).is_some()).await;

    // Lost behind the control plane's back (no tombstone: as a device reset would).
    dpu.port_remove(&port_id, 0).await.expect("removed on the DPU");
    eventually(20, "the port sent again", async || dpu.port(&port_id).is_some()).await;

    // One nobody sent: removed.
    let stray = dpu_agent::PortSpec {
        port_id: "0190c2f4-7a1b-4c3d-8e9f-00000000dead".into(),
        vm_id: "0190c2f4-7a1b-4c3d-8e9f-00000000beef".into(),
        generation: 1,
        vni: 4_000_000,
        mac: "02:00:00:00:de:ad".into(),
        ip: "10.99.0.2".parse().unwrap(),
        rules: Vec::new(),
        gateway: None,
        public_ip: None,
    };
    dpu.port_ensure(stray.clone()).await.expect("a stray port");
    eventually(20, "the stray port removed", async || dpu.port(&stray.port_id).is_none()).await;
    assert!(dpu.port(&port_id).is_some(), "the tenant's port stays");

    // The audit entry is written once the removal is done.
    eventually(10, "both drifts audited", async || {
        ctl.audit_list(admin, Some("dpu.drift"), None, &newest()).await.unwrap().items.len() == 2
    })
    .await;
    let audit = ctl.audit_list(admin, Some("dpu.drift"), None, &newest()).await.unwrap().items;
    let outcomes: Vec<&str> = audit.iter().map(|e| e.outcome.as_str()).collect();
    assert!(outcomes.iter().any(|o| o.contains("lacked 1 it had confirmed")), "{outcomes:?}");
    let stray_outcome = "held 1 port(s) the database does not have (1 removed)";
    assert!(outcomes.iter().any(|o| o.contains(stray_outcome)), "{outcomes:?}");
    assert!(audit.iter().all(|e| e.object_id == dpu_name && e.actor == "control plane"));
}

/// A leaf whose agent keeps running but loses a tenant's VPC (or gains one nobody sent) is
/// found by the drift check: the lost VPC is sent again, the stray one removed, and provider
/// admins find both in the audit log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_that_drifts_while_running_is_put_back() {
    let stack = start_with(&sqlite_url("leaf-drift"), 1, |c| {
        c.drift_check = std::time::Duration::from_millis(500)
    })
    .await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    running(ctl, admin, launch("drifter", "c1m1")).await;
    let vpc = overview(ctl, admin).await.vpcs[0].id.to_string();
    let leaf_name = stack.fleet.switches().next().expect("a leaf").switch_id().to_owned();
    let leaf = stack.fleet.switch(&leaf_name).unwrap();
    eventually(10, "the leaf holds the VPC", async || leaf.vpc(&vpc).is_some()).await;

    // Lost behind the control plane's back (no tombstone: as a configuration reset would).
    let held = leaf.vpc(&vpc).unwrap();
    leaf.vpc_remove(&vpc, 0).await.expect("removed on the leaf");
    eventually(20, "the VPC sent again", async || leaf.vpc(&vpc).is_some()).await;

    // One nobody sent: removed.
    let stray = switch_agent::model::VpcSpec {
        vpc_id: "0190c2f4-7a1b-4c3d-8e9f-00000000dead".into(),
        vrf_name: "stray".into(),
        l3_vni: 16_000_000,
        segments: Vec::new(),
        ..held
    };
    leaf.vpc_ensure(stray.clone()).await.expect("a stray VPC");
    eventually(20, "the stray VPC removed", async || leaf.vpc(&stray.vpc_id).is_none()).await;
    assert!(leaf.vpc(&vpc).is_some(), "the tenant's VPC stays");

    eventually(10, "both drifts audited", async || {
        ctl.audit_list(admin, Some("switch.drift"), None, &newest()).await.unwrap().items.len() == 2
    })
    .await;
    let audit = ctl.audit_list(admin, Some("switch.drift"), None, &newest()).await.unwrap().items;
    let outcomes: Vec<&str> = audit.iter().map(|e| e.outcome.as_str()).collect();
    assert!(outcomes.iter().any(|o| o.contains("lacked 1 it had confirmed")), "{outcomes:?}");
    let stray_outcome = "held 1 VPC(s) the control plane did not send (1 removed)";
    assert!(outcomes.iter().any(|o| o.contains(stray_outcome)), "{outcomes:?}");
    assert!(audit.iter().all(|e| e.object_id == leaf_name && e.actor == "control plane"));
}
