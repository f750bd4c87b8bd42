//! The backend's devices over rtnetlink: per VNI a bridge and its VXLAN port, per tenant port
//! a veth pair (representor on the bridge, VM side with the port's MAC). Every operation is
//! idempotent: a device that exists is adopted, one that is absent is not deleted again.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;

use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoBridgePort, LinkAttribute};
use rtnetlink::packet_route::neighbour::NeighbourFlags;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage};
use rtnetlink::packet_route::rule::{RuleAction, RuleAttribute};
use rtnetlink::{
    Handle, IpVersion, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, LinkVxlan,
    RouteMessageBuilder,
};

use agent_common::DriverError;

use super::names;

/// The IANA VXLAN port.
const VXLAN_PORT: u16 = 4789;
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EADDRNOTAVAIL: i32 = 99;

/// A route as [`Links::routes`] finds it.
pub struct TableRoute {
    pub destination: (Ipv4Addr, u8),
    /// The output device's index.
    pub device: Option<u32>,
    message: RouteMessage,
}

/// A netlink connection, opened in the DPU's network namespace.
pub struct Links {
    handle: Handle,
}

impl Links {
    /// Opens a netlink connection in the calling thread's namespace and drives it on the
    /// current tokio runtime (see [`super::netns::run_in`] for another namespace).
    pub fn connect(runtime: &tokio::runtime::Handle) -> Result<Links, DriverError> {
        let _entered = runtime.enter();
        let (connection, handle, _) = rtnetlink::new_connection()
            .map_err(|err| DriverError::Internal(format!("cannot open a netlink socket: {err}")))?;
        runtime.spawn(connection);
        Ok(Links { handle })
    }

    /// Creates `br<vni>` and `vx<vni>` (VTEP `local`, no learning: the flood list and EVPN
    /// fill the FDB), enslaves the VXLAN device with learning off and neighbour suppression
    /// on, and appends one all-zero FDB entry per remote VTEP (head-end replication, like
    /// `bridge fdb append 00:00:00:00:00:00 dev vx<vni> dst <ip>`).
    pub async fn vni_attach(
        &self,
        vni: u32,
        local: Ipv4Addr,
        remote_vteps: &[Ipv4Addr],
    ) -> Result<(), DriverError> {
        let bridge_name = names::bridge(vni);
        let vxlan_name = names::vxlan(vni);
        let bridge = self.ensure(&bridge_name, LinkBridge::new(&bridge_name).up().build()).await?;
        let vxlan = LinkVxlan::new(&vxlan_name, vni).local(local).port(VXLAN_PORT).learning(false);
        let vxlan = self.ensure(&vxlan_name, vxlan.build()).await?;
        self.set(&vxlan_name, LinkUnspec::new_with_index(vxlan).controller(bridge).up().build())
            .await?;
        let port = LinkBridgePort::new(vxlan)
            .learning(false)
            .append_info_data(InfoBridgePort::NeighSupress(true))
            .build();
        self.handle
            .link()
            .set_port(port)
            .execute()
            .await
            .map_err(|err| failed(&format!("set bridge port options of {vxlan_name}"), &err))?;
        for remote in remote_vteps {
            self.flood_to(vxlan, &vxlan_name, *remote).await?;
        }
        Ok(())
    }

    /// Deletes `vx<vni>` and `br<vni>`.
    pub async fn vni_detach(&self, vni: u32) -> Result<(), DriverError> {
        self.delete(&names::vxlan(vni)).await?;
        self.delete(&names::bridge(vni)).await
    }

    /// Creates the port's veth pair if needed, gives the VM side `mac` (while it is still in
    /// this namespace: a VM may hold it already) and enslaves the representor to `br<vni>`
    /// (re-enslaving it when the port moved to another VNI).
    pub async fn port_attach(&self, port_id: &str, vni: u32, mac: &str) -> Result<(), DriverError> {
        let representor = names::representor_name(port_id);
        let vm_side = names::vm_device_name(port_id);
        let pair = LinkVeth::new(&representor, &vm_side).build();
        let representor_index = self.ensure(&representor, pair).await?;
        if let Some(vm_index) = self.index(&vm_side).await? {
            let address = parse_mac(mac)?;
            self.set(&vm_side, LinkUnspec::new_with_index(vm_index).address(address).up().build())
                .await?;
        }
        let bridge_name = names::bridge(vni);
        let Some(bridge) = self.index(&bridge_name).await? else {
            return Err(DriverError::Internal(format!(
                "bridge {bridge_name} of VNI {vni} is missing; the manager must attach the VNI first"
            )));
        };
        let enslave = LinkUnspec::new_with_index(representor_index).controller(bridge).up();
        self.set(&representor, enslave.build()).await
    }

