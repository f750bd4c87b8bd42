//! Per-port counters through the control plane against the simulated fleet: a running VM's
//! port reports live (simulated, and flagged so) counters from its DPU that grow, with its
//! rules named; a rule change restarts them and is counted; a viewer of the tenant reads
//! them, another tenant's member does not find the instance; a DPU that does not answer is
//! `Unavailable` within the control plane's 2 s, not a hang.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::network::{Direction, PortCountersView, Protocol, SecurityRuleCreate};
use portal_types::views::InstanceState;
use sim_fleet::DpuOp;

async fn counters(stack: &Stack, who: &OpContext, id: InstanceUuid) -> PortCountersView {
    let mut views = stack.controller.instance_port_counters(who, id).await.expect("counters");
    assert_eq!(views.len(), 1, "one port per VM: {views:?}");
    views.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn port_counters_on_sqlite() {
    let stack = start(&sqlite_url("port-counters"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    let id = ctl.instance_create(admin, &launch("counted", "h100x1")).await.unwrap()[0].id;
    eventually(20, "running with its port on the DPU", async || {
        let d = ctl.instance_get(admin, id).await.unwrap();
        d.instance.state == InstanceState::Running
            && d.ports.first().is_some_and(|p| p.state == "ready")
    })
    .await;
    let port = ctl.instance_get(admin, id).await.unwrap().ports.remove(0);
    let dpu_name = port.dpu.clone().expect("HGX hosts have a DPU");
    let dpu = stack.fleet.dpu(&dpu_name).expect("the DPU exists");
    let held = dpu.port(&port.id.to_string()).expect("the DPU holds the port");

    let first = counters(&stack, admin, id).await;
    assert_eq!((first.port, first.ip.as_str()), (port.id, port.ip.as_str()));
    assert_eq!((first.state.as_str(), first.dpu.as_deref()), ("live", Some(dpu_name.as_str())));
    assert!(first.simulated, "the simulated DPU says its traffic is synthetic");
    assert_eq!(first.rules.len(), held.rules.len(), "one counter per rule the DPU holds");
    assert!(!held.rules.is_empty(), "the default group allows something");
    let (d, p) = (held.rules[0].direction, held.rules[0].protocol);
    let expected =
        format!("{} {}", format!("{d:?}").to_lowercase(), format!("{p:?}").to_lowercase());
    assert!(first.rules[0].rule.starts_with(&expected), "{:?} names {expected}", first.rules[0]);

    // Simulated traffic flows at a fixed rate per allowed rule: the totals grow.
    let allowed = |v: &PortCountersView| v.ingress.allowed.packets + v.egress.allowed.packets;
    eventually(10, "the counters grow", async || {
        allowed(&counters(&stack, admin, id).await) > allowed(&first)
    })
    .await;
    let grown = counters(&stack, admin, id).await;
    let by_rule: u64 = grown.rules.iter().map(|r| r.count.packets).sum();
    assert_eq!(by_rule, allowed(&grown), "the simulated DPU's traffic is its rules' traffic");
    assert_eq!(grown.spoofed.packets, 0);

    // A viewer of the tenant reads them; another tenant's member does not find the VM.
    let home = stack.admin.tenant_id;
    let vic = member(ctl, &stack.admin, home, "vic", "viewer").await;
    assert_eq!(counters(&stack, &op(&vic), id).await.port, port.id);
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let otto = member(ctl, &stack.admin, acme.id, "otto", "member").await;
    let refused = ctl.instance_port_counters(&op(&otto), id).await.unwrap_err();
    assert!(matches!(refused, Error::NotFound { .. }), "{refused:?}");
    let unknown = InstanceUuid::from_untyped_uuid(uuid::Uuid::new_v4());
    assert_eq!(ctl.instance_port_counters(admin, unknown).await.unwrap_err().status_code(), 404);

    // A rule change reaches the DPU: the change is counted and the new rule named.
    let group = ctl
        .network_overview(admin)
        .await
        .unwrap()
        .security_groups
        .into_iter()
        .find(|g| g.is_default)
        .expect("a default group");
    let web = SecurityRuleCreate {
        group: group.id,
        direction: Direction::Ingress,
        protocol: Protocol::Tcp,
        ports: "8080".into(),
        remote_cidr: "10.0.0.0/8".into(),
        remote_group: None,
    };
    ctl.security_rule_create(admin, &web).await.unwrap();
    eventually(20, "the new rule is counted", async || {
        let now = counters(&stack, admin, id).await;
        now.rule_changes > grown.rule_changes
            && now.rules.iter().any(|r| r.rule == "ingress tcp 8080 10.0.0.0/8")
    })
    .await;

    // A DPU that does not answer: a clear Unavailable after the control plane's 2 s.
    dpu.faults().delay(DpuOp::Counters, Duration::from_secs(10));
    let started = Instant::now();
    let slow = ctl.instance_port_counters(admin, id).await.unwrap_err();
    assert!(
        matches!(&slow, Error::Unavailable { internal } if internal.contains("did not answer"))
    );
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    dpu.faults().delay(DpuOp::Counters, Duration::ZERO);
    dpu.faults().fail_nth(DpuOp::Counters, 1);
    let failed = ctl.instance_port_counters(admin, id).await.unwrap_err();
    assert_eq!(failed.status_code(), 503, "{failed:?}");
    assert_eq!(counters(&stack, admin, id).await.state, "live", "the next read works");
}
