//! Security groups as nftables rulesets, rendered as `nft -f` text (pure; [`super::nft`]
//! runs them). Each change is one script and so one nftables transaction: the old ruleset
//! or the new, never half.
//!
//! Why this shape (measured in a network namespace on the build machines' kernel): conntrack
//! does not work in a `bridge` table there (`CONFIG_NF_CONNTRACK_BRIDGE` is off), so bridged
//! IP packets are sent through the `inet` hooks by br_netfilter (`bridge-nf-call-iptables`),
//! where `ct state` works. There the input device is the VNI's bridge, not the port, so:
//!
//! - `inet dpu`: a `forward` chain dispatches through verdict maps keyed by (bridge, address):
//!   the source address to the sending port's egress chain `eg_<tag>` (allowed → `return`, so
//!   the receiver's chain still decides), then the destination address to the receiving
//!   port's ingress chain `in_<tag>`. Each chain starts with `ct state established,related`,
//!   then one rule per allowed [`SecurityRule`] (`comment "rule <index>"`), then a counted
//!   drop: default deny both ways. Addresses identify a port uniquely within a VNI (the
//!   manager refuses duplicates) and only because of the anti-spoofing below.
//! - Conntrack zones per VNI (set at `prerouting` priority raw, by bridge), so tenants with
//!   overlapping addresses never share a connection entry.
//! - `bridge dpu`: stateless anti-spoofing on the representor (`as_<tag>`: only the port's
//!   MAC, its IP, ARP for its IP), and any representor without a programmed port (`pr*`) is
//!   cut off both ways, so a port is never bridged unfiltered.
//!
//! - Ports with a public IP (see [`super::public`]): their NAT router's gateway leg
//!   `gw<tag>` sits on the bridge, and the `bridge` table lets it exchange frames with its
//!   own port's representor only (`gateways`, both ways): no other VM (nor a remote VTEP)
//!   ever sees that gateway, so two routers of one VNI may hold the same gateway address.
//!   Traffic through the router is judged like any other by the port's chains: ingress
//!   from the internet by `in_<tag>`, the VM's egress by `eg_<tag>`.
//! - Nothing is routed from a VNI's bridge in the DPU's own namespace (`iifname "br*"` to
//!   another device is dropped: only bridged traffic goes bridge to bridge), and with an
//!   uplink the DPU forwards only between the uplink and the routers' public legs `pu*`.
//!
//! Changing the rules takes effect for the next new connection at once; an established
//! connection a revoked rule had allowed goes on (its conntrack entry still matches
//! `established`) until it ends or times out.

use std::fmt::Write;
use std::net::IpAddr;

use crate::model::{Direction, Protocol, SecurityRule};

use super::names;

/// The name of both tables (`inet` and `bridge`).
pub const TABLE: &str = "dpu";

/// What the firewall of one port is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortFirewall {
    pub port_id: String,
    pub vni: u32,
    pub mac: String,
    pub ip: IpAddr,
    pub rules: Vec<SecurityRule>,
    /// Whether the port has a NAT router, whose gateway leg must reach its representor.
    pub routed: bool,
}

impl PortFirewall {
    fn tag(&self) -> String {
        names::port_tag(&self.port_id)
    }

    /// The (bridge, address) key of the port in the `inet` verdict maps.
    fn key(&self) -> String {
        format!("\"{}\" . {}", names::bridge(self.vni), self.ip)
    }

    fn family(&self) -> &'static str {
        if self.ip.is_ipv4() { "v4" } else { "v6" }
    }
}

