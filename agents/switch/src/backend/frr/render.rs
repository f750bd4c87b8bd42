//! FRR configuration for a tenant VRF, and the vtysh lines that bring the running
//! configuration there (nothing when it is already there, so a repeated apply is a no-op).
//!
//! A tenant is two blocks: `vrf X` binding its L3 VNI, and `router bgp ASN vrf X` that
//! redistributes the VRF's connected subnets and advertises them as EVPN type-5 routes. The
//! underlay instance needs `advertise-all-vni` so the L2 VNIs (type-2/3) are advertised too.

use std::collections::BTreeSet;

/// One top-level block of FRR configuration, as `show running-config` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The unindented first line, e.g. `router bgp 65001 vrf t1`.
    pub header: String,
    /// The lines inside, trimmed, without the closing `exit`.
    pub body: Vec<String>,
}

impl Block {
    /// The body as `address-family/line` keys, so that the same line in two address
    /// families (`redistribute connected`) counts twice.
    fn keys(&self) -> BTreeSet<String> {
        let mut family = String::new();
        let mut keys = BTreeSet::new();
        for line in &self.body {
            if line.starts_with("address-family ") {
                family.clone_from(line);
            } else if line == "exit-address-family" {
                family.clear();
            } else {
                keys.insert(format!("{family}/{line}"));
            }
        }
        keys
    }

    /// Whether every line of `wanted` is in this block, in the same address family.
    fn covers(&self, wanted: &Block) -> bool {
        self.keys().is_superset(&wanted.keys())
    }

    /// The vtysh lines that enter, fill and leave this block.
    fn lines(&self, exit: &str) -> Vec<String> {
        let mut lines = vec![self.header.clone()];
        lines.extend(self.body.iter().cloned());
        lines.push(exit.to_string());
        lines
    }
}

/// The top-level blocks of a running configuration. Lines outside any block (`frr version`,
/// `hostname`) become bodiless blocks.
pub fn parse_running(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut open = false;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line == "!" || line == "end" {
            continue;
        }
        if matches!(line, "exit" | "exit-vrf") && !raw.starts_with(' ') {
            open = false;
        } else if !raw.starts_with(' ') {
            blocks.push(Block { header: line.to_string(), body: Vec::new() });
            open = true;
        } else if open && let Some(block) = blocks.last_mut() {
            block.body.push(line.to_string());
        }
    }
    blocks
}

/// What FRR needs to know about a tenant VRF on this switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantFrr<'a> {
    pub vrf: &'a str,
    pub l3_vni: u32,
    pub asn: u32,
    /// The switch's loopback, also the VRF instance's router id.
    pub router_id: &'a str,
}

fn vrf_header(vrf: &str) -> String {
    format!("vrf {vrf}")
}

fn bgp_vrf_header(asn: u32, vrf: &str) -> String {
    format!("router bgp {asn} vrf {vrf}")
}

