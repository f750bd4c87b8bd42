//! Tenant networks: VPCs, subnets, security groups and rules, always within the actor's
//! tenant (another tenant's object is not found). Every tenant gets a default VPC, subnet
//! and security group the first time it needs one. VNIs come from two ranges that never
//! meet: subnets' L2 VNIs from [`L2_VNI_BASE`], VPCs' L3 VNIs from [`L3_VNI_BASE`].
//!
//! A rule change bumps the generation of every port it reaches, in its transaction; the
//! port reconciler (`background::ports`) then brings their DPUs up to date.

use std::collections::HashMap;

use portal_types::Error;
use portal_types::ids::{GenericUuid, SecurityGroupUuid, SecurityRuleUuid, SubnetUuid, VpcUuid};
use portal_types::network::{
    CheckedRule, Direction, Ipv4Net, NetworkOverview, Protocol, SecurityGroupView,
    SecurityRuleCreate, SecurityRuleView, SubnetView, VpcView,
};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use super::entity::{port, port_security_group, security_group, security_rule, subnet, vpc};
use super::{DataStore, StoreError, begin_port_write, begin_write, now_ms, rfc3339};
use crate::authz::{Action, Actor};
use crate::context::OpContext;

pub(crate) const L2_VNI_BASE: i64 = 10_000;
pub(crate) const L3_VNI_BASE: i64 = 1_000_000;
const DEFAULT: &str = "default";
/// The default subnet: 4,093 addresses for VMs.
const DEFAULT_CIDR: &str = "10.0.0.0/20";

/// The tenant's default VPC, subnet and security group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Defaults {
    pub subnet: SubnetUuid,
    pub group: SecurityGroupUuid,
}

pub(crate) fn conflict(message: String) -> StoreError {
    Error::Conflict { message }.into()
}

