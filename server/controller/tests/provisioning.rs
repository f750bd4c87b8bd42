//! Provisioning correctness: GPUs are released only once a host confirms the VM is gone, a
//! delete its host never confirms ends in a state an admin sees, VMs a host runs that the
//! database does not want are shown and removed, and replicas see each other's cordons and
//! GPU health.

use std::time::Duration;

use portal_controller::datastore::entity::{gpu_claim, instance};
use portal_controller::{Controller, ControllerConfig};
use portal_types::views::InstanceState;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

mod common;

use common::*;

/// A delete whose host never confirms the VM is gone does not stay `deleting` forever: at
/// its deadline the instance is failed with a sentence naming the host, its GPUs still
/// claimed (the VM still runs on them). When the host answers again the removal completes
/// and only then are the GPUs released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_its_host_never_confirms_fails_at_the_deadline_and_keeps_the_gpus() {
    let stack = start_with(&sqlite_url("delete-deadline"), 1, |c| {
        c.delete_deadline = Duration::from_secs(1)
    })
    .await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("doomed", "h100x8")).await.unwrap().remove(0);
    wait_for_state(&mut events, "doomed", InstanceState::Running).await;
    let host_name = vm.host_name.clone().unwrap();
    let host = stack.fleet.host(&host_name).unwrap();
    host.faults().fail_always(sim_fleet::HostOp::DomainStop);

    ctl.instance_delete(admin, vm.id).await.unwrap();
    wait_for_state(&mut events, "doomed", InstanceState::Failed).await;
    let row = ctl.instance_list(admin).await.unwrap().into_iter().find(|i| i.id == vm.id).unwrap();
    let message = row.message.unwrap_or_default();
    assert!(
        message.starts_with(&format!("Could not confirm the VM is gone from {host_name}")),
        "{message}"
    );
    assert_eq!(host.vm_count(), 1, "the VM still runs");
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 8, "its GPUs stay claimed");
    assert_eq!(ctl.capacity(admin).await.unwrap().fleet[0].launchable.x8, 31);

    // The host answers again: the reconciler's retry removes the VM, then releases.
    host.faults().clear();
    wait_for_state(&mut events, "doomed", InstanceState::Deleted).await;
    assert_eq!(host.vm_count(), 0);
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 0);
    assert_eq!(ctl.capacity(admin).await.unwrap().fleet[0].launchable.x8, 32);
}

/// A launch undone while its host refuses RemoveVm keeps its GPUs claimed (the VM is still
/// there); once the host removes it, the GPUs are released and the instance stays failed
/// with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_undo_whose_remove_failed_keeps_the_gpus_until_the_host_confirms() {
    // Long enough for the port and the GPU fabric on a loaded machine (see launch.rs).
    let stack = start_with_deadline(&sqlite_url("undo-remove"), 1, Duration::from_secs(8)).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    for host in stack.fleet.hosts() {
        host.faults().delay(sim_fleet::HostOp::DomainStart, Duration::from_secs(3600));
        host.faults().fail_always(sim_fleet::HostOp::DomainStop);
    }
    let mut events = ctl.events().subscribe();
    let vm = ctl.instance_create(admin, &launch("stuck", "h100x4")).await.unwrap().remove(0);
    wait_for_state(&mut events, "stuck", InstanceState::Failed).await;
    let host = stack.fleet.host(vm.host_name.as_deref().unwrap()).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host.vm_count(), 1, "RemoveVm failed: the VM is still on its host");
    assert_eq!(ctl.fleet_summary(admin).await.unwrap().gpus_used(), 4, "so are its claims");

    host.faults().clear_op(sim_fleet::HostOp::DomainStop);
    eventually(30, "the VM's removal and the release", async || {
        host.vm_count() == 0 && ctl.fleet_summary(admin).await.unwrap().gpus_used() == 0
    })
    .await;
    let row = ctl.instance_list(admin).await.unwrap().into_iter().find(|i| i.id == vm.id).unwrap();
    assert_eq!(row.state, InstanceState::Failed);
    assert!(row.message.unwrap_or_default().contains("did not start within 1 minute"));
}

/// A VM a host runs that the database does not know (here: its row was lost while the
/// control plane was down) is listed for provider admins with its host and since when, and
/// removed by the reconciler after the grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_vm_the_database_does_not_want_is_listed_then_removed() {
    let url = sqlite_url("stray");
    let grace = |c: &mut ControllerConfig| c.stray_grace = Duration::from_secs(1);
    let stack = start_with(&url, 1, grace).await;
    let first = &stack.controller;
    let admin = &op(&stack.admin);
    let mut events = first.events().subscribe();
    let vm = first.instance_create(admin, &launch("ghost", "h100x8")).await.unwrap().remove(0);
    wait_for_state(&mut events, "ghost", InstanceState::Running).await;
    first.stop();
    // Lost rows (a restore from an old backup, say): the VM runs on, unknown to the database.
    let db = first.datastore().connection();
    let id = vm.id.to_string();
    let uuid = uuid::Uuid::parse_str(&id).unwrap();
    gpu_claim::Entity::delete_many()
        .filter(gpu_claim::Column::InstanceId.eq(uuid))
        .exec(db)
        .await
        .unwrap();
    instance::Entity::delete_by_id(uuid).exec(db).await.unwrap();

    let mut config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(&url)
    };
    grace(&mut config);
    let second = Controller::open(&config).await.unwrap();
    attach_all(&second, &stack.fleet, &stack.tls).await;
    let host_name = vm.host_name.clone().unwrap();
    let host = stack.fleet.host(&host_name).unwrap();
    eventually(10, "the stray VM's listing", async || {
        let list = second.stray_vm_list(admin).await.unwrap();
        list.iter().any(|s| s.host == host_name && s.vm_id == id && !s.since.is_empty())
    })
    .await;
    assert_eq!(second.stray_vm_list(&OpContext::anonymous()).await.unwrap_err().status_code(), 401);
    eventually(20, "the stray VM's removal", async || {
        host.vm_count() == 0 && second.stray_vm_list(admin).await.unwrap().is_empty()
    })
    .await;
}

