//! [`LinuxDpuBackend`]: the DPU's device layer on Linux, over netlink and nftables, in the
//! DPU's network namespace (or the agent's own).
//!
//! - Per VNI ([`links`]): a bridge `br<vni>` with a VXLAN port `vx<vni>` (this DPU's VTEP,
//!   UDP 4789, no learning, neighbour suppression), EVPN-style; remote VTEPs from the config
//!   get static flood entries, so two DPUs carry a VNI between them without a BGP speaker.
//! - Per port: a veth pair standing in for the VF (no SR-IOV here): the representor on the
//!   VNI's bridge and the VM side with the port's MAC, named by [`names::vm_device_name`].
//! - Security groups ([`firewall`]): nftables, one transaction per change, with counters
//!   readable through [`LinuxDpuBackend::nft_counters`] (in detail) and the trait's
//!   `counters`.
//! - Public IPs ([`public`]): a port with one gets a small router namespace of its own,
//!   with a leg on the VNI's bridge holding the subnet's gateway (seen by that port's VM
//!   only) and a leg towards the DPU's uplink holding the public address, doing one-to-one
//!   NAT between the two; the DPU answers for the public address on the uplink by proxy
//!   ARP and routes it to the router in a table of its own. Without an uplink in the config
//!   a port with a public IP is refused. Nothing answers a subnet's gateway for a port
//!   without a public IP (in the real design the leaf's anycast gateway does).
//!
//! The backend starts with no ports (like the manager above it): starting resets its nftables
//! tables, which cuts off every representor left from a previous run until its port is
//! ensured again, and deletes the NAT routers of this DPU (with their routes and rules).
//! Other devices left behind are adopted by the next attach.
//!
//! The underlay MTU must leave room for VXLAN's 50 bytes, or large guest frames are dropped.

pub mod counters;
mod firewall;
mod links;
pub mod names;
mod netns;
mod nft;
pub mod public;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use agent_common::DriverError;

use self::counters::PortCounters;
use self::firewall::PortFirewall;
use self::links::Links;
use self::nft::Nft;
pub use self::public::UplinkConfig;
use self::public::{PortRouter, PublicIps};
use super::DpuBackend;
use crate::model::{DpuDescription, PortSpec, PortTraffic, SecurityRule};

/// The `[backend.linux]` table of the `dpu-agent` config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinuxDpuConfig {
    /// The DPU's static facts; `vtep_ip` (IPv4) is the local end of every VXLAN device.
    pub dpu: DpuDescription,
    /// The network namespace (`ip netns add NAME`) the DPU's devices live in; the agent's
    /// own when absent.
    #[serde(default)]
    pub netns: Option<String>,
    /// Remote VTEPs every VNI floods to (static head-end replication, without EVPN).
    #[serde(default)]
    pub remote_vteps: Vec<Ipv4Addr>,
    /// The DPU's way to the provider's external network, needed for public IPs (see
    /// [`UplinkConfig`]); without it a port with a public IP is refused.
    #[serde(default)]
    pub uplink: Option<UplinkConfig>,
}

pub struct LinuxDpuBackend {
    description: DpuDescription,
    vtep: Ipv4Addr,
    remote_vteps: Vec<Ipv4Addr>,
    links: Links,
    nft: Nft,
    public: PublicIps,
    /// Held across each whole operation: device changes are serialised, and `ports` is always
    /// what nftables holds.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The conntrack zone of each attached VNI.
    zones: BTreeMap<u32, u16>,
    /// The zone handed out last: zones are given round-robin so a detached VNI's leftover
    /// connection entries are not inherited at once by the next VNI.
    last_zone: u16,
    /// The firewall applied for each attached port.
    ports: BTreeMap<String, PortFirewall>,
    /// How often each attached port's rules were replaced.
    rule_changes: BTreeMap<String, u64>,
    /// The NAT router last set up (`true`) or begun (`false`) for each port with a public IP.
    routers: BTreeMap<String, (PortRouter, bool)>,
}