/// Whether a write failed on a unique index (PostgreSQL's read-committed lets a concurrent
/// writer slip past a check; SQLite's single writer never does).
pub(crate) fn is_unique_violation(e: &sea_orm::DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// The next free VNI at or above `base` in `column` (a `vni` column of `E`).
async fn next_vni<E: EntityTrait>(
    txn: &DatabaseTransaction,
    column: E::Column,
    base: i64,
) -> Result<i64, StoreError> {
    let max: Option<Option<i64>> =
        E::find().select_only().column_as(column.max(), "max").into_tuple().one(txn).await?;
    Ok(max.flatten().map_or(base, |m| Ord::max(m, base - 1) + 1))
}

fn tenant_of(actor: &Actor) -> Uuid {
    actor.tenant_id.into_untyped_uuid()
}

/// One rule of the default group: direction, protocol, ports, and a network (none: the
/// group's own members).
type DefaultRule = (Direction, Protocol, Option<(u16, u16)>, Option<&'static str>);

/// The rules of the default group: all traffic between its members, SSH and ping from
/// anywhere, everything out.
fn default_rules() -> [DefaultRule; 4] {
    [
        (Direction::Ingress, Protocol::Any, None, None),
        (Direction::Ingress, Protocol::Tcp, Some((22, 22)), Some("0.0.0.0/0")),
        (Direction::Ingress, Protocol::Icmp, None, Some("0.0.0.0/0")),
        (Direction::Egress, Protocol::Any, None, Some("0.0.0.0/0")),
    ]
}

impl DataStore {
    /// The tenant's default subnet and group, made the first time they are asked for.
    pub(crate) async fn network_defaults(&self, opctx: &OpContext) -> Result<Defaults, StoreError> {
        let actor = opctx.authorize(Action::NetworkRead)?;
        let tenant = tenant_of(actor);
        // Two first requests at once: one makes them, the other finds them on its retry.
        for _ in 0..3 {
            if let Some(found) = self.defaults_found(tenant).await? {
                return Ok(found);
            }
            match self.defaults_make(tenant).await {
                Ok(made) => return Ok(made),
                Err(StoreError::Query(e)) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::unavailable("the default network is being made; try again").into())
    }

    async fn defaults_found(&self, tenant: Uuid) -> Result<Option<Defaults>, StoreError> {
        let subnet = subnet::Entity::find()
            .filter(subnet::Column::TenantId.eq(tenant))
            .filter(subnet::Column::IsDefault.eq(true))
            .one(&self.db)
            .await?;
        let group = security_group::Entity::find()
            .filter(security_group::Column::TenantId.eq(tenant))
            .filter(security_group::Column::IsDefault.eq(true))
            .one(&self.db)
            .await?;
        Ok(subnet.zip(group).map(|(s, g)| Defaults {
            subnet: SubnetUuid::from_untyped_uuid(s.id),
            group: SecurityGroupUuid::from_untyped_uuid(g.id),
        }))
    }

    async fn defaults_make(&self, tenant: Uuid) -> Result<Defaults, StoreError> {
        let txn = begin_write(&self.db).await?;
        let now = now_ms();
        let vpc = vpc::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant),
            name: Set(DEFAULT.into()),
            vni: Set(next_vni::<vpc::Entity>(&txn, vpc::Column::Vni, L3_VNI_BASE).await?),
            is_default: Set(true),
            created_at: Set(now),
            generation: Set(1),
        }
        .insert(&txn)
        .await?;
        let subnet = subnet::ActiveModel {
            id: Set(Uuid::new_v4()),
            vpc_id: Set(vpc.id),
            tenant_id: Set(tenant),
            name: Set(DEFAULT.into()),
            cidr: Set(DEFAULT_CIDR.into()),
            vni: Set(next_vni::<subnet::Entity>(&txn, subnet::Column::Vni, L2_VNI_BASE).await?),
            is_default: Set(true),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        let group = security_group::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant),
            name: Set(DEFAULT.into()),
            description: Set("Members talk freely; SSH and ping from anywhere; all out.".into()),
            is_default: Set(true),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
        for (direction, protocol, ports, cidr) in default_rules() {
            security_rule::ActiveModel {
                id: Set(Uuid::new_v4()),
                group_id: Set(group.id),
                direction: Set(direction.as_str().into()),
                protocol: Set(protocol.as_str().into()),
                port_min: Set(ports.map(|p| i32::from(p.0))),
                port_max: Set(ports.map(|p| i32::from(p.1))),
                remote_cidr: Set(cidr.map(str::to_owned)),
                remote_group_id: Set(cidr.is_none().then_some(group.id)),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        Ok(Defaults {
            subnet: SubnetUuid::from_untyped_uuid(subnet.id),
            group: SecurityGroupUuid::from_untyped_uuid(group.id),
        })
    }

    /// The tenant's VPCs with their subnets, and its security groups with their rules.
    pub async fn network_overview(&self, opctx: &OpContext) -> Result<NetworkOverview, StoreError> {
        let actor = opctx.authorize(Action::NetworkRead)?;
        let tenant = tenant_of(actor);
        let vpcs = vpc::Entity::find()
            .filter(vpc::Column::TenantId.eq(tenant))
            .order_by_desc(vpc::Column::IsDefault)
            .order_by_asc(vpc::Column::Name)
            .all(&self.db)
            .await?;
        let subnets = subnet::Entity::find()
            .filter(subnet::Column::TenantId.eq(tenant))
            .order_by_desc(subnet::Column::IsDefault)
            .order_by_asc(subnet::Column::Name)
            .all(&self.db)
            .await?;
        let used: HashMap<Uuid, i64> = port::Entity::find()
            .select_only()
            .column(port::Column::SubnetId)
            .column_as(port::Column::Id.count(), "n")
            .filter(port::Column::TenantId.eq(tenant))
            .group_by(port::Column::SubnetId)
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let groups = self.groups_of(tenant).await?;
        let group_ids: Vec<Uuid> = groups.iter().map(|g| g.id).collect();
        let members: HashMap<Uuid, i64> = port_security_group::Entity::find()
            .select_only()
            .column(port_security_group::Column::GroupId)
            .column_as(port_security_group::Column::PortId.count(), "n")
            .filter(port_security_group::Column::GroupId.is_in(group_ids.clone()))
            .group_by(port_security_group::Column::GroupId)
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let rules = security_rule::Entity::find()
            .filter(security_rule::Column::GroupId.is_in(group_ids))
            .order_by_asc(security_rule::Column::CreatedAt)
            .order_by_asc(security_rule::Column::Id)
            .all(&self.db)
            .await?;
        let names: HashMap<Uuid, &str> = groups.iter().map(|g| (g.id, g.name.as_str())).collect();
        Ok(NetworkOverview {
            vpcs: vpcs
                .iter()
                .map(|v| VpcView {
                    id: VpcUuid::from_untyped_uuid(v.id),
                    name: v.name.clone(),
                    vni: v.vni as u32,
                    is_default: v.is_default,
                    subnets: subnets
                        .iter()
                        .filter(|s| s.vpc_id == v.id)
                        .map(|s| subnet_view(s, used.get(&s.id).copied().unwrap_or(0)))
                        .collect(),
                    created_at: rfc3339(v.created_at),
                })
                .collect(),
            security_groups: groups
                .iter()
                .map(|g| SecurityGroupView {
                    id: SecurityGroupUuid::from_untyped_uuid(g.id),
                    name: g.name.clone(),
                    description: g.description.clone(),
                    is_default: g.is_default,
                    rules: rules
                        .iter()
                        .filter(|r| r.group_id == g.id)
                        .map(|r| rule_view(r, &names))
                        .collect(),
                    ports: members.get(&g.id).copied().unwrap_or(0) as u32,
                })
                .collect(),
        })
    }

    async fn groups_of(&self, tenant: Uuid) -> Result<Vec<security_group::Model>, StoreError> {
        Ok(security_group::Entity::find()
            .filter(security_group::Column::TenantId.eq(tenant))
            .order_by_desc(security_group::Column::IsDefault)
            .order_by_asc(security_group::Column::Name)
            .all(&self.db)
            .await?)
    }

    pub async fn vpc_create(&self, opctx: &OpContext, name: &str) -> Result<VpcView, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = vpc::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant_of(actor)),
            name: Set(name.to_owned()),
            vni: Set(next_vni::<vpc::Entity>(&txn, vpc::Column::Vni, L3_VNI_BASE).await?),
            is_default: Set(false),
            created_at: Set(now_ms()),
            generation: Set(1),
        }
        .insert(&txn)
        .await
        .map_err(|e| match is_unique_violation(&e) {
            true => {
                conflict(format!("There is already a VPC named \"{name}\"; pick another name."))
            }
            false => e.into(),
        })?;
        txn.commit().await?;
        Ok(VpcView {
            id: VpcUuid::from_untyped_uuid(row.id),
            name: row.name,
            vni: row.vni as u32,
            is_default: false,
            subnets: Vec::new(),
            created_at: rfc3339(row.created_at),
        })
    }

    /// Deletes an empty VPC other than the default.
    pub async fn vpc_delete(&self, opctx: &OpContext, id: VpcUuid) -> Result<String, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = vpc::Entity::find_by_id(id.into_untyped_uuid())
            .filter(vpc::Column::TenantId.eq(tenant_of(actor)))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("VPC", id))?;
        if row.is_default {
            return Err(conflict(
                "The default VPC stays; launches without a subnet use it.".to_owned(),
            ));
        }
        let subnets =
            subnet::Entity::find().filter(subnet::Column::VpcId.eq(row.id)).count(&txn).await?;
        if subnets > 0 {
            return Err(conflict(format!(
                "VPC \"{}\" still has {subnets} subnet(s); delete them first.",
                row.name
            )));
        }
        vpc::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(row.name)
    }

    /// Adds a subnet to one of the tenant's VPCs; its network may not overlap another
    /// subnet of that VPC.
    pub async fn subnet_create(
        &self,
        opctx: &OpContext,
        vpc_id: VpcUuid,
        name: &str,
        net: Ipv4Net,
    ) -> Result<SubnetView, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let tenant = tenant_of(actor);
        let txn = begin_write(&self.db).await?;
        let vpc = vpc::Entity::find_by_id(vpc_id.into_untyped_uuid())
            .filter(vpc::Column::TenantId.eq(tenant))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("VPC", vpc_id))?;
        let fabric = super::gpu_fabric::fabric_net();
        if net.overlaps(&fabric) {
            return Err(Error::invalid(format!(
                "{net} overlaps {fabric}, the addresses of your GPU fabric; pick a network \
                 outside it."
            ))
            .into());
        }
        let siblings =
            subnet::Entity::find().filter(subnet::Column::VpcId.eq(vpc.id)).all(&txn).await?;
        for s in &siblings {
            if s.name == name {
                return Err(conflict(format!(
                    "VPC \"{}\" already has a subnet named \"{name}\"; pick another name.",
                    vpc.name
                )));
            }
            if s.cidr.parse::<Ipv4Net>().is_ok_and(|other| other.overlaps(&net)) {
                return Err(Error::invalid(format!(
                    "{net} overlaps subnet \"{}\" ({}) of VPC \"{}\"; pick a network outside it.",
                    s.name, s.cidr, vpc.name
                ))
                .into());
            }
        }
        let row = subnet::ActiveModel {
            id: Set(Uuid::new_v4()),
            vpc_id: Set(vpc.id),
            tenant_id: Set(tenant),
            name: Set(name.to_owned()),
            cidr: Set(net.to_string()),
            vni: Set(next_vni::<subnet::Entity>(&txn, subnet::Column::Vni, L2_VNI_BASE).await?),
            is_default: Set(false),
            created_at: Set(now_ms()),
        }
        .insert(&txn)
        .await
        .map_err(|e| match is_unique_violation(&e) {
            true => conflict("Another subnet was added at the same moment; try again.".into()),
            false => e.into(),
        })?;
        vpc_generation_bump(&txn, vpc.id).await?;
        txn.commit().await?;
        Ok(subnet_view(&row, 0))
    }

    /// Deletes a subnet no VM uses, other than the default.
    pub async fn subnet_delete(
        &self,
        opctx: &OpContext,
        id: SubnetUuid,
    ) -> Result<String, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = subnet::Entity::find_by_id(id.into_untyped_uuid())
            .filter(subnet::Column::TenantId.eq(tenant_of(actor)))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("subnet", id))?;
        if row.is_default {
            return Err(conflict(
                "The default subnet stays; launches without a subnet use it.".to_owned(),
            ));
        }
        let ports =
            port::Entity::find().filter(port::Column::SubnetId.eq(row.id)).count(&txn).await?;
        if ports > 0 {
            return Err(conflict(format!(
                "{ports} VM(s) still have an address in subnet \"{}\"; delete them first.",
                row.name
            )));
        }
        subnet::Entity::delete_by_id(row.id).exec(&txn).await?;
        vpc_generation_bump(&txn, row.vpc_id).await?;
        txn.commit().await?;
        Ok(format!("{} ({})", row.name, row.cidr))
    }

    pub async fn security_group_create(
        &self,
        opctx: &OpContext,
        name: &str,
        description: &str,
    ) -> Result<SecurityGroupView, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let row = security_group::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant_of(actor)),
            name: Set(name.to_owned()),
            description: Set(description.trim().to_owned()),
            is_default: Set(false),
            created_at: Set(now_ms()),
        }
        .insert(&self.db)
        .await
        .map_err(|e| match is_unique_violation(&e) {
            true => conflict(format!(
                "There is already a security group named \"{name}\"; pick another name."
            )),
            false => e.into(),
        })?;
        Ok(SecurityGroupView {
            id: SecurityGroupUuid::from_untyped_uuid(row.id),
            name: row.name,
            description: row.description,
            is_default: false,
            rules: Vec::new(),
            ports: 0,
        })
    }

    /// Deletes a group no VM is in and no other group's rule names, other than the default.
    pub async fn security_group_delete(
        &self,
        opctx: &OpContext,
        id: SecurityGroupUuid,
    ) -> Result<String, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = self.group_in(&txn, actor, id).await?;
        if row.is_default {
            return Err(conflict(
                "The default security group stays; launches without groups use it.".to_owned(),
            ));
        }
        let members = port_security_group::Entity::find()
            .filter(port_security_group::Column::GroupId.eq(row.id))
            .count(&txn)
            .await?;
        if members > 0 {
            return Err(conflict(format!(
                "{members} VM(s) are still in security group \"{}\"; delete them first.",
                row.name
            )));
        }
        let named_by = security_rule::Entity::find()
            .filter(security_rule::Column::RemoteGroupId.eq(row.id))
            .filter(security_rule::Column::GroupId.ne(row.id))
            .count(&txn)
            .await?;
        if named_by > 0 {
            return Err(conflict(format!(
                "{named_by} rule(s) of other groups name \"{}\"; delete those rules first.",
                row.name
            )));
        }
        security_group::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(row.name)
    }

    async fn group_in(
        &self,
        txn: &DatabaseTransaction,
        actor: &Actor,
        id: SecurityGroupUuid,
    ) -> Result<security_group::Model, StoreError> {
        Ok(security_group::Entity::find_by_id(id.into_untyped_uuid())
            .filter(security_group::Column::TenantId.eq(tenant_of(actor)))
            .one(txn)
            .await?
            .ok_or_else(|| Error::not_found("security group", id))?)
    }

    /// Adds an allow rule and bumps the generation of every port in the group, in one
    /// transaction. Returns the rule and the group's name.
    pub async fn security_rule_create(
        &self,
        opctx: &OpContext,
        create: &SecurityRuleCreate,
        checked: &CheckedRule,
    ) -> Result<(SecurityRuleView, String), StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_port_write(&self.db).await?;
        let group = self.group_in(&txn, actor, create.group).await?;
        let mut names = HashMap::from([(group.id, group.name.as_str())]);
        let remote = match create.remote_group {
            Some(id) => Some(self.group_in(&txn, actor, id).await?),
            None => None,
        };
        if let Some(r) = &remote {
            names.insert(r.id, r.name.as_str());
        }
        let count = security_rule::Entity::find()
            .filter(security_rule::Column::GroupId.eq(group.id))
            .count(&txn)
            .await?;
        if count >= MAX_RULES_PER_GROUP {
            return Err(conflict(format!(
                "Security group \"{}\" has {MAX_RULES_PER_GROUP} rules, the most one may have; \
                 delete one first.",
                group.name
            )));
        }
        let row = security_rule::ActiveModel {
            id: Set(Uuid::new_v4()),
            group_id: Set(group.id),
            direction: Set(create.direction.as_str().into()),
            protocol: Set(create.protocol.as_str().into()),
            port_min: Set(checked.ports.map(|p| i32::from(p.0))),
            port_max: Set(checked.ports.map(|p| i32::from(p.1))),
            remote_cidr: Set(checked.remote_cidr.map(|c| c.to_string())),
            remote_group_id: Set(remote.as_ref().map(|r| r.id)),
            created_at: Set(now_ms()),
        }
        .insert(&txn)
        .await?;
        bump_ports_in_groups(&txn, &[group.id]).await?;
        txn.commit().await?;
        Ok((rule_view(&row, &names), group.name.clone()))
    }

    /// Deletes a rule and bumps the generation of every port in its group. Returns the
    /// group's name.
    pub async fn security_rule_delete(
        &self,
        opctx: &OpContext,
        id: SecurityRuleUuid,
    ) -> Result<String, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_port_write(&self.db).await?;
        let rule = security_rule::Entity::find_by_id(id.into_untyped_uuid())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("security group rule", id))?;
        // Another tenant's rule is not found, like the rest of its group.
        let group = self
            .group_in(&txn, actor, SecurityGroupUuid::from_untyped_uuid(rule.group_id))
            .await
            .map_err(|_| Error::not_found("security group rule", id))?;
        security_rule::Entity::delete_by_id(rule.id).exec(&txn).await?;
        bump_ports_in_groups(&txn, &[group.id]).await?;
        txn.commit().await?;
        Ok(group.name)
    }
}

