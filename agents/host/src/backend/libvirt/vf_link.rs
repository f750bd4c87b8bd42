//! The cable between a guest's NIC and its DPU port on a host without SR-IOV: the DPU
//! agent's Linux backend stands a veth pair in for each port's VF (the VM side named by
//! `agent_common::port_names::vm_device_name`), in the DPU's network namespace. libvirt gives
//! the guest a tap (`<interface type='ethernet'>`, named by `guest_tap_name`) in the host's
//! namespace; once QEMU holds it, it is moved into the DPU's namespace and wired to the VF
//! stand-in both ways with tc (an ingress `mirred` redirect on each), so every frame the
//! guest sends leaves through the port's representor and every frame for it arrives.
//!
//! The tap lives only as long as QEMU: a stopped guest's wiring disappears with it, and the
//! next start wires the new tap. Blocking (runs `ip` and `tc`).

use std::path::Path;
use std::process::Command;

use agent_common::DriverError;
use agent_common::port_names::{TAG_LEN, guest_tap_name, vm_device_name};

use super::files::run;

/// Moves each tap in `taps` (named by [`guest_tap_name`]) into `netns` and wires it to its
/// port's VF stand-in there. Idempotent: a tap already moved is wired again.
pub fn connect(netns: &str, taps: &[String]) -> Result<(), DriverError> {
    for tap in taps {
        let vf = vm_device_name(tap.trim_start_matches("tp"));
        if Path::new("/sys/class/net").join(tap).exists() {
            run(ip(None, &["link", "set", "dev", tap, "netns", netns]), "ip link set netns")?;
        } else if !exists(netns, tap) {
            return Err(DriverError::Internal(format!(
                "the guest's NIC {tap} is neither in this namespace nor in {netns}; libvirt \
                 makes it when the domain starts"
            )));
        }
        if !exists(netns, &vf) {
            return Err(DriverError::FailedPrecondition(format!(
                "the port's VF stand-in {vf} is not in network namespace {netns}; the DPU agent \
                 makes it when the port is attached, attach the port first"
            )));
        }
        for device in [tap.as_str(), vf.as_str()] {
            run(ip(Some(netns), &["link", "set", "dev", device, "up"]), "ip link set up")?;
        }
        redirect(netns, tap, &vf)?;
        redirect(netns, &vf, tap)?;
    }
    Ok(())
}

/// The taps of a domain, read from its XML (`<target dev='tp…'/>` of its interfaces).
pub fn taps_in(domain_xml: &str) -> Vec<String> {
    domain_xml
        .match_indices("<target dev='tp")
        .filter_map(|(at, needle)| {
            let rest = &domain_xml[at + needle.len() - 2..];
            let name = &rest[..rest.find('\'')?];
            // Only names this module could have made: `tp` + a port tag.
            (name.len() == 2 + TAG_LEN && name == guest_tap_name(&name[2..]))
                .then(|| name.to_owned())
        })
        .collect()
}

/// Everything arriving on `from` leaves through `to`: an ingress qdisc with one catch-all
/// u32 filter (the kernels here have u32 but not matchall) redirecting to `to`. Replaced
/// whole, so a second run leaves one filter.
fn redirect(netns: &str, from: &str, to: &str) -> Result<(), DriverError> {
    // Absent the first time; its removal takes the old filter with it.
    let _ = tc(netns, &["qdisc", "del", "dev", from, "ingress"]).output();
    run(tc(netns, &["qdisc", "add", "dev", from, "ingress"]), "tc qdisc add ingress")?;
    let filter = [
        "filter", "add", "dev", from, "ingress", "pref", "1", "protocol", "all", "u32", "match",
        "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", to,
    ];
    run(tc(netns, &filter), "tc filter add (mirred redirect)").map(drop)
}

fn exists(netns: &str, device: &str) -> bool {
    ip(Some(netns), &["link", "show", "dev", device]).output().is_ok_and(|o| o.status.success())
}

fn ip(netns: Option<&str>, args: &[&str]) -> Command {
    let mut command = Command::new("ip");
    if let Some(netns) = netns {
        command.args(["-n", netns]);
    }
    command.args(args);
    command
}

fn tc(netns: &str, args: &[&str]) -> Command {
    let mut command = Command::new("tc");
    command.args(["-n", netns]).args(args);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_are_read_from_the_domain_xml() {
        let xml = "<interface type='ethernet'>\n  <mac address='52:54:00:aa:00:10'/>\n  \
                   <target dev='tp123456789ab'/>\n</interface>\n<target dev='vda' bus='virtio'/>\n\
                   <target dev='tpevil;rm'/>\n<interface><target dev='tp0000000000c'/>";
        assert_eq!(taps_in(xml), ["tp123456789ab", "tp0000000000c"]);
    }
}
