//! Public IPs: one-to-one NAT between a port's private IPv4 address and a public address of
//! the provider, through a small router namespace per such port.
//!
//! ```text
//!  VM ── pr<tag> ═ br<vni> ═ gw<tag> ─── lan [gateway/prefix]      (router namespace
//!                                         │  DNAT public → private    <scope>.nat<tag>)
//!                                         │  SNAT private → public
//!  internet ── uplink ── DPU namespace ── pu<tag> ─── wan [public/32]
//!              (proxy ARP for the public addresses; table `table` routes them to pu<tag>
//!               and everything from pu* to the uplink's gateway)
//! ```
//!
//! Why a namespace per port rather than policy routing in the DPU's namespace: tenants use
//! the same subnets, gateways and addresses on different VNIs, and without VRFs (this
//! kernel has none) one routing namespace would need a table, a mark and rules per VNI, NAT
//! keyed by mark and conntrack zones kept straight between bridged and routed traffic, and
//! the gateway address would be a local address of the DPU's own namespace (its services
//! reachable from every VM). A router namespace holds exactly one port's gateway and
//! addresses, so overlaps cannot meet, its NAT is two rules, and removing the public IP is
//! deleting the namespace. The gateway leg on the bridge reaches its own port's
//! representor only (the `bridge` table's `gateways` set, see [`super::firewall`]), so
//! several routers on one VNI hold the same gateway address without an ARP conflict, and a
//! VM without a public IP finds no gateway at all: its traffic never gets out.
//!
//! Traffic through the router crosses the bridge like any other, so the port's security
//! group judges it: ingress to the public address needs an ingress rule (`in_<tag>`, after
//! DNAT, with the internet source), and the VM's egress rules apply to the internet too.
//! The router itself forwards only the port's own address out and DNATed traffic in.
//!
//! In the DPU's namespace the backend owns routing table `table` and the rules that look it
//! up: `iif <uplink> lookup table` (so proxy ARP on the uplink answers exactly for the
//! public addresses routed to a `pu*` leg; everything else in the table goes back to the
//! uplink) and `iif pu<tag> lookup table` per port (the router's traffic goes to the
//! uplink's gateway, whatever the DPU's own default route is). Forwarding is switched on
//! for the uplink and the `pu*` legs only, never globally, and the `inet` table drops any
//! other forwarding (see [`super::firewall::reset`]).
//!
//! Restart-safe: `start` deletes the router namespaces of this DPU and flushes the table
//! and its rules (like the nftables reset, a public IP works again once its port is
//! ensured); every step of [`PublicIps::attach`] adopts what exists.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use serde::Deserialize;

use agent_common::DriverError;

use super::links::Links;
use super::names::{self, ROUTER_LAN, ROUTER_WAN};
use super::netns;
use super::nft::Nft;
use crate::model::PortSpec;

/// The `[backend.linux.uplink]` table: where the provider's external network is.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    /// An existing device in the DPU's namespace on the provider's external network (its
    /// own address there is the operator's business). Public IPs are answered on it by
    /// proxy ARP, so they are addresses of that network or routed to this device. The
    /// agent switches on forwarding and proxy ARP for it (not globally) and owns its
    /// traffic that is not for the DPU itself. Its reverse-path filter must accept internet
    /// sources (off, loose, or the main table routing them through this device).
    pub device: String,
    /// The next hop of the external network, where the routers' traffic goes (on-link).
    pub gateway: Ipv4Addr,
    /// The routing table (and the priority of the rules that look it up) the backend owns
    /// in the DPU's namespace; 4790 when absent.
    #[serde(default = "default_table")]
    pub table: u32,
}

fn default_table() -> u32 {
    DEFAULT_TABLE
}

const DEFAULT_TABLE: u32 = 4790;

/// The router's next hop on `wan`: the DPU's end `pu<tag>`, by a permanent neighbour entry.
/// Inside the router's namespace only, so it can collide with nothing (link-local).
const ROUTER_NEXT_HOP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 1);

/// What a port's router is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortRouter {
    pub port_id: String,
    pub vni: u32,
    pub private: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub prefix_len: u8,
    pub public: Ipv4Addr,
}

