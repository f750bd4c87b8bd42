//! Ports: a VM's interface on its tenant's network, with an address of its subnet, a MAC,
//! its security groups and the DPU that enforces them. Ports are made and released by the
//! instance sagas (no request reaches these methods directly; the saga's `OpContext` was
//! authorized when the launch was). `generation` counts the changes the DPU must see;
//! `applied_generation` is the last it confirmed, so the reconciler knows what is behind.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

use portal_types::Error;
use portal_types::ids::{GenericUuid, PortUuid};
use portal_types::network::{Direction, Ipv4Net, PortView, Protocol};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::entity::{
    dpu, instance, port, port_security_group, security_group, security_rule, subnet, vpc,
};
use super::network::bump_ports_in_groups;
use super::public_ip::detach_from_instance;
use super::{DataStore, StoreError, begin_port_write, now_ms};

/// What a port is made from: the instance's launch choices and its host's DPU.
pub(crate) struct PortRequest {
    pub instance_id: Uuid,
    pub tenant_id: Uuid,
    pub subnet_id: Uuid,
    pub groups: Vec<Uuid>,
    pub dpu_name: Option<String>,
}

/// One allow rule as a DPU enforces it: a remote group is expanded to its members' addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct PortRule {
    pub direction: Direction,
    pub protocol: Protocol,
    pub ports: Option<(u16, u16)>,
    pub cidr: Ipv4Net,
}

/// Everything a DPU needs to program a port.
pub(crate) struct PortWiring {
    pub port: port::Model,
    pub vni: u32,
    /// The subnet's network (its first address is the gateway).
    pub subnet: Ipv4Net,
    pub rules: Vec<PortRule>,
    pub public_ip: Option<Ipv4Addr>,
}