impl LinuxDpuBackend {
    /// Opens netlink in the configured namespace, turns on br_netfilter there (bridged IP
    /// goes through the `inet` hooks, where conntrack works) and resets the nftables tables.
    /// Errors: `Internal` (no such namespace, not root, a kernel without the features).
    pub async fn start(config: LinuxDpuConfig) -> Result<Self, DriverError> {
        let vtep = config.dpu.vtep_ip.parse().map_err(|_| {
            DriverError::Internal(format!(
                "vtep_ip {} is not an IPv4 address; the Linux backend's VXLAN needs one",
                config.dpu.vtep_ip
            ))
        })?;
        let runtime = tokio::runtime::Handle::current();
        let links = netns::run_in(config.netns.as_deref(), || {
            enable_bridge_netfilter()?;
            Links::connect(&runtime)
        })??;
        let public = PublicIps::new(config.uplink, config.netns.clone(), &config.dpu.dpu_id)?;
        let nft = Nft::new(config.netns.clone());
        nft.apply(&firewall::reset(public.uplink_device())).await?;
        public.start(&links).await?;
        Ok(LinuxDpuBackend {
            description: config.dpu,
            vtep,
            remote_vteps: config.remote_vteps,
            links,
            nft,
            public,
            state: Mutex::new(State::default()),
        })
    }

    /// The port's packet counters in nftables' detail (established apart from the rules).
    /// Errors: `NotFound` for a port not attached here, `Internal` when nft cannot list the
    /// ruleset.
    pub async fn nft_counters(&self, port_id: &str) -> Result<PortCounters, DriverError> {
        let state = self.state.lock().await;
        if !state.ports.contains_key(port_id) {
            return Err(DriverError::NotFound(format!("port {port_id} is not attached here")));
        }
        counters::parse(&self.nft.list_json().await?, port_id)
    }

    async fn apply_port(&self, state: &mut State, port: PortFirewall) -> Result<(), DriverError> {
        let previous = state.ports.get(&port.port_id);
        if previous != Some(&port) {
            self.nft.apply(&firewall::port_apply(&port, previous)).await?;
            state.ports.insert(port.port_id.clone(), port);
        }
        Ok(())
    }
}

#[async_trait]
impl DpuBackend for LinuxDpuBackend {
    async fn hardware(&self) -> Result<DpuDescription, DriverError> {
        Ok(self.description.clone())
    }

    async fn vni_attach(&self, vni: u32) -> Result<(), DriverError> {
        let mut state = self.state.lock().await;
        if !state.zones.contains_key(&vni) {
            let zone = next_zone(&state)?;
            self.nft.apply(&firewall::zone_add(vni, zone)).await?;
            state.zones.insert(vni, zone);
            state.last_zone = zone;
        }
        self.links.vni_attach(vni, self.vtep, &self.remote_vteps).await
    }

    async fn vni_detach(&self, vni: u32) -> Result<(), DriverError> {
        let mut state = self.state.lock().await;
        self.links.vni_detach(vni).await?;
        if state.zones.contains_key(&vni) {
            self.nft.apply(&firewall::zone_remove(vni)).await?;
            state.zones.remove(&vni);
        }
        Ok(())
    }

    /// Programs the firewall first, so the representor is never on the bridge unfiltered,
    /// then the port's NAT router: made or converged with a public IP, deleted without.
    async fn port_attach(&self, spec: &PortSpec) -> Result<(), DriverError> {
        self.public.check(spec)?;
        let router = PortRouter::of(spec);
        let mut state = self.state.lock().await;
        let tag = names::port_tag(&spec.port_id);
        if let Some(other) =
            state.ports.keys().find(|id| **id != spec.port_id && names::port_tag(id) == tag)
        {
            return Err(DriverError::Internal(format!(
                "ports {other} and {} end in the same {} hex digits, which name their devices; \
                 give one of them a new id",
                spec.port_id,
                names::TAG_LEN
            )));
        }
        let rules = state.ports.get(&spec.port_id).map(|p| p.rules.clone()).unwrap_or_default();
        let port = PortFirewall {
            port_id: spec.port_id.clone(),
            vni: spec.vni,
            mac: spec.mac.clone(),
            ip: spec.ip,
            rules,
            routed: router.is_some(),
        };
        self.apply_port(&mut state, port).await?;
        self.links.port_attach(&spec.port_id, spec.vni, &spec.mac).await?;
        match router {
            Some(router) => {
                if state.routers.get(&spec.port_id) != Some(&(router.clone(), true)) {
                    state.routers.insert(spec.port_id.clone(), (router.clone(), false));
                    self.public.attach(&self.links, &router).await?;
                    state.routers.insert(spec.port_id.clone(), (router, true));
                }
            }
            None => {
                if state.routers.contains_key(&spec.port_id) {
                    self.public.detach(&self.links, &spec.port_id).await?;
                    state.routers.remove(&spec.port_id);
                }
            }
        }
        Ok(())
    }

