//! The instance page's view (`Controller::instance_get`): placement from the claim (GPU
//! modules with their PCI addresses, pinned CPUs, NUMA nodes, NICs), image and default user,
//! and the timeline of its sagas' steps; another tenant's instance is not found — on SQLite,
//! and on PostgreSQL when the test run provides one.

mod common;

use common::*;
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::params::PowerAction;
use portal_types::views::{InstanceDetail, InstanceState};

/// The steps of `saga` that succeeded, in timeline order.
fn succeeded(detail: &InstanceDetail, saga: &str) -> Vec<String> {
    detail
        .timeline
        .iter()
        .filter(|t| t.saga == saga && t.event == "succeeded")
        .map(|t| t.step.clone())
        .collect()
}

async fn instance_detail(stack: &Stack) {
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("paged", "h100x2")).await.unwrap().remove(0);
    wait_for_state(&mut events, "paged", InstanceState::Running).await;
    let create_steps = [
        "claimed",
        "port_created",
        "port_attached",
        "fabric_joined",
        "partition_activated",
        "vm_ensured",
        "running",
    ];
    eventually(20, "the launch saga finishing", async || {
        let d = ctl.instance_get(admin, vm.id).await.unwrap();
        succeeded(&d, "instance_create") == create_steps
    })
    .await;

    let d = ctl.instance_get(admin, vm.id).await.unwrap();
    assert_eq!(d.instance.id, vm.id);
    assert_eq!(d.instance.state, InstanceState::Running);
    // Placement: two GPU modules on the host it runs on, each with its PCI address and NUMA
    // node; 40 vCPUs pinned to distinct host CPUs; the emulator on another one.
    assert_eq!(d.host, d.instance.host_name);
    assert!(d.host.is_some());
    assert_eq!(d.gpus.len(), 2, "{:?}", d.gpus);
    for g in &d.gpus {
        assert!(!g.pci_address.is_empty() && g.model.contains("H100"), "{g:?}");
        assert!(d.numa_nodes.contains(&g.numa_node), "{g:?} outside {:?}", d.numa_nodes);
    }
    assert_ne!(d.gpus[0].module_id, d.gpus[1].module_id);
    assert_eq!(d.vcpu_pins.len(), 40);
    let mut distinct = d.vcpu_pins.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 40);
    let emulator = d.emulator_cpu.expect("an emulator CPU");
    assert!(!d.vcpu_pins.contains(&emulator));
    assert!(!d.nics.is_empty() && d.nics.iter().all(|n| !n.name.is_empty()), "{:?}", d.nics);
    // The image it booted (the newest, the default) and that image's user; its address in
    // the default subnet, and how to SSH to it.
    let newest = ctl.image_list(admin, false).await.unwrap().remove(0);
    assert_eq!(d.image.as_deref(), Some(newest.name.as_str()));
    assert_eq!(d.default_user.as_deref(), Some(newest.default_user.as_str()));
    let ip = &d.ports[0].ip;
    assert!(ip.starts_with("10.0."), "{ip}");
    assert_eq!(d.ssh_command, Some(format!("ssh {}@{ip}", newest.default_user)));
    // The launch's events in order, each with a time; every step started before it succeeded.
    let create: Vec<_> = d.timeline.iter().filter(|t| t.saga == "instance_create").collect();
    assert_eq!(create.len(), 2 * create_steps.len(), "{create:?}");
    for (pair, step) in create.chunks(2).zip(create_steps) {
        assert_eq!(
            (pair[0].step.as_str(), pair[0].event.as_str(), pair[1].event.as_str()),
            (step, "started", "succeeded")
        );
    }
    let times: Vec<&str> = create.iter().map(|t| t.at.as_str()).collect();
    assert!(times.iter().all(|t| t.ends_with('Z') && t.contains('T')), "{times:?}");
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

    // A stop adds the power saga's steps after the launch's.
    ctl.instance_power(admin, vm.id, PowerAction::Stop).await.unwrap();
    wait_for_state(&mut events, "paged", InstanceState::Stopped).await;
    eventually(20, "the power saga in the timeline", async || {
        let d = ctl.instance_get(admin, vm.id).await.unwrap();
        succeeded(&d, "instance_power") == ["requested", "power_set"]
    })
    .await;
    let d = ctl.instance_get(admin, vm.id).await.unwrap();
    assert_eq!(d.instance.state, InstanceState::Stopped);
    let sagas: Vec<&str> = d.timeline.iter().map(|t| t.saga.as_str()).collect();
    let first_power = sagas.iter().position(|s| *s == "instance_power").unwrap();
    assert!(sagas[..first_power].iter().all(|s| *s == "instance_create"));
    assert!(sagas[first_power..].iter().all(|s| *s == "instance_power"));

    // Another tenant's member (and its admin) do not find it; nor does anyone an unknown id.
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let other = member(ctl, &stack.admin, acme.id, "otto", "tenant-admin").await;
    let refused = ctl.instance_get(&op(&other), vm.id).await.unwrap_err();
    assert_eq!(refused.status_code(), 404, "{refused}");
    let unknown = InstanceUuid::from_untyped_uuid(uuid::Uuid::new_v4());
    assert_eq!(ctl.instance_get(admin, unknown).await.unwrap_err().status_code(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instance_detail_on_sqlite() {
    let stack = start(&sqlite_url("detail"), 1).await;
    instance_detail(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instance_detail_on_postgres() {
    let Some(url) = postgres_url("detail").await else { return };
    let stack = start(&url, 1).await;
    instance_detail(&stack).await;
}
