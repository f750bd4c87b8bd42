//! Proto ⇄ model conversions for the switch agent. Decoding validates a VPC on its own: VRF
//! name, VNI ranges, no VNI used twice inside the VPC, subnets that do not overlap. All
//! failures are `InvalidArgument` naming the field.

use std::collections::BTreeSet;

use agent_common::generation::require_generation;
use agent_common::{DriverError, validate};
use agent_proto::v1 as pb;

use crate::model::{
    EvpnStatus, Segment, SwitchDescription, SwitchRole, VniKind, VpcSpec, VpcState, VpcStatus,
};

fn invalid(message: String) -> DriverError {
    DriverError::InvalidArgument(message)
}

/// VRF names the switch reserves for itself.
const RESERVED_VRFS: [&str; 2] = ["default", "mgmt"];

/// A Linux interface name: 1 to 15 characters of letters, digits, `-` and `_`.
fn vrf_name(value: &str) -> Result<String, DriverError> {
    let well_formed = !value.is_empty()
        && value.len() <= 15
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !well_formed {
        return Err(invalid(format!(
            "vrf_name {value:?} is not a valid VRF name; use 1 to 15 letters, digits, '-' or '_'"
        )));
    }
    if RESERVED_VRFS.contains(&value) {
        return Err(invalid(format!(
            "vrf_name {value:?} is reserved by the switch; choose another name"
        )));
    }
    Ok(value.to_owned())
}

/// The switch's port cabled to each attached host NIC, sorted; an attachment no port is
/// cabled to, or one named twice in the VPC, is refused.
fn access_ports(
    field: &str,
    attachments: &[pb::Attachment],
    switch: &SwitchDescription,
    taken: &mut BTreeSet<String>,
) -> Result<Vec<String>, DriverError> {
    let mut ports = Vec::with_capacity(attachments.len());
    for (j, a) in attachments.iter().enumerate() {
        let port = switch
            .ports
            .iter()
            .find(|p| p.peer_host_id == a.host_id && p.peer_nic_index == a.nic_index)
            .ok_or_else(|| {
                invalid(format!(
                    "{field}[{j}]: no port of {} is cabled to host {:?} NIC {}; attach only \
                     the NICs of this switch's rail",
                    switch.switch_id, a.host_id, a.nic_index
                ))
            })?;
        if !taken.insert(port.name.clone()) {
            return Err(invalid(format!(
                "{field}[{j}]: host {:?} NIC {} is attached twice in this VPC; attach each \
                 NIC to one segment",
                a.host_id, a.nic_index
            )));
        }
        ports.push(port.name.clone());
    }
    ports.sort();
    Ok(ports)
}

/// Decodes `EnsureVpcRequest.spec` for `switch` (whose cabling names the attached ports).
pub fn vpc_spec_from_proto(
    spec: Option<pb::VpcSpec>,
    switch: &SwitchDescription,
) -> Result<VpcSpec, DriverError> {
    let spec =
        spec.ok_or_else(|| invalid("EnsureVpcRequest.spec is missing; send the VPC spec".into()))?;
    let vpc_id = validate::uuid("vpc_id", &spec.vpc_id)?;
    let generation = require_generation("VPC", spec.generation)?;
    let vrf_name = vrf_name(&spec.vrf_name)?;
    let l3_vni = validate::vni("l3_vni", spec.l3_vni)?;
    let mut vnis = BTreeSet::from([l3_vni]);
    let mut taken = BTreeSet::new();
    let mut segments: Vec<Segment> = Vec::with_capacity(spec.segments.len());
    for (i, segment) in spec.segments.iter().enumerate() {
        let l2_vni = validate::vni(&format!("segments[{i}].l2_vni"), segment.l2_vni)?;
        if !vnis.insert(l2_vni) {
            return Err(invalid(format!(
                "segments[{i}].l2_vni {l2_vni} is already used in this VPC; give every \
                 segment its own VNI, distinct from l3_vni"
            )));
        }
        let cidr = validate::cidr(&format!("segments[{i}].cidr"), &segment.cidr)?;
        if let Some(other) = segments.iter().position(|s| s.cidr.overlaps(&cidr)) {
            return Err(invalid(format!(
                "segments[{i}].cidr {cidr} overlaps segments[{other}].cidr {}; subnets of a \
                 VPC must not overlap",
                segments[other].cidr
            )));
        }
        let access_ports = access_ports(
            &format!("segments[{i}].attachments"),
            &segment.attachments,
            switch,
            &mut taken,
        )?;
        segments.push(Segment { l2_vni, cidr, access_ports });
    }
    Ok(VpcSpec { vpc_id, generation, vrf_name, l3_vni, segments })
}

/// Decodes `RemoveVpcRequest.vpc_id`.
pub fn vpc_id_from_proto(vpc_id: &str) -> Result<String, DriverError> {
    validate::uuid("vpc_id", vpc_id)
}

pub fn vpc_state_to_proto(state: VpcState) -> pb::VpcState {
    match state {
        VpcState::Ready => pb::VpcState::Ready,
        VpcState::Removed => pb::VpcState::Removed,
        VpcState::Failed => pb::VpcState::Failed,
    }
}