impl PortRouter {
    /// The router of `spec`, `None` without a public IP (or without what it needs, which
    /// the decoder refuses).
    pub fn of(spec: &PortSpec) -> Option<PortRouter> {
        let public = spec.public_ip?;
        let std::net::IpAddr::V4(private) = spec.ip else { return None };
        let gateway = spec.gateway?;
        let std::net::IpAddr::V4(address) = gateway.address else { return None };
        Some(PortRouter {
            port_id: spec.port_id.clone(),
            vni: spec.vni,
            private,
            gateway: address,
            prefix_len: gateway.prefix_len,
            public,
        })
    }
}

/// The public-IP part of the backend: its configuration and where routers are named.
pub struct PublicIps {
    uplink: Option<UplinkConfig>,
    /// The DPU's namespace (`None`: the agent's own).
    dpu_netns: Option<String>,
    /// What router namespaces are prefixed with (see [`names::router_netns`]).
    scope: String,
    runtime: tokio::runtime::Handle,
}

impl PublicIps {
    /// Checks the uplink's name. Errors: `Internal` for one that cannot be a device name.
    pub fn new(
        uplink: Option<UplinkConfig>,
        dpu_netns: Option<String>,
        dpu_id: &str,
    ) -> Result<Self, DriverError> {
        if let Some(uplink) = &uplink {
            let name = &uplink.device;
            if name.is_empty() || name.len() > 15 || names::sanitized(name) != *name {
                return Err(DriverError::Internal(format!(
                    "uplink device {name:?} is not an interface name (1 to 15 of A-Z a-z 0-9 _ . -)"
                )));
            }
        }
        let scope = names::sanitized(dpu_netns.as_deref().unwrap_or(dpu_id));
        Ok(PublicIps { uplink, dpu_netns, scope, runtime: tokio::runtime::Handle::current() })
    }

    pub fn uplink_device(&self) -> Option<&str> {
        self.uplink.as_ref().map(|u| u.device.as_str())
    }

    fn table(&self) -> u32 {
        self.uplink.as_ref().map_or(DEFAULT_TABLE, |u| u.table)
    }

    /// Refuses a public IP on a DPU without an uplink.
    pub fn check(&self, spec: &PortSpec) -> Result<(), DriverError> {
        match spec.public_ip {
            Some(public) if self.uplink.is_none() => Err(DriverError::FailedPrecondition(format!(
                "this DPU has no uplink configured; port {} cannot have public IP {public} \
                 (set [backend.linux.uplink] in the dpu-agent config, or send no public IP)",
                spec.port_id
            ))),
            _ => Ok(()),
        }
    }

    /// Deletes what a previous run left (this DPU's router namespaces, the table and its
    /// rules) and, with an uplink, routes and answers for the public side again.
    pub async fn start(&self, links: &Links) -> Result<(), DriverError> {
        for name in netns::list() {
            if names::is_router_netns(&self.scope, &name) {
                let tag = &name[name.len() - names::TAG_LEN..];
                self.delete_router(links, tag, &name).await?;
            }
        }
        let table = self.table();
        links.delete_rules(table, None).await?;
        for route in links.routes(table).await? {
            links.delete_route(&route).await?;
        }
        let Some(uplink) = &self.uplink else { return Ok(()) };
        let Some(index) = links.index(&uplink.device).await? else {
            return Err(DriverError::Internal(format!(
                "uplink device {} is not in the DPU's namespace; create it or fix \
                 [backend.linux.uplink]",
                uplink.device
            )));
        };
        let device = &uplink.device;
        netns::sysctl(
            self.dpu_netns.as_deref(),
            &[
                format!("net/ipv4/conf/{device}/forwarding"),
                format!("net/ipv4/conf/{device}/proxy_arp"),
            ],
            "1",
        )?;
        // Answer ARP for a public address at once, not after a random delay.
        netns::sysctl(
            self.dpu_netns.as_deref(),
            &[format!("net/ipv4/neigh/{device}/proxy_delay")],
            "0",
        )?;
        links.replace_route(table, (Ipv4Addr::UNSPECIFIED, 0), index, Some(uplink.gateway)).await?;
        links.ensure_rule(device, table, table).await
    }