/// The most rules one group may hold: every port's ruleset stays small enough to swap at once.
pub const MAX_RULES_PER_GROUP: u64 = 64;

/// A new generation of the VPC: the leaves that carry it must see its new spec (or, before
/// it leaves a leaf, one that fences off every older spec).
pub(crate) async fn vpc_generation_bump<C: ConnectionTrait>(
    db: &C,
    vpc_id: Uuid,
) -> Result<(), StoreError> {
    vpc::Entity::update_many()
        .col_expr(vpc::Column::Generation, Expr::col(vpc::Column::Generation).add(1))
        .filter(vpc::Column::Id.eq(vpc_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Marks every port in `groups` as having a change its DPU has not seen.
pub(crate) async fn bump_ports_in_groups<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    groups: &[Uuid],
) -> Result<(), StoreError> {
    if groups.is_empty() {
        return Ok(());
    }
    let members = port_security_group::Entity::find()
        .select_only()
        .column(port_security_group::Column::PortId)
        .filter(port_security_group::Column::GroupId.is_in(groups.to_vec()))
        .into_tuple::<Uuid>()
        .all(db)
        .await?;
    if members.is_empty() {
        return Ok(());
    }
    port::Entity::update_many()
        .col_expr(port::Column::Generation, Expr::col(port::Column::Generation).add(1))
        .filter(port::Column::Id.is_in(members))
        .exec(db)
        .await?;
    Ok(())
}

fn subnet_view(row: &subnet::Model, ports: i64) -> SubnetView {
    let net = row.cidr.parse::<Ipv4Net>().ok();
    // The network, gateway and broadcast addresses are not for VMs.
    let usable = net.map_or(0, |n| n.size().saturating_sub(3));
    SubnetView {
        id: SubnetUuid::from_untyped_uuid(row.id),
        vpc: VpcUuid::from_untyped_uuid(row.vpc_id),
        name: row.name.clone(),
        cidr: row.cidr.clone(),
        gateway: net.and_then(|n| n.nth(1)).map(|g| g.to_string()).unwrap_or_default(),
        vni: row.vni as u32,
        ports: ports as u32,
        free: usable.saturating_sub(ports as u64),
        is_default: row.is_default,
    }
}

fn rule_view(row: &security_rule::Model, names: &HashMap<Uuid, &str>) -> SecurityRuleView {
    let remote = match (&row.remote_cidr, row.remote_group_id) {
        (Some(cidr), _) => cidr.clone(),
        (None, Some(g)) => format!("group {}", names.get(&g).copied().unwrap_or("(deleted)")),
        (None, None) => String::new(),
    };
    SecurityRuleView {
        id: SecurityRuleUuid::from_untyped_uuid(row.id),
        direction: Direction::parse(&row.direction).unwrap_or(Direction::Ingress),
        protocol: Protocol::parse(&row.protocol).unwrap_or(Protocol::Any),
        ports: row.port_min.zip(row.port_max).map(|(a, b)| (a as u16, b as u16)),
        remote,
    }
}
