//! Proto ⇄ model conversions for the DPU agent. Decoding is where a port spec is validated:
//! VNI range, unicast MAC, IP address, gateway, public IP, and every security rule. All failures are
//! `InvalidArgument` naming the field.

use agent_common::generation::require_generation;
use agent_common::{DriverError, validate};
use std::net::{IpAddr, Ipv4Addr};

use agent_proto::v1 as pb;

use crate::model::{
    Counter, Direction, DpuDescription, Gateway, PortCountersReport, PortSpec, PortState,
    PortStatus, Protocol, SecurityRule, TrafficCounters,
};

fn invalid(message: String) -> DriverError {
    DriverError::InvalidArgument(message)
}

/// Decodes `EnsurePortRequest.spec`.
pub fn port_spec_from_proto(spec: Option<pb::PortSpec>) -> Result<PortSpec, DriverError> {
    let spec = spec
        .ok_or_else(|| invalid("EnsurePortRequest.spec is missing; send the port spec".into()))?;
    let ip = validate::ip_address("ip", &spec.ip)?;
    let gateway = gateway_from_proto(&spec, ip)?;
    let public_ip = public_ip_from_proto(&spec.public_ip, ip, gateway)?;
    Ok(PortSpec {
        port_id: validate::uuid("port_id", &spec.port_id)?,
        vm_id: validate::uuid("vm_id", &spec.vm_id)?,
        generation: require_generation("port", spec.generation)?,
        vni: validate::vni("vni", spec.vni)?,
        mac: validate::unicast_mac("mac", &spec.mac)?,
        ip,
        rules: spec
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| rule_from_proto(i, rule))
            .collect::<Result<_, _>>()?,
        gateway,
        public_ip,
    })
}

/// `gateway` and `prefix_len`: both empty, or an address of `ip`'s family, not `ip` itself,
/// with `ip` inside the network they make.
fn gateway_from_proto(spec: &pb::PortSpec, ip: IpAddr) -> Result<Option<Gateway>, DriverError> {
    if spec.gateway.is_empty() && spec.prefix_len == 0 {
        return Ok(None);
    }
    let address = validate::ip_address("gateway", &spec.gateway)?;
    let max = if address.is_ipv4() { 32 } else { 128 };
    let prefix_len =
        u8::try_from(spec.prefix_len).ok().filter(|p| (1..max).contains(p)).ok_or_else(|| {
            invalid(format!(
                "prefix_len {} is not a subnet's prefix length; send 1 to {} for gateway {address}",
                spec.prefix_len,
                max - 1
            ))
        })?;
    let network = validate::cidr_of(address, prefix_len);
    if address == ip || !network.contains(ip) {
        return Err(invalid(format!(
            "ip {ip} is not another address of gateway {address}/{prefix_len}'s subnet; send the \
             port's subnet gateway"
        )));
    }
    Ok(Some(Gateway { address, prefix_len }))
}

/// `public_ip`: empty, or a unicast IPv4 address for a port with an IPv4 address and gateway.
fn public_ip_from_proto(
    value: &str,
    ip: IpAddr,
    gateway: Option<Gateway>,
) -> Result<Option<Ipv4Addr>, DriverError> {
    if value.is_empty() {
        return Ok(None);
    }
    let Ok(IpAddr::V4(public)) = validate::ip_address("public_ip", value) else {
        return Err(invalid(format!(
            "public_ip {value:?} is not an IPv4 address; send one like 203.0.113.10"
        )));
    };
    if public.is_unspecified() || public.is_multicast() || public.is_broadcast() {
        return Err(invalid(format!("public_ip {public} is not a unicast address")));
    }
    if !ip.is_ipv4() || gateway.is_none() {
        return Err(invalid(format!(
            "public_ip {public} needs an IPv4 port address and its subnet's gateway; send ip, \
             gateway and prefix_len"
        )));
    }
    Ok(Some(public))
}

/// Decodes `RemovePortRequest.port_id` and `PortCountersRequest.port_id`.
pub fn port_id_from_proto(port_id: &str) -> Result<String, DriverError> {
    validate::uuid("port_id", port_id)
}

