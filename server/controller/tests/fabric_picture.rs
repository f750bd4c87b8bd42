//! The provider admins' fabric picture of a scalable unit against the simulated fleet: VMs
//! of two tenants put each tenant's VRF (L3 VNI, its subnets' L2 VNIs) on every leaf of the
//! unit, confirmed once the network reconciler has sent it; the DPUs count the ports; a VM
//! deleted takes its tenant's VRF off the picture; each leaf's EVPN state is read live
//! (the VNIs it holds against the database: in sync, then a VRF lost and a stray one shown
//! as drift; a leaf that is slow or fails is "unknown" and does not hold the picture up);
//! tenant admins are refused; an unknown unit is not found. On SQLite, and on PostgreSQL when the run provides one.

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portal_controller::Controller;
use portal_types::Error;
use portal_types::ids::InstanceUuid;
use portal_types::network::VpcView;
use portal_types::topology::{EvpnRead, FabricLeaf, LeafEvpn, ScalableUnitFabric, VrfState};
use portal_types::views::{AgentLink, InstanceState};
use sim_fleet::SwitchOp;

/// A CPU-only VM: its VPC on every leaf of the unit, and no GPU fabric (`gpu_fabric.rs`
/// tests that one's place in the picture).
async fn running(ctl: &Arc<Controller>, who: &OpContext, name: &str) -> InstanceUuid {
    let id = ctl.instance_create(who, &launch(name, "c1m1")).await.unwrap()[0].id;
    eventually(20, "running", async || {
        ctl.instance_get(who, id).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    id
}

/// The tenant's default VPC, as its own network page shows it.
async fn default_vpc(ctl: &Controller, who: &OpContext) -> VpcView {
    let net = ctl.network_overview(who).await.unwrap();
    net.vpcs.into_iter().find(|v| v.is_default).expect("every tenant has a default VPC")
}

/// Every leaf holds exactly `tenants`' VRFs, all confirmed.
fn all_confirmed(picture: &ScalableUnitFabric, tenants: &[&str]) -> bool {
    picture.leaves.iter().all(|leaf| {
        let mut names: Vec<&str> = leaf.vrfs.iter().map(|v| v.tenant_name.as_str()).collect();
        names.sort_unstable();
        names == tenants && leaf.vrfs.iter().all(|v| v.state == VrfState::Confirmed)
    })
}

fn evpn(leaf: &FabricLeaf) -> &EvpnRead {
    match &leaf.evpn {
        LeafEvpn::Read(read) => read,
        LeafEvpn::Unknown(why) => panic!("{}: EVPN state unknown: {why}", leaf.name),
    }
}

fn unknown(leaf: &FabricLeaf) -> &str {
    match &leaf.evpn {
        LeafEvpn::Unknown(why) => why,
        LeafEvpn::Read(read) => panic!("{}: EVPN state read: {read:?}", leaf.name),
    }
}

async fn the_picture_follows_two_tenants(url: &str) {
    let stack = start(url, 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    // Before any VM: the unit's leaves, all reachable, no tenant VRF yet.
    let empty = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
    assert_eq!(empty.name, "su1");
    assert_eq!(empty.leaves.iter().map(|l| l.rail).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert!(empty.leaves.iter().all(|l| l.agent == AgentLink::Connected && l.vrfs.is_empty()));
    assert_eq!(empty.dpus.len(), 64, "32 HGX hosts with 2 DPUs each");
    assert!(empty.dpus.iter().all(|d| d.agent == AgentLink::Connected && d.ports == 0));

    // A VM in the provider's own tenant and one in acme's.
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let alice = member(ctl, &stack.admin, acme.id, "alice", "member").await;
    let alice = &op(&alice);
    running(ctl, admin, "fab-own").await;
    let theirs = running(ctl, alice, "fab-acme").await;

    let mut picture = empty;
    eventually(15, "both tenants' VRFs confirmed on every leaf", async || {
        picture = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
        all_confirmed(&picture, &["acme", "default"])
    })
    .await;
    assert_eq!(picture.counts(), (16, 0, 0));
    for (who, tenant) in [(admin, "default"), (alice, "acme")] {
        let vpc = default_vpc(ctl, who).await;
        let mut l2: Vec<u32> = vpc.subnets.iter().map(|s| s.vni).collect();
        l2.sort_unstable();
        for leaf in &picture.leaves {
            let vrf = leaf.vrfs.iter().find(|v| v.tenant_name == tenant).unwrap();
            assert_eq!(vrf.vpc_id, vpc.id);
            assert_eq!(vrf.vpc_name, vpc.name);
            assert_eq!(vrf.l3_vni, Some(vpc.vni));
            assert_eq!(vrf.vrf_name, format!("vpc{}", vpc.vni));
            assert_eq!(vrf.l2_vnis, l2);
            assert_eq!(vrf.confirmed_generation, Some(vrf.generation));
            // What the picture says is what the simulated leaf holds.
            let held = stack.fleet.switch(&leaf.name).unwrap().vpc(&vpc.id.to_string());
            assert_eq!(held.map(|h| h.l3_vni), Some(vpc.vni), "{} holds {tenant}'s VRF", leaf.name);
        }
    }
    // Each leaf's EVPN state, read live: a simulated leaf holds exactly the VNIs of the VRFs
    // the database gives it, and has no underlay peers.
    for leaf in &picture.leaves {
        let read = evpn(leaf);
        let expected: usize = leaf.vrfs.iter().map(|v| 1 + v.l2_vnis.len()).sum();
        assert_eq!(read.vnis as usize, expected, "{}: {read:?}", leaf.name);
        assert!(read.in_sync() && read.simulated, "{}: {read:?}", leaf.name);
        assert_eq!((read.established(), read.peers.len()), (0, 0));
    }
    // Drift: rail 0 loses acme's VRF behind the control plane's back and gains a stray one;
    // rail 1 answers too slowly and rail 2 fails: both unknown, the picture does not wait.
    let (rail0, rail1, rail2) =
        (&picture.leaves[0].name, &picture.leaves[1].name, &picture.leaves[2].name);
    let acme_vrf = picture.leaves[0].vrfs.iter().find(|v| v.tenant_name == "acme").unwrap();
    let mut acme_vnis: Vec<u32> = acme_vrf.l2_vnis.clone();
    acme_vnis.extend(acme_vrf.l3_vni);
    acme_vnis.sort_unstable();
    let leaf0 = stack.fleet.switch(rail0).unwrap();
    let mut stray = leaf0.vpc(&acme_vrf.vpc_id.to_string()).unwrap();
    leaf0.vpc_remove(&acme_vrf.vpc_id.to_string(), 0).await.unwrap();
    stray.vpc_id = "00000000-0000-4000-8000-00000000beef".into();
    stray.vrf_name = "stray".into();
    stray.l3_vni = 16_000_000;
    stray.segments.clear();
    leaf0.vpc_ensure(stray.clone()).await.unwrap();
    stack.fleet.switch(rail1).unwrap().faults().delay(SwitchOp::EvpnStatus, Duration::from_secs(3));
    stack.fleet.switch(rail2).unwrap().faults().fail_always(SwitchOp::EvpnStatus);
    let asked = Instant::now();
    let drifted = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
    assert!(asked.elapsed() < Duration::from_secs(4), "waited {:?}", asked.elapsed());
    let read = evpn(&drifted.leaves[0]);
    assert_eq!(read.unexpected_vnis, [16_000_000], "{read:?}");
    assert_eq!(read.missing_vnis, acme_vnis, "{read:?}");
    assert_eq!(unknown(&drifted.leaves[1]), "no answer within 2 s");
    assert!(unknown(&drifted.leaves[2]).starts_with("the switch agent could not read it"));
    assert!(drifted.leaves[3..].iter().all(|l| evpn(l).in_sync()));
    stack.fleet.switch(rail1).unwrap().faults().clear();
    stack.fleet.switch(rail2).unwrap().faults().clear();
    leaf0.vpc_remove(&stray.vpc_id, 0).await.unwrap();

    // Each VM has one port, on its host's DPU.
    eventually(10, "both ports confirmed by their DPUs", async || {
        let p = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
        p.dpus.iter().map(|d| d.ports).sum::<u32>() == 2
            && p.dpus.iter().all(|d| d.ports_pending == 0)
    })
    .await;

    // Acme's VM goes: its VRF leaves every leaf, the other tenant's stays.
    ctl.instance_delete(alice, theirs).await.unwrap();
    eventually(20, "acme's VRF gone from every leaf", async || {
        let p = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
        all_confirmed(&p, &["default"])
    })
    .await;

    // Provider admins only; an unknown unit is one sentence.
    let olga = member(ctl, &stack.admin, acme.id, "olga", "tenant-admin").await;
    let refused = ctl.scalable_unit_fabric(&op(&olga), 1).await.unwrap_err();
    assert!(matches!(refused, Error::Forbidden { .. }), "{refused:?}");
    let refused = ctl.scalable_unit_fabric(alice, 1).await.unwrap_err();
    assert!(matches!(refused, Error::Forbidden { .. }), "{refused:?}");
    let anonymous = ctl.scalable_unit_fabric(&OpContext::anonymous(), 1).await.unwrap_err();
    assert!(matches!(anonymous, Error::Unauthenticated), "{anonymous:?}");
    let unknown = ctl.scalable_unit_fabric(admin, 9).await.unwrap_err();
    assert_eq!(unknown.status_code(), 404);
    assert_eq!(unknown.to_string(), "No scalable unit named su9 exists.");
    // By the name in a URL: "su1" or "1"; a malformed one is not found either, once the
    // caller may look at all.
    assert_eq!(ctl.scalable_unit_fabric_named(admin, "su1").await.unwrap().number, 1);
    assert_eq!(ctl.scalable_unit_fabric_named(admin, "1").await.unwrap().name, "su1");
    let typo = ctl.scalable_unit_fabric_named(admin, "rack7").await.unwrap_err();
    assert_eq!(typo.to_string(), "No scalable unit named rack7 exists.");
    let refused = ctl.scalable_unit_fabric_named(&op(&olga), "rack7").await.unwrap_err();
    assert!(matches!(refused, Error::Forbidden { .. }), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fabric_picture_on_sqlite_and_postgres() {
    the_picture_follows_two_tenants(&sqlite_url("fabric-picture")).await;
    if let Some(url) = postgres_url("fabric-picture").await {
        the_picture_follows_two_tenants(&url).await;
    }
}
