//! A tenant VRF's kernel devices: the VRF itself, and per VNI a bridge (the SVI, holding a
//! segment's gateway address) with a VXLAN device on it whose tunnel source is the switch's
//! loopback VTEP. Read with `ip -j -d addr show`, changed with `ip` commands computed as the
//! difference between what exists and what is wanted.
//!
//! Names: VNI N uses `brN` and `vxlanN` (at most 13 characters; VNIs are unique per switch).

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use agent_common::DriverError;
use agent_common::validate::Cidr;
use serde::Deserialize;

use super::apply::Runner;

/// How a tenant VRF exists in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VrfMode {
    /// A VRF device (`ip link add X type vrf`), as on a Spectrum switch running Cumulus or
    /// SONiC with FRR.
    Kernel,
    /// A network namespace named after the VRF holding its bridges and VXLAN devices, for
    /// kernels without `CONFIG_NET_VRF`; zebra must run with `--vrfwnetns`.
    Netns,
}

/// The UDP port of VXLAN (IANA).
const VXLAN_PORT: &str = "4789";

/// Kernel routing tables of VRF devices start here, above the reserved ones (253–255).
const TABLE_BASE: u32 = 1000;

/// A tenant VRF's devices as they should be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantDevices {
    pub vrf: String,
    /// The L3 VNI, which also numbers a kernel VRF's routing table.
    pub l3_vni: u32,
    /// The switch's loopback address, every VXLAN device's tunnel source.
    pub vtep: String,
    /// Per VNI, the gateway address of its bridge (`10.1.0.1/24`); none for the L3 VNI.
    pub vnis: BTreeMap<u32, Option<String>>,
}

/// What exists of one VNI's devices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VniDevices {
    pub bridge: bool,
    pub vxlan: bool,
    /// The VXLAN device is a port of the VNI's bridge (detached, it carries nothing).
    pub attached: bool,
    /// The bridge's global address with its prefix length.
    pub address: Option<String>,
}

impl VniDevices {
    fn is(&self, address: &Option<String>) -> bool {
        self.bridge && self.vxlan && self.attached && self.address == *address
    }
}

/// A tenant VRF as the kernel has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelVrf {
    pub exists: bool,
    pub vnis: BTreeMap<u32, VniDevices>,
}

impl KernelVrf {
    /// Whether this is exactly `wanted`: the VRF, each VNI complete with its address, no other.
    pub fn is(&self, wanted: &TenantDevices) -> bool {
        self.exists
            && self.vnis.len() == wanted.vnis.len()
            && wanted.vnis.iter().all(|(vni, a)| self.vnis.get(vni).is_some_and(|d| d.is(a)))
    }
}

/// A segment's gateway: the first address of its network, with the prefix length. None
/// for networks too small to hold a gateway and a host.
pub fn gateway(cidr: &Cidr) -> Option<String> {
    let (address, max) = match cidr.network() {
        IpAddr::V4(v4) => (IpAddr::from(u32::from(v4).checked_add(1)?.to_be_bytes()), 32),
        IpAddr::V6(v6) => (IpAddr::from(u128::from(v6).checked_add(1)?.to_be_bytes()), 128),
    };
    (cidr.prefix() + 2 <= max).then(|| format!("{address}/{}", cidr.prefix()))
}

/// One link of `ip -j -d addr show`, the fields used here.
#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    master: Option<String>,
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    addr_info: Vec<Address>,
}

#[derive(Debug, Deserialize)]
struct LinkInfo {
    info_kind: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Address {
    local: String,
    prefixlen: u8,
    scope: Option<String>,
}

impl Link {
    fn kind(&self) -> Option<&str> {
        self.linkinfo.as_ref()?.info_kind.as_deref()
    }

    /// `N` of our `brN` bridges and `vxlanN` VXLAN devices.
    fn vni(&self, prefix: &str, kind: &str) -> Option<u32> {
        (self.kind() == Some(kind)).then(|| self.ifname.strip_prefix(prefix)?.parse().ok())?
    }