/// A locally administered unicast MAC from the port's id.
fn mac_of(id: Uuid) -> String {
    let b = id.as_bytes();
    format!("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4])
}

/// The lowest address of `net` not in `used`; the network address, the gateway (the first
/// address) and the broadcast address are never given out.
pub(crate) fn free_address(net: Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    (2..net.size().saturating_sub(1)).filter_map(|n| net.nth(n)).find(|ip| !used.contains(ip))
}

/// Bumps the ports whose rules name any of `groups` as the remote side: their expanded
/// address lists change when a member comes or goes.
async fn bump_ports_naming<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    groups: &[Uuid],
) -> Result<(), StoreError> {
    let naming: Vec<Uuid> = security_rule::Entity::find()
        .select_only()
        .column(security_rule::Column::GroupId)
        .filter(security_rule::Column::RemoteGroupId.is_in(groups.to_vec()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    let naming: Vec<Uuid> = naming.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    bump_ports_in_groups(db, &naming).await
}

impl DataStore {
    /// The instance's port, made with the lowest free address of its subnet if it has none
    /// yet (so the saga step can run again). A full subnet is refused with a sentence.
    pub(crate) async fn port_allocate(&self, req: &PortRequest) -> Result<port::Model, StoreError> {
        for _ in 0..8 {
            if let Some(existing) = self.port_of_instance(req.instance_id).await? {
                return Ok(existing);
            }
            let txn = begin_port_write(&self.db).await?;
            let subnet = subnet::Entity::find_by_id(req.subnet_id)
                .one(&txn)
                .await?
                .ok_or_else(|| Error::invalid("The subnet of this launch was deleted."))?;
            let net: Ipv4Net = subnet.cidr.parse()?;
            let used: HashSet<Ipv4Addr> = port::Entity::find()
                .select_only()
                .column(port::Column::Ip)
                .filter(port::Column::SubnetId.eq(subnet.id))
                .into_tuple::<String>()
                .all(&txn)
                .await?
                .iter()
                .filter_map(|ip| ip.parse().ok())
                .collect();
            let ip = free_address(net, &used).ok_or_else(|| Error::Conflict {
                message: format!(
                    "Subnet \"{}\" ({}) has no free address left; launch into a larger \
                         subnet or delete VMs in this one.",
                    subnet.name, subnet.cidr
                ),
            })?;
            let id = Uuid::new_v4();
            let row = port::ActiveModel {
                id: Set(id),
                instance_id: Set(req.instance_id),
                tenant_id: Set(req.tenant_id),
                subnet_id: Set(subnet.id),
                ip: Set(ip.to_string()),
                mac: Set(mac_of(id)),
                dpu_name: Set(req.dpu_name.clone()),
                generation: Set(1),
                applied_generation: Set(0),
                created_at: Set(now_ms()),
                message: Set(None),
            }
            .insert(&txn)
            .await;
            let row = match row {
                Ok(row) => row,
                // A concurrent allocation took the address (PostgreSQL): pick again.
                Err(e)
                    if matches!(
                        e.sql_err(),
                        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for group in &req.groups {
                port_security_group::ActiveModel { port_id: Set(id), group_id: Set(*group) }
                    .insert(&txn)
                    .await?;
            }
            bump_ports_naming(&txn, &req.groups).await?;
            txn.commit().await?;
            return Ok(row);
        }
        Err(Error::unavailable("addresses are being handed out fast; try again").into())
    }

    pub(crate) async fn port_of_instance(
        &self,
        instance_id: Uuid,
    ) -> Result<Option<port::Model>, StoreError> {
        Ok(port::Entity::find()
            .filter(port::Column::InstanceId.eq(instance_id))
            .one(&self.db)
            .await?)
    }

    /// Deletes the instance's port and its memberships (none: nothing to do), and its GPU
    /// fabric addresses; the ports whose rules named its groups are bumped. Returns the port
    /// that was deleted.
    pub(crate) async fn port_release(
        &self,
        instance_id: Uuid,
    ) -> Result<Option<port::Model>, StoreError> {
        let txn = begin_port_write(&self.db).await?;
        // The instance keeps no public IP once its port is gone (the tenant keeps the IP),
        // and its SuperNICs leave the GPU fabric with it.
        detach_from_instance(&txn, instance_id).await?;
        super::gpu_fabric::leave(&txn, instance_id).await?;
        let Some(row) =
            port::Entity::find().filter(port::Column::InstanceId.eq(instance_id)).one(&txn).await?
        else {
            txn.commit().await?;
            return Ok(None);
        };
        let groups: Vec<Uuid> = port_security_group::Entity::find()
            .select_only()
            .column(port_security_group::Column::GroupId)
            .filter(port_security_group::Column::PortId.eq(row.id))
            .into_tuple()
            .all(&txn)
            .await?;
        port_security_group::Entity::delete_many()
            .filter(port_security_group::Column::PortId.eq(row.id))
            .exec(&txn)
            .await?;
        port::Entity::delete_by_id(row.id).exec(&txn).await?;
        bump_ports_naming(&txn, &groups).await?;
        txn.commit().await?;
        Ok(Some(row))
    }

    /// The port's VNI and its rules, remote groups expanded to their members' addresses.
    pub(crate) async fn port_wiring(&self, port: port::Model) -> Result<PortWiring, StoreError> {
        let subnet = subnet::Entity::find_by_id(port.subnet_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal(format!("port {} has no subnet", port.id)))?;
        let groups: Vec<Uuid> = port_security_group::Entity::find()
            .select_only()
            .column(port_security_group::Column::GroupId)
            .filter(port_security_group::Column::PortId.eq(port.id))
            .into_tuple()
            .all(&self.db)
            .await?;
        let rules = security_rule::Entity::find()
            .filter(security_rule::Column::GroupId.is_in(groups))
            .all(&self.db)
            .await?;
        let remote_groups: Vec<Uuid> = rules.iter().filter_map(|r| r.remote_group_id).collect();
        let mut members: HashMap<Uuid, Vec<Ipv4Addr>> = HashMap::new();
        if !remote_groups.is_empty() {
            let memberships: Vec<(Uuid, Uuid)> = port_security_group::Entity::find()
                .select_only()
                .column(port_security_group::Column::GroupId)
                .column(port_security_group::Column::PortId)
                .filter(port_security_group::Column::GroupId.is_in(remote_groups))
                .into_tuple()
                .all(&self.db)
                .await?;
            let ips: HashMap<Uuid, String> = port::Entity::find()
                .select_only()
                .column(port::Column::Id)
                .column(port::Column::Ip)
                .filter(port::Column::Id.is_in(memberships.iter().map(|(_, p)| *p)))
                .into_tuple()
                .all(&self.db)
                .await?
                .into_iter()
                .collect();
            for (group, port_id) in memberships {
                if let Some(ip) = ips.get(&port_id).and_then(|ip| ip.parse().ok()) {
                    members.entry(group).or_default().push(ip);
                }
            }
        }
        let mut wired = BTreeSet::new();
        for rule in &rules {
            let (Some(direction), Some(protocol)) =
                (Direction::parse(&rule.direction), Protocol::parse(&rule.protocol))
            else {
                continue;
            };
            let ports = rule.port_min.zip(rule.port_max).map(|(a, b)| (a as u16, b as u16));
            let cidrs: Vec<Ipv4Net> = match (&rule.remote_cidr, rule.remote_group_id) {
                (Some(cidr), _) => cidr.parse().into_iter().collect(),
                (None, Some(g)) => {
                    members.get(&g).into_iter().flatten().map(|ip| Ipv4Net::host(*ip)).collect()
                }
                (None, None) => Vec::new(),
            };
            for cidr in cidrs {
                wired.insert(PortRule { direction, protocol, ports, cidr });
            }
        }
        let public_ip = self.public_ip_of_instance(port.instance_id).await?;
        Ok(PortWiring {
            vni: subnet.vni as u32,
            subnet: subnet.cidr.parse()?,
            rules: wired.into_iter().collect(),
            public_ip,
            port,
        })
    }

    /// Up to `limit` ports whose DPU has not confirmed their latest change, oldest first.
    pub(crate) async fn ports_behind(&self, limit: u64) -> Result<Vec<port::Model>, StoreError> {
        Ok(port::Entity::find()
            .filter(port::Column::DpuName.is_not_null())
            .filter(
                Expr::col(port::Column::Generation).gt(Expr::col(port::Column::AppliedGeneration)),
            )
            .order_by_asc(port::Column::CreatedAt)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Every port's instance, and whether its DPU confirmed the port's latest generation (for
    /// the fabric benchmark).
    pub async fn port_confirmations(&self) -> Result<Vec<(Uuid, bool)>, StoreError> {
        let rows: Vec<(Uuid, i64, i64)> = port::Entity::find()
            .select_only()
            .column(port::Column::InstanceId)
            .column(port::Column::Generation)
            .column(port::Column::AppliedGeneration)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|(id, wanted, applied)| (id, applied >= wanted)).collect())
    }

    /// A new generation for one port, for its DPU to be sent again.
    pub(crate) async fn port_bump(&self, id: Uuid) -> Result<(), StoreError> {
        port::Entity::update_many()
            .col_expr(port::Column::Generation, Expr::col(port::Column::Generation).add(1))
            .filter(port::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records that the port's DPU, answering as boot `boot_id`, confirmed `generation`
    /// (never moving backwards); nothing when the database knows the DPU by another boot
    /// (as [`fabric_confirm`](Self::fabric_confirm): a late answer of a restarted agent).
    pub(crate) async fn port_mark_applied(
        &self,
        id: Uuid,
        generation: i64,
        boot_id: &str,
    ) -> Result<(), StoreError> {
        let known_boot = Query::select()
            .column(dpu::Column::Name)
            .from(dpu::Entity)
            .cond_where(
                Condition::any()
                    .add(dpu::Column::BootId.eq(boot_id))
                    .add(dpu::Column::BootId.is_null()),
            )
            .to_owned();
        port::Entity::update_many()
            .col_expr(port::Column::AppliedGeneration, Expr::value(generation))
            .col_expr(port::Column::Message, Expr::value(Option::<String>::None))
            .filter(port::Column::Id.eq(id))
            .filter(port::Column::AppliedGeneration.lt(generation))
            .filter(port::Column::DpuName.in_subquery(known_boot))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Records why the port's DPU refused its latest change (cut to 300 characters).
    pub(crate) async fn port_set_message(&self, id: Uuid, message: &str) -> Result<(), StoreError> {
        let message: String = message.chars().take(300).collect();
        port::Entity::update_many()
            .col_expr(port::Column::Message, Expr::value(Some(message)))
            .filter(port::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Marks every port of a DPU as unconfirmed, so that the reconciler sends them all again
    /// (after the DPU agent restarted, it holds nothing).
    pub(crate) async fn ports_replay(&self, dpu_name: &str) -> Result<u64, StoreError> {
        let txn = begin_port_write(&self.db).await?;
        let done = port::Entity::update_many()
            .col_expr(port::Column::AppliedGeneration, Expr::value(0))
            .filter(port::Column::DpuName.eq(dpu_name))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(done.rows_affected)
    }

    /// The ports DPU `dpu_name` confirmed at some generation, of instances not being
    /// deleted: what it must hold (for the drift check).
    pub(crate) async fn ports_confirmed_on(&self, dpu_name: &str) -> Result<Vec<Uuid>, StoreError> {
        let live = Query::select()
            .column(instance::Column::Id)
            .from(instance::Entity)
            .and_where(instance::Column::State.is_not_in(["deleting", "deleted"]))
            .to_owned();
        Ok(port::Entity::find()
            .select_only()
            .column(port::Column::Id)
            .filter(port::Column::DpuName.eq(dpu_name))
            .filter(port::Column::AppliedGeneration.gt(0))
            .filter(port::Column::InstanceId.in_subquery(live))
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Which of `ids` are ports the database holds.
    pub(crate) async fn ports_existing(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
        Ok(port::Entity::find()
            .select_only()
            .column(port::Column::Id)
            .filter(port::Column::Id.is_in(ids.to_vec()))
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect())
    }

    /// Marks one port unconfirmed, for the reconciler to send again (its DPU lost it).
    pub(crate) async fn port_replay(&self, id: Uuid) -> Result<(), StoreError> {
        port::Entity::update_many()
            .col_expr(port::Column::AppliedGeneration, Expr::value(0))
            .filter(port::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Ports whose instance is deleted (or gone): a delete saga that stopped after its VM was
    /// removed leaves one, for the reconciler to sweep.
    pub(crate) async fn ports_orphaned(&self, limit: u64) -> Result<Vec<port::Model>, StoreError> {
        let live = Query::select()
            .column(instance::Column::Id)
            .from(instance::Entity)
            .and_where(instance::Column::State.ne("deleted"))
            .to_owned();
        Ok(port::Entity::find()
            .filter(port::Column::InstanceId.not_in_subquery(live))
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// The DPU that serves `host_name`'s VMs (the first by name), if it has one.
    pub(crate) async fn dpu_of_host(&self, host_name: &str) -> Result<Option<String>, StoreError> {
        Ok(dpu::Entity::find()
            .select_only()
            .column(dpu::Column::Name)
            .filter(dpu::Column::HostName.eq(host_name))
            .order_by_asc(dpu::Column::Name)
            .into_tuple::<String>()
            .one(&self.db)
            .await?)
    }

    /// The instance's ports as its page shows them.
    pub(crate) async fn port_views(&self, instance_id: Uuid) -> Result<Vec<PortView>, StoreError> {
        let Some(row) = self.port_of_instance(instance_id).await? else { return Ok(Vec::new()) };
        let subnet = subnet::Entity::find_by_id(row.subnet_id).one(&self.db).await?;
        let vpc = match &subnet {
            Some(s) => vpc::Entity::find_by_id(s.vpc_id).one(&self.db).await?,
            None => None,
        };
        let group_ids: Vec<Uuid> = port_security_group::Entity::find()
            .select_only()
            .column(port_security_group::Column::GroupId)
            .filter(port_security_group::Column::PortId.eq(row.id))
            .into_tuple()
            .all(&self.db)
            .await?;
        let groups: Vec<String> = security_group::Entity::find()
            .select_only()
            .column(security_group::Column::Name)
            .filter(security_group::Column::Id.is_in(group_ids))
            .order_by_asc(security_group::Column::Name)
            .into_tuple()
            .all(&self.db)
            .await?;
        let net = subnet.as_ref().and_then(|s| s.cidr.parse::<Ipv4Net>().ok());
        let state = match (&row.dpu_name, row.applied_generation >= row.generation) {
            (None, _) => "no DPU",
            (Some(_), true) => "ready",
            (Some(_), false) => "pending",
        };
        Ok(vec![PortView {
            id: PortUuid::from_untyped_uuid(row.id),
            ip: row.ip.clone(),
            mac: row.mac.clone(),
            vpc: vpc.map(|v| v.name).unwrap_or_default(),
            subnet: subnet.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
            cidr: subnet.map(|s| s.cidr).unwrap_or_default(),
            gateway: net.and_then(|n| n.nth(1)).map(|g| g.to_string()).unwrap_or_default(),
            security_groups: groups,
            state: state.to_owned(),
            dpu: row.dpu_name.clone(),
            message: row.message.clone().filter(|_| row.applied_generation < row.generation),
            public_ip: self.public_ip_of_instance(instance_id).await?.map(|ip| ip.to_string()),
        }])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_skip_network_gateway_broadcast_and_used_ones() {
        let net: Ipv4Net = "10.0.0.0/29".parse().unwrap();
        let mut used = HashSet::new();
        let mut handed = Vec::new();
        while let Some(ip) = free_address(net, &used) {
            used.insert(ip);
            handed.push(ip.to_string());
        }
        assert_eq!(handed, ["10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"]);
        used.remove(&Ipv4Addr::new(10, 0, 0, 4));
        assert_eq!(free_address(net, &used), Some(Ipv4Addr::new(10, 0, 0, 4)));
    }

    #[test]
    fn macs_are_locally_administered_unicast() {
        let mac = mac_of(Uuid::new_v4());
        assert!(mac.starts_with("02:") && mac.len() == 17, "{mac}");
    }
}