/// Replaces both tables with empty ones: no port is programmed, so every representor (and
/// router leg) is cut off until its port is applied again (the agent starts with no ports).
/// `uplink` is the uplink device, if the DPU has one.
pub fn reset(uplink: Option<&str>) -> String {
    let uplink_guard = uplink.map_or_else(String::new, |uplink| {
        format!(
            "\t\tiifname \"pu*\" oifname != \"pu*\" oifname != \"{uplink}\" counter drop comment \"public leg to elsewhere\"
\t\tiifname \"{uplink}\" oifname != \"pu*\" counter drop comment \"uplink to elsewhere\"
"
        )
    });
    format!(
        "table inet {TABLE}
delete table inet {TABLE}
table bridge {TABLE}
delete table bridge {TABLE}
table inet {TABLE} {{
\tmap zones {{ typeof iifname : ct zone ; }}
\tmap egress_v4 {{ type ifname . ipv4_addr : verdict ; }}
\tmap ingress_v4 {{ type ifname . ipv4_addr : verdict ; }}
\tmap egress_v6 {{ type ifname . ipv6_addr : verdict ; }}
\tmap ingress_v6 {{ type ifname . ipv6_addr : verdict ; }}
\tchain conntrack_zones {{
\t\ttype filter hook prerouting priority raw; policy accept;
\t\tct zone set iifname map @zones
\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\tiifname . ip saddr vmap @egress_v4
\t\tiifname . ip6 saddr vmap @egress_v6
\t\tiifname . ip daddr vmap @ingress_v4
\t\tiifname . ip6 daddr vmap @ingress_v6
\t\tiifname \"br*\" oifname != \"br*\" counter drop comment \"routed from a VNI\"
{uplink_guard}\t}}
}}
table bridge {TABLE} {{
\tset ports {{ type ifname ; }}
\tmap spoof {{ type ifname : verdict ; }}
\tset gateways {{ type ifname . ifname ; }}
\tchain prerouting {{
\t\ttype filter hook prerouting priority filter; policy accept;
\t\tiifname vmap @spoof
\t\tiifname \"pr*\" counter drop comment \"unprogrammed port\"
\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\toifname \"pr*\" oifname != @ports counter drop comment \"unprogrammed port\"
\t\tiifname \"gw*\" iifname . oifname != @gateways counter drop comment \"another port's gateway\"
\t\toifname \"gw*\" iifname . oifname != @gateways counter drop comment \"another port's gateway\"
\t}}
}}
"
    )
}

/// Gives the bridge of `vni` its own conntrack zone.
pub fn zone_add(vni: u32, zone: u16) -> String {
    format!("add element inet {TABLE} zones {{ \"{}\" : {zone} }}\n", names::bridge(vni))
}

pub fn zone_remove(vni: u32) -> String {
    format!("delete element inet {TABLE} zones {{ \"{}\" }}\n", names::bridge(vni))
}

/// Programs `port` (creating or replacing its chains and map entries); `previous` is what
/// was applied for it before, whose map entries go if the port changed VNI or address.
pub fn port_apply(port: &PortFirewall, previous: Option<&PortFirewall>) -> String {
    let tag = port.tag();
    let representor = names::representor_name(&port.port_id);
    let mut script = Script::default();
    let out = &mut script;
    for (family, chain) in [("inet", "in"), ("inet", "eg"), ("bridge", "as")] {
        out.add(format!("add chain {family} {TABLE} {chain}_{tag}"));
        out.add(format!("flush chain {family} {TABLE} {chain}_{tag}"));
    }
    if let Some(previous) = previous.filter(|p| p.key() != port.key()) {
        delete_dispatch(out, previous);
    }
    match (previous.is_some_and(|p| p.routed), port.routed) {
        (false, true) => {
            out.add(format!("add element bridge {TABLE} gateways {}", gateway_pairs(port)))
        }
        (true, false) => {
            out.add(format!("delete element bridge {TABLE} gateways {}", gateway_pairs(port)));
        }
        _ => {}
    }
    let (family, key) = (port.family(), port.key());
    out.add(format!("add element inet {TABLE} egress_{family} {{ {key} : jump eg_{tag} }}"));
    out.add(format!("add element inet {TABLE} ingress_{family} {{ {key} : jump in_{tag} }}"));
    out.add(format!("add element bridge {TABLE} ports {{ \"{representor}\" }}"));
    out.add(format!("add element bridge {TABLE} spoof {{ \"{representor}\" : jump as_{tag} }}"));
    for direction in [Direction::Ingress, Direction::Egress] {
        security_group_chain(out, port, direction);
    }
    anti_spoofing_chain(out, port);
    script.0
}

