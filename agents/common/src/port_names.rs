//! Device names of a tenant port, derived from its id: the naming contract between the DPU
//! agent (which makes the port's devices) and the host agent (which connects the guest's NIC
//! to them). Interface names are at most 15 bytes, so a port is named by a tag of
//! [`TAG_LEN`] hex digits of its id rather than the id.

/// How many hex digits of the port id name its devices and chains: the *last* ones, which are
/// random in UUID v4 and v7 alike (v7's first digits are a timestamp, shared by ports made in
/// the same millisecond).
pub const TAG_LEN: usize = 11;

/// The VM-side device of a port, `vf` + the port's tag (13 bytes). Without SR-IOV the port
/// is a veth pair standing in for a VF; this end carries the port's MAC and is what the
/// guest's NIC is connected to.
pub fn vm_device_name(port_id: &str) -> String {
    format!("vf{}", port_tag(port_id))
}

/// The port's representor, `pr` + the tag: the end the DPU enslaves to the VNI's bridge.
pub fn representor_name(port_id: &str) -> String {
    format!("pr{}", port_tag(port_id))
}

/// The guest NIC's tap device on the host, `tp` + the tag: made by libvirt, then moved next
/// to the port's VF stand-in and wired to it (see the host agent's `vf_link`).
pub fn guest_tap_name(port_id: &str) -> String {
    format!("tp{}", port_tag(port_id))
}

/// The last [`TAG_LEN`] hex digits of the port id (its only characters used, so a name can
/// never carry anything but hex into a command or ruleset).
pub fn port_tag(port_id: &str) -> String {
    let hex: Vec<char> = port_id.chars().filter(char::is_ascii_hexdigit).collect();
    hex[hex.len().saturating_sub(TAG_LEN)..].iter().map(char::to_ascii_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_an_interface_name_and_use_the_random_end_of_the_id() {
        let id = "0190c2f4-7a1b-7c3d-8e9f-0123456789ab";
        assert_eq!(port_tag(id), "123456789ab");
        assert_eq!(vm_device_name(id), "vf123456789ab");
        assert_eq!(representor_name(id), "pr123456789ab");
        assert_eq!(guest_tap_name(id), "tp123456789ab");
        for name in [vm_device_name(id), representor_name(id), guest_tap_name(id)] {
            assert!(name.len() <= 15, "{name}");
        }
    }
}