fn rule_from_proto(i: usize, rule: &pb::SecurityRule) -> Result<SecurityRule, DriverError> {
    let field = |name: &str| format!("rules[{i}].{name}");
    let direction = match rule.direction.as_str() {
        "ingress" => Direction::Ingress,
        "egress" => Direction::Egress,
        other => {
            return Err(invalid(format!(
                "{} {other:?} is not a direction; use \"ingress\" or \"egress\"",
                field("direction")
            )));
        }
    };
    let protocol = match rule.protocol.as_str() {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "icmp" => Protocol::Icmp,
        "any" => Protocol::Any,
        other => {
            return Err(invalid(format!(
                "{} {other:?} is not a protocol; use \"tcp\", \"udp\", \"icmp\" or \"any\"",
                field("protocol")
            )));
        }
    };
    let (min, max) = (rule.port_min, rule.port_max);
    let ports = match protocol {
        Protocol::Tcp | Protocol::Udp => {
            if min == 0 && max == 0 {
                Some((1, u16::MAX))
            } else if min == 0 || min > max || max > u32::from(u16::MAX) {
                return Err(invalid(format!(
                    "{} is {min}..{max}; send 1 <= port_min <= port_max <= 65535, or both 0 \
                     for every port",
                    field("port range")
                )));
            } else {
                // Both bounds were just checked to fit in 1..=65535.
                Some((min as u16, max as u16))
            }
        }
        Protocol::Icmp | Protocol::Any => {
            if min != 0 || max != 0 {
                return Err(invalid(format!(
                    "{} is {min}..{max} but port ranges only apply to tcp and udp; send 0..0",
                    field("port range")
                )));
            }
            None
        }
    };
    let cidr = validate::cidr(&field("cidr"), &rule.cidr)?;
    Ok(SecurityRule { direction, protocol, ports, cidr })
}

pub fn port_state_to_proto(state: PortState) -> pb::PortState {
    match state {
        PortState::Ready => pb::PortState::Ready,
        PortState::Removed => pb::PortState::Removed,
        PortState::Failed => pb::PortState::Failed,
    }
}

/// The status as the agent of boot `boot_id` answers it.
pub fn port_status_to_proto(status: &PortStatus, boot_id: &str) -> pb::PortStatus {
    pb::PortStatus {
        boot_id: boot_id.to_owned(),
        port_id: status.port_id.clone(),
        state: port_state_to_proto(status.state).into(),
        generation: status.generation,
        message: status.message.clone(),
    }
}

fn count_to_proto(count: Counter) -> pb::PacketCount {
    pb::PacketCount { packets: count.packets, bytes: count.bytes }
}

fn direction_to_proto(direction: &TrafficCounters) -> pb::DirectionCounters {
    pb::DirectionCounters {
        allowed: Some(count_to_proto(direction.allowed)),
        dropped: Some(count_to_proto(direction.dropped)),
    }
}

pub fn port_counters_to_proto(report: &PortCountersReport) -> pb::PortCounters {
    let traffic = &report.traffic;
    pb::PortCounters {
        port_id: report.port_id.clone(),
        generation: report.generation,
        ingress: Some(direction_to_proto(&traffic.ingress)),
        egress: Some(direction_to_proto(&traffic.egress)),
        spoofed: Some(count_to_proto(traffic.spoofed)),
        rules: traffic.rules.iter().copied().map(count_to_proto).collect(),
        rule_changes: traffic.rule_changes,
        simulated: traffic.simulated,
    }
}