    fn global_address(&self) -> Option<String> {
        self.addr_info
            .iter()
            .find(|a| a.scope.as_deref() == Some("global"))
            .map(|a| format!("{}/{}", a.local, a.prefixlen))
    }
}

/// The VNI devices among `links` that belong to VRF `vrf`. In a VRF namespace that is all
/// of them; with kernel VRFs, those whose bridge is enslaved to the VRF, plus any device of
/// a VNI in `claimed` (left half-made by an interrupted apply, it would block re-creation).
fn scan(mode: VrfMode, vrf: &str, links: &[Link], claimed: &BTreeSet<u32>) -> KernelVrf {
    let exists = match mode {
        VrfMode::Netns => true,
        VrfMode::Kernel => links.iter().any(|l| l.ifname == vrf && l.kind() == Some("vrf")),
    };
    let in_vrf = |vni: u32| match mode {
        VrfMode::Netns => true,
        VrfMode::Kernel => {
            claimed.contains(&vni)
                || links
                    .iter()
                    .any(|l| l.vni("br", "bridge") == Some(vni) && l.master.as_deref() == Some(vrf))
        }
    };
    let mut vnis: BTreeMap<u32, VniDevices> = BTreeMap::new();
    for link in links {
        if let Some(vni) = link.vni("br", "bridge").filter(|v| in_vrf(*v)) {
            let devices = vnis.entry(vni).or_default();
            devices.bridge = true;
            devices.address = link.global_address();
        } else if let Some(vni) = link.vni("vxlan", "vxlan").filter(|v| in_vrf(*v)) {
            let devices = vnis.entry(vni).or_default();
            devices.vxlan = true;
            devices.attached = link.master.as_deref() == Some(format!("br{vni}").as_str());
        }
    }
    KernelVrf { exists, vnis }
}

fn parse_links(json: &str) -> Result<Vec<Link>, DriverError> {
    serde_json::from_str(json)
        .map_err(|e| DriverError::Internal(format!("cannot read `ip -j addr show`: {e}")))
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_string()).collect()
}

impl VrfMode {
    /// An `ip` command acting inside VRF `vrf`: in its namespace, or as is.
    fn ip_in(self, vrf: &str, args: &[&str]) -> Vec<String> {
        let mut words = vec!["ip"];
        if self == VrfMode::Netns {
            words.extend(["-n", vrf]);
        }
        words.extend(args);
        argv(&words)
    }

    /// Reads VRF `vrf` from the kernel; `claimed` as for [`scan`].
    pub async fn read(
        self,
        runner: &Runner,
        vrf: &str,
        claimed: &BTreeSet<u32>,
    ) -> Result<KernelVrf, DriverError> {
        if self == VrfMode::Netns {
            let list = runner.run(&argv(&["ip", "netns", "list"])).await?;
            if !list.lines().any(|l| l.split_whitespace().next() == Some(vrf)) {
                return Ok(KernelVrf::default());
            }
        }
        let json = runner.run(&self.ip_in(vrf, &["-j", "-d", "addr", "show"])).await?;
        Ok(scan(self, vrf, &parse_links(&json)?, claimed))
    }

    /// The `ip` commands that take `have` to `want`: the VRF if missing, VNIs that differ
    /// deleted, missing ones created (bridge first, so zebra finds the SVI when the VXLAN
    /// device joins it).
    pub fn apply_plan(self, want: &TenantDevices, have: &KernelVrf) -> Vec<Vec<String>> {
        let vrf = want.vrf.as_str();
        let mut plan = Vec::new();
        if !have.exists {
            plan.extend(self.create_vrf(vrf, want.l3_vni));
        }
        for (vni, devices) in &have.vnis {
            if want.vnis.get(vni).is_none_or(|a| !devices.is(a)) {
                plan.extend(self.delete_vni(vrf, *vni, devices));
            }
        }
        for (vni, address) in &want.vnis {
            if have.vnis.get(vni).is_none_or(|d| !d.is(address)) {
                plan.extend(self.create_vni(vrf, &want.vtep, *vni, address.as_deref()));
            }
        }
        plan
    }

