//! PCI addresses in the sysfs form `DDDD:BB:SS.F` (domain, bus, slot, function).

use std::fmt;

use agent_common::DriverError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u16,
    pub bus: u8,
    pub slot: u8,
    pub function: u8,
}

impl PciAddress {
    /// Parses `0000:1b:00.0`; anything else is `Internal` (the inventory is ours).
    pub fn parse(text: &str) -> Result<PciAddress, DriverError> {
        Self::try_parse(text).ok_or_else(|| {
            DriverError::Internal(format!(
                "PCI address {text:?} is not of the form DDDD:BB:SS.F; fix the host inventory"
            ))
        })
    }

    pub fn try_parse(text: &str) -> Option<PciAddress> {
        let (domain, rest) = text.split_once(':')?;
        let (bus, rest) = rest.split_once(':')?;
        let (slot, function) = rest.split_once('.')?;
        let ok = domain.len() == 4 && bus.len() == 2 && slot.len() == 2 && function.len() == 1;
        let address = PciAddress {
            domain: u16::from_str_radix(domain, 16).ok()?,
            bus: u8::from_str_radix(bus, 16).ok()?,
            slot: u8::from_str_radix(slot, 16).ok()?,
            function: u8::from_str_radix(function, 16).ok()?,
        };
        (ok && address.slot < 32 && address.function < 8).then_some(address)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.slot, self.function)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_parse_and_print() {
        let address = PciAddress::parse("0000:1b:00.0").unwrap();
        assert_eq!((address.bus, address.slot, address.function), (0x1b, 0, 0));
        assert_eq!(address.to_string(), "0000:1b:00.0");
        for bad in ["1b:00.0", "0000:1b:00", "0000:1b:20.0", "0000:zz:00.0", "0000:1b:00.8"] {
            assert!(PciAddress::try_parse(bad).is_none(), "{bad}");
        }
    }
}
