//! Tenant networking: IPv4 networks, VPCs, subnets, security groups and their rules, and
//! the ports that put VMs on them. Parameters validate here so that the browser refuses bad
//! input as it is typed and the server checks the same again.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::ids::{PortUuid, SecurityGroupUuid, SecurityRuleUuid, SubnetUuid, VpcUuid};

/// The widest and narrowest subnets a tenant may make: a /16 holds 65,533 VMs; a /28 still
/// leaves 13 addresses after the network, gateway and broadcast.
pub const SUBNET_PREFIXES: std::ops::RangeInclusive<u8> = 16..=28;

/// An IPv4 network in CIDR notation, with no host bits set (`10.1.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// `addr/prefix`, or why not; a network with host bits set names the network it meant.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, Error> {
        if prefix > 32 {
            return Err(Error::invalid(format!(
                "/{prefix} is not a prefix length; use /0 to /32, e.g. 10.0.0.0/24."
            )));
        }
        let net = Ipv4Net { addr, prefix };
        if net.network() != addr {
            return Err(Error::invalid(format!(
                "{addr}/{prefix} has host bits set; the network is {}/{prefix}.",
                net.network()
            )));
        }
        Ok(net)
    }

    /// A single address as a /32 network.
    pub fn host(addr: Ipv4Addr) -> Self {
        Ipv4Net { addr, prefix: 32 }
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    fn mask(&self) -> u32 {
        if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// How many addresses it spans.
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix)
    }

    /// The `n`-th address of the network (0 is the network address itself).
    pub fn nth(&self, n: u64) -> Option<Ipv4Addr> {
        (n < self.size()).then(|| Ipv4Addr::from(u32::from(self.network()) + n as u32))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// Whether it lies in the private ranges a tenant network may use (RFC 1918 and the
    /// shared 100.64.0.0/10), which never collide with the internet.
    pub fn is_private(&self) -> bool {
        [(10, 0, 0, 0, 8), (172, 16, 0, 0, 12), (192, 168, 0, 0, 16), (100, 64, 0, 0, 10)]
            .into_iter()
            .map(|(a, b, c, d, p)| Ipv4Net { addr: Ipv4Addr::new(a, b, c, d), prefix: p })
            .any(|range| range.prefix <= self.prefix && range.contains(self.addr))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;

    /// `a.b.c.d/n`; a bare address means `/32`.
    fn from_str(text: &str) -> Result<Self, Error> {
        let text = text.trim();
        let (addr, prefix) = text.split_once('/').unwrap_or((text, "32"));
        let bad = || {
            Error::invalid(format!(
                "\"{}\" is not an IPv4 network; write it like 10.0.0.0/24.",
                text.chars().take(40).collect::<String>()
            ))
        };
        let addr = addr.parse::<Ipv4Addr>().map_err(|_| bad())?;
        let prefix = prefix.parse::<u8>().map_err(|_| bad())?;
        Ipv4Net::new(addr, prefix)
    }
}

pub(crate) fn check_name(name: &str, what: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Name the {what} with 1 to 63 lowercase letters, digits and dashes, starting with a \
             letter (e.g. \"training\")."
        )))
    }
}

/// A new VPC: a private network of its own, isolated from every other VPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VpcCreate {
    pub name: String,
}

impl VpcCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_name(&self.name, "VPC")
    }
}

/// A new subnet of a VPC: an IPv4 network of the tenant's choosing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubnetCreate {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub vpc: VpcUuid,
    pub name: String,
    pub cidr: String,
}

impl SubnetCreate {
    /// The network, once name and CIDR are valid.
    pub fn validate(&self) -> Result<Ipv4Net, Error> {
        check_name(&self.name, "subnet")?;
        let net: Ipv4Net = self.cidr.parse()?;
        if !SUBNET_PREFIXES.contains(&net.prefix()) {
            return Err(Error::invalid(format!(
                "A subnet is a /{} to a /{}; {net} is not.",
                SUBNET_PREFIXES.start(),
                SUBNET_PREFIXES.end()
            )));
        }
        if !net.is_private() {
            return Err(Error::invalid(format!(
                "{net} is not a private network; pick one inside 10.0.0.0/8, 172.16.0.0/12, \
                 192.168.0.0/16 or 100.64.0.0/10."
            )));
        }
        Ok(net)
    }
}

/// A new security group: named allow rules, added one by one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityGroupCreate {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

impl SecurityGroupCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_name(&self.name, "security group")?;
        if self.description.chars().count() > 200 || self.description.contains(['\n', '\r']) {
            return Err(Error::invalid("Keep the description to one line of 200 characters."));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic into the VM.
    Ingress,
    /// Traffic out of the VM.
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Direction::Ingress, Direction::Egress].into_iter().find(|d| d.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    /// Every protocol.
    Any,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Any => "any",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Protocol::Tcp, Protocol::Udp, Protocol::Icmp, Protocol::Any]
            .into_iter()
            .find(|p| p.as_str() == s)
    }

    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// A new allow rule. `ports` is `22`, `8000-8100` or empty for all; the remote side is a