    /// The `ip` commands that delete and make again the devices of `vnis`, as `want` has them.
    pub fn rebuild_plan(
        self,
        want: &TenantDevices,
        have: &KernelVrf,
        vnis: &BTreeSet<u32>,
    ) -> Vec<Vec<String>> {
        let keep = |vni: &u32| !vnis.contains(vni);
        let without = KernelVrf {
            exists: have.exists,
            vnis: have.vnis.iter().filter(|(v, _)| keep(v)).map(|(v, d)| (*v, d.clone())).collect(),
        };
        let vrf = want.vrf.as_str();
        let mut plan: Vec<Vec<String>> = have
            .vnis
            .iter()
            .filter(|(v, _)| !keep(v))
            .flat_map(|(v, d)| self.delete_vni(vrf, *v, d))
            .collect();
        plan.extend(self.apply_plan(want, &without));
        plan
    }

    /// The `ip` commands that delete VRF `vrf` and everything `have` holds of it.
    pub fn remove_plan(self, vrf: &str, have: &KernelVrf) -> Vec<Vec<String>> {
        let mut plan: Vec<Vec<String>> =
            have.vnis.iter().flat_map(|(vni, d)| self.delete_vni(vrf, *vni, d)).collect();
        if have.exists {
            plan.push(match self {
                VrfMode::Netns => argv(&["ip", "netns", "delete", vrf]),
                VrfMode::Kernel => argv(&["ip", "link", "delete", vrf]),
            });
        }
        plan
    }

    /// The `ip` commands that create VRF `vrf` with nothing in it.
    pub fn create_vrf(self, vrf: &str, l3_vni: u32) -> Vec<Vec<String>> {
        match self {
            VrfMode::Netns => vec![
                argv(&["ip", "netns", "add", vrf]),
                self.ip_in(vrf, &["link", "set", "lo", "up"]),
            ],
            VrfMode::Kernel => {
                let table = (TABLE_BASE + l3_vni).to_string();
                vec![
                    argv(&["ip", "link", "add", vrf, "type", "vrf", "table", &table]),
                    argv(&["ip", "link", "set", vrf, "up"]),
                ]
            }
        }
    }

    fn delete_vni(self, vrf: &str, vni: u32, have: &VniDevices) -> Vec<Vec<String>> {
        let mut plan = Vec::new();
        if have.vxlan {
            plan.push(self.ip_in(vrf, &["link", "delete", &format!("vxlan{vni}")]));
        }
        if have.bridge {
            plan.push(self.ip_in(vrf, &["link", "delete", &format!("br{vni}")]));
        }
        plan
    }