/// Removes everything [`port_apply`] made for `port`.
pub fn port_remove(port: &PortFirewall) -> String {
    let tag = port.tag();
    let representor = names::representor_name(&port.port_id);
    let mut script = Script::default();
    let out = &mut script;
    delete_dispatch(out, port);
    if port.routed {
        out.add(format!("delete element bridge {TABLE} gateways {}", gateway_pairs(port)));
    }
    out.add(format!("delete element bridge {TABLE} spoof {{ \"{representor}\" }}"));
    out.add(format!("delete element bridge {TABLE} ports {{ \"{representor}\" }}"));
    for (family, chain) in [("inet", "in"), ("inet", "eg"), ("bridge", "as")] {
        out.add(format!("delete chain {family} {TABLE} {chain}_{tag}"));
    }
    script.0
}

/// The two (input, output) pairs by which a port's representor and its router's gateway leg
/// reach each other, as an nft set literal.
fn gateway_pairs(port: &PortFirewall) -> String {
    let representor = names::representor_name(&port.port_id);
    let leg = names::gateway_leg(&port.port_id);
    format!("{{ \"{representor}\" . \"{leg}\", \"{leg}\" . \"{representor}\" }}")
}

fn delete_dispatch(out: &mut Script, port: &PortFirewall) {
    let (family, key) = (port.family(), port.key());
    out.add(format!("delete element inet {TABLE} egress_{family} {{ {key} }}"));
    out.add(format!("delete element inet {TABLE} ingress_{family} {{ {key} }}"));
}

/// `in_<tag>` (traffic to the port: accept what a rule allows) or `eg_<tag>` (from it:
/// `return` what a rule allows, for the receiver's chain to judge).
fn security_group_chain(out: &mut Script, port: &PortFirewall, direction: Direction) {
    let (chain, allow) = match direction {
        Direction::Ingress => ("in", "accept"),
        Direction::Egress => ("eg", "return"),
    };
    let head = format!("add rule inet {TABLE} {chain}_{}", port.tag());
    out.add(format!("{head} ct state established,related counter {allow} comment \"established\""));
    if port.ip.is_ipv6() {
        // Neighbour discovery is IPv6's ARP: without it no address resolves.
        out.add(format!(
                "{head} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} counter {allow} comment \"neighbour discovery\""
            ));
    }
    for (index, rule) in port.rules.iter().enumerate() {
        if rule.direction == direction
            && let Some(matches) = rule_matches(rule, port.ip)
        {
            out.add(format!("{head} {matches} counter {allow} comment \"rule {index}\""));
        }
    }
    out.add(format!("{head} counter drop comment \"default deny\""));
}

/// The match of one allow rule, or `None` when its network is of the other IP family than
/// the port (it can never match).
fn rule_matches(rule: &SecurityRule, port_ip: IpAddr) -> Option<String> {
    let v4 = rule.cidr.network().is_ipv4();
    if v4 != port_ip.is_ipv4() {
        return None;
    }
    let address = match (v4, rule.direction) {
        (true, Direction::Ingress) => "ip saddr",
        (true, Direction::Egress) => "ip daddr",
        (false, Direction::Ingress) => "ip6 saddr",
        (false, Direction::Egress) => "ip6 daddr",
    };
    let mut matches = format!("{address} {}", rule.cidr);
    let ports = |(low, high): (u16, u16)| {
        if low == high { format!("{low}") } else { format!("{low}-{high}") }
    };
    match (rule.protocol, rule.ports) {
        (Protocol::Tcp, Some(range)) => write!(matches, " tcp dport {}", ports(range)),
        (Protocol::Udp, Some(range)) => write!(matches, " udp dport {}", ports(range)),
        (Protocol::Tcp, None) => write!(matches, " meta l4proto tcp"),
        (Protocol::Udp, None) => write!(matches, " meta l4proto udp"),
        (Protocol::Icmp, _) if v4 => write!(matches, " meta l4proto icmp"),
        (Protocol::Icmp, _) => write!(matches, " meta l4proto ipv6-icmp"),
        (Protocol::Any, _) => Ok(()),
    }
    .ok()?;
    Some(matches)
}