/// The inventory with the ports held (`(port id, generation)`).
pub fn inventory_to_proto(
    dpu: &DpuDescription,
    agent_version: &str,
    boot_id: &str,
    held: Vec<(String, u64)>,
) -> pb::DpuInventory {
    pb::DpuInventory {
        dpu_id: dpu.dpu_id.clone(),
        host_id: dpu.host_id.clone(),
        model: dpu.model.clone(),
        pci_address: dpu.pci_address.clone(),
        vtep_ip: dpu.vtep_ip.clone(),
        max_ports: dpu.max_ports,
        agent_version: agent_version.to_owned(),
        boot_id: boot_id.to_owned(),
        ports: held
            .into_iter()
            .map(|(port_id, generation)| pb::HeldPort { port_id, generation })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(direction: &str, protocol: &str, min: u32, max: u32, cidr: &str) -> pb::SecurityRule {
        pb::SecurityRule {
            direction: direction.into(),
            protocol: protocol.into(),
            port_min: min,
            port_max: max,
            cidr: cidr.into(),
        }
    }

    fn spec() -> pb::PortSpec {
        pb::PortSpec {
            port_id: "00000000-0000-4000-8000-000000000001".into(),
            vm_id: "00000000-0000-4000-8000-00000000000a".into(),
            generation: 1,
            vni: 10_001,
            mac: "02:00:0A:00:00:05".into(),
            ip: "10.0.0.5".into(),
            gateway: "10.0.0.1".into(),
            prefix_len: 24,
            public_ip: "203.0.113.7".into(),
            rules: vec![
                rule("ingress", "tcp", 22, 22, "0.0.0.0/0"),
                rule("egress", "any", 0, 0, "0.0.0.0/0"),
                rule("ingress", "udp", 0, 0, "10.0.0.0/24"),
                rule("ingress", "icmp", 0, 0, "fd00::/64"),
            ],
        }
    }

    #[test]
    fn test_decode_valid_spec() {
        let decoded = port_spec_from_proto(Some(spec())).expect("valid");
        assert_eq!(decoded.mac, "02:00:0a:00:00:05");
        let gateway = Gateway { address: "10.0.0.1".parse().expect("ip"), prefix_len: 24 };
        assert_eq!(decoded.gateway, Some(gateway));
        assert_eq!(decoded.public_ip, Some(Ipv4Addr::new(203, 0, 113, 7)));
        let plain = pb::PortSpec {
            gateway: String::new(),
            prefix_len: 0,
            public_ip: String::new(),
            ..spec()
        };
        let plain = port_spec_from_proto(Some(plain)).expect("valid without a gateway");
        assert_eq!((plain.gateway, plain.public_ip), (None, None));
        assert_eq!(decoded.rules[0].ports, Some((22, 22)));
        assert_eq!(decoded.rules[1].ports, None);
        assert_eq!(decoded.rules[2].ports, Some((1, 65535)));
    }

    #[test]
    fn test_decode_refusals_name_the_field() {
        let with_rule = |r: pb::SecurityRule| pb::PortSpec { rules: vec![r], ..spec() };
        let cases = [
            (pb::PortSpec { vni: 0, ..spec() }, "vni 0"),
            (pb::PortSpec { vni: 16_777_216, ..spec() }, "vni 16777216"),
            (pb::PortSpec { mac: "02:00:0a:00:05".into(), ..spec() }, "mac"),
            (pb::PortSpec { mac: "03:00:0a:00:00:05".into(), ..spec() }, "multicast"),
            (pb::PortSpec { ip: "10.0.0.300".into(), ..spec() }, "ip"),
            (pb::PortSpec { port_id: "p1".into(), ..spec() }, "port_id"),
            (pb::PortSpec { vm_id: String::new(), ..spec() }, "vm_id"),
            (pb::PortSpec { generation: 0, ..spec() }, "generation 0"),
            (pb::PortSpec { gateway: "10.0.1.1".into(), ..spec() }, "subnet gateway"),
            (pb::PortSpec { gateway: "10.0.0.5".into(), ..spec() }, "subnet gateway"),
            (pb::PortSpec { prefix_len: 32, ..spec() }, "prefix_len 32"),
            (pb::PortSpec { gateway: "gw".into(), ..spec() }, "gateway"),
            (pb::PortSpec { public_ip: "fd00::7".into(), ..spec() }, "not an IPv4"),
            (pb::PortSpec { public_ip: "224.0.0.7".into(), ..spec() }, "unicast"),
            (
                pb::PortSpec { gateway: String::new(), prefix_len: 0, ..spec() },
                "needs an IPv4 port address and its subnet's gateway",
            ),
            (with_rule(rule("inbound", "tcp", 22, 22, "0.0.0.0/0")), "rules[0].direction"),
            (with_rule(rule("ingress", "sctp", 22, 22, "0.0.0.0/0")), "rules[0].protocol"),
            (with_rule(rule("ingress", "tcp", 80, 22, "0.0.0.0/0")), "rules[0].port range"),
            (with_rule(rule("ingress", "tcp", 0, 22, "0.0.0.0/0")), "rules[0].port range"),
            (with_rule(rule("ingress", "tcp", 1, 70000, "0.0.0.0/0")), "rules[0].port range"),
            (with_rule(rule("ingress", "icmp", 1, 2, "0.0.0.0/0")), "only apply to tcp"),
            (with_rule(rule("ingress", "tcp", 22, 22, "")), "rules[0].cidr"),
            (with_rule(rule("ingress", "tcp", 22, 22, "10.0.0.1/24")), "host bits"),
        ];
        for (bad, expected) in cases {
            let err = port_spec_from_proto(Some(bad)).expect_err(expected);
            assert!(matches!(err, DriverError::InvalidArgument(_)));
            assert!(err.to_string().contains(expected), "{err} lacks {expected:?}");
        }
        assert!(port_spec_from_proto(None).is_err());
    }
}
