//! Device and nftables names derived from VNIs and port ids. A port's own devices are named
//! by `agent_common::port_names`, shared with the host agent.

pub use agent_common::port_names::{TAG_LEN, port_tag, representor_name, vm_device_name};

/// The bridge of a VNI: `br<vni>` (at most 10 bytes for a 24-bit VNI).
pub fn bridge(vni: u32) -> String {
    format!("br{vni}")
}

/// The VXLAN device of a VNI: `vx<vni>`.
pub fn vxlan(vni: u32) -> String {
    format!("vx{vni}")
}

/// The leg of a port's NAT router on the VNI's bridge, in the DPU's namespace: `gw` + tag.
/// Its other end, `lan` in the router's namespace, holds the subnet's gateway address.
pub fn gateway_leg(port_id: &str) -> String {
    format!("gw{}", port_tag(port_id))
}

/// The leg of a port's NAT router towards the uplink, in the DPU's namespace: `pu` + tag.
/// Its other end, `wan` in the router's namespace, holds the public address.
pub fn public_leg(port_id: &str) -> String {
    format!("pu{}", port_tag(port_id))
}

/// What the peer of a router leg is called in the DPU's namespace between its creation and
/// its move into the router's namespace: `gl` / `pl` + tag.
pub fn leg_peer(leg: &str) -> String {
    let tag = &leg[2..];
    if leg.starts_with("gw") { format!("gl{tag}") } else { format!("pl{tag}") }
}

/// The router's devices inside its own namespace (private to it, so not tagged).
pub const ROUTER_LAN: &str = "lan";
pub const ROUTER_WAN: &str = "wan";

/// The network namespace of a port's NAT router: `<scope>.nat<tag>`, where `scope` is the
/// DPU's namespace (or its id without one), so that two DPU agents on one machine, whose
/// namespace names are global, never share one.
pub fn router_netns(scope: &str, port_id: &str) -> String {
    format!("{scope}.nat{}", port_tag(port_id))
}

/// Whether `name` is a router namespace of the DPU `scope` (see [`router_netns`]).
pub fn is_router_netns(scope: &str, name: &str) -> bool {
    name.strip_prefix(scope)
        .and_then(|rest| rest.strip_prefix(".nat"))
        .is_some_and(|tag| tag.len() == TAG_LEN && tag.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A name safe in a file name, an nft string and a command line: the characters of `raw`
/// outside `[A-Za-z0-9_.-]` become `_`.
pub fn sanitized(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_.-".contains(c) { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_names_derive_from_the_port_tag_and_the_dpu() {
        let id = "0190c2f4-7a1b-7c3d-8e9f-0123456789ab";
        assert_eq!(gateway_leg(id), "gw123456789ab");
        assert_eq!(public_leg(id), "pu123456789ab");
        assert_eq!(leg_peer(&gateway_leg(id)), "gl123456789ab");
        assert_eq!(leg_peer(&public_leg(id)), "pl123456789ab");
        for name in [gateway_leg(id), public_leg(id), leg_peer(&public_leg(id))] {
            assert!(name.len() <= 15, "{name}");
        }
        let router = router_netns("dpu0", id);
        assert_eq!(router, "dpu0.nat123456789ab");
        assert!(is_router_netns("dpu0", &router));
        assert!(!is_router_netns("dpu", &router), "another DPU's prefix");
        assert!(!is_router_netns("dpu0", "dpu0.nat123"), "not a whole tag");
        assert!(!is_router_netns("dpu0", &router_netns("dpu01", id)));
        assert_eq!(sanitized("su1/h07 dpu\"0"), "su1_h07_dpu_0");
    }

    #[test]
    fn vni_names_fit_an_interface_name() {
        assert_eq!(bridge(16_777_215), "br16777215");
        assert!(vxlan(16_777_215).len() <= 15);
    }
}
