//! BGP EVPN state read back from FRR's JSON output: underlay peers, VNIs with their remote
//! VTEPs, and the routes a tenant VRF learned from other leaves (EVPN type-5).

use std::collections::BTreeMap;
use std::net::IpAddr;

use agent_common::DriverError;
use serde::Deserialize;

pub use crate::model::{EvpnStatus, PeerStatus, VniKind, VniStatus};

/// A route in a tenant VRF learned from another leaf.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteRoute {
    pub prefix: String,
    /// The remote VTEPs it was learned from.
    pub vteps: Vec<String>,
}

fn unreadable(what: &str, e: impl std::fmt::Display) -> DriverError {
    DriverError::Internal(format!("cannot read FRR's `{what}`: {e}"))
}

#[derive(Deserialize)]
struct Summary {
    #[serde(default)]
    peers: BTreeMap<String, Peer>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Peer {
    state: String,
    /// Absent while the session is down (older FRR) or when FRR does not count.
    #[serde(default)]
    pfx_rcd: Option<u64>,
}

/// Parses `show bgp l2vpn evpn summary json`. Without an EVPN-enabled instance FRR prints
/// `{}`, which is no peers.
pub fn parse_peers(json: &str) -> Result<Vec<PeerStatus>, DriverError> {
    let summary: Summary =
        serde_json::from_str(json).map_err(|e| unreadable("show bgp l2vpn evpn summary", e))?;
    Ok(summary
        .peers
        .into_iter()
        .map(|(address, p)| PeerStatus { address, state: p.state, prefixes_received: p.pfx_rcd })
        .collect())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Vni {
    vni: u32,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    tenant_vrf: String,
    #[serde(default)]
    vxlan_if: String,
    #[serde(default)]
    remote_vteps: Vec<String>,
}

/// Parses `show evpn vni json`: an object keyed by VNI.
pub fn parse_vnis(json: &str) -> Result<Vec<VniStatus>, DriverError> {
    let by_vni: BTreeMap<String, Vni> =
        serde_json::from_str(json).map_err(|e| unreadable("show evpn vni", e))?;
    let mut vnis: Vec<VniStatus> = by_vni
        .into_values()
        .map(|v| VniStatus {
            vni: v.vni,
            kind: if v.kind == "L3" { VniKind::L3 } else { VniKind::L2 },
            vrf: v.tenant_vrf,
            vxlan_if: Some(v.vxlan_if).filter(|i| !i.is_empty() && i != "None"),
            remote_vteps: v.remote_vteps,
        })
        .collect();
    vnis.sort_by_key(|v| v.vni);
    Ok(vnis)
}

#[derive(Deserialize)]
struct VrfTable {
    #[serde(default)]
    routes: BTreeMap<String, Vec<Path>>,
}

#[derive(Deserialize)]
struct Path {
    #[serde(default)]
    nexthops: Vec<Nexthop>,
}

#[derive(Deserialize)]
struct Nexthop {
    ip: String,
}

/// Parses `show bgp vrf X ipv4|ipv6 unicast json` into the routes with a path through a
/// remote VTEP (a local route's next hop is unspecified, `0.0.0.0` or `::`). A VRF without
/// a BGP instance prints a warning object, which is no routes.
pub fn parse_remote_routes(json: &str) -> Result<Vec<RemoteRoute>, DriverError> {
    let table: VrfTable =
        serde_json::from_str(json).map_err(|e| unreadable("show bgp vrf X unicast", e))?;
    let remote = |ip: &str| ip.parse::<IpAddr>().is_ok_and(|a| !a.is_unspecified());
    Ok(table
        .routes
        .into_iter()
        .filter_map(|(prefix, paths)| {
            let mut vteps: Vec<String> = paths
                .into_iter()
                .flat_map(|p| p.nexthops)
                .map(|n| n.ip)
                .filter(|ip| remote(ip))
                .collect();
            vteps.sort();
            vteps.dedup();
            (!vteps.is_empty()).then_some(RemoteRoute { prefix, vteps })
        })
        .collect())
}

/// Whether `show vrf` lists VRF `vrf` as active (`vrf X id N …`; an inactive one prints
/// `vrf X inactive`): zebra then follows its devices.
pub fn vrf_active(show_vrf: &str, vrf: &str) -> bool {
    show_vrf.lines().any(|l| {
        l.trim_start()
            .strip_prefix("vrf ")
            .and_then(|r| r.strip_prefix(vrf))
            .is_some_and(|r| r.starts_with(" id "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_peers() {
        let json = r#"{"routerId":"10.255.0.1","as":65001,"peers":{
            "192.168.1.2":{"hostname":"leaf2","remoteAs":65002,"state":"Established","pfxRcd":2}}}"#;
        let peers = parse_peers(json).unwrap();
        assert_eq!(
            peers,
            [PeerStatus {
                address: "192.168.1.2".into(),
                state: "Established".into(),
                prefixes_received: Some(2)
            }]
        );
        assert!(parse_peers("{}").unwrap().is_empty());
        let down = r#"{"peers":{"swp1":{"remoteAs":65002,"state":"Active"}}}"#;
        assert_eq!(parse_peers(down).unwrap()[0].prefixes_received, None);
    }

    #[test]
    fn test_vnis() {
        // FRR 8.4.4, as printed in the lab.
        let json = r#"{
          "100":{"vni":100,"type":"L2","vxlanIf":"vxlan100","numMacs":0,"numArpNd":0,
                 "numRemoteVteps":1,"tenantVrf":"t1","remoteVteps":["10.255.0.2"]},
          "4001":{"vni":4001,"vxlanIf":"vxlan4001","numMacs":0,"numArpNd":0,
                  "numRemoteVteps":"n/a","type":"L3","tenantVrf":"t1"}}"#;
        let status = EvpnStatus { vnis: parse_vnis(json).unwrap(), ..EvpnStatus::default() };
        assert_eq!(
            status.vni(100),
            Some(&VniStatus {
                vni: 100,
                kind: VniKind::L2,
                vrf: "t1".into(),
                vxlan_if: Some("vxlan100".into()),
                remote_vteps: vec!["10.255.0.2".into()]
            })
        );
        assert_eq!(status.vni(4001).map(|v| v.kind), Some(VniKind::L3));
        let unbound = r#"{"4001":{"vni":4001,"vxlanIf":"None","type":"L3","tenantVrf":"t1"}}"#;
        assert_eq!(parse_vnis(unbound).unwrap()[0].vxlan_if, None);
        assert!(parse_vnis("{}").unwrap().is_empty());
    }

    #[test]
    fn test_vrf_active() {
        let text = "netns-based vrfs\nvrf t1 id 1 netns /run/netns/t1 (configured)\nvrf t2 inactive (configured)\n";
        assert!(vrf_active(text, "t1"));
        assert!(!vrf_active(text, "t2"));
        assert!(!vrf_active(text, "t"));
        assert!(vrf_active("vrf red id 3 table 1001\n", "red"));
    }

    #[test]
    fn test_remote_routes_skip_local_paths() {
        let json = r#"{"vrfId":1,"vrfName":"t1","routes":{
          "10.1.0.0/24":[
            {"valid":true,"nexthops":[{"ip":"10.255.0.2","hostname":"leaf2","afi":"ipv4","used":true}]},
            {"valid":true,"bestpath":true,"nexthops":[{"ip":"0.0.0.0","afi":"ipv4","used":true}]}],
          "10.3.0.0/24":[{"valid":true,"nexthops":[{"ip":"0.0.0.0"}]}]}}"#;
        assert_eq!(
            parse_remote_routes(json).unwrap(),
            [RemoteRoute { prefix: "10.1.0.0/24".into(), vteps: vec!["10.255.0.2".into()] }]
        );
        assert!(parse_remote_routes(r#"{"warning":"BGP instance not found"}"#).unwrap().is_empty());
    }
}