/// The status as the agent of boot `boot_id` answers it.
pub fn vpc_status_to_proto(status: &VpcStatus, boot_id: &str) -> pb::VpcStatus {
    pb::VpcStatus {
        boot_id: boot_id.to_owned(),
        vpc_id: status.vpc_id.clone(),
        state: vpc_state_to_proto(status.state).into(),
        generation: status.generation,
        message: status.message.clone(),
    }
}

/// The inventory with the VPCs held, by id.
pub fn inventory_to_proto(
    switch: &SwitchDescription,
    agent_version: &str,
    boot_id: &str,
    held: &[VpcSpec],
) -> pb::SwitchInventory {
    let mut vpcs: Vec<pb::HeldVpc> = held
        .iter()
        .map(|v| pb::HeldVpc { vpc_id: v.vpc_id.clone(), generation: v.generation })
        .collect();
    vpcs.sort_by(|a, b| a.vpc_id.cmp(&b.vpc_id));
    let role = match switch.role {
        SwitchRole::RailLeaf => pb::SwitchRole::RailLeaf,
        SwitchRole::Spine => pb::SwitchRole::Spine,
    };
    pb::SwitchInventory {
        switch_id: switch.switch_id.clone(),
        model: switch.model.clone(),
        role: role.into(),
        scalable_unit: switch.scalable_unit,
        rail: switch.rail,
        asn: switch.asn,
        loopback_ip: switch.loopback_ip.clone(),
        ports: switch
            .ports
            .iter()
            .map(|port| pb::SwitchPort {
                name: port.name.clone(),
                peer_host_id: port.peer_host_id.clone(),
                peer_nic_index: port.peer_nic_index,
                speed_gbps: port.speed_gbps,
            })
            .collect(),
        agent_version: agent_version.to_owned(),
        boot_id: boot_id.to_owned(),
        vpcs,
    }
}

