//! How simulated devices are named and addressed. One place, so the ids in the inventory,
//! the agents file and the switches' cabling always agree.

use std::net::Ipv4Addr;

/// Addresses available in each of the /16 ranges below.
pub const MAX_ADDRESSES: u64 = 65_535;

/// `su1-h07`: unit and host are 1-based.
pub fn host_id(unit: u32, host: u32) -> String {
    format!("su{unit}-h{host:02}")
}

/// The inverse of [`host_id`]; `None` for anything [`host_id`] would not produce.
pub fn parse_host_id(id: &str) -> Option<(u32, u32)> {
    let rest = id.strip_prefix("su")?;
    let (unit, host) = rest.split_once("-h")?;
    let (unit, host) = (unit.parse().ok()?, host.parse().ok()?);
    (unit >= 1 && host >= 1 && host_id(unit, host) == id).then_some((unit, host))
}

/// `su1-h07-dpu0`: DPUs are 0-based within their host.
pub fn dpu_id(host_id: &str, dpu: usize) -> String {
    format!("{host_id}-dpu{dpu}")
}

/// A locally administered MAC for NIC `nic` of host `number` (1-based) in `unit`: `02:5a:`,
/// the unit in two bytes, the host's number less one and the NIC index. Unique across
/// the simulated fleet (at most 65,535 units of 256 hosts with 256 NICs each).
pub fn nic_mac(unit: u32, number: u32, nic: u32) -> String {
    let [_, _, hi, lo] = unit.to_be_bytes();
    let host = number.saturating_sub(1) as u8;
    format!("02:5a:{hi:02x}:{lo:02x}:{host:02x}:{:02x}", nic as u8)
}

/// `su1-leaf3`: the leaf of `rail` in `unit`.
pub fn leaf_id(unit: u32, rail: u32) -> String {
    format!("su{unit}-leaf{rail}")
}

/// The `n`th address (0-based) of a /16 starting at `base`, skipping the network address.
pub fn nth_address(base: Ipv4Addr, n: u64) -> Ipv4Addr {
    // Validation keeps n below MAX_ADDRESSES, so this stays inside the /16.
    Ipv4Addr::from(u32::from(base).wrapping_add((n % MAX_ADDRESSES) as u32 + 1))
}

/// The DPUs' VTEP addresses live in 10.254.0.0/16.
pub const VTEP_BASE: Ipv4Addr = Ipv4Addr::new(10, 254, 0, 0);
/// The leaves' loopbacks live in 10.255.0.0/16.
pub const LOOPBACK_BASE: Ipv4Addr = Ipv4Addr::new(10, 255, 0, 0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_host_ids_round_trip() {
        assert_eq!(host_id(1, 7), "su1-h07");
        assert_eq!(host_id(12, 130), "su12-h130");
        assert_eq!(parse_host_id("su1-h07"), Some((1, 7)));
        assert_eq!(parse_host_id("su12-h130"), Some((12, 130)));
        for bad in ["su1-h7", "su0-h01", "su1-h00", "host1", "su1-h07x", "su-h01"] {
            assert_eq!(parse_host_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn test_addresses() {
        assert_eq!(nth_address(VTEP_BASE, 0), Ipv4Addr::new(10, 254, 0, 1));
        assert_eq!(nth_address(VTEP_BASE, 300), Ipv4Addr::new(10, 254, 1, 45));
    }
}
