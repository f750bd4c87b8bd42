//! The per-tenant GPU fabric through the control plane against the simulated fleet: a GPU
//! launch joins its SuperNICs (an address of each rail's subnet, given to the guest) and
//! waits until their rail leaves hold the tenant's segment with the ports cabled to them;
//! tenants get fabrics of their own (own VRF and VNIs, the same addresses); a delete takes
//! the NICs off and the last one the fabric off the leaf; a leaf that never confirms fails
//! the launch by its deadline, leaving nothing behind; VPC subnets stay out of the range.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use portal_controller::Controller;
use portal_types::network::SubnetCreate;
use portal_types::topology::{LeafEvpn, VrfState};
use portal_types::views::{FabricLinkState, InstanceDetail, InstanceState};
use switch_agent::model::VpcSpec;

async fn running(ctl: &Arc<Controller>, who: &OpContext, name: &str, ty: &str) -> InstanceDetail {
    let id = ctl.instance_create(who, &launch(name, ty)).await.unwrap()[0].id;
    eventually(20, &format!("{name} running"), async || {
        ctl.instance_get(who, id).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    ctl.instance_get(who, id).await.unwrap()
}

/// The GPU fabrics (VRF `gpu…`) a leaf holds.
fn fabrics_on(stack: &Stack, leaf: &str) -> Vec<VpcSpec> {
    let switch = stack.fleet.switch(leaf).expect("the leaf exists");
    switch.vpcs().into_iter().filter(|v| v.vrf_name.starts_with("gpu")).collect()
}

/// `swp7` for host `su1-h07`: the simulated rail leaves' cabling.
fn port_of(host: &str) -> String {
    let number: u32 = host.rsplit_once("-h").unwrap().1.parse().unwrap();
    format!("swp{number}")
}

async fn gpu_fabric(url: &str) {
    let stack = start(url, 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);

    // A 2-GPU VM: both SuperNICs join, each on its rail, and the guest is told.
    let first = running(ctl, admin, "fab-a", "h100x2").await;
    let host = first.host.clone().unwrap();
    assert_eq!(first.nics.len(), 2, "{:?}", first.nics);
    for nic in &first.nics {
        let rail = nic.rail;
        assert_eq!(
            nic.fabric_address.as_deref(),
            Some(format!("100.64.{}.2/20", 16 * rail).as_str()),
            "{nic:?}"
        );
        assert_eq!(nic.fabric_leaf.as_deref(), Some(format!("su1-leaf{rail}").as_str()));
        assert_eq!(nic.fabric_state, Some(FabricLinkState::Ready));
        let held = fabrics_on(&stack, &format!("su1-leaf{rail}"));
        assert_eq!(held.len(), 1, "{held:?}");
        assert_eq!(held[0].segments.len(), 1, "only this rail's segment");
        assert_eq!(held[0].segments[0].cidr.to_string(), format!("100.64.{}.0/20", 16 * rail));
        assert_eq!(held[0].segments[0].access_ports, [port_of(&host)]);
    }
    let rails: Vec<u32> = first.nics.iter().map(|n| n.rail).collect();
    for leaf in stack.fleet.switches() {
        let rail: u32 = leaf.switch_id().rsplit_once("leaf").unwrap().1.parse().unwrap();
        if !rails.contains(&rail) {
            assert!(fabrics_on(&stack, leaf.switch_id()).is_empty(), "no NIC behind {rail}");
        }
    }
    // The provider's fabric picture shows it on exactly those leaves, confirmed, no drift.
    let picture = ctl.scalable_unit_fabric(admin, 1).await.unwrap();
    for leaf in &picture.leaves {
        let gpu: Vec<_> = leaf.vrfs.iter().filter(|v| v.vrf_name.starts_with("gpu")).collect();
        assert_eq!(gpu.len(), usize::from(rails.contains(&leaf.rail)), "{}", leaf.name);
        for vrf in gpu {
            assert_eq!((vrf.state, vrf.l2_vnis.len()), (VrfState::Confirmed, 1), "{vrf:?}");
            assert_eq!(vrf.vpc_name, "GPU fabric");
        }
        match &leaf.evpn {
            LeafEvpn::Read(read) => {
                assert!(read.unexpected_vnis.is_empty() && read.missing_vnis.is_empty(), "{read:?}")
            }
            LeafEvpn::Unknown(why) => panic!("{}: {why}", leaf.name),
        }
    }
    let spec = stack.fleet.host(&host).unwrap().vm_spec(&first.instance.id.to_string()).unwrap();
    let given: Vec<(u32, String, u8)> =
        spec.fabric_nics.iter().map(|n| (n.nic_index, n.ip.to_string(), n.prefix_len)).collect();
    let mut expected: Vec<(u32, String, u8)> =
        first.nics.iter().map(|n| (n.index, format!("100.64.{}.2", 16 * n.rail), 20)).collect();
    expected.sort();
    assert_eq!(given, expected);
    assert!(spec.fabric_nics.iter().all(|n| n.mac.starts_with("02:5a:")), "{spec:?}");

    // A CPU-only VM has no SuperNIC and no fabric.
    let cpu = running(ctl, admin, "fab-cpu", "c1m1").await;
    assert!(cpu.nics.is_empty());

    // Another tenant: a fabric of its own (own VRF and VNIs), the same addresses.
    let acme = ctl.tenant_create(admin, "acme").await.unwrap();
    let alice = member(ctl, &stack.admin, acme.id, "alice", "member").await;
    let alice = &op(&alice);
    let theirs = running(ctl, alice, "fab-b", "h100x1").await;
    let nic = &theirs.nics[0];
    assert_eq!(
        nic.fabric_address.as_deref(),
        Some(format!("100.64.{}.2/20", 16 * nic.rail).as_str())
    );
    let on_leaf = fabrics_on(&stack, &format!("su1-leaf{}", nic.rail));
    let expected_fabrics = if rails.contains(&nic.rail) { 2 } else { 1 };
    assert_eq!(on_leaf.len(), expected_fabrics, "{on_leaf:?}");
    let their_port = port_of(theirs.host.as_deref().unwrap());
    let holding = on_leaf.iter().filter(|v| v.segments[0].access_ports.contains(&their_port));
    assert_eq!(holding.count(), 1, "their NIC is in one fabric only: {on_leaf:?}");
    let vnis: std::collections::BTreeSet<u32> = on_leaf.iter().map(|v| v.l3_vni).collect();
    assert_eq!(vnis.len(), on_leaf.len(), "each tenant its own L3 VNI");

    // A second VM of the first tenant on a rail it already uses takes the next address.
    let second = running(ctl, admin, "fab-c", "h100x8").await;
    for nic in second.nics.iter().filter(|n| rails.contains(&n.rail)) {
        assert_eq!(
            nic.fabric_address.as_deref(),
            Some(format!("100.64.{}.3/20", 16 * nic.rail).as_str()),
            "{nic:?}"
        );
    }
    assert_eq!(second.nics.len(), 8);
    assert!(second.nics.iter().all(|n| n.fabric_state == Some(FabricLinkState::Ready)));

    // Deleting: the first VM's ports leave its leaves' segments; the fabric stays on the
    // leaves the second still uses, and leaves a leaf with no NIC of the tenant.
    ctl.instance_delete(admin, first.instance.id).await.unwrap();
    let second_host = second.host.clone().unwrap();
    for rail in &rails {
        let leaf = format!("su1-leaf{rail}");
        eventually(10, "the deleted VM's port leaves its segment", async || {
            fabrics_on(&stack, &leaf).iter().all(|v| {
                v.segments.iter().all(|s| !s.access_ports.contains(&port_of(&host)))
                    || host == second_host
            })
        })
        .await;
    }
    ctl.instance_delete(admin, second.instance.id).await.unwrap();
    ctl.instance_delete(alice, theirs.instance.id).await.unwrap();
    eventually(10, "no leaf holds a GPU fabric", async || {
        stack.fleet.switches().all(|s| fabrics_on(&stack, s.switch_id()).is_empty())
    })
    .await;

    // VPC subnets stay out of the fabric's range.
    let net = ctl.network_overview(admin).await.unwrap();
    let inside =
        SubnetCreate { vpc: net.vpcs[0].id, name: "clash".into(), cidr: "100.64.8.0/24".into() };
    let refused = ctl.subnet_create(admin, &inside).await.unwrap_err().to_string();
    assert!(refused.contains("the addresses of your GPU fabric"), "{refused}");
}

/// A rail leaf that refuses every change: the launch waits, fails by its deadline naming
/// the leaf, and takes its fabric addresses back.
async fn leaf_that_never_confirms(url: &str) {
    let stack = start_with_deadline(url, 1, Duration::from_secs(4)).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    for leaf in stack.fleet.switches() {
        leaf.faults().fail_always(switch_agent::backend::SwitchOp::VrfApply);
    }
    let id = ctl.instance_create(admin, &launch("fab-stuck", "h100x1")).await.unwrap()[0].id;
    eventually(20, "the launch failed", async || {
        ctl.instance_get(admin, id).await.unwrap().instance.state == InstanceState::Failed
    })
    .await;
    let failed = ctl.instance_get(admin, id).await.unwrap();
    let message = failed.instance.message.unwrap_or_default();
    assert!(message.contains("did not put its GPU fabric in place"), "{message}");
    assert!(message.contains("su1-leaf"), "{message}");
    eventually(10, "its fabric addresses released", async || {
        ctl.instance_get(admin, id).await.unwrap().nics.iter().all(|n| n.fabric_address.is_none())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpu_fabric_on_sqlite_and_postgres() {
    gpu_fabric(&sqlite_url("gpu-fabric")).await;
    if let Some(url) = postgres_url("gpu-fabric").await {
        gpu_fabric(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_that_never_confirms_fails_the_launch() {
    leaf_that_never_confirms(&sqlite_url("gpu-fabric-stuck")).await;
}
