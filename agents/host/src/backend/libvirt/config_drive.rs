//! The cloud-init NoCloud config drive: an ISO 9660 image labelled `cidata` holding
//! `meta-data` (instance id, hostname), `user-data` (the spec's, or a `#cloud-config` with
//! the SSH keys) and, for a VM with tenant ports, `network-config` (version 2: each NIC
//! matched by MAC, its address and default route). Written with `genisoimage` (Debian `genisoimage`).

use std::fs;
use std::path::Path;
use std::process::Command;

use agent_common::DriverError;

use super::files::{io_error, run};
use crate::model::VmSpec;

/// `meta-data`: the instance id is the VM id, so cloud-init runs once per VM, not per boot.
pub fn meta_data(spec: &VmSpec) -> String {
    format!("instance-id: {}\nlocal-hostname: {}\n", spec.vm_id, hostname(spec))
}

/// `user-data`: the spec's own if given (any cloud-init format); else a `#cloud-config`
/// with the SSH keys. Keys given alongside custom user data go in `meta-data`'s
/// `public-keys`, which NoCloud also reads.
pub fn user_data(spec: &VmSpec) -> String {
    if !spec.user_data.is_empty() {
        return spec.user_data.clone();
    }
    let mut out = String::from("#cloud-config\n");
    if !spec.ssh_authorized_keys.is_empty() {
        out.push_str("ssh_authorized_keys:\n");
        for key in &spec.ssh_authorized_keys {
            out.push_str(&format!("  - {}\n", yaml_string(key)));
        }
    }
    out
}

/// `network-config` (cloud-init's version 2) for the spec's NICs and GPU fabric NICs (no
/// route beyond their rail subnet: the default route stays with the tenant port); `None`
/// without either, so the guest's own default (DHCP on the first NIC) applies.
pub fn network_config(spec: &VmSpec) -> Option<String> {
    if spec.nics.is_empty() && spec.fabric_nics.is_empty() {
        return None;
    }
    let mut out = String::from("version: 2\nethernets:\n");
    for (i, nic) in spec.nics.iter().enumerate() {
        out.push_str(&format!("  nic{i}:\n    match:\n      macaddress: \"{}\"\n", nic.mac));
        out.push_str(&format!("    addresses:\n      - {}/{}\n", nic.ip, nic.prefix_len));
        if let Some(gateway) = nic.gateway {
            out.push_str(&format!("    routes:\n      - to: default\n        via: {gateway}\n"));
        }
    }
    for nic in &spec.fabric_nics {
        out.push_str(&format!(
            "  rail{}:\n    match:\n      macaddress: \"{}\"\n",
            nic.nic_index, nic.mac
        ));
        out.push_str(&format!("    addresses:\n      - {}/{}\n", nic.ip, nic.prefix_len));
    }
    Some(out)
}

fn meta_data_with_keys(spec: &VmSpec) -> String {
    let mut out = meta_data(spec);
    if !spec.user_data.is_empty() && !spec.ssh_authorized_keys.is_empty() {
        out.push_str("public-keys:\n");
        for key in &spec.ssh_authorized_keys {
            out.push_str(&format!("  - {}\n", yaml_string(key)));
        }
    }
    out
}

/// The spec's hostname, else its name, else `vm-<first 8 of its id>`; reduced to what a
/// hostname may hold.
pub fn hostname(spec: &VmSpec) -> String {
    let wanted = if spec.hostname.is_empty() { &spec.name } else { &spec.hostname };
    let cleaned: String = wanted
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' })
        .take(63)
        .collect();
    let cleaned = cleaned.trim_matches('-').to_owned();
    if cleaned.is_empty() {
        format!("vm-{}", &spec.vm_id.chars().take(8).collect::<String>())
    } else {
        cleaned
    }
}

/// A double-quoted YAML scalar: keys hold spaces and comments, never trust them bare.
fn yaml_string(text: &str) -> String {
    let escaped: String = text
        .chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            '\n' | '\r' => vec![' '],
            c => vec![c],
        })
        .collect();
    format!("\"{escaped}\"")
}

