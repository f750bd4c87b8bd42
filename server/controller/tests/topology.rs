//! The admin topology views against a simulated scalable unit: a launched 2-GPU VM shows up
//! on its host's picture as used GPUs of its tenant, an active partition, its paired NICs and
//! pinned CPUs and hugepages, and disappears again when deleted; only provider admins may look.
//! On SQLite, and on PostgreSQL when the run provides one (`PORTAL_TEST_POSTGRES_URL`).

use std::time::Duration;

use portal_controller::authz::{Actor, Role};
use portal_types::ids::{GenericUuid, TenantUuid, UserUuid};
use portal_types::topology::{GpuHealth, GpuState, HostTopology, PartitionState};
use portal_types::views::{InstanceState, LiveEvent};

mod common;

use common::*;

fn used_by<'a>(topo: &'a HostTopology, instance: &str) -> Vec<&'a portal_types::topology::GpuTile> {
    topo.gpus()
        .filter(|g| matches!(&g.state, GpuState::Used(h) if h.instance_name == instance))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launched_vm_on_its_hosts_picture_on_sqlite() {
    let stack = start(&sqlite_url("topology"), 1).await;
    a_launched_vm_appears_on_its_hosts_picture_and_leaves_with_it(&stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_launched_vm_on_its_hosts_picture_on_postgres() {
    let Some(url) = postgres_url("topology").await else { return };
    let stack = start(&url, 1).await;
    a_launched_vm_appears_on_its_hosts_picture_and_leaves_with_it(&stack).await;
}

async fn a_launched_vm_appears_on_its_hosts_picture_and_leaves_with_it(stack: &Stack) {
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    let mut events = ctl.events().subscribe();
    let created = ctl.instance_create(admin, &launch("topo-2", "h100x2")).await.unwrap().remove(0);
    wait_for_state(&mut events, "topo-2", InstanceState::Running).await;
    let list = ctl.instance_list(admin).await.unwrap();
    let host = list[0].host_name.clone().expect("a running instance has a host");

    let topo = ctl.host_topology(admin, &host).await.unwrap();
    assert_eq!(topo.name, host);
    assert_eq!(topo.scalable_unit, 1);
    assert_eq!(topo.numa_nodes.len(), 2);
    assert_eq!(topo.gpus().count(), 8);
    assert_eq!(topo.nics().count(), 8);
    assert_eq!(topo.dpus.len(), 2);
    assert_eq!(topo.module_order, [1, 3, 2, 4, 5, 7, 6, 8]);

    // Both GPUs are the tenant's, named by instance, in one active 2-GPU partition.
    let used = used_by(&topo, "topo-2");
    assert_eq!(used.len(), 2, "{topo:#?}");
    for g in &used {
        let GpuState::Used(h) = &g.state else { unreachable!() };
        assert_eq!(h.tenant_name, "default");
        assert_eq!(h.instance_id, created.id);
    }
    assert_eq!(topo.gpus().filter(|g| g.state == GpuState::Free).count(), 6);
    let active: Vec<_> = topo
        .partitions
        .iter()
        .filter(|p| matches!(&p.state, PartitionState::Active(h) if h.instance_name == "topo-2"))
        .collect();
    assert_eq!(active.len(), 1);
    let mut modules: Vec<u32> = used.iter().map(|g| g.module_id).collect();
    modules.sort_unstable();
    assert_eq!(active[0].modules, modules);
    assert!(used.iter().all(|g| g.partition == Some(active[0].id)));
    assert!(active[0].slot.is_some_and(|s| s.span == 2 && s.level == 2));
    // The 8 and its half overlap it: blocked; the other half, the three other pairs and the
    // six other single GPUs are still available.
    assert_eq!(topo.partitions[0].state, PartitionState::Blocked);
    let available = topo.partitions.iter().filter(|p| p.state == PartitionState::Available);
    assert_eq!(available.count(), 1 + 3 + 6);

    // Each used GPU sits over its paired NIC, which the VM holds too and which goes to the
    // leaf of its rail.
    for node in &topo.numa_nodes {
        for lane in &node.lanes {
            let (Some(g), Some(n)) = (&lane.gpu, &lane.nic) else {
                panic!("every HGX GPU has a NIC beside it: {lane:?}")
            };
            assert_eq!(n.paired_module, Some(g.module_id));
            assert_eq!(n.leaf, format!("su1-leaf{}", n.rail));
            let gpu_holder = match &g.state {
                GpuState::Used(h) => Some(h),
                _ => None,
            };
            assert_eq!(n.holder.as_ref(), gpu_holder, "GPU {} and NIC {}", g.module_id, n.index);
        }
    }

    // CPUs (40 vCPUs + the emulator thread) and 400 GiB of hugepages, all from the GPUs' node.
    let node = topo.numa_nodes.iter().find(|n| n.cpus_used > 0).expect("a node with pinned CPUs");
    assert_eq!(node.cpus_used, 41);
    assert_eq!(node.hugepages_used, 400);
    assert!(
        node.lanes.iter().any(|l| l.gpu.as_ref().is_some_and(|g| modules.contains(&g.module_id)))
    );
    assert_eq!(topo.numa_nodes.iter().map(|n| n.cpus_used).sum::<u32>(), 41);
    assert!(topo.numa_nodes.iter().all(|n| n.cpus_total == 112 && n.hugepages_total == 960));
    assert_eq!(topo.instances.len(), 1);
    assert_eq!((topo.instances[0].vcpus, topo.instances[0].memory_gib), (40, 400));
    let l = topo.launchable[0].launchable;
    assert_eq!((l.x8, l.x4, l.x2, l.x1), (0, 1, 1, 0));

    // The unit: its 8 rail leaves, every host cabled to each, and the VM on its host card.
    let unit = ctl.scalable_unit_topology(admin, 1).await.unwrap();
    assert_eq!(unit.name, "su1");
    assert_eq!(unit.leaves.iter().map(|l| l.rail).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert!(unit.leaves.iter().all(|l| l.reported && l.hosts_cabled == 32), "{:?}", unit.leaves);
    assert_eq!(unit.hosts.len(), 32);
    let card = unit.hosts.iter().find(|h| h.name == host).unwrap();
    assert_eq!((card.count("used"), card.count("free"), card.count("bad")), (2, 6, 0));
    assert_eq!(unit.hosts.iter().map(|h| h.count("used")).sum::<usize>(), 2);
    assert_eq!(unit.launchable[0].launchable.x8, 31);

    // Deleted: the host is all free again.
    ctl.instance_delete(admin, created.id).await.unwrap();
    wait_for_state(&mut events, "topo-2", InstanceState::Deleted).await;
    let topo = ctl.host_topology(admin, &host).await.unwrap();
    assert!(topo.gpus().all(|g| g.state == GpuState::Free));
    assert!(topo.nics().all(|n| n.holder.is_none()));
    assert!(topo.partitions.iter().all(|p| p.state == PartitionState::Available));
    assert!(topo.numa_nodes.iter().all(|n| n.cpus_used == 0 && n.hugepages_used == 0));
    assert!(topo.instances.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_provider_admins_see_topology_and_unknown_names_are_404() {
    let stack = start(&sqlite_url("topology-authz"), 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    let anonymous = ctl.host_topology(&OpContext::anonymous(), "su1-h01").await.unwrap_err();
    assert_eq!(anonymous.status_code(), 401, "{anonymous}");
    assert_eq!(
        ctl.scalable_unit_topology(&OpContext::anonymous(), 1).await.unwrap_err().status_code(),
        401
    );

    let member = Actor {
        user_id: UserUuid::from_untyped_uuid(uuid::Uuid::new_v4()),
        username: "ada".into(),
        provider_admin: false,
        tenant_id: TenantUuid::from_untyped_uuid(uuid::Uuid::new_v4()),
        tenant_name: "acme".into(),
        role: Role::TenantAdmin,
        client: None,
        must_change_password: false,
    };
    let forbidden = ctl.host_topology(&op(&member), "su1-h01").await.unwrap_err();
    assert_eq!(forbidden.status_code(), 403);
    assert!(forbidden.to_string().contains("cannot see the fleet"), "{forbidden}");
    assert_eq!(ctl.scalable_unit_topology(&op(&member), 1).await.unwrap_err().status_code(), 403);

    let missing = ctl.host_topology(admin, "su9-h99").await.unwrap_err();
    assert_eq!(missing.status_code(), 404);
    assert_eq!(missing.to_string(), "No host named su9-h99 exists.");
    let missing = ctl.scalable_unit_topology(admin, 2).await.unwrap_err();
    assert_eq!(missing.to_string(), "No scalable unit named su2 exists.");

    // An idle host: everything free, every partition available, nothing pinned.
    let idle = ctl.host_topology(admin, "su1-h01").await.unwrap();
    assert!(idle.gpus().all(|g| g.state == GpuState::Free && g.health == GpuHealth::Ok));
    assert!(idle.partitions.iter().all(|p| p.state == PartitionState::Available));
    assert_eq!(idle.partitions.len(), 15);
    let l = idle.launchable[0].launchable;
    assert_eq!((l.x8, l.x4, l.x2, l.x1), (1, 0, 0, 0));

    // A GPU fails (XID 79 on su1-h02): its tile turns unhealthy, every partition holding it is
    // blocked, its siblings stay available, and the unit's host card counts it.
    let mut events = ctl.events().subscribe();
    let driver = stack.fleet.host("su1-h02").expect("simulated host");
    driver.set_gpu_health(5, sim_fleet::GpuHealth::Failed, "XID 79").unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !matches!(events.recv().await.map(|e| e.event), Ok(LiveEvent::FleetChanged)) {}
    })
    .await
    .expect("the failed GPU is reported");
    let sick = ctl.host_topology(admin, "su1-h02").await.unwrap();
    let failed: Vec<_> = sick.gpus().filter(|g| g.state == GpuState::Unhealthy).collect();
    assert_eq!(
        failed.iter().map(|g| (g.module_id, g.health.as_str())).collect::<Vec<_>>(),
        [(5, "failed")]
    );
    let blocked: Vec<u32> = sick
        .partitions
        .iter()
        .filter(|p| p.state == PartitionState::Blocked)
        .map(|p| p.id)
        .collect();
    // All eight, the upper half, the pair {5,7} and the single GPU 5.
    assert_eq!(blocked, [0, 2, 5, 11]);
    let l = sick.launchable[0].launchable;
    assert_eq!((l.x8, l.x4, l.x2, l.x1), (0, 1, 1, 1));
    // The dashboard's fleet map counts it too.
    let fleet = ctl.fleet_summary(admin).await.unwrap();
    let sick_card = fleet.hosts.iter().find(|h| h.name == "su1-h02").unwrap();
    assert_eq!((sick_card.gpus_total, sick_card.gpus_used, sick_card.gpus_unhealthy), (8, 0, 1));
    assert_eq!(sick_card.gpu_model, "H100-SXM5-80GB");
    let unit = ctl.scalable_unit_topology(admin, 1).await.unwrap();
    let card = unit.hosts.iter().find(|h| h.name == "su1-h02").unwrap();
    assert_eq!((card.count("free"), card.count("bad")), (7, 1));
}