    /// Creates or converges the router of `router`'s port (the VNI is attached).
    pub async fn attach(&self, links: &Links, router: &PortRouter) -> Result<(), DriverError> {
        if self.uplink.is_none() {
            return Err(DriverError::FailedPrecondition(format!(
                "this DPU has no uplink configured; port {} cannot have public IP {}",
                router.port_id, router.public
            )));
        }
        let name = names::router_netns(&self.scope, &router.port_id);
        netns::add(&name).await?;
        let runtime = self.runtime.clone();
        let inside = netns::run_in(Some(&name), || Links::connect(&runtime))??;
        let gateway_leg = names::gateway_leg(&router.port_id);
        let public_leg = names::public_leg(&router.port_id);
        for (leg, inner) in [(&gateway_leg, ROUTER_LAN), (&public_leg, ROUTER_WAN)] {
            if inside.index(inner).await?.is_none() {
                let peer = names::leg_peer(leg);
                links.delete(leg).await?;
                links.delete(&peer).await?;
                links.ensure_veth(leg, &peer).await?;
                let router_netns = netns::open(&name)?;
                links.move_to_netns(&peer, router_netns.as_raw_fd(), inner).await?;
            }
        }

        // The DPU's side: the gateway leg on the VNI's bridge, the public leg forwarding.
        let bridge_name = names::bridge(router.vni);
        let Some(bridge) = links.index(&bridge_name).await? else {
            return Err(DriverError::Internal(format!(
                "bridge {bridge_name} of VNI {} is missing; the manager must attach the VNI first",
                router.vni
            )));
        };
        let gateway_index = existing(links, &gateway_leg).await?.0;
        links.set_up(&gateway_leg, gateway_index, Some(bridge)).await?;
        let (public_index, public_mac) = existing(links, &public_leg).await?;
        links.set_up(&public_leg, public_index, None).await?;
        netns::sysctl(
            self.dpu_netns.as_deref(),
            &[format!("net/ipv4/conf/{public_leg}/forwarding")],
            "1",
        )?;

        // The router: addresses, its way out, forwarding and NAT.
        let (loopback, _) = existing(&inside, "lo").await?;
        inside.set_up("lo", loopback, None).await?;
        let (lan, _) = existing(&inside, ROUTER_LAN).await?;
        inside.set_addresses(ROUTER_LAN, lan, &[(router.gateway, router.prefix_len)]).await?;
        inside.set_up(ROUTER_LAN, lan, None).await?;
        let (wan, _) = existing(&inside, ROUTER_WAN).await?;
        inside.set_addresses(ROUTER_WAN, wan, &[(router.public, 32)]).await?;
        inside.set_up(ROUTER_WAN, wan, None).await?;
        inside.set_neighbour(wan, ROUTER_NEXT_HOP, &public_mac).await?;
        const MAIN: u32 = 254;
        inside.replace_route(MAIN, (Ipv4Addr::UNSPECIFIED, 0), wan, Some(ROUTER_NEXT_HOP)).await?;
        netns::sysctl(Some(&name), &["net/ipv4/conf/all/forwarding".into()], "1")?;
        Nft::new(Some(name.clone())).apply(&router_ruleset(router)).await?;

        // The DPU's routing: the public address to this router, its traffic to the uplink.
        let table = self.table();
        for route in links.routes(table).await? {
            if route.device == Some(public_index) && route.destination != (router.public, 32) {
                links.delete_route(&route).await?;
            }
        }
        links.replace_route(table, (router.public, 32), public_index, None).await?;
        links.ensure_rule(&public_leg, table, table).await
    }

    /// Deletes the router of `port_id` and everything pointing at it, if there is one.
    pub async fn detach(&self, links: &Links, port_id: &str) -> Result<(), DriverError> {
        let name = names::router_netns(&self.scope, port_id);
        self.delete_router(links, &names::port_tag(port_id), &name).await
    }

    /// Deletes the legs of the router `tag` (their routes go with them), its rule and its
    /// namespace `name`.
    async fn delete_router(&self, links: &Links, tag: &str, name: &str) -> Result<(), DriverError> {
        let (gateway_leg, public_leg) = (format!("gw{tag}"), format!("pu{tag}"));
        links.delete_rules(self.table(), Some(&public_leg)).await?;
        for leg in [&gateway_leg, &public_leg] {
            links.delete(leg).await?;
            links.delete(&names::leg_peer(leg)).await?;
        }
        netns::delete(name).await
    }
}

/// The index and MAC of a device made just before.
async fn existing(links: &Links, name: &str) -> Result<(u32, Vec<u8>), DriverError> {
    links.lookup(name).await?.ok_or_else(|| {
        DriverError::Unavailable(format!("{name} vanished while its router was set up; retry"))
    })
}