impl TenantFrr<'_> {
    fn vrf_block(&self) -> Block {
        Block { header: vrf_header(self.vrf), body: vec![format!("vni {}", self.l3_vni)] }
    }

    fn bgp_block(&self) -> Block {
        let body = [
            format!("bgp router-id {}", self.router_id),
            "address-family ipv4 unicast".into(),
            "redistribute connected".into(),
            "exit-address-family".into(),
            "address-family ipv6 unicast".into(),
            "redistribute connected".into(),
            "exit-address-family".into(),
            "address-family l2vpn evpn".into(),
            "advertise ipv4 unicast".into(),
            "advertise ipv6 unicast".into(),
            "exit-address-family".into(),
        ];
        Block { header: bgp_vrf_header(self.asn, self.vrf), body: body.to_vec() }
    }

    /// The tenant's configuration as FRR would print it.
    pub fn config(&self) -> String {
        let mut text = String::new();
        for (block, exit) in [(self.vrf_block(), "exit-vrf"), (self.bgp_block(), "exit")] {
            text.push_str(&block.header);
            text.push('\n');
            let mut indent = " ";
            for line in &block.body {
                if line == "exit-address-family" {
                    indent = " ";
                }
                text.push_str(indent);
                text.push_str(line);
                text.push('\n');
                if line.starts_with("address-family ") {
                    indent = "  ";
                }
            }
            text.push_str(exit);
            text.push_str("\n!\n");
        }
        text
    }

    /// The vtysh configuration lines that take `running` to this tenant's configuration:
    /// the underlay's `advertise-all-vni` if missing, a different L3 VNI unbound first, then
    /// the tenant's blocks unless `running` already has them. Empty when nothing is missing.
    pub fn apply_lines(&self, running: &[Block]) -> Vec<String> {
        let mut lines = underlay_lines(running, self.asn);
        let find = |header: &str| running.iter().find(|b| b.header == header);
        let vrf = self.vrf_block();
        let bgp = self.bgp_block();
        let vrf_ok = find(&vrf.header).is_some_and(|b| b.covers(&vrf));
        let bgp_ok = find(&bgp.header).is_some_and(|b| b.covers(&bgp));
        if !vrf_ok {
            let stale = find(&vrf.header).into_iter().flat_map(bound_vnis);
            for vni in stale.collect::<Vec<_>>() {
                lines.extend([vrf.header.clone(), format!("no vni {vni}"), "exit-vrf".into()]);
            }
            lines.extend(vrf.lines("exit-vrf"));
        }
        if !bgp_ok {
            lines.extend(bgp.lines("exit"));
        }
        lines
    }
}

/// The L3 VNIs bound in a `vrf X` block.
fn bound_vnis(block: &Block) -> Vec<u32> {
    block.body.iter().filter_map(|l| l.strip_prefix("vni ")?.parse().ok()).collect()
}

/// `advertise-all-vni` on the underlay instance `router bgp ASN`, if it is missing.
fn underlay_lines(running: &[Block], asn: u32) -> Vec<String> {
    let wanted = Block {
        header: format!("router bgp {asn}"),
        body: ["address-family l2vpn evpn", "advertise-all-vni", "exit-address-family"]
            .map(String::from)
            .to_vec(),
    };
    if running.iter().any(|b| b.header == wanted.header && b.covers(&wanted)) {
        return Vec::new();
    }
    wanted.lines("exit")
}

/// The vtysh lines that unbind VRF `vrf`'s L3 VNI; empty when it has none.
pub fn unbind_lines(running: &[Block], vrf: &str) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(block) = running.iter().find(|b| b.header == vrf_header(vrf)) {
        for vni in bound_vnis(block) {
            lines.extend([block.header.clone(), format!("no vni {vni}"), "exit-vrf".into()]);
        }
    }
    lines
}

/// The vtysh lines that delete VRF `vrf`'s BGP instance; empty when there is none. FRR
/// refuses while bgpd still knows the VRF's L3 VNI, so this follows [`unbind_lines`] once
/// zebra has told bgpd.
pub fn bgp_delete_lines(running: &[Block], vrf: &str) -> Vec<String> {
    let suffix = format!(" vrf {vrf}");
    running
        .iter()
        .filter(|b| b.header.starts_with("router bgp ") && b.header.ends_with(&suffix))
        .map(|b| format!("no {}", b.header))
        .collect()
}

