//! A tenant VRF's kernel devices: the VRF itself, per VNI a bridge (the SVI, holding a
//! segment's gateway address) with a VXLAN device on it whose tunnel source is the switch's
//! loopback VTEP, and a segment's access ports (front-panel port interfaces such as `swp1`,
//! cabled to host NICs) as further ports of its bridge. Read with `ip -j -d addr show`,
//! changed with `ip` commands computed as the difference between what exists and what is
//! wanted.
//!
//! Names: VNI N uses `brN` and `vxlanN` (at most 13 characters; VNIs are unique per switch).
//!
//! Access ports: with [`VrfMode::Netns`] a port moves into the VRF's namespace, then joins
//! the bridge; it moves back to the switch's own namespace (the one the agent's commands run
//! in) when it leaves the segment and before the VRF's namespace is deleted, which would
//! destroy a virtual port and hand a physical one to the initial namespace. With kernel VRFs
//! it is enslaved to the bridge and released with `nomaster`. Either way a released port is
//! left down, unbridged, where the next VRF finds it. A wanted port must be in the VRF
//! already or in the switch's namespace without a master: one held elsewhere (another VRF's
//! namespace or bridge) is refused, never taken.

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
    /// Per access port (`swp1`), the L2 VNI whose bridge it joins.
    pub ports: BTreeMap<String, u32>,
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

/// A port device as the kernel has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortDevice {
    /// The device it is enslaved to (a segment's bridge), if any.
    pub master: Option<String>,
    /// Administratively up.
    pub up: bool,
}

/// A tenant VRF as the kernel has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelVrf {
    pub exists: bool,
    pub vnis: BTreeMap<u32, VniDevices>,
    /// The ports in the VRF, by name: in its namespace every device but `lo`, the VNIs' and
    /// the kernel's own (only this agent puts devices there); with kernel VRFs, those
    /// enslaved to its bridges.
    pub ports: BTreeMap<String, PortDevice>,
    /// The wanted ports found outside the VRF: in the switch's own namespace, or with
    /// kernel VRFs, the rest of the switch.
    pub outside: BTreeMap<String, PortDevice>,
}

impl KernelVrf {
    /// Whether this is exactly `wanted`: the VRF, each VNI complete with its address, each
    /// port up in its bridge, no other VNI or port.
    pub fn is(&self, wanted: &TenantDevices) -> bool {
        self.exists
            && self.vnis.len() == wanted.vnis.len()
            && wanted.vnis.iter().all(|(vni, a)| self.vnis.get(vni).is_some_and(|d| d.is(a)))
            && self.ports.len() == wanted.ports.len()
            && wanted.ports.iter().all(|(port, vni)| {
                self.ports.get(port).is_some_and(|d| d.up && d.master == Some(bridge_name(*vni)))
            })
    }
}

