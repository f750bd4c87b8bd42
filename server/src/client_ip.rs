//! The client's address for throttling and the audit log. Behind a reverse proxy every
//! visitor arrives from the proxy's address, so `X-Forwarded-For` is believed, but only
//! when the connection comes from a proxy the operator named (`--trusted-proxies`), and
//! only as far back as the chain stays within those proxies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

pub use portal_app::ssr::ClientIp;

/// An address or a network (`10.0.0.0/8`, `::1`) of trusted proxies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl std::str::FromStr for Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("\"{s}\" is not an address or network; write e.g. 10.0.0.5 or 10.0.0.0/8");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => {
                (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p.parse::<u8>().map_err(|_| bad())?))
            }
            None => (s.trim().parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Net { addr, prefix })
    }
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, true),
            IpAddr::V6(v6) => (u128::from(v6), false),
        };
        let ((net, net_v4), (ip, ip_v4)) = (bits(self.addr), bits(ip.to_canonical()));
        // IPv4 addresses sit in the top 32 bits, so one mask fits both families.
        let prefix = u32::from(self.prefix);
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        net_v4 == ip_v4 && net & mask == ip & mask
    }
}

/// The client of a connection from `peer` that sent `forwarded` (X-Forwarded-For values):
/// the rightmost address not belonging to a trusted proxy.
pub fn client_of(peer: IpAddr, forwarded: &[&str], trusted: &[Net]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let chain = forwarded.iter().flat_map(|v| v.split(',')).map(str::trim).collect::<Vec<_>>();
    let mut client = peer;
    for hop in chain.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    client
}

/// Middleware: works out [`ClientIp`] once for every request.
pub async fn resolve(
    State(trusted): State<Arc<Vec<Net>>>,
    mut req: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied() {
        let forwarded: Vec<&str> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = client_of(peer.ip(), &forwarded, &trusted);
        req.extensions_mut().insert(ClientIp(client));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Net> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let proxy: IpAddr = "192.0.2.10".parse().unwrap();
        let visitor: IpAddr = "203.0.113.7".parse().unwrap();
        let trusted = nets(&["192.0.2.0/24"]);
        assert_eq!(client_of(proxy, &["203.0.113.7"], &trusted), visitor);
        // A visitor cannot choose their address by sending the header themselves.
        assert_eq!(client_of(visitor, &["198.51.100.1"], &trusted), visitor);
        assert_eq!(client_of(proxy, &["198.51.100.1"], &[]), proxy, "no proxy trusted");
        // A forged entry left of the proxy's own is not believed.
        assert_eq!(client_of(proxy, &["198.51.100.1, 203.0.113.7"], &trusted), visitor);
        assert_eq!(client_of(proxy, &["203.0.113.7, 192.0.2.11"], &trusted), visitor);
        assert_eq!(client_of(proxy, &["not-an-address"], &trusted), proxy);
        assert!("10.0.0.0/33".parse::<Net>().is_err());
        assert!("::1".parse::<Net>().unwrap().contains("::1".parse().unwrap()));
    }
}