    async fn port_detach(&self, port_id: &str) -> Result<(), DriverError> {
        let mut state = self.state.lock().await;
        self.public.detach(&self.links, port_id).await?;
        state.routers.remove(port_id);
        if let Some(port) = state.ports.get(port_id) {
            self.nft.apply(&firewall::port_remove(port)).await?;
            state.ports.remove(port_id);
            state.rule_changes.remove(port_id);
        }
        self.links.port_detach(port_id).await
    }

    /// Takes effect for new connections at once; established ones go on (see [`firewall`]).
    async fn rules_apply(&self, port_id: &str, rules: &[SecurityRule]) -> Result<(), DriverError> {
        let mut state = self.state.lock().await;
        let Some(port) = state.ports.get(port_id) else {
            return Err(DriverError::Internal(format!(
                "port {port_id} is not attached; the manager must attach it first"
            )));
        };
        let changed = port.rules != rules;
        let port = PortFirewall { rules: rules.to_vec(), ..port.clone() };
        self.apply_port(&mut state, port).await?;
        if changed {
            *state.rule_changes.entry(port_id.to_owned()).or_default() += 1;
        }
        Ok(())
    }

    async fn counters(&self, port_id: &str) -> Result<PortTraffic, DriverError> {
        let state = self.state.lock().await;
        let Some(port) = state.ports.get(port_id) else {
            return Err(DriverError::NotFound(format!("port {port_id} is not attached here")));
        };
        let detail = counters::parse(&self.nft.list_json().await?, port_id)?;
        let changes = state.rule_changes.get(port_id).copied().unwrap_or(0);
        Ok(detail.traffic(port.rules.len(), changes))
    }
}

/// The next free conntrack zone after the last one handed out (zone 0 is everyone's default).
fn next_zone(state: &State) -> Result<u16, DriverError> {
    (1..=u16::MAX)
        .cycle()
        .skip(usize::from(state.last_zone))
        .take(usize::from(u16::MAX))
        .find(|zone| !state.zones.values().any(|used| used == zone))
        .ok_or_else(|| {
            DriverError::ResourceExhausted(format!(
                "all {} conntrack zones are in use; this DPU carries too many VNIs",
                u16::MAX
            ))
        })
}

/// Sends bridged IPv4 and IPv6 through the `inet` hooks in the calling thread's namespace.
fn enable_bridge_netfilter() -> Result<(), DriverError> {
    for family in ["iptables", "ip6tables"] {
        let path = format!("/proc/sys/net/bridge/bridge-nf-call-{family}");
        std::fs::write(&path, "1").map_err(|err| {
            DriverError::Internal(format!(
                "cannot write {path}: {err}; the kernel needs br_netfilter and the agent root"
            ))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_handed_out_round_robin_skipping_those_in_use() {
        let mut state = State::default();
        for vni in [100, 200, 300] {
            let zone = next_zone(&state).expect("zone");
            state.zones.insert(vni, zone);
            state.last_zone = zone;
        }
        assert_eq!(state.zones.values().copied().collect::<Vec<_>>(), [1, 2, 3]);
        state.zones.remove(&200);
        assert_eq!(next_zone(&state), Ok(4), "a freed zone is not reused at once");
        state.last_zone = u16::MAX;
        assert_eq!(next_zone(&state), Ok(2), "after the last zone it wraps to the first free");
    }
}