    /// Deletes the port's veth pair (both ends, wherever the VM side is).
    pub async fn port_detach(&self, port_id: &str) -> Result<(), DriverError> {
        self.delete(&names::representor_name(port_id)).await
    }

    /// The index of the device `name`, `None` when there is none.
    pub async fn index(&self, name: &str) -> Result<Option<u32>, DriverError> {
        Ok(self.lookup(name).await?.map(|(index, _)| index))
    }

    /// The index and MAC address of the device `name`, `None` when there is none.
    pub async fn lookup(&self, name: &str) -> Result<Option<(u32, Vec<u8>)>, DriverError> {
        let mut links = self.handle.link().get().match_name(name.to_owned()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link.map(|link| {
                let mac = link.attributes.iter().find_map(|a| match a {
                    LinkAttribute::Address(mac) => Some(mac.clone()),
                    _ => None,
                });
                (link.header.index, mac.unwrap_or_default())
            })),
            Err(err) if errno(&err) == Some(ENODEV) => Ok(None),
            Err(err) => Err(failed(&format!("look up {name}"), &err)),
        }
    }

    /// Creates the veth pair `name` ⇄ `peer` unless `name` exists; returns `name`'s index.
    pub async fn ensure_veth(&self, name: &str, peer: &str) -> Result<u32, DriverError> {
        self.ensure(name, LinkVeth::new(name, peer).build()).await
    }

    /// Moves the device `name` into the network namespace open as `netns_fd`, renaming it
    /// `new_name` there.
    pub async fn move_to_netns(
        &self,
        name: &str,
        netns_fd: RawFd,
        new_name: &str,
    ) -> Result<(), DriverError> {
        let Some(index) = self.index(name).await? else {
            return Err(DriverError::Unavailable(format!(
                "{name} vanished before its move; retry"
            )));
        };
        let message = LinkUnspec::new_with_index(index).setns_by_fd(netns_fd).name(new_name);
        self.set(name, message.build()).await
    }

    /// Enslaves the device `index` (`name`) to the bridge `bridge` (or to none) and sets it up.
    pub async fn set_up(
        &self,
        name: &str,
        index: u32,
        bridge: Option<u32>,
    ) -> Result<(), DriverError> {
        let message = LinkUnspec::new_with_index(index).up();
        let message = match bridge {
            Some(bridge) => message.controller(bridge),
            None => message,
        };
        self.set(name, message.build()).await
    }

    /// Makes `wanted` (address, prefix length) the only IPv4 addresses of device `index`.
    pub async fn set_addresses(
        &self,
        name: &str,
        index: u32,
        wanted: &[(Ipv4Addr, u8)],
    ) -> Result<(), DriverError> {
        let mut present = Vec::new();
        let mut addresses = self.handle.address().get().set_link_index_filter(index).execute();
        while let Some(message) = addresses
            .try_next()
            .await
            .map_err(|err| failed(&format!("list {name}'s addresses"), &err))?
        {
            let address = message.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(address) = address {
                present.push(((address, message.header.prefix_len), message));
            }
        }
        for (key, message) in &present {
            if !wanted.contains(key) {
                match self.handle.address().del(message.clone()).execute().await {
                    Ok(()) => {}
                    Err(err) if errno(&err) == Some(EADDRNOTAVAIL) => {}
                    Err(err) => {
                        return Err(failed(
                            &format!("remove {}/{} from {name}", key.0, key.1),
                            &err,
                        ));
                    }
                }
            }
        }
        for &(address, prefix_len) in wanted {
            if !present.iter().any(|(key, _)| *key == (address, prefix_len)) {
                let request = self.handle.address().add(index, address.into(), prefix_len);
                match request.execute().await {
                    Ok(()) => {}
                    Err(err) if errno(&err) == Some(EEXIST) => {}
                    Err(err) => {
                        return Err(failed(&format!("add {address}/{prefix_len} to {name}"), &err));
                    }
                }
            }
        }
        Ok(())
    }

    /// Sets (or replaces) a permanent neighbour entry `ip` → `mac` on device `index`.
    pub async fn set_neighbour(
        &self,
        index: u32,
        ip: Ipv4Addr,
        mac: &[u8],
    ) -> Result<(), DriverError> {
        self.handle
            .neighbours()
            .add(index, ip.into())
            .link_layer_address(mac)
            .replace()
            .execute()
            .await
            .map_err(|err| failed(&format!("set the neighbour entry of {ip}"), &err))
    }

    /// Adds or replaces the IPv4 route to `destination` in `table`: through device `index`,
    /// by way of `gateway` (on-link) if given.
    pub async fn replace_route(
        &self,
        table: u32,
        destination: (Ipv4Addr, u8),
        index: u32,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), DriverError> {
        let mut route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(destination.0, destination.1)
            .output_interface(index)
            .table_id(table);
        if let Some(gateway) = gateway {
            route = route.gateway(gateway).onlink();
        }
        let what = format!("route {}/{} in table {table}", destination.0, destination.1);
        self.handle
            .route()
            .add(route.build())
            .replace()
            .execute()
            .await
            .map_err(|err| failed(&format!("add the {what}"), &err))
    }

    /// The IPv4 routes of `table`, as (destination, prefix length, output device, message).
    pub async fn routes(&self, table: u32) -> Result<Vec<TableRoute>, DriverError> {
        let mut routes =
            self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let mut found = Vec::new();
        while let Some(message) =
            routes.try_next().await.map_err(|err| failed(&format!("list table {table}"), &err))?
        {
            let attribute_table = message.attributes.iter().find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            });
            if attribute_table.unwrap_or(u32::from(message.header.table)) != table {
                continue;
            }
            let destination = message
                .attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                })
                .unwrap_or(Ipv4Addr::UNSPECIFIED);
            let device = message.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(index) => Some(*index),
                _ => None,
            });
            found.push(TableRoute {
                destination: (destination, message.header.destination_prefix_length),
                device,
                message,
            });
        }
        Ok(found)
    }

    pub async fn delete_route(&self, route: &TableRoute) -> Result<(), DriverError> {
        match self.handle.route().del(route.message.clone()).execute().await {
            Ok(()) => Ok(()),
            Err(err) if matches!(errno(&err), Some(ESRCH | ENOENT)) => Ok(()),
            Err(err) => Err(failed(
                &format!("delete the route to {}/{}", route.destination.0, route.destination.1),
                &err,
            )),
        }
    }

    /// Adds the IPv4 rule `iif <iif> lookup <table>` at `priority` unless it is there.
    pub async fn ensure_rule(
        &self,
        iif: &str,
        table: u32,
        priority: u32,
    ) -> Result<(), DriverError> {
        if self.rules(table).await?.iter().any(|(name, _)| name.as_deref() == Some(iif)) {
            return Ok(());
        }
        let request = self
            .handle
            .rule()
            .add()
            .v4()
            .input_interface(iif)
            .table_id(table)
            .priority(priority)
            .action(RuleAction::ToTable);
        match request.execute().await {
            Ok(()) => Ok(()),
            Err(err) if errno(&err) == Some(EEXIST) => Ok(()),
            Err(err) => Err(failed(&format!("add the rule iif {iif} lookup {table}"), &err)),
        }
    }

    /// Deletes the IPv4 rules that look up `table`: all of them, or those for input device
    /// `iif` only.
    pub async fn delete_rules(&self, table: u32, iif: Option<&str>) -> Result<(), DriverError> {
        for (name, message) in self.rules(table).await? {
            if iif.is_some() && name.as_deref() != iif {
                continue;
            }
            match self.handle.rule().del(message).execute().await {
                Ok(()) => {}
                Err(err) if matches!(errno(&err), Some(ENOENT | ESRCH)) => {}
                Err(err) => return Err(failed(&format!("delete a rule of table {table}"), &err)),
            }
        }
        Ok(())
    }

    /// The IPv4 rules that look up `table`, with their input device.
    async fn rules(
        &self,
        table: u32,
    ) -> Result<Vec<(Option<String>, rtnetlink::packet_route::rule::RuleMessage)>, DriverError>
    {
        let mut rules = self.handle.rule().get(IpVersion::V4).execute();
        let mut found = Vec::new();
        while let Some(message) =
            rules.try_next().await.map_err(|err| failed("list the routing rules", &err))?
        {
            let mut rule_table = u32::from(message.header.table);
            let mut iif = None;
            for attribute in &message.attributes {
                match attribute {
                    RuleAttribute::Table(t) => rule_table = *t,
                    RuleAttribute::Iifname(name) => iif = Some(name.clone()),
                    _ => {}
                }
            }
            if rule_table == table {
                found.push((iif, message));
            }
        }
        Ok(found)
    }

    /// Creates a device unless one of that name exists; returns its index either way.
    async fn ensure(
        &self,
        name: &str,
        message: rtnetlink::packet_route::link::LinkMessage,
    ) -> Result<u32, DriverError> {
        if let Some(index) = self.index(name).await? {
            return Ok(index);
        }
        match self.handle.link().add(message).execute().await {
            Ok(()) => {}
            Err(err) if errno(&err) == Some(EEXIST) => {}
            Err(err) => return Err(failed(&format!("create {name}"), &err)),
        }
        self.index(name).await?.ok_or_else(|| {
            DriverError::Unavailable(format!("{name} vanished right after it was created; retry"))
        })
    }

    async fn set(
        &self,
        name: &str,
        message: rtnetlink::packet_route::link::LinkMessage,
    ) -> Result<(), DriverError> {
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|err| failed(&format!("configure {name}"), &err))
    }

    /// Deletes the device `name` if there is one (a veth pair goes with both ends).
    pub async fn delete(&self, name: &str) -> Result<(), DriverError> {
        let Some(index) = self.index(name).await? else {
            return Ok(());
        };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(err) if matches!(errno(&err), Some(ENODEV | ENOENT)) => Ok(()),
            Err(err) => Err(failed(&format!("delete {name}"), &err)),
        }
    }

    /// Appends `remote` to the all-zero FDB entry of a VXLAN device. rtnetlink's neighbour
    /// request always sends `NLM_F_EXCL`, which refuses a second destination for the same
    /// MAC, so the message it builds is sent with `NLM_F_CREATE | NLM_F_APPEND` instead
    /// (appending a destination already present is a no-op in the kernel).
    async fn flood_to(&self, vxlan: u32, name: &str, remote: Ipv4Addr) -> Result<(), DriverError> {
        let mut request = self
            .handle
            .neighbours()
            .add_bridge(vxlan, &[0; 6])
            .destination(remote.into())
            .flags(NeighbourFlags::Own);
        let mut message =
            NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(request.message_mut().clone()));
        message.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
        let what = format!("add remote VTEP {remote} to {name}");
        let mut handle = self.handle.clone();
        let mut responses = handle.request(message).map_err(|err| failed(&what, &err))?;
        while let Some(response) = responses.next().await {
            if let NetlinkPayload::Error(err) = response.payload
                && err.code.is_some()
            {
                return Err(failed(&what, &rtnetlink::Error::NetlinkError(err)));
            }
        }
        Ok(())
    }
}

fn errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(message) => message.code.map(|code| code.get().abs()),
        _ => None,
    }
}

/// A failed netlink request: a lost connection or a busy device is worth a retry, anything
/// else (the kernel refused the request) needs an operator.
fn failed(what: &str, err: &rtnetlink::Error) -> DriverError {
    const EBUSY: i32 = 16;
    const EAGAIN: i32 = 11;
    match (err, errno(err)) {
        (rtnetlink::Error::RequestFailed, _) | (_, Some(EBUSY | EAGAIN)) => {
            DriverError::Unavailable(format!("cannot {what} over netlink now: {err}; retry"))
        }
        _ => DriverError::Internal(format!("the kernel refused to {what}: {err}")),
    }
}

fn parse_mac(mac: &str) -> Result<Vec<u8>, DriverError> {
    let bytes: Result<Vec<u8>, _> = mac.split(':').map(|b| u8::from_str_radix(b, 16)).collect();
    match bytes {
        Ok(bytes) if bytes.len() == 6 => Ok(bytes),
        _ => Err(DriverError::Internal(format!("port MAC {mac} is not six hex bytes"))),
    }
}
