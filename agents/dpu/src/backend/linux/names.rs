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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_names_fit_an_interface_name() {
        assert_eq!(bridge(16_777_215), "br16777215");
        assert!(vxlan(16_777_215).len() <= 15);
    }
}
