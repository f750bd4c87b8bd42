//! Parsing of the identifiers and addresses that cross the agent boundary. Each function takes
//! the field's name so its error says exactly which field is wrong and what a good value is.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::DriverError;

/// The largest VXLAN network identifier (24 bits); 0 is reserved.
pub const VNI_MAX: u32 = 16_777_215;

fn invalid(message: String) -> DriverError {
    DriverError::InvalidArgument(message)
}

/// Accepts a UUID in its hyphenated text form and returns it lowercased, so that ids differing
/// only in case are the same idempotency key.
pub fn uuid(field: &str, value: &str) -> Result<String, DriverError> {
    let bytes = value.as_bytes();
    let well_formed = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if well_formed {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(invalid(format!("{field} {value:?} is not a UUID; send it as 8-4-4-4-12 hex digits")))
    }
}

/// Accepts a VXLAN network identifier, 1..=16777215.
pub fn vni(field: &str, value: u32) -> Result<u32, DriverError> {
    if (1..=VNI_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(format!("{field} {value} is outside the VXLAN range; use 1 to {VNI_MAX}")))
    }
}

/// Accepts a unicast MAC address written as six colon-separated hex octets and returns it
/// lowercased. Multicast and all-zero addresses cannot name a port.
pub fn unicast_mac(field: &str, value: &str) -> Result<String, DriverError> {
    let octets: Vec<&str> = value.split(':').collect();
    let parsed: Option<Vec<u8>> = (octets.len() == 6)
        .then(|| {
            octets
                .iter()
                .map(|o| (o.len() == 2).then(|| u8::from_str_radix(o, 16).ok()).flatten())
                .collect()
        })
        .flatten();
    let Some(parsed) = parsed else {
        return Err(invalid(format!(
            "{field} {value:?} is not a MAC address; write six hex octets like 02:00:00:00:00:01"
        )));
    };
    if parsed[0] & 1 == 1 {
        return Err(invalid(format!(
            "{field} {value} is a multicast address; a port needs a unicast MAC (even first octet)"
        )));
    }
    if parsed.iter().all(|o| *o == 0) {
        return Err(invalid(format!("{field} is all zeros; send the port's real MAC address")));
    }
    Ok(value.to_ascii_lowercase())
}

/// Accepts a single IPv4 or IPv6 address (no prefix length).
pub fn ip_address(field: &str, value: &str) -> Result<IpAddr, DriverError> {
    IpAddr::from_str(value).map_err(|_| {
        invalid(format!(
            "{field} {value:?} is not an IP address; send one like 10.0.0.5 or fd00::5"
        ))
    })
}

/// An IP network: an address whose bits past the prefix length are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether the two networks share any address (one contains the other).
    pub fn overlaps(&self, other: &Cidr) -> bool {
        let shorter = self.prefix.min(other.prefix);
        match (self.network, other.network) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                mask_v4(u32::from(a), shorter) == mask_v4(u32::from(b), shorter)
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                mask_v6(u128::from(a), shorter) == mask_v6(u128::from(b), shorter)
            }
            _ => false,
        }
    }

    /// Whether `addr` lies inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let host = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        self.overlaps(&Cidr { network: addr, prefix: host })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

fn mask_v4(bits: u32, prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { bits & (u32::MAX << (32 - u32::from(prefix))) }
}

fn mask_v6(bits: u128, prefix: u8) -> u128 {
    if prefix == 0 { 0 } else { bits & (u128::MAX << (128 - u32::from(prefix))) }
}

/// The network of `prefix` bits that holds `addr` (the prefix is capped at the family's
/// length).
pub fn cidr_of(addr: IpAddr, prefix: u8) -> Cidr {
    match addr {
        IpAddr::V4(v4) => {
            let prefix = prefix.min(32);
            let network = std::net::Ipv4Addr::from(mask_v4(u32::from(v4), prefix));
            Cidr { network: network.into(), prefix }
        }
        IpAddr::V6(v6) => {
            let prefix = prefix.min(128);
            let network = std::net::Ipv6Addr::from(mask_v6(u128::from(v6), prefix));
            Cidr { network: network.into(), prefix }
        }
    }
}

