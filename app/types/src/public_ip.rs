//! Public IPs: provider pools of public IPv4 addresses, and the addresses tenants take from
//! them and attach to an instance (mapped one to one to its private address on its DPU).

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::ids::{InstanceUuid, PublicIpPoolUuid, PublicIpUuid};
use crate::network::{Ipv4Net, check_name};

/// The widest and narrowest pools: a /16 is 65,534 addresses, a /30 two.
pub const POOL_PREFIXES: std::ops::RangeInclusive<u8> = 16..=30;

/// A new pool of public addresses (provider admins).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicIpPoolCreate {
    pub name: String,
    /// An IPv4 network, e.g. 203.0.113.0/24; its network and broadcast addresses are never
    /// handed out.
    pub cidr: String,
}

impl PublicIpPoolCreate {
    /// The network, once name and CIDR are valid.
    pub fn validate(&self) -> Result<Ipv4Net, Error> {
        check_name(&self.name, "pool")?;
        let net: Ipv4Net = self.cidr.parse()?;
        if !POOL_PREFIXES.contains(&net.prefix()) {
            return Err(Error::invalid(format!(
                "A pool is a /{} to a /{}; {net} is not.",
                POOL_PREFIXES.start(),
                POOL_PREFIXES.end()
            )));
        }
        let first = net.network();
        let reserved = first.octets()[0] == 0 || first.octets()[0] >= 240;
        if first.is_loopback() || first.is_multicast() || first.is_link_local() || reserved {
            return Err(Error::invalid(format!(
                "{net} cannot carry public addresses (loopback, link-local, multicast or \
                 reserved); give the network your uplink routes to this cloud."
            )));
        }
        Ok(net)
    }
}

/// The addresses of `net` a pool hands out: all but the network and broadcast addresses.
pub fn pool_addresses(net: Ipv4Net) -> impl Iterator<Item = std::net::Ipv4Addr> {
    (1..net.size().saturating_sub(1)).filter_map(move |n| net.nth(n))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicIpPoolView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: PublicIpPoolUuid,
    pub name: String,
    pub cidr: String,
    /// Addresses the pool hands out in all.
    pub size: u64,
    /// Addresses tenants hold.
    pub allocated: u64,
    /// RFC 3339.
    pub created_at: String,
}

/// A tenant's request for a public IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicIpCreate {
    pub name: String,
    /// The pool to take it from; the first with a free address when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub pool: Option<PublicIpPoolUuid>,
}

impl PublicIpCreate {
    pub fn validate(&self) -> Result<(), Error> {
        check_name(&self.name, "public IP")
    }
}

/// Which instance a public IP goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicIpAttach {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub instance: InstanceUuid,
}

/// Where a public IP stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum PublicIpState {
    /// Held by the tenant, attached to nothing.
    Free,
    /// Attached in the database; the instance's DPU has not confirmed it yet (or the
    /// instance has no port yet).
    Attaching,
    /// Mapped to the instance's address on its DPU.
    Attached,
}

impl PublicIpState {
    pub fn as_str(self) -> &'static str {
        match self {
            PublicIpState::Free => "free",
            PublicIpState::Attaching => "attaching",
            PublicIpState::Attached => "attached",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicIpView {
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
    pub id: PublicIpUuid,
    pub name: String,
    pub address: String,
    pub pool: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Uuid))]
    pub instance: Option<InstanceUuid>,
    pub instance_name: Option<String>,
    /// The instance's private address it maps to.
    pub private_ip: Option<String>,
    pub state: PublicIpState,
    /// Why the instance's DPU refused the mapping, while `attaching` (it is retried).
    pub message: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, cidr: &str) -> PublicIpPoolCreate {
        PublicIpPoolCreate { name: name.into(), cidr: cidr.into() }
    }

    #[test]
    fn pools_are_validated_with_a_sentence() {
        assert!(pool("internet", "203.0.113.0/24").validate().is_ok());
        for (name, cidr, says) in [
            ("Internet", "203.0.113.0/24", "Name the pool"),
            ("internet", "203.0.113.0/31", "A pool is a /16 to a /30"),
            ("internet", "203.0.0.0/8", "A pool is a /16 to a /30"),
            ("internet", "127.0.0.0/24", "cannot carry public addresses"),
            ("internet", "224.0.0.0/24", "cannot carry public addresses"),
            ("internet", "169.254.0.0/16", "cannot carry public addresses"),
            ("internet", "203.0.113.1/24", "host bits set"),
            ("internet", "not-a-net", "is not an IPv4 network"),
        ] {
            let err = pool(name, cidr).validate().expect_err(cidr).to_string();
            assert!(err.contains(says), "{cidr}: {err}");
        }
    }

    #[test]
    fn a_pool_hands_out_all_but_network_and_broadcast() {
        let net: Ipv4Net = "203.0.113.0/30".parse().expect("net");
        let all: Vec<String> = pool_addresses(net).map(|a| a.to_string()).collect();
        assert_eq!(all, ["203.0.113.1", "203.0.113.2"]);
    }
}