/// Two replicas on one database. Replica A cordons every host but one, and half the GPUs of
/// that one fail; replica B, whose scheduler believed the whole fleet open, never places on
/// a cordoned host or a failed GPU, and soon sees the cordons itself (LISTEN/NOTIFY on
/// PostgreSQL, a periodic refresh on SQLite), uncordons included.
async fn replicas_see_each_others_cordons_and_gpu_health(url: &str) {
    use sim_fleet::GpuHealth;

    let stack = start(url, 1).await;
    let a = &stack.controller;
    let admin = &op(&stack.admin);
    let b = Controller::open(&ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(url)
    })
    .await
    .unwrap();
    attach_all(&b, &stack.fleet, &stack.tls).await;
    assert_eq!(b.capacity(admin).await.unwrap().fleet[0].launchable.x8, 32);

    let names: Vec<String> =
        a.fleet_summary(admin).await.unwrap().hosts.iter().map(|h| h.name.clone()).collect();
    let (open, cordoned) = names.split_last().unwrap();
    for name in cordoned {
        a.host_set_cordoned(admin, name, true).await.unwrap();
    }
    let open_host = stack.fleet.host(open).unwrap();
    for module in 1..=4 {
        open_host.set_gpu_health(module, GpuHealth::Failed, "XID 79: fell off the bus").unwrap();
    }
    eventually(10, "the failed GPUs in the database", async || {
        let fleet = a.fleet_summary(admin).await.unwrap();
        fleet.hosts.iter().any(|h| &h.name == open && h.gpus_unhealthy == 4)
    })
    .await;

    // Right away, before any refresh could have reached B.
    let err = b.instance_create(admin, &launch("b-eight", "h100x8")).await.unwrap_err();
    assert_eq!(err.status_code(), 507, "{err}");
    let four = b.instance_create(admin, &launch("b-four", "h100x4")).await.unwrap().remove(0);
    assert_eq!(four.host_name.as_deref(), Some(open.as_str()));
    let err = b.instance_create(admin, &launch("b-one", "h100x1")).await.unwrap_err();
    assert_eq!(err.status_code(), 507, "{err}");
    let fleet = a.fleet_summary(admin).await.unwrap();
    assert!(fleet.hosts.iter().all(|h| h.gpus_used == 0 || &h.name == open), "{fleet:?}");

    // B's scheduler catches up: nothing launchable anywhere.
    eventually(10, "B seeing A's cordons", async || {
        let l = b.capacity(admin).await.unwrap().fleet[0].launchable;
        (l.x8, l.x4, l.x2, l.x1) == (0, 0, 0, 0)
    })
    .await;
    // And an uncordon reaches B too.
    a.host_set_cordoned(admin, &cordoned[0], false).await.unwrap();
    eventually(10, "B seeing A's uncordon", async || {
        b.capacity(admin).await.unwrap().fleet[0].launchable.x8 == 1
    })
    .await;
    let eight = b.instance_create(admin, &launch("b-eight", "h100x8")).await.unwrap().remove(0);
    assert_eq!(eight.host_name.as_deref(), Some(cordoned[0].as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_see_each_others_cordons_and_gpu_health_on_sqlite() {
    replicas_see_each_others_cordons_and_gpu_health(&sqlite_url("replicas-cordon")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_see_each_others_cordons_and_gpu_health_on_postgres() {
    let Some(url) = postgres_url("replicas_cordon").await else { return };
    replicas_see_each_others_cordons_and_gpu_health(&url).await;
}

/// Two replicas that start together on a fresh database both record the fleet: where both
/// find a host missing and insert it, the second reads the first's row and updates it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_starting_together_both_attach_the_fleet_on_postgres() {
    let Some(url) = postgres_url("replicas_start").await else { return };
    let topology = sim_fleet::Topology::hgx_h100(1);
    let pki = temp_pki("replicas-start");
    let fleet = sim_fleet::SimFleet::start(&topology, Default::default(), &pki).await.unwrap();
    let tls = pki.control_plane().unwrap();
    let config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(&url)
    };
    let (a, b) = tokio::join!(Controller::open(&config), Controller::open(&config));
    let (a, b) = (a.unwrap(), b.unwrap());
    let (left_a, left_b) = tokio::join!(
        a.attach_agents(fleet.endpoints(), &tls),
        b.attach_agents(fleet.endpoints(), &tls)
    );
    assert_eq!((left_a.unwrap().len(), left_b.unwrap().len()), (0, 0));
    let user = a.login("admin", PASSWORD, None).await.unwrap();
    let admin = &op(&a.actor(user).await.unwrap().unwrap());
    let hosts = a.fleet_summary(admin).await.unwrap().hosts;
    assert_eq!(hosts.len(), topology.hosts().len(), "one row per host");
    assert_eq!(b.capacity(admin).await.unwrap().fleet[0].launchable.x8, 32);
}