/// Encodes the switch's EVPN state; VNIs ascending, each with its count of remote VTEPs.
pub fn evpn_status_to_proto(status: &EvpnStatus) -> pb::EvpnStatusReply {
    let mut vnis: Vec<pb::EvpnVni> = status
        .vnis
        .iter()
        .map(|v| pb::EvpnVni {
            vni: v.vni,
            kind: match v.kind {
                VniKind::L2 => pb::VniKind::L2,
                VniKind::L3 => pb::VniKind::L3,
            }
            .into(),
            vrf: v.vrf.clone(),
            remote_vteps: u32::try_from(v.remote_vteps.len()).unwrap_or(u32::MAX),
        })
        .collect();
    vnis.sort_by_key(|v| v.vni);
    let mut peers: Vec<pb::EvpnPeer> = status
        .peers
        .iter()
        .map(|p| pb::EvpnPeer {
            address: p.address.clone(),
            state: p.state.clone(),
            prefixes_received: p.prefixes_received,
        })
        .collect();
    peers.sort_by(|a, b| a.address.cmp(&b.address));
    pb::EvpnStatusReply { peers, vnis, simulated: status.simulated }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{PeerStatus, SwitchPort, VniStatus};

    fn segment(l2_vni: u32, cidr: &str) -> pb::Segment {
        pb::Segment { l2_vni, cidr: cidr.into(), attachments: Vec::new() }
    }

    fn attached(l2_vni: u32, cidr: &str, nics: &[(&str, u32)]) -> pb::Segment {
        let attachments = nics
            .iter()
            .map(|(host, nic)| pb::Attachment { host_id: (*host).into(), nic_index: *nic })
            .collect();
        pb::Segment { attachments, ..segment(l2_vni, cidr) }
    }

    /// Rail 3's leaf, cabled to NIC 3 of two hosts.
    fn leaf() -> SwitchDescription {
        let port = |name: &str, host: &str| SwitchPort {
            name: name.into(),
            peer_host_id: host.into(),
            peer_nic_index: 3,
            speed_gbps: 400,
        };
        SwitchDescription {
            switch_id: "su1-rail3".into(),
            model: "Spectrum-4 SN5600".into(),
            role: SwitchRole::RailLeaf,
            scalable_unit: 1,
            rail: 3,
            asn: 4_200_000_103,
            loopback_ip: "10.255.0.4".into(),
            ports: vec![port("swp2", "su1-h02"), port("swp1", "su1-h01")],
        }
    }

    fn spec() -> pb::VpcSpec {
        pb::VpcSpec {
            vpc_id: "00000000-0000-4000-8000-0000000000c1".into(),
            generation: 1,
            vrf_name: "vrf-t1-vpc1".into(),
            l3_vni: 50_001,
            segments: vec![segment(10_001, "10.1.0.0/24"), segment(10_002, "10.1.1.0/24")],
        }
    }

    #[test]
    fn test_decode_valid_vpc() {
        let vpc = vpc_spec_from_proto(Some(spec()), &leaf()).expect("valid");
        assert_eq!(vpc.vnis(), BTreeSet::from([10_001, 10_002, 50_001]));
        assert!(vpc.access_ports().is_empty());
    }

    #[test]
    fn test_attachments_become_the_ports_cabled_to_them() {
        let nics = [("su1-h02", 3), ("su1-h01", 3)];
        let fabric =
            pb::VpcSpec { segments: vec![attached(10_003, "100.64.48.0/20", &nics)], ..spec() };
        let vpc = vpc_spec_from_proto(Some(fabric), &leaf()).expect("valid");
        assert_eq!(vpc.segments[0].access_ports, ["swp1", "swp2"]);

        let elsewhere = pb::VpcSpec {
            segments: vec![attached(10_003, "100.64.0.0/20", &[("su1-h01", 0)])],
            ..spec()
        };
        let err = vpc_spec_from_proto(Some(elsewhere), &leaf()).expect_err("another rail");
        assert!(err.to_string().contains("no port of su1-rail3 is cabled to host"), "{err}");
        let twice = pb::VpcSpec {
            segments: vec![
                attached(10_003, "100.64.0.0/20", &[("su1-h01", 3)]),
                attached(10_004, "100.64.16.0/20", &[("su1-h01", 3)]),
            ],
            ..spec()
        };
        let err = vpc_spec_from_proto(Some(twice), &leaf()).expect_err("twice");
        assert!(err.to_string().contains("segments[1].attachments[0]"), "{err}");
    }

    #[test]
    fn test_decode_refusals_name_the_field() {
        let cases = [
            (pb::VpcSpec { vrf_name: String::new(), ..spec() }, "vrf_name"),
            (pb::VpcSpec { vrf_name: "a-very-long-vrf-name".into(), ..spec() }, "vrf_name"),
            (pb::VpcSpec { vrf_name: "vrf 1".into(), ..spec() }, "vrf_name"),
            (pb::VpcSpec { vrf_name: "default".into(), ..spec() }, "reserved"),
            (pb::VpcSpec { l3_vni: 0, ..spec() }, "l3_vni 0"),
            (pb::VpcSpec { generation: 0, ..spec() }, "generation 0"),
            (pb::VpcSpec { vpc_id: "vpc1".into(), ..spec() }, "vpc_id"),
            (
                pb::VpcSpec { segments: vec![segment(16_777_216, "10.1.0.0/24")], ..spec() },
                "segments[0].l2_vni",
            ),
            (
                pb::VpcSpec { segments: vec![segment(50_001, "10.1.0.0/24")], ..spec() },
                "already used in this VPC",
            ),
            (
                pb::VpcSpec {
                    segments: vec![segment(1, "10.1.0.0/16"), segment(2, "10.1.5.0/24")],
                    ..spec()
                },
                "segments[1].cidr 10.1.5.0/24 overlaps segments[0].cidr",
            ),
            (
                pb::VpcSpec { segments: vec![segment(1, "10.1.0.0/33")], ..spec() },
                "segments[0].cidr",
            ),
        ];
        for (bad, expected) in cases {
            let err = vpc_spec_from_proto(Some(bad), &leaf()).expect_err(expected);
            assert!(matches!(err, DriverError::InvalidArgument(_)));
            assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
        }
    }

    #[test]
    fn test_encode_evpn_status() {
        let vni = |vni: u32, kind: VniKind, remote: &[&str]| VniStatus {
            vni,
            kind,
            vrf: "vpc4001".into(),
            vxlan_if: None,
            remote_vteps: remote.iter().map(|r| (*r).to_owned()).collect(),
        };
        let status = EvpnStatus {
            peers: vec![
                PeerStatus {
                    address: "swp2".into(),
                    state: "Active".into(),
                    prefixes_received: None,
                },
                PeerStatus {
                    address: "swp1".into(),
                    state: "Established".into(),
                    prefixes_received: Some(12),
                },
            ],
            vnis: vec![
                vni(4001, VniKind::L3, &[]),
                vni(100, VniKind::L2, &["10.255.0.2", "10.255.0.3"]),
            ],
            simulated: false,
        };
        let reply = evpn_status_to_proto(&status);
        assert!(!reply.simulated);
        assert_eq!(
            reply.peers,
            [
                pb::EvpnPeer {
                    address: "swp1".into(),
                    state: "Established".into(),
                    prefixes_received: Some(12)
                },
                pb::EvpnPeer {
                    address: "swp2".into(),
                    state: "Active".into(),
                    prefixes_received: None
                },
            ]
        );
        assert_eq!(
            reply.vnis,
            [
                pb::EvpnVni {
                    vni: 100,
                    kind: pb::VniKind::L2.into(),
                    vrf: "vpc4001".into(),
                    remote_vteps: 2
                },
                pb::EvpnVni {
                    vni: 4001,
                    kind: pb::VniKind::L3.into(),
                    vrf: "vpc4001".into(),
                    remote_vteps: 0
                },
            ]
        );
        let empty = evpn_status_to_proto(&EvpnStatus { simulated: true, ..EvpnStatus::default() });
        assert!(empty.simulated && empty.peers.is_empty() && empty.vnis.is_empty());
    }
}