/// Writes the ISO at `path`, replacing any previous one (a redefine may change the keys).
pub fn write(spec: &VmSpec, path: &Path) -> Result<(), DriverError> {
    let staging = path.with_extension("d");
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir_all(&staging).map_err(|e| io_error("create", &staging, &e))?;
    let result = (|| {
        let files = [
            ("meta-data", Some(meta_data_with_keys(spec))),
            ("user-data", Some(user_data(spec))),
            ("network-config", network_config(spec)),
        ];
        let tmp = path.with_extension("iso.tmp");
        let mut genisoimage = Command::new("genisoimage");
        genisoimage.args(["-quiet", "-volid", "cidata", "-joliet", "-rock", "-output"]);
        genisoimage.arg(&tmp);
        for (name, text) in files {
            let Some(text) = text else { continue };
            let file = staging.join(name);
            fs::write(&file, text).map_err(|e| io_error("write", &file, &e))?;
            genisoimage.arg(file);
        }
        run(genisoimage, "genisoimage (config drive)")?;
        fs::rename(&tmp, path).map_err(|e| io_error("move config drive to", path, &e))
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::cpu_vm;

    #[test]
    fn test_default_user_data_carries_the_keys() {
        let spec = VmSpec {
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA a \"b\"".into()],
            ..cpu_vm("00000000-0000-4000-8000-000000000001")
        };
        assert_eq!(
            user_data(&spec),
            "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAA a \\\"b\\\"\"\n"
        );
        let meta = meta_data_with_keys(&spec);
        assert_eq!(
            meta,
            "instance-id: 00000000-0000-4000-8000-000000000001\nlocal-hostname: cpu\n"
        );
    }

    #[test]
    fn test_custom_user_data_is_kept_and_keys_move_to_meta_data() {
        let spec = VmSpec {
            ssh_authorized_keys: vec!["ssh-ed25519 AAAA".into()],
            user_data: "#!/bin/sh\necho hi\n".into(),
            hostname: "Train_Node 1".into(),
            ..cpu_vm("00000000-0000-4000-8000-000000000001")
        };
        assert_eq!(user_data(&spec), "#!/bin/sh\necho hi\n");
        let meta = meta_data_with_keys(&spec);
        assert!(meta.contains("local-hostname: train-node-1\n"), "{meta}");
        assert!(meta.ends_with("public-keys:\n  - \"ssh-ed25519 AAAA\"\n"), "{meta}");
    }

    #[test]
    fn test_network_config_matches_each_nic_by_mac() {
        let nic = |n: u8, gateway| crate::model::GuestNic {
            port_id: format!("0190c2f4-7a1b-7c3d-8e9f-0000000000{n:02x}"),
            mac: format!("52:54:00:aa:00:{n:02x}"),
            ip: std::net::Ipv4Addr::new(10, 1, 0, n),
            prefix_len: 24,
            gateway,
        };
        let spec = cpu_vm("00000000-0000-4000-8000-000000000001");
        assert_eq!(network_config(&spec), None);
        let spec = VmSpec {
            nics: vec![nic(16, Some(std::net::Ipv4Addr::new(10, 1, 0, 1))), nic(17, None)],
            ..spec
        };
        assert_eq!(
            network_config(&spec).unwrap(),
            "version: 2\nethernets:\n  nic0:\n    match:\n      macaddress: \"52:54:00:aa:00:10\"\n    \
             addresses:\n      - 10.1.0.16/24\n    routes:\n      - to: default\n        via: \
             10.1.0.1\n  nic1:\n    match:\n      macaddress: \"52:54:00:aa:00:11\"\n    \
             addresses:\n      - 10.1.0.17/24\n"
        );
        let fabric = crate::model::FabricNic {
            nic_index: 3,
            mac: "02:5a:00:00:01:03".into(),
            ip: std::net::Ipv4Addr::new(100, 64, 48, 2),
            prefix_len: 20,
        };
        let spec = VmSpec { nics: vec![], fabric_nics: vec![fabric], ..spec };
        assert_eq!(
            network_config(&spec).unwrap(),
            "version: 2\nethernets:\n  rail3:\n    match:\n      macaddress: \"02:5a:00:00:01:03\"\n    \
             addresses:\n      - 100.64.48.2/20\n"
        );
    }

    #[test]
    fn test_hostname_falls_back_to_the_vm_id() {
        let spec = VmSpec { name: "---".into(), ..cpu_vm("abcdef01-0000-4000-8000-000000000001") };
        assert_eq!(hostname(&spec), "vm-abcdef01");
    }
}