/// The router's whole nftables ruleset (one `ip` table, replaced in one transaction):
/// one-to-one NAT between the port's address and its public address, forwarding of
/// nothing else, and no access to the router itself but pinging the gateway.
pub fn router_ruleset(router: &PortRouter) -> String {
    let (private, public) = (router.private, router.public);
    format!(
        "table ip nat
delete table ip nat
table ip nat {{
\tchain prerouting {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\tiifname \"{ROUTER_WAN}\" ip daddr {public} dnat to {private}
\t}}
\tchain postrouting {{
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\toifname \"{ROUTER_WAN}\" ip saddr {private} snat to {public}
\t}}
\tchain forward {{
\t\ttype filter hook forward priority filter; policy drop;
\t\tct state established,related accept
\t\tiifname \"{ROUTER_LAN}\" oifname \"{ROUTER_WAN}\" ip saddr {private} accept
\t\tiifname \"{ROUTER_WAN}\" oifname \"{ROUTER_LAN}\" ip daddr {private} ct status dnat accept
\t}}
\tchain input {{
\t\ttype filter hook input priority filter; policy drop;
\t\tct state established,related accept
\t\tiifname \"lo\" accept
\t\tiifname \"{ROUTER_LAN}\" icmp type echo-request accept
\t}}
}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Gateway;

    fn spec() -> PortSpec {
        PortSpec {
            port_id: "0190c2f4-7a1b-7c3d-8e9f-0123456789ab".into(),
            vm_id: "vm".into(),
            generation: 1,
            vni: 100,
            mac: "52:54:00:00:00:01".into(),
            ip: "10.0.0.5".parse().expect("ip"),
            rules: vec![],
            gateway: Some(Gateway { address: "10.0.0.1".parse().expect("ip"), prefix_len: 24 }),
            public_ip: Some(Ipv4Addr::new(203, 0, 113, 10)),
        }
    }

    #[test]
    fn a_router_is_made_only_for_a_public_ip() {
        let router = PortRouter::of(&spec()).expect("router");
        assert_eq!(
            (router.private, router.gateway, router.prefix_len, router.public),
            (
                Ipv4Addr::new(10, 0, 0, 5),
                Ipv4Addr::new(10, 0, 0, 1),
                24,
                Ipv4Addr::new(203, 0, 113, 10)
            )
        );
        assert_eq!(PortRouter::of(&PortSpec { public_ip: None, ..spec() }), None);
    }

    #[test]
    fn the_router_maps_one_to_one_and_forwards_nothing_else() {
        let script = router_ruleset(&PortRouter::of(&spec()).expect("router"));
        let lines: Vec<&str> = script.lines().map(str::trim).collect();
        assert_eq!(&lines[..2], ["table ip nat", "delete table ip nat"], "replaced whole");
        for line in [
            "iifname \"wan\" ip daddr 203.0.113.10 dnat to 10.0.0.5",
            "oifname \"wan\" ip saddr 10.0.0.5 snat to 203.0.113.10",
            "type filter hook forward priority filter; policy drop;",
            "iifname \"lan\" oifname \"wan\" ip saddr 10.0.0.5 accept",
            "iifname \"wan\" oifname \"lan\" ip daddr 10.0.0.5 ct status dnat accept",
            "type filter hook input priority filter; policy drop;",
        ] {
            assert!(lines.contains(&line), "{line} in {script}");
        }
    }

    #[test]
    fn the_uplink_table_defaults_and_unknown_fields_are_refused() {
        let uplink: UplinkConfig =
            serde_json::from_str(r#"{"device": "ext0", "gateway": "203.0.113.1"}"#).expect("ok");
        assert_eq!((uplink.device.as_str(), uplink.table), ("ext0", DEFAULT_TABLE));
        let typo = r#"{"device": "ext0", "gateway": "203.0.113.1", "gw": "x"}"#;
        assert!(serde_json::from_str::<UplinkConfig>(typo).is_err());
    }

    #[tokio::test]
    async fn a_public_ip_without_an_uplink_is_refused() {
        let public = PublicIps::new(None, Some("dpu0".into()), "dpu0").expect("no uplink");
        let err = public.check(&spec()).expect_err("refused");
        assert!(matches!(err, DriverError::FailedPrecondition(_)), "{err}");
        assert!(err.to_string().contains("this DPU has no uplink configured;"), "{err}");
        assert!(public.check(&PortSpec { public_ip: None, ..spec() }).is_ok());
        let bad =
            UplinkConfig { device: "eth0\"; drop".into(), gateway: Ipv4Addr::LOCALHOST, table: 1 };
        assert!(PublicIps::new(Some(bad), None, "dpu0").is_err());
    }
}