/// `no vrf X` if `running` still has the VRF's block. FRR deletes only an inactive VRF,
/// so this runs after the kernel VRF (device or namespace) is gone.
pub fn forget_lines(running: &[Block], vrf: &str) -> Vec<String> {
    let header = vrf_header(vrf);
    if running.iter().any(|b| b.header == header) {
        vec![format!("no {header}")]
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantFrr<'static> {
        TenantFrr { vrf: "t1", l3_vni: 4001, asn: 65001, router_id: "10.255.0.1" }
    }

    /// What FRR 8.4 printed for the lab's leaf1 with the tenant applied (`frr defaults
    /// datacenter`, netns VRF backend).
    const RUNNING: &str = "\
frr version 8.4.4
frr defaults datacenter
hostname leaf1
!
vrf t1
 vni 4001
 netns /run/netns/t1
exit-vrf
!
router bgp 65001
 bgp router-id 10.255.0.1
 neighbor 192.168.1.2 remote-as 65002
 !
 address-family ipv4 unicast
  network 10.255.0.1/32
 exit-address-family
 !
 address-family l2vpn evpn
  neighbor 192.168.1.2 activate
  advertise-all-vni
 exit-address-family
exit
!
router bgp 65001 vrf t1
 bgp router-id 10.255.0.1
 !
 address-family ipv4 unicast
  redistribute connected
 exit-address-family
 !
 address-family ipv6 unicast
  redistribute connected
 exit-address-family
 !
 address-family l2vpn evpn
  advertise ipv4 unicast
  advertise ipv6 unicast
 exit-address-family
exit
!
end
";

    #[test]
    fn test_config_golden() {
        assert_eq!(
            tenant().config(),
            "\
vrf t1
 vni 4001
exit-vrf
!
router bgp 65001 vrf t1
 bgp router-id 10.255.0.1
 address-family ipv4 unicast
  redistribute connected
 exit-address-family
 address-family ipv6 unicast
  redistribute connected
 exit-address-family
 address-family l2vpn evpn
  advertise ipv4 unicast
  advertise ipv6 unicast
 exit-address-family
exit
!
"
        );
    }

    #[test]
    fn test_parse_running_blocks() {
        let blocks = parse_running(RUNNING);
        let headers: Vec<&str> = blocks.iter().map(|b| b.header.as_str()).collect();
        assert_eq!(
            headers,
            [
                "frr version 8.4.4",
                "frr defaults datacenter",
                "hostname leaf1",
                "vrf t1",
                "router bgp 65001",
                "router bgp 65001 vrf t1"
            ]
        );
        assert_eq!(blocks[3].body, ["vni 4001", "netns /run/netns/t1"]);
    }

    #[test]
    fn test_apply_on_empty_config_adds_everything() {
        let lines = tenant().apply_lines(&[]);
        assert_eq!(
            lines.join("\n"),
            "\
router bgp 65001
address-family l2vpn evpn
advertise-all-vni
exit-address-family
exit
vrf t1
vni 4001
exit-vrf
router bgp 65001 vrf t1
bgp router-id 10.255.0.1
address-family ipv4 unicast
redistribute connected
exit-address-family
address-family ipv6 unicast
redistribute connected
exit-address-family
address-family l2vpn evpn
advertise ipv4 unicast
advertise ipv6 unicast
exit-address-family
exit"
        );
    }

    #[test]
    fn test_apply_on_applied_config_is_empty() {
        assert_eq!(tenant().apply_lines(&parse_running(RUNNING)), Vec::<String>::new());
    }

    #[test]
    fn test_changed_l3_vni_unbinds_the_old_one_first() {
        let moved = TenantFrr { l3_vni: 4002, ..tenant() };
        let lines = moved.apply_lines(&parse_running(RUNNING));
        assert_eq!(lines, ["vrf t1", "no vni 4001", "exit-vrf", "vrf t1", "vni 4002", "exit-vrf"]);
    }

    #[test]
    fn test_missing_family_line_reapplies_the_bgp_block() {
        let partial = RUNNING.replace("  advertise ipv6 unicast\n", "");
        let lines = tenant().apply_lines(&parse_running(&partial));
        assert_eq!(lines.first().map(String::as_str), Some("router bgp 65001 vrf t1"));
    }

    #[test]
    fn test_unbind_delete_forget() {
        let running = parse_running(RUNNING);
        assert_eq!(unbind_lines(&running, "t1"), ["vrf t1", "no vni 4001", "exit-vrf"]);
        assert_eq!(bgp_delete_lines(&running, "t1"), ["no router bgp 65001 vrf t1"]);
        assert_eq!(forget_lines(&running, "t1"), ["no vrf t1"]);
        assert!(unbind_lines(&running, "t2").is_empty());
        assert!(bgp_delete_lines(&running, "t2").is_empty());
        assert!(forget_lines(&running, "t2").is_empty());
    }
}