/// Accepts a network in CIDR notation (`10.1.0.0/24`, `fd00::/64`) whose host bits are zero.
pub fn cidr(field: &str, value: &str) -> Result<Cidr, DriverError> {
    let shape = || {
        invalid(format!(
            "{field} {value:?} is not a CIDR network; write it like 10.1.0.0/24 or fd00::/64"
        ))
    };
    let (addr, prefix) = value.split_once('/').ok_or_else(shape)?;
    let network = IpAddr::from_str(addr).map_err(|_| shape())?;
    let prefix: u8 = prefix.parse().map_err(|_| shape())?;
    let max = if network.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(invalid(format!(
            "{field} {value} has prefix length {prefix}, longer than {max}; use at most /{max}"
        )));
    }
    let masked = cidr_of(network, prefix).network;
    if masked != network {
        return Err(invalid(format!(
            "{field} {value} has host bits set; write the network as {masked}/{prefix}"
        )));
    }
    Ok(Cidr { network, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_uuid() {
        assert_eq!(
            uuid("vm_id", "3F2A0C1E-0000-4000-8000-00000000000A").as_deref(),
            Ok("3f2a0c1e-0000-4000-8000-00000000000a")
        );
        for bad in
            ["", "vm-1", "3f2a0c1e00004000800000000000000a", "3f2a0c1e-0000-4000-8000-00000000000g"]
        {
            let err = uuid("vm_id", bad).expect_err(bad);
            assert!(err.to_string().starts_with("vm_id "), "{err}");
        }
    }

    #[test]
    fn test_vni_bounds() {
        assert!(vni("vni", 0).is_err());
        assert_eq!(vni("vni", 1), Ok(1));
        assert_eq!(vni("vni", VNI_MAX), Ok(VNI_MAX));
        assert!(vni("vni", VNI_MAX + 1).is_err());
    }

    #[test]
    fn test_mac() {
        assert_eq!(unicast_mac("mac", "02:AB:00:00:00:01").as_deref(), Ok("02:ab:00:00:00:01"));
        for bad in
            ["", "02:ab:00:00:00", "02-ab-00-00-00-01", "02:ab:00:00:00:0g", "2:ab:00:00:00:01"]
        {
            assert!(unicast_mac("mac", bad).is_err(), "{bad}");
        }
        let multicast = unicast_mac("mac", "01:00:5e:00:00:01").expect_err("multicast");
        assert!(multicast.to_string().contains("multicast"));
        assert!(unicast_mac("mac", "00:00:00:00:00:00").is_err());
    }

    #[test]
    fn test_cidr_parse_and_overlap() {
        let a = cidr("cidr", "10.1.0.0/16").expect("valid");
        let b = cidr("cidr", "10.1.2.0/24").expect("valid");
        let c = cidr("cidr", "10.2.0.0/16").expect("valid");
        let v6 = cidr("cidr", "fd00::/64").expect("valid");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
        assert!(!a.overlaps(&v6));
        assert!(cidr("cidr", "0.0.0.0/0").expect("any").overlaps(&c));
        assert!(a.contains("10.1.200.3".parse().expect("ip")));
        assert!(!c.contains("10.1.200.3".parse().expect("ip")));
        let host_bits = cidr("cidr", "10.1.0.5/16").expect_err("host bits");
        assert!(host_bits.to_string().contains("10.1.0.0/16"), "{host_bits}");
        assert!(cidr("cidr", "10.1.0.0/33").is_err());
        assert!(cidr("cidr", "10.1.0.0").is_err());
        assert!(cidr("cidr", "fd00::/129").is_err());
    }

    #[test]
    fn test_ip_address() {
        assert!(ip_address("ip", "10.0.0.5").is_ok());
        assert!(ip_address("ip", "fd00::5").is_ok());
        assert!(ip_address("ip", "10.0.0.5/24").is_err());
        assert!(ip_address("ip", "").is_err());
    }
}