fn bridge_name(vni: u32) -> String {
    format!("br{vni}")
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

/// One link of `ip -j -d addr show` (or `link show`), the fields used here.
#[derive(Debug, Deserialize)]
struct Link {
    ifname: String,
    master: Option<String>,
    linkinfo: Option<LinkInfo>,
    #[serde(default)]
    flags: Vec<String>,
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

    /// A device every namespace has while its module is loaded, and which cannot leave it:
    /// the fallback tunnels (`sit0` of `sit`, `tunl0` of `ipip`, …).
    fn is_namespace_own(&self) -> bool {
        const FALLBACK_TUNNELS: [&str; 9] = [
            "sit0", "tunl0", "gre0", "gretap0", "erspan0", "ip_vti0", "ip6_vti0", "ip6tnl0",
            "ip6gre0",
        ];
        self.ifname == "lo" || (self.kind().is_some() && FALLBACK_TUNNELS.contains(&&*self.ifname))
    }

    /// One of our VNI devices, `brN` or `vxlanN`.
    fn is_vni_device(&self) -> bool {
        self.vni("br", "bridge").is_some() || self.vni("vxlan", "vxlan").is_some()
    }

    fn port(&self) -> PortDevice {
        PortDevice { master: self.master.clone(), up: self.flags.iter().any(|f| f == "UP") }
    }

    fn global_address(&self) -> Option<String> {
        self.addr_info
            .iter()
            .find(|a| a.scope.as_deref() == Some("global"))
            .map(|a| format!("{}/{}", a.local, a.prefixlen))
    }
}

/// The VNI devices and ports among `links` that belong to VRF `vrf`. In a VRF namespace
/// that is all of them; with kernel VRFs, the VNIs whose bridge is enslaved to the VRF, plus
/// any device of a VNI in `claimed` (left half-made by an interrupted apply, it would block
/// re-creation), and the ports enslaved to those bridges. With kernel VRFs, the `wanted`
/// ports found elsewhere are `outside`.
fn scan(
    mode: VrfMode,
    vrf: &str,
    links: &[Link],
    claimed: &BTreeSet<u32>,
    wanted: &BTreeSet<String>,
) -> KernelVrf {
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
    let bridges: BTreeSet<String> =
        vnis.iter().filter(|(_, d)| d.bridge).map(|(vni, _)| bridge_name(*vni)).collect();
    let is_port = |l: &Link| match mode {
        VrfMode::Netns => !l.is_namespace_own() && !l.is_vni_device(),
        VrfMode::Kernel => {
            !l.is_vni_device() && l.master.as_ref().is_some_and(|m| bridges.contains(m))
        }
    };
    let ports: BTreeMap<String, PortDevice> =
        links.iter().filter(|l| is_port(l)).map(|l| (l.ifname.clone(), l.port())).collect();
    let outside = match mode {
        VrfMode::Netns => BTreeMap::new(),
        VrfMode::Kernel => found(links, wanted, &ports),
    };
    KernelVrf { exists, vnis, ports, outside }
}

/// The `wanted` ports among `links` that are not in `inside`.
fn found(
    links: &[Link],
    wanted: &BTreeSet<String>,
    inside: &BTreeMap<String, PortDevice>,
) -> BTreeMap<String, PortDevice> {
    links
        .iter()
        .filter(|l| wanted.contains(&l.ifname) && !inside.contains_key(&l.ifname))
        .map(|l| (l.ifname.clone(), l.port()))
        .collect()
}

fn parse_links(json: &str) -> Result<Vec<Link>, DriverError> {
    serde_json::from_str(json)
        .map_err(|e| DriverError::Internal(format!("cannot read `ip -j addr show`: {e}")))
}

/// The tenant namespaces, by name.
async fn namespaces(runner: &Runner) -> Result<Vec<String>, DriverError> {
    let list = runner.run(&argv(&["ip", "netns", "list"])).await?;
    Ok(list.lines().filter_map(|l| l.split_whitespace().next()).map(String::from).collect())
}

/// `sh -c MOVE_HOME move-home VRF PORT`: moves `PORT` from VRF's namespace to the one the
/// shell runs in (names as arguments, never spliced into the script).
const MOVE_HOME: &str =
    r#"exec 3</proc/self/ns/net && exec ip -n "$1" link set "$2" netns /proc/self/fd/3"#;

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

    /// Reads VRF `vrf` from the kernel, and where the `wanted` ports not in it are;
    /// `claimed` as for [`scan`].
    pub async fn read(
        self,
        runner: &Runner,
        vrf: &str,
        claimed: &BTreeSet<u32>,
        wanted: &BTreeSet<String>,
    ) -> Result<KernelVrf, DriverError> {
        if self == VrfMode::Kernel {
            let json = runner.run(&argv(&["ip", "-j", "-d", "addr", "show"])).await?;
            return Ok(scan(self, vrf, &parse_links(&json)?, claimed, wanted));
        }
        let mut have = KernelVrf::default();
        if namespaces(runner).await?.iter().any(|n| n == vrf) {
            let json = runner.run(&self.ip_in(vrf, &["-j", "-d", "addr", "show"])).await?;
            have = scan(self, vrf, &parse_links(&json)?, claimed, wanted);
        }
        if wanted.iter().any(|p| !have.ports.contains_key(p)) {
            let json = runner.run(&argv(&["ip", "-j", "-d", "link", "show"])).await?;
            have.outside = found(&parse_links(&json)?, wanted, &have.ports);
        }
        Ok(have)
    }

    /// Refuses, before anything changes, a port of `want` that can join neither from `have`
    /// nor from the switch's namespace: one without an interface on the switch (`Internal`:
    /// the agent's cabling names a port the switch does not have), one held elsewhere
    /// (`FailedPrecondition`: another VRF's namespace, or enslaved to another device).
    pub async fn check_ports(
        self,
        runner: &Runner,
        want: &TenantDevices,
        have: &KernelVrf,
    ) -> Result<(), DriverError> {
        let vrf = want.vrf.as_str();
        for port in want.ports.keys().filter(|p| !have.ports.contains_key(*p)) {
            match have.outside.get(port) {
                Some(PortDevice { master: Some(master), .. }) => {
                    return Err(DriverError::FailedPrecondition(format!(
                        "port {port} is enslaved to {master}, outside VRF {vrf}; a port is in \
                         one VPC at a time: remove it from the other one first"
                    )));
                }
                Some(_) => {}
                None => return Err(self.missing_port(runner, vrf, port).await),
            }
        }
        Ok(())
    }

    /// Why `port` is neither in VRF `vrf` nor in the switch's namespace: in another VRF's
    /// namespace, or nowhere.
    async fn missing_port(self, runner: &Runner, vrf: &str, port: &str) -> DriverError {
        if self == VrfMode::Netns {
            for other in namespaces(runner).await.unwrap_or_default() {
                if other == vrf {
                    continue;
                }
                let json = runner.run(&self.ip_in(&other, &["-j", "link", "show"])).await;
                let links = json.ok().and_then(|j| parse_links(&j).ok()).unwrap_or_default();
                if links.iter().any(|l| l.ifname == port) {
                    return DriverError::FailedPrecondition(format!(
                        "port {port} is in VRF {other}'s namespace, not in this switch's; a \
                         port is in one VPC at a time: remove it from the other one first"
                    ));
                }
            }
        }
        DriverError::Internal(format!(
            "port {port} has no interface on this switch; the agent's cabling \
             (`[backend.frr.switch] ports`) must name the front-panel interfaces as `ip link` \
             shows them"
        ))
    }

    /// The `ip` commands that take `have` to `want`: the VRF if missing, ports no segment
    /// wants released, VNIs that differ deleted, missing ones created (bridge first, so
    /// zebra finds the SVI when the VXLAN device joins it), then each wanted port brought
    /// into the VRF, into its bridge (again, if that was just made) and up. A port that
    /// cannot join is not this plan's to judge: see [`VrfMode::check_ports`].
    pub fn apply_plan(self, want: &TenantDevices, have: &KernelVrf) -> Vec<Vec<String>> {
        let vrf = want.vrf.as_str();
        let mut plan = Vec::new();
        if !have.exists {
            plan.extend(self.create_vrf(vrf, want.l3_vni));
        }
        for port in have.ports.keys().filter(|p| !want.ports.contains_key(*p)) {
            plan.extend(self.release_port(vrf, port));
        }
        for (vni, devices) in &have.vnis {
            if want.vnis.get(vni).is_none_or(|a| !devices.is(a)) {
                plan.extend(self.delete_vni(vrf, *vni, devices));
            }
        }
        let mut made = BTreeSet::new();
        for (vni, address) in &want.vnis {
            if have.vnis.get(vni).is_none_or(|d| !d.is(address)) {
                plan.extend(self.create_vni(vrf, &want.vtep, *vni, address.as_deref()));
                made.insert(*vni);
            }
        }
        for (port, vni) in &want.ports {
            plan.extend(self.join_port(vrf, port, *vni, have, made.contains(vni)));
        }
        plan
    }

    /// The `ip` commands that make `port` an up port of VNI `vni`'s bridge in VRF `vrf`,
    /// from where `have` has it; `bridge_made` when this plan (re)creates that bridge.
    fn join_port(
        self,
        vrf: &str,
        port: &str,
        vni: u32,
        have: &KernelVrf,
        bridge_made: bool,
    ) -> Vec<Vec<String>> {
        let bridge = bridge_name(vni);
        let mut plan = Vec::new();
        let (joined, up) = match have.ports.get(port) {
            Some(d) => (!bridge_made && d.master.as_deref() == Some(bridge.as_str()), d.up),
            // Moving to another namespace takes a device down.
            None if self == VrfMode::Netns => {
                plan.push(argv(&["ip", "link", "set", port, "netns", vrf]));
                (false, false)
            }
            None => (false, have.outside.get(port).is_some_and(|d| d.up)),
        };
        if !joined {
            plan.push(self.ip_in(vrf, &["link", "set", port, "master", &bridge]));
        }
        if !up {
            plan.push(self.ip_in(vrf, &["link", "set", port, "up"]));
        }
        plan
    }

    /// The `ip` commands that take `port` out of VRF `vrf`, down and unbridged: back to the
    /// switch's namespace, or released from its bridge.
    fn release_port(self, vrf: &str, port: &str) -> Vec<Vec<String>> {
        match self {
            // The switch's namespace has no name to give `ip` (a lab's leaf is not in the
            // `/run/netns` its daemons see): the shell, still in it, hands it over as a
            // descriptor before `ip` enters the VRF's namespace.
            VrfMode::Netns => vec![argv(&["sh", "-c", MOVE_HOME, "move-home", vrf, port])],
            VrfMode::Kernel => vec![
                argv(&["ip", "link", "set", port, "nomaster"]),
                argv(&["ip", "link", "set", port, "down"]),
            ],
        }
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
            vnis: have.vnis.iter().filter(|(v, _)| keep(v)).map(|(v, d)| (*v, d.clone())).collect(),
            ..have.clone()
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

    /// The `ip` commands that delete VRF `vrf` and everything `have` holds of it, its ports
    /// released first.
    pub fn remove_plan(self, vrf: &str, have: &KernelVrf) -> Vec<Vec<String>> {
        let mut plan: Vec<Vec<String>> =
            have.ports.keys().flat_map(|port| self.release_port(vrf, port)).collect();
        plan.extend(have.vnis.iter().flat_map(|(vni, d)| self.delete_vni(vrf, *vni, d)));
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
            ports: BTreeMap::new(),
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
            ..KernelVrf::default()
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

    /// `want()` with swp1 in VNI 100's segment.
    fn with_port() -> TenantDevices {
        TenantDevices { ports: BTreeMap::from([("swp1".into(), 100)]), ..want() }
    }

    fn port(master: Option<&str>, up: bool) -> PortDevice {
        PortDevice { master: master.map(String::from), up }
    }

    /// `applied()` with swp1 up in br100.
    fn joined() -> KernelVrf {
        KernelVrf {
            ports: BTreeMap::from([("swp1".into(), port(Some("br100"), true))]),
            ..applied()
        }
    }

    /// swp1 down and unbridged in the switch's namespace.
    fn at_home(mut have: KernelVrf) -> KernelVrf {
        have.outside = BTreeMap::from([("swp1".into(), port(None, false))]);
        have
    }

    #[test]
    fn test_netns_plan_with_a_port_golden() {
        let plan = VrfMode::Netns.apply_plan(&with_port(), &at_home(KernelVrf::default()));
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
ip -n t1 link set vxlan4001 up
ip link set swp1 netns t1
ip -n t1 link set swp1 master br100
ip -n t1 link set swp1 up"
        );
        // Added to a VRF that has its VNIs: only the port.
        assert_eq!(
            shown(&VrfMode::Netns.apply_plan(&with_port(), &at_home(applied()))),
            "ip link set swp1 netns t1\nip -n t1 link set swp1 master br100\nip -n t1 link set swp1 up"
        );
    }

    #[test]
    fn test_kernel_plan_with_a_port_golden() {
        let mut up_at_home = at_home(KernelVrf::default());
        up_at_home.outside.insert("swp1".into(), port(None, true));
        let plan = shown(&VrfMode::Kernel.apply_plan(&with_port(), &up_at_home));
        assert!(plan.starts_with("ip link add t1 type vrf table 5001\n"), "{plan}");
        assert!(
            plan.ends_with("ip link set vxlan4001 up\nip link set swp1 master br100"),
            "{plan}"
        );
        assert_eq!(
            shown(&VrfMode::Kernel.apply_plan(&with_port(), &at_home(applied()))),
            "ip link set swp1 master br100\nip link set swp1 up"
        );
    }

    #[test]
    fn test_joined_port_plans_nothing() {
        for mode in [VrfMode::Netns, VrfMode::Kernel] {
            assert!(mode.apply_plan(&with_port(), &joined()).is_empty(), "{mode:?}");
        }
        assert!(joined().is(&with_port()));
        assert!(!applied().is(&with_port()), "the port is missing");
        assert!(!joined().is(&want()), "a port too many");
        let mut down = joined();
        down.ports.insert("swp1".into(), port(Some("br100"), false));
        assert!(!down.is(&with_port()));
        assert_eq!(
            shown(&VrfMode::Netns.apply_plan(&with_port(), &down)),
            "ip -n t1 link set swp1 up"
        );
    }

    #[test]
    fn test_port_leaving_goes_home_down() {
        assert_eq!(
            shown(&VrfMode::Netns.apply_plan(&want(), &joined())),
            format!("sh -c {MOVE_HOME} move-home t1 swp1")
        );
        assert_eq!(
            shown(&VrfMode::Kernel.apply_plan(&want(), &joined())),
            "ip link set swp1 nomaster\nip link set swp1 down"
        );
    }

    #[test]
    fn test_port_follows_its_segment() {
        // Into another segment of the same VRF: only its master changes.
        let mut other = want();
        other.vnis.insert(200, Some("10.2.0.1/24".into()));
        other.ports.insert("swp1".into(), 200);
        let mut have = joined();
        have.vnis.insert(200, complete(Some("10.2.0.1/24")));
        assert_eq!(
            shown(&VrfMode::Netns.apply_plan(&other, &have)),
            "ip -n t1 link set swp1 master br200"
        );

        // Its segment renumbered: bridge deleted and made again, the port joins the new one.
        let mut moved = with_port();
        moved.vnis.insert(100, Some("10.9.0.1/24".into()));
        let plan = shown(&VrfMode::Netns.apply_plan(&moved, &joined()));
        assert!(plan.starts_with("ip -n t1 link delete vxlan100\nip -n t1 link delete br100\n"));
        assert!(plan.ends_with("ip -n t1 link set swp1 master br100"), "{plan}");

        // A rebuilt VNI takes its port back.
        let plan =
            shown(&VrfMode::Netns.rebuild_plan(&with_port(), &joined(), &BTreeSet::from([100])));
        assert!(plan.starts_with("ip -n t1 link delete vxlan100\n"), "{plan}");
        assert!(plan.ends_with("ip -n t1 link set swp1 master br100"), "{plan}");
        assert!(!plan.contains("netns t1\n") && !plan.contains("4001"), "{plan}");
    }

    #[test]
    fn test_remove_plan_releases_ports_first() {
        assert_eq!(
            shown(&VrfMode::Netns.remove_plan("t1", &joined())),
            format!(
                "sh -c {MOVE_HOME} move-home t1 swp1
ip -n t1 link delete vxlan100
ip -n t1 link delete br100
ip -n t1 link delete vxlan4001
ip -n t1 link delete br4001
ip netns delete t1"
            )
        );
        let plan = shown(&VrfMode::Kernel.remove_plan("t1", &joined()));
        assert!(plan.starts_with("ip link set swp1 nomaster\nip link set swp1 down\n"), "{plan}");
        assert!(plan.ends_with("ip link delete t1"), "{plan}");
    }

    /// A runner whose `ip` prints canned answers: the tenant namespace `vpc-b` holds swp2.
    fn fake_ip() -> Runner {
        let script = r#"case "$*" in
            "ip netns list") echo "vpc-b (id: 1)";;
            "ip -n vpc-b -j link show") echo '[{"ifname":"lo"},{"ifname":"swp2"}]';;
            *) echo '[]';;
        esac"#;
        Runner {
            wrapper: vec!["sh".into(), "-c".into(), script.into(), "fake".into()],
            timeout: std::time::Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn test_ports_that_cannot_join_are_refused() {
        let wanting = |ports: &[&str]| TenantDevices {
            ports: ports.iter().map(|p| ((*p).to_string(), 100)).collect(),
            ..want()
        };
        let runner = fake_ip();
        for mode in [VrfMode::Netns, VrfMode::Kernel] {
            let fine = mode.check_ports(&runner, &wanting(&["swp1"]), &at_home(applied())).await;
            assert!(fine.is_ok(), "{fine:?}");
            assert!(mode.check_ports(&runner, &with_port(), &joined()).await.is_ok());
            let missing = mode.check_ports(&runner, &wanting(&["swp3"]), &applied()).await;
            assert!(
                matches!(&missing, Err(DriverError::Internal(m))
                    if m.starts_with("port swp3 has no interface on this switch; ")),
                "{mode:?}: {missing:?}"
            );
            let mut bridged = applied();
            bridged.outside.insert("swp1".into(), port(Some("br7"), true));
            let taken = mode.check_ports(&runner, &with_port(), &bridged).await;
            assert!(
                matches!(&taken, Err(DriverError::FailedPrecondition(m))
                    if m.starts_with("port swp1 is enslaved to br7, outside VRF t1;")),
                "{mode:?}: {taken:?}"
            );
        }
        let elsewhere = VrfMode::Netns.check_ports(&runner, &wanting(&["swp2"]), &applied()).await;
        assert!(
            matches!(&elsewhere, Err(DriverError::FailedPrecondition(m))
                if m.starts_with("port swp2 is in VRF vpc-b's namespace")),
            "{elsewhere:?}"
        );
    }

    #[test]
    fn test_scan_finds_ports() {
        // In a VRF namespace, as iproute2 6.1 prints a veth port there.
        let json = r#"[
          {"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"linkinfo":null},
          {"ifname":"br100","flags":["BROADCAST","UP"],"linkinfo":{"info_kind":"bridge"}},
          {"ifname":"vxlan100","master":"br100","linkinfo":{"info_kind":"vxlan"}},
          {"ifname":"swp1","link_index":2,"link_netnsid":0,"flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],
           "master":"br100","linkinfo":{"info_kind":"veth","info_slave_kind":"bridge"}},
          {"ifname":"swp4","flags":["BROADCAST","MULTICAST"]},
          {"ifname":"sit0","flags":["NOARP"],"linkinfo":{"info_kind":"sit"}},
          {"ifname":"tunl0","flags":["NOARP"],"linkinfo":{"info_kind":"ipip"}}
        ]"#;
        let netns = scan(
            VrfMode::Netns,
            "t1",
            &parse_links(json).unwrap(),
            &BTreeSet::new(),
            &BTreeSet::new(),
        );
        assert_eq!(
            netns.ports,
            BTreeMap::from([
                ("swp1".into(), port(Some("br100"), true)),
                ("swp4".into(), port(None, false))
            ])
        );
        // With kernel VRFs: only those in the VRF's bridges; the wanted others are outside.
        let json = r#"[
          {"ifname":"t1","flags":["UP"],"linkinfo":{"info_kind":"vrf"}},
          {"ifname":"br100","master":"t1","linkinfo":{"info_kind":"bridge"}},
          {"ifname":"br7","master":"t2","linkinfo":{"info_kind":"bridge"}},
          {"ifname":"swp1","master":"br100","flags":["UP"]},
          {"ifname":"swp2","master":"br7","flags":["UP"]},
          {"ifname":"swp3","flags":[]},
          {"ifname":"swp5","master":"br7","flags":["UP"]}
        ]"#;
        let wanted = BTreeSet::from(["swp1", "swp2", "swp3", "swp9"].map(String::from));
        let kernel =
            scan(VrfMode::Kernel, "t1", &parse_links(json).unwrap(), &BTreeSet::new(), &wanted);
        assert_eq!(kernel.ports, BTreeMap::from([("swp1".into(), port(Some("br100"), true))]));
        assert_eq!(
            kernel.outside,
            BTreeMap::from([
                ("swp2".into(), port(Some("br7"), true)),
                ("swp3".into(), port(None, false))
            ])
        );
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
        let kernel = scan(VrfMode::Kernel, "t1", &links, &BTreeSet::from([9]), &BTreeSet::new());
        assert!(kernel.exists);
        assert_eq!(kernel.vnis.keys().copied().collect::<Vec<_>>(), [9, 100]);
        assert_eq!(kernel.vnis[&100], complete(Some("10.1.0.1/24")));
        assert!(!kernel.vnis[&9].attached);
        let netns = scan(VrfMode::Netns, "t1", &links, &BTreeSet::new(), &BTreeSet::new());
        assert_eq!(netns.vnis.keys().copied().collect::<Vec<_>>(), [7, 9, 100]);
    }
}