/// network (`remote_cidr`) or the VMs of another group (`remote_group`), exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityRuleCreate {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub group: SecurityGroupUuid,
    pub direction: Direction,
    pub protocol: Protocol,
    #[serde(default)]
    pub ports: String,
    #[serde(default)]
    pub remote_cidr: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub remote_group: Option<SecurityGroupUuid>,
}

/// A rule that passed [`SecurityRuleCreate::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedRule {
    pub ports: Option<(u16, u16)>,
    pub remote_cidr: Option<Ipv4Net>,
}

impl SecurityRuleCreate {
    pub fn validate(&self) -> Result<CheckedRule, Error> {
        let ports = parse_ports(&self.ports, self.protocol)?;
        let cidr = self.remote_cidr.trim();
        let remote_cidr = match (cidr.is_empty(), self.remote_group) {
            (true, None) => {
                return Err(Error::invalid(
                    "Say where the traffic may come from or go to: a network such as \
                     0.0.0.0/0, or another security group.",
                ));
            }
            (false, Some(_)) => {
                return Err(Error::invalid(
                    "Give either a network or a security group for the other side, not both.",
                ));
            }
            (false, None) => Some(cidr.parse::<Ipv4Net>()?),
            (true, Some(_)) => None,
        };
        Ok(CheckedRule { ports, remote_cidr })
    }
}

/// `22`, `8000-8100`, or empty (every port); only TCP and UDP have ports.
fn parse_ports(text: &str, protocol: Protocol) -> Result<Option<(u16, u16)>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(protocol.has_ports().then_some((1, 65535)));
    }
    if !protocol.has_ports() {
        return Err(Error::invalid(format!(
            "{} has no ports; leave the ports empty or pick TCP or UDP.",
            protocol.as_str().to_uppercase()
        )));
    }
    let port = |s: &str| s.trim().parse::<u16>().ok().filter(|p| *p > 0);
    let range = match text.split_once('-') {
        Some((a, b)) => port(a).zip(port(b)),
        None => port(text).map(|p| (p, p)),
    };
    match range {
        Some((a, b)) if a <= b => Ok(Some((a, b))),
        _ => Err(Error::invalid(format!(
            "\"{}\" is not a port or range; write 22 or 8000-8100 (1 to 65535).",
            text.chars().take(20).collect::<String>()
        ))),
    }
}

/// The most security groups one port may be in.
pub const MAX_GROUPS_PER_PORT: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubnetView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: SubnetUuid,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub vpc: VpcUuid,
    pub name: String,
    pub cidr: String,
    /// The first address, the VMs' default gateway.
    pub gateway: String,
    /// The subnet's VXLAN network identifier on the fabric.
    pub vni: u32,
    /// Addresses held by VMs.
    pub ports: u32,
    /// Addresses left for VMs.
    pub free: u64,
    pub is_default: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VpcView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: VpcUuid,
    pub name: String,
    /// The VPC's routed (L3) VNI: its VRF on every leaf and DPU that carries it.
    pub vni: u32,
    pub is_default: bool,
    pub subnets: Vec<SubnetView>,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityRuleView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: SecurityRuleUuid,
    pub direction: Direction,
    pub protocol: Protocol,
    /// Inclusive; none for ICMP and "any".
    pub ports: Option<(u16, u16)>,
    /// A network, or `group <name>` for the VMs of a group.
    pub remote: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityGroupView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: SecurityGroupUuid,
    pub name: String,
    pub description: String,
    pub is_default: bool,
    pub rules: Vec<SecurityRuleView>,
    /// Ports (VM NICs) in the group.
    pub ports: u32,
}

/// A tenant's networks and security groups, as the networking page shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NetworkOverview {
    pub vpcs: Vec<VpcView>,
    pub security_groups: Vec<SecurityGroupView>,
}

/// A VM's network interface: where it is and whether its DPU has it programmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: PortUuid,
    pub ip: String,
    pub mac: String,
    pub vpc: String,
    pub subnet: String,
    pub cidr: String,
    pub gateway: String,
    pub security_groups: Vec<String>,
    /// `ready`, `pending` (a change is on its way to the DPU) or `no DPU` (the host has none).
    pub state: String,
    /// The DPU that enforces its security groups.
    pub dpu: Option<String>,
    /// The public IP mapped to its address, if the instance has one.
    pub public_ip: Option<String>,
    /// Why its DPU refused the change pending (retried; an operator may have to act).
    pub message: Option<String>,
}

/// Packets and the bytes they carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PacketCount {
    pub packets: u64,
    pub bytes: u64,
}

