//! The DPU and switch agents over real gRPC on loopback.

mod common;

use agent_proto::v1 as pb;
use common::*;
use sim_fleet::{DpuOp, SwitchOp};
use tonic::Code;

const DPU: &str = "su1-h07-dpu1";
const LEAF: &str = "su1-leaf3";

fn port(n: u32, vni: u32) -> pb::PortSpec {
    pb::PortSpec {
        port_id: uuid(1000 + n),
        vm_id: uuid(n),
        gateway: String::new(),
        prefix_len: 0,
        public_ip: String::new(),
        generation: 1,
        vni,
        mac: format!("02:00:00:00:{:02x}:{:02x}", n / 256, n % 256),
        ip: format!("10.0.{}.{}", n / 250, n % 250 + 2),
        rules: vec![
            pb::SecurityRule {
                direction: "ingress".into(),
                protocol: "tcp".into(),
                port_min: 22,
                port_max: 22,
                cidr: "0.0.0.0/0".into(),
            },
            pb::SecurityRule {
                direction: "egress".into(),
                protocol: "any".into(),
                port_min: 0,
                port_max: 0,
                cidr: "0.0.0.0/0".into(),
            },
        ],
    }
}

fn vpc(n: u32, l3_vni: u32, l2_vnis: &[u32]) -> pb::VpcSpec {
    pb::VpcSpec {
        vpc_id: uuid(5000 + n),
        generation: 1,
        vrf_name: format!("vrf-vpc{n}"),
        l3_vni,
        segments: l2_vnis
            .iter()
            .enumerate()
            .map(|(i, vni)| pb::Segment {
                l2_vni: *vni,
                cidr: format!("10.{n}.{i}.0/24"),
                attachments: Vec::new(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn test_dpu_inventory_ports_and_watch() {
    let fleet = fleet().await;
    let mut client = dpu_client(&fleet, DPU).await;
    let inv = client.get_inventory(pb::InventoryRequest {}).await.expect("inventory").into_inner();
    assert_eq!((inv.dpu_id.as_str(), inv.host_id.as_str()), (DPU, "su1-h07"));
    assert_eq!(inv.model, "BlueField-3 B3220");
    assert_eq!(inv.max_ports, 64);
    assert!(inv.vtep_ip.starts_with("10.254."));

    let ensure_client = client.clone();
    let ensure = move |spec: pb::PortSpec| {
        let mut client = ensure_client.clone();
        async move {
            client
                .ensure_port(pb::EnsurePortRequest { spec: Some(spec) })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let first = ensure(port(1, 10_001)).await.expect("ensure");
    assert_eq!((first.state(), first.generation), (pb::PortState::Ready, 1));
    assert_eq!(ensure(port(1, 10_001)).await.expect("retry"), first);
    assert_eq!(fleet.dpu(DPU).expect("handle").port_count(), 1);

    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    assert_eq!(next(&mut events).await, first);

    assert_refused(
        ensure(pb::PortSpec { vni: 10_002, ..port(1, 10_001) }).await,
        Code::FailedPrecondition,
        "different spec at generation 1",
    );
    let moved = ensure(pb::PortSpec { generation: 2, vni: 10_002, ..port(1, 10_001) })
        .await
        .expect("gen 2");
    assert_eq!(next(&mut events).await, moved);
    assert_refused(
        ensure(port(1, 10_001)).await,
        Code::FailedPrecondition,
        "already at generation 2",
    );
    assert_refused(
        ensure(pb::PortSpec { mac: port(1, 0).mac, ..port(2, 10_002) }).await,
        Code::FailedPrecondition,
        "already used by port",
    );

    for (bad, text) in [
        (pb::PortSpec { vni: 0, ..port(3, 1) }, "vni 0 is outside the VXLAN range"),
        (pb::PortSpec { vni: 16_777_216, ..port(3, 1) }, "vni 16777216"),
        (pb::PortSpec { mac: "01:00:5e:00:00:01".into(), ..port(3, 1) }, "multicast"),
        (pb::PortSpec { ip: "10.0.0".into(), ..port(3, 1) }, "is not an IP address"),
    ] {
        assert_refused(ensure(bad).await, Code::InvalidArgument, text);
    }
    let mut bad_rule = port(3, 1);
    bad_rule.rules[0].port_max = 70_000;
    assert_refused(ensure(bad_rule).await, Code::InvalidArgument, "rules[0].port range");

    let removed = client
        .remove_port(pb::RemovePortRequest { port_id: uuid(1001), generation: 0 })
        .await
        .expect("remove")
        .into_inner();
    assert_eq!((removed.state(), removed.generation), (pb::PortState::Removed, 2));
    assert_eq!(next(&mut events).await, removed);
    let absent = client
        .remove_port(pb::RemovePortRequest { port_id: uuid(1001), generation: 0 })
        .await
        .expect("remove absent")
        .into_inner();
    assert_eq!(absent.state(), pb::PortState::Removed);
}

#[tokio::test]
async fn test_dpu_max_ports_and_faults() {
    let fleet = fleet().await;
    let mut client = dpu_client(&fleet, DPU).await;
    for n in 0..64 {
        client
            .ensure_port(pb::EnsurePortRequest { spec: Some(port(n, 10_001)) })
            .await
            .expect("within max_ports");
    }
    assert_refused(
        client.ensure_port(pb::EnsurePortRequest { spec: Some(port(64, 10_001)) }).await,
        Code::ResourceExhausted,
        "maximum of 64 tenant ports",
    );

    let faults = fleet.dpu(DPU).expect("handle").faults();
    faults.fail_nth(DpuOp::PortDetach, 1);
    let status = client
        .remove_port(pb::RemovePortRequest { port_id: uuid(1000), generation: 0 })
        .await
        .expect_err("injected");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(status.message().contains("injected fault: port_detach"));
    assert_eq!(fleet.dpu(DPU).expect("handle").port_count(), 64);
    client
        .remove_port(pb::RemovePortRequest { port_id: uuid(1000), generation: 0 })
        .await
        .expect("retry succeeds");
    assert_eq!(fleet.dpu(DPU).expect("handle").port_count(), 63);
}

#[tokio::test]
async fn test_switch_inventory_vpcs_and_watch() {
    let fleet = fleet().await;
    let mut client = switch_client(&fleet, LEAF).await;
    let inv = client.get_inventory(pb::InventoryRequest {}).await.expect("inventory").into_inner();
    assert_eq!(inv.switch_id, LEAF);
    assert_eq!(inv.model, "Spectrum-4 SN5600");
    assert_eq!(inv.role(), pb::SwitchRole::RailLeaf);
    assert_eq!((inv.scalable_unit, inv.rail), (1, 3));
    assert_eq!(inv.ports.len(), 32);
    assert!(inv.ports.iter().all(|p| p.peer_nic_index == 3 && p.speed_gbps == 400));
    assert_eq!(inv.ports[6].peer_host_id, "su1-h07");

    let ensure_client = client.clone();
    let ensure = move |spec: pb::VpcSpec| {
        let mut client = ensure_client.clone();
        async move {
            client
                .ensure_vpc(pb::EnsureVpcRequest { spec: Some(spec) })
                .await
                .map(tonic::Response::into_inner)
        }
    };
    let mut events = client.watch(pb::WatchRequest {}).await.expect("watch").into_inner();
    let first = ensure(vpc(1, 50_001, &[10_001, 10_002])).await.expect("ensure");
    assert_eq!(first.state(), pb::VpcState::Ready);
    assert_eq!(next(&mut events).await, first);
    assert_eq!(ensure(vpc(1, 50_001, &[10_001, 10_002])).await.expect("retry"), first);
    assert_eq!(fleet.switch(LEAF).expect("handle").vpc_count(), 1);

    assert_refused(
        ensure(vpc(2, 50_001, &[20_001])).await,
        Code::FailedPrecondition,
        "VNI 50001 is already used by VPC",
    );
    assert_refused(
        ensure(vpc(2, 50_002, &[10_002])).await,
        Code::FailedPrecondition,
        "VNI 10002 is already used by VPC",
    );
    assert_refused(
        ensure(vpc(2, 50_002, &[50_002])).await,
        Code::InvalidArgument,
        "segments[0].l2_vni 50002 is already used in this VPC",
    );
    // A newer generation moves VPC 1 to L3 VNI 50003, freeing 50001.
    let updated = ensure(pb::VpcSpec { generation: 2, ..vpc(1, 50_003, &[10_001, 10_002]) })
        .await
        .expect("gen 2");
    assert_eq!(updated.generation, 2);
    assert_eq!(next(&mut events).await, updated);
    assert_eq!(fleet.switch(LEAF).and_then(|s| s.vpc(&uuid(5001))).map(|v| v.l3_vni), Some(50_003));
    let second = ensure(vpc(2, 50_001, &[20_001])).await.expect("distinct VNIs");
    assert_eq!(next(&mut events).await, second);

    let stale = pb::VpcSpec { generation: 1, ..vpc(1, 50_001, &[10_001]) };
    assert_refused(ensure(stale).await, Code::FailedPrecondition, "already at generation 2");

    let removed = client
        .remove_vpc(pb::RemoveVpcRequest { vpc_id: uuid(5002), generation: 0 })
        .await
        .expect("remove")
        .into_inner();
    assert_eq!(removed.state(), pb::VpcState::Removed);
    let mut removed_seen = false;
    while !removed_seen {
        removed_seen = next(&mut events).await == removed;
    }

    fleet.switch(LEAF).expect("handle").faults().fail_always(SwitchOp::VrfApply);
    // The device refuses a VPC the manager accepted: UNAVAILABLE, marked as injected.
    assert_refused(
        ensure(vpc(3, 59_003, &[])).await,
        Code::Unavailable,
        "injected fault: vrf_apply",
    );
}