/// `as_<tag>`: the port may send only from its MAC, and only its own IP (ARP included; an
/// ARP probe's 0.0.0.0 and IPv6 link-local/unspecified sources for address resolution).
/// DHCP is not needed: a guest's address comes from the control plane (config drive).
fn anti_spoofing_chain(out: &mut Script, port: &PortFirewall) {
    let head = format!("add rule bridge {TABLE} as_{}", port.tag());
    let (mac, ip) = (&port.mac, port.ip);
    out.add(format!("{head} ether saddr != {mac} counter drop comment \"spoofed\""));
    if ip.is_ipv4() {
        out.add(format!("{head} arp saddr ether {mac} arp saddr ip {{ {ip}, 0.0.0.0 }} accept"));
        out.add(format!("{head} ip saddr {ip} accept"));
    } else {
        out.add(format!("{head} ip6 saddr {{ {ip}, fe80::/10, :: }} accept"));
    }
    out.add(format!("{head} counter drop comment \"spoofed\""));
}

/// An nft script: one command per line, applied as one transaction.
#[derive(Default)]
struct Script(String);

impl Script {
    fn add(&mut self, command: String) {
        self.0.push_str(&command);
        self.0.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use agent_common::validate::cidr;

    use super::*;

    const PORT_ID: &str = "0190c2f4-7a1b-7c3d-8e9f-0123456789ab";

    fn rule(
        direction: Direction,
        protocol: Protocol,
        ports: Option<(u16, u16)>,
        net: &str,
    ) -> SecurityRule {
        SecurityRule { direction, protocol, ports, cidr: cidr("cidr", net).expect("valid cidr") }
    }

    fn port(rules: Vec<SecurityRule>) -> PortFirewall {
        PortFirewall {
            port_id: PORT_ID.into(),
            vni: 100,
            mac: "52:54:00:00:00:01".into(),
            ip: "10.0.0.5".parse().expect("ip"),
            rules,
            routed: false,
        }
    }

    fn lines_with(script: &str, needle: &str) -> Vec<String> {
        script.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
    }

    #[test]
    fn ingress_chain_is_established_then_rules_then_default_deny() {
        let script = port_apply(
            &port(vec![
                rule(Direction::Ingress, Protocol::Tcp, Some((22, 22)), "192.168.0.0/16"),
                rule(Direction::Egress, Protocol::Any, None, "0.0.0.0/0"),
                rule(Direction::Ingress, Protocol::Udp, Some((5000, 5100)), "10.0.0.0/24"),
                rule(Direction::Ingress, Protocol::Icmp, None, "10.0.0.0/24"),
                rule(Direction::Ingress, Protocol::Tcp, None, "2001:db8::/32"),
            ]),
            None,
        );
        let head = "add rule inet dpu in_123456789ab";
        assert_eq!(
            lines_with(&script, head),
            [
                format!(
                    "{head} ct state established,related counter accept comment \"established\""
                ),
                format!(
                    "{head} ip saddr 192.168.0.0/16 tcp dport 22 counter accept comment \"rule 0\""
                ),
                format!(
                    "{head} ip saddr 10.0.0.0/24 udp dport 5000-5100 counter accept comment \"rule 2\""
                ),
                format!(
                    "{head} ip saddr 10.0.0.0/24 meta l4proto icmp counter accept comment \"rule 3\""
                ),
                format!("{head} counter drop comment \"default deny\""),
            ],
            "an IPv6 rule never applies to an IPv4 port"
        );
        let head = "add rule inet dpu eg_123456789ab";
        assert_eq!(
            lines_with(&script, head),
            [
                format!(
                    "{head} ct state established,related counter return comment \"established\""
                ),
                format!("{head} ip daddr 0.0.0.0/0 counter return comment \"rule 1\""),
                format!("{head} counter drop comment \"default deny\""),
            ]
        );
    }

    #[test]
    fn chains_are_flushed_and_refilled_in_the_same_script() {
        let script = port_apply(&port(vec![]), None);
        let first_rule = script.find("add rule").expect("rules");
        for chain in
            ["inet dpu in_123456789ab", "inet dpu eg_123456789ab", "bridge dpu as_123456789ab"]
        {
            let flush = script.find(&format!("flush chain {chain}\n")).expect("flush");
            assert!(script.contains(&format!("add chain {chain}\n")));
            assert!(flush < first_rule, "{chain} is flushed before it is filled");
        }
        assert!(script.contains(
            "add element inet dpu ingress_v4 { \"br100\" . 10.0.0.5 : jump in_123456789ab }"
        ));
        assert!(
            script.contains(
                "add element bridge dpu spoof { \"pr123456789ab\" : jump as_123456789ab }"
            )
        );
        assert!(!script.contains("delete"), "nothing to delete for a new port");
    }

    #[test]
    fn a_port_moved_to_another_vni_loses_its_old_map_entries() {
        let old = port(vec![]);
        let new = PortFirewall { vni: 200, ..old.clone() };
        let script = port_apply(&new, Some(&old));
        assert!(script.contains("delete element inet dpu egress_v4 { \"br100\" . 10.0.0.5 }"));
        assert!(script.contains(
            "add element inet dpu egress_v4 { \"br200\" . 10.0.0.5 : jump eg_123456789ab }"
        ));
        let same = port_apply(&old, Some(&old));
        assert!(!same.contains("delete"), "a rule change keeps the map entries");
    }

    #[test]
    fn anti_spoofing_allows_only_the_ports_mac_and_ip() {
        let script = port_apply(&port(vec![]), None);
        let head = "add rule bridge dpu as_123456789ab";
        assert_eq!(
            lines_with(&script, head),
            [
                format!("{head} ether saddr != 52:54:00:00:00:01 counter drop comment \"spoofed\""),
                format!(
                    "{head} arp saddr ether 52:54:00:00:00:01 arp saddr ip {{ 10.0.0.5, 0.0.0.0 }} accept"
                ),
                format!("{head} ip saddr 10.0.0.5 accept"),
                format!("{head} counter drop comment \"spoofed\""),
            ]
        );
    }

    #[test]
    fn removal_deletes_map_entries_before_the_chains_they_jump_to() {
        let script = port_remove(&port(vec![]));
        let last_element = script.rfind("delete element").expect("elements");
        let first_chain = script.find("delete chain").expect("chains");
        assert!(last_element < first_chain);
        assert_eq!(script.matches("delete chain").count(), 3);
    }

    #[test]
    fn a_routed_port_and_its_gateway_leg_reach_only_each_other() {
        let plain = port(vec![]);
        let routed = PortFirewall { routed: true, ..plain.clone() };
        let pairs = "gateways { \"pr123456789ab\" . \"gw123456789ab\", \"gw123456789ab\" . \"pr123456789ab\" }";
        let script = port_apply(&routed, Some(&plain));
        assert!(script.contains(&format!("add element bridge dpu {pairs}")), "{script}");
        assert!(!port_apply(&routed, Some(&routed)).contains("gateways"), "already there");
        let script = port_apply(&plain, Some(&routed));
        assert!(script.contains(&format!("delete element bridge dpu {pairs}")), "{script}");
        assert!(port_remove(&routed).contains(&format!("delete element bridge dpu {pairs}")));
        assert!(!port_remove(&plain).contains("gateways"));
    }

    #[test]
    fn the_reset_guards_routing_from_bridges_and_the_uplink() {
        let without = reset(None);
        assert!(without.contains("iifname \"br*\" oifname != \"br*\" counter drop"));
        assert!(!without.contains("pu*\" oifname"), "no uplink, no uplink guard");
        let with = reset(Some("ext0"));
        assert!(with.contains(
            "iifname \"pu*\" oifname != \"pu*\" oifname != \"ext0\" counter drop comment"
        ));
        assert!(with.contains("iifname \"ext0\" oifname != \"pu*\" counter drop comment"));
    }

    #[test]
    fn ipv6_ports_allow_neighbour_discovery_and_link_local_sources() {
        let mut v6 = port(vec![rule(Direction::Ingress, Protocol::Icmp, None, "2001:db8::/32")]);
        v6.ip = "2001:db8::5".parse().expect("ip");
        let script = port_apply(&v6, None);
        assert!(script.contains("ingress_v6 { \"br100\" . 2001:db8::5 : jump in_123456789ab }"));
        assert!(script.contains("ip6 saddr 2001:db8::/32 meta l4proto ipv6-icmp counter accept"));
        assert!(script.contains("nd-neighbor-solicit"));
        assert!(script.contains("ip6 saddr { 2001:db8::5, fe80::/10, :: } accept"));
    }
}