/// One direction of a port's traffic through its security groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrafficCounts {
    /// Let through: established connections and the first packets a rule allowed.
    pub allowed: PacketCount,
    /// Dropped because no rule allowed them.
    pub dropped: PacketCount,
}

/// What one rule as the DPU holds it (remote groups expanded to their members) let in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleCount {
    /// e.g. `ingress tcp 22 10.0.0.0/24`.
    pub rule: String,
    pub count: PacketCount,
}

/// A port's counters as its DPU reads them at the time of asking. They count since the
/// port's rules were last changed on the DPU (a change restarts them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PortCountersView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub port: PortUuid,
    pub ip: String,
    pub dpu: Option<String>,
    /// `live` (read from the DPU now), `pending` (the DPU does not hold the port yet: all
    /// zero) or `no DPU` (its host has none: nothing enforces or counts).
    pub state: String,
    /// The DPU is simulated: its traffic is synthetic (a fixed rate per allowed rule).
    pub simulated: bool,
    /// To the VM.
    pub ingress: TrafficCounts,
    /// From the VM.
    pub egress: TrafficCounts,
    /// Frames from the VM with another MAC or IP than its own, dropped.
    pub spoofed: PacketCount,
    /// Per rule, in the DPU's order; empty while a rule change is on its way to the DPU.
    pub rules: Vec<RuleCount>,
    /// How often the port's rules were changed on the DPU since it was attached.
    pub rule_changes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_refuse_with_a_sentence() {
        let net: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        assert_eq!((net.size(), net.broadcast()), (65536, Ipv4Addr::new(10, 1, 255, 255)));
        assert_eq!(net.nth(1), Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!("10.0.0.5".parse::<Ipv4Net>().unwrap().prefix(), 32);
        assert!("0.0.0.0/0".parse::<Ipv4Net>().unwrap().contains(Ipv4Addr::new(8, 8, 8, 8)));
        let e = "10.1.2.3/16".parse::<Ipv4Net>().unwrap_err().to_string();
        assert!(e.contains("the network is 10.1.0.0/16"), "{e}");
        for bad in ["10.0.0.0/33", "10.0.0/24", "x", "10.0.0.0/", "10.0.0.0/24/1"] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
    }

    #[test]
    fn overlaps_are_seen_both_ways() {
        let a: Ipv4Net = "10.0.0.0/16".parse().unwrap();
        let b: Ipv4Net = "10.0.128.0/24".parse().unwrap();
        let c: Ipv4Net = "10.1.0.0/24".parse().unwrap();
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c) && !c.overlaps(&a));
    }

    #[test]
    fn subnets_are_private_and_sized() {
        let subnet = |cidr: &str| SubnetCreate {
            vpc: VpcUuid::new_v4(),
            name: "a".into(),
            cidr: cidr.into(),
        };
        assert!(subnet("10.0.0.0/24").validate().is_ok());
        assert!(subnet("100.64.0.0/20").validate().is_ok());
        assert!(subnet("8.8.8.0/24").validate().unwrap_err().to_string().contains("private"));
        assert!(subnet("10.0.0.0/8").validate().unwrap_err().to_string().contains("/16 to a /28"));
        assert!(subnet("10.0.0.0/30").validate().is_err());
        assert!(
            SubnetCreate { name: "Bad Name".into(), ..subnet("10.0.0.0/24") }.validate().is_err()
        );
    }

    #[test]
    fn rules_need_ports_that_fit_their_protocol_and_one_remote() {
        let rule = |protocol, ports: &str, cidr: &str| SecurityRuleCreate {
            group: SecurityGroupUuid::new_v4(),
            direction: Direction::Ingress,
            protocol,
            ports: ports.into(),
            remote_cidr: cidr.into(),
            remote_group: None,
        };
        assert_eq!(
            rule(Protocol::Tcp, "22", "0.0.0.0/0").validate().unwrap().ports,
            Some((22, 22))
        );
        assert_eq!(
            rule(Protocol::Udp, "", "10.0.0.0/8").validate().unwrap().ports,
            Some((1, 65535))
        );
        assert_eq!(rule(Protocol::Icmp, "", "10.0.0.0/8").validate().unwrap().ports, None);
        assert!(rule(Protocol::Icmp, "22", "10.0.0.0/8").validate().is_err());
        for bad in ["0", "70000", "9-1", "a", "1-"] {
            assert!(rule(Protocol::Tcp, bad, "0.0.0.0/0").validate().is_err(), "{bad}");
        }
        assert!(
            rule(Protocol::Tcp, "22", "").validate().unwrap_err().to_string().contains("Say where")
        );
        let both = SecurityRuleCreate {
            remote_group: Some(SecurityGroupUuid::new_v4()),
            ..rule(Protocol::Tcp, "22", "0.0.0.0/0")
        };
        assert!(both.validate().is_err());
    }
}