    fn create_vni(
        self,
        vrf: &str,
        vtep: &str,
        vni: u32,
        address: Option<&str>,
    ) -> Vec<Vec<String>> {
        let (bridge, vxlan, id) = (format!("br{vni}"), format!("vxlan{vni}"), vni.to_string());
        let mut plan =
            vec![self.ip_in(vrf, &["link", "add", &bridge, "type", "bridge", "stp_state", "0"])];
        if self == VrfMode::Kernel {
            plan.push(self.ip_in(vrf, &["link", "set", &bridge, "master", vrf]));
        }
        if let Some(address) = address {
            plan.push(self.ip_in(vrf, &["addr", "add", address, "dev", &bridge]));
        }
        plan.push(self.ip_in(vrf, &["link", "set", &bridge, "up"]));
        // Created inside the VRF's namespace in one step, its tunnel socket stays in the
        // switch's namespace, where the loopback VTEP is.
        let into: &[&str] = match self {
            VrfMode::Netns => &["netns", vrf],
            VrfMode::Kernel => &[],
        };
        let mut add = vec!["ip", "link", "add", &vxlan];
        add.extend(into);
        add.extend([
            "type",
            "vxlan",
            "id",
            &id,
            "local",
            vtep,
            "dstport",
            VXLAN_PORT,
            "nolearning",
        ]);
        plan.push(argv(&add));
        plan.extend([
            self.ip_in(vrf, &["link", "set", &vxlan, "master", &bridge, "addrgenmode", "none"]),
            self.ip_in(
                vrf,
                &[
                    "link",
                    "set",
                    &vxlan,
                    "type",
                    "bridge_slave",
                    "neigh_suppress",
                    "on",
                    "learning",
                    "off",
                ],
            ),
            self.ip_in(vrf, &["link", "set", &vxlan, "up"]),
        ]);
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want() -> TenantDevices {
        TenantDevices {
            vrf: "t1".into(),
            l3_vni: 4001,
            vtep: "10.255.0.1".into(),
            vnis: BTreeMap::from([(100, Some("10.1.0.1/24".into())), (4001, None)]),
        }
    }

    fn shown(plan: &[Vec<String>]) -> String {
        plan.iter().map(|c| c.join(" ")).collect::<Vec<_>>().join("\n")
    }

    fn complete(address: Option<&str>) -> VniDevices {
        VniDevices { bridge: true, vxlan: true, attached: true, address: address.map(String::from) }
    }

    fn applied() -> KernelVrf {
        KernelVrf {
            exists: true,
            vnis: BTreeMap::from([(100, complete(Some("10.1.0.1/24"))), (4001, complete(None))]),
        }
    }

    #[test]
    fn test_gateway_is_the_first_address() {
        let cidr = |s| agent_common::validate::cidr("cidr", s).unwrap();
        assert_eq!(gateway(&cidr("10.1.0.0/24")).as_deref(), Some("10.1.0.1/24"));
        assert_eq!(gateway(&cidr("fd00:1::/64")).as_deref(), Some("fd00:1::1/64"));
        assert_eq!(gateway(&cidr("10.1.0.4/31")), None);
    }

    #[test]
    fn test_netns_plan_from_nothing_golden() {
        let plan = VrfMode::Netns.apply_plan(&want(), &KernelVrf::default());
        assert_eq!(
            shown(&plan),
            "\
ip netns add t1
ip -n t1 link set lo up
ip -n t1 link add br100 type bridge stp_state 0
ip -n t1 addr add 10.1.0.1/24 dev br100
ip -n t1 link set br100 up
ip link add vxlan100 netns t1 type vxlan id 100 local 10.255.0.1 dstport 4789 nolearning
ip -n t1 link set vxlan100 master br100 addrgenmode none
ip -n t1 link set vxlan100 type bridge_slave neigh_suppress on learning off
ip -n t1 link set vxlan100 up
ip -n t1 link add br4001 type bridge stp_state 0
ip -n t1 link set br4001 up
ip link add vxlan4001 netns t1 type vxlan id 4001 local 10.255.0.1 dstport 4789 nolearning
ip -n t1 link set vxlan4001 master br4001 addrgenmode none
ip -n t1 link set vxlan4001 type bridge_slave neigh_suppress on learning off
ip -n t1 link set vxlan4001 up"
        );
    }

    #[test]
    fn test_kernel_plan_golden() {
        let mut small = want();
        small.vnis.remove(&100);
        let plan = VrfMode::Kernel.apply_plan(&small, &KernelVrf::default());
        assert_eq!(
            shown(&plan),
            "\
ip link add t1 type vrf table 5001
ip link set t1 up
ip link add br4001 type bridge stp_state 0
ip link set br4001 master t1
ip link set br4001 up
ip link add vxlan4001 type vxlan id 4001 local 10.255.0.1 dstport 4789 nolearning
ip link set vxlan4001 master br4001 addrgenmode none
ip link set vxlan4001 type bridge_slave neigh_suppress on learning off
ip link set vxlan4001 up"
        );
    }

    #[test]
    fn test_plan_is_the_difference() {
        assert!(VrfMode::Netns.apply_plan(&want(), &applied()).is_empty());
        assert!(applied().is(&want()));

        // A segment added: only its devices.
        let mut more = want();
        more.vnis.insert(200, Some("10.2.0.1/24".into()));
        let plan = VrfMode::Netns.apply_plan(&more, &applied());
        assert!(plan.iter().all(|c| c.iter().any(|w| w.ends_with("200"))), "{}", shown(&plan));

        // A segment gone, another renumbered: delete both, create the new address.
        let mut fewer = want();
        fewer.vnis.remove(&100);
        assert_eq!(
            shown(&VrfMode::Netns.apply_plan(&fewer, &applied())),
            "ip -n t1 link delete vxlan100\nip -n t1 link delete br100"
        );
        let mut moved = want();
        moved.vnis.insert(100, Some("10.9.0.1/24".into()));
        let plan = shown(&VrfMode::Netns.apply_plan(&moved, &applied()));
        assert!(plan.starts_with("ip -n t1 link delete vxlan100\nip -n t1 link delete br100\n"));
        assert!(plan.contains("addr add 10.9.0.1/24 dev br100"));
    }

    #[test]
    fn test_half_made_vni_is_rebuilt() {
        let mut half = applied();
        half.vnis.insert(100, VniDevices { bridge: true, ..VniDevices::default() });
        let plan = shown(&VrfMode::Netns.apply_plan(&want(), &half));
        assert!(plan.starts_with("ip -n t1 link delete br100\nip -n t1 link add br100"), "{plan}");
    }

    #[test]
    fn test_rebuild_deletes_then_makes_only_those() {
        let plan =
            shown(&VrfMode::Netns.rebuild_plan(&want(), &applied(), &BTreeSet::from([4001])));
        assert!(plan.starts_with("ip -n t1 link delete vxlan4001\nip -n t1 link delete br4001\n"));
        assert!(plan.contains("link add vxlan4001 netns t1"), "{plan}");
        assert!(!plan.contains("100 "), "{plan}");
    }

    #[test]
    fn test_remove_plan() {
        assert_eq!(
            shown(&VrfMode::Netns.remove_plan("t1", &applied())),
            "\
ip -n t1 link delete vxlan100
ip -n t1 link delete br100
ip -n t1 link delete vxlan4001
ip -n t1 link delete br4001
ip netns delete t1"
        );
        assert!(VrfMode::Netns.remove_plan("t1", &KernelVrf::default()).is_empty());
    }

    #[test]
    fn test_scan_reads_ip_json() {
        let json = r#"[
          {"ifname":"lo","linkinfo":null,"addr_info":[{"local":"127.0.0.1","prefixlen":8,"scope":"host"}]},
          {"ifname":"t1","linkinfo":{"info_kind":"vrf"}},
          {"ifname":"br100","master":"t1","linkinfo":{"info_kind":"bridge"},
           "addr_info":[{"local":"10.1.0.1","prefixlen":24,"scope":"global"},
                        {"local":"fe80::1","prefixlen":64,"scope":"link"}]},
          {"ifname":"vxlan100","master":"br100","linkinfo":{"info_kind":"vxlan"}},
          {"ifname":"br7","master":"other","linkinfo":{"info_kind":"bridge"}},
          {"ifname":"vxlan9","linkinfo":{"info_kind":"vxlan"}}
        ]"#;
        let links = parse_links(json).unwrap();
        let kernel = scan(VrfMode::Kernel, "t1", &links, &BTreeSet::from([9]));
        assert!(kernel.exists);
        assert_eq!(kernel.vnis.keys().copied().collect::<Vec<_>>(), [9, 100]);
        assert_eq!(kernel.vnis[&100], complete(Some("10.1.0.1/24")));
        assert!(!kernel.vnis[&9].attached);
        let netns = scan(VrfMode::Netns, "t1", &links, &BTreeSet::new());
        assert_eq!(netns.vnis.keys().copied().collect::<Vec<_>>(), [7, 9, 100]);
    }
}
