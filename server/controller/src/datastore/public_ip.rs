//! Public IPs: the provider's pools, and the addresses tenants hold (within the actor's
//! tenant: another tenant's address is not found). Attaching or detaching one bumps the
//! instance's port in the same transaction, so the port reconciler sends its DPU the new
//! mapping; releasing a port (the instance deleted, or its launch undone) detaches it. Each
//! change of attachment is logged for metering by a trigger, with the instance's row locked
//! as a state change locks it (see `usage::lock_instances`).

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid, PublicIpPoolUuid, PublicIpUuid};
use portal_types::network::Ipv4Net;
use portal_types::public_ip::{PublicIpPoolView, PublicIpState, PublicIpView, pool_addresses};
use portal_types::views::InstanceState;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{instance, port, public_ip, public_ip_pool};
use super::network::{conflict, is_unique_violation};
use super::quota::quota_budget_in;
use super::usage::lock_instances;
use super::{DataStore, StoreError, begin_port_write, begin_write, now_ms, rfc3339};
use crate::authz::Action;
use crate::context::OpContext;

/// The quota resource public IPs count against.
pub(crate) const QUOTA_RESOURCE: &str = "public_ips";

/// The lowest address of `net` no one holds.
fn free_address(net: Ipv4Net, used: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    pool_addresses(net).find(|ip| !used.contains(ip))
}

/// Bumps the instance's port, if it has one, so its DPU gets the new mapping.
async fn bump_port_of(db: &impl ConnectionTrait, instance_id: Uuid) -> Result<(), StoreError> {
    port::Entity::update_many()
        .col_expr(port::Column::Generation, Expr::col(port::Column::Generation).add(1))
        .filter(port::Column::InstanceId.eq(instance_id))
        .exec(db)
        .await?;
    Ok(())
}

/// Detaches whatever public IP the instance has (inside the port release's transaction).
pub(crate) async fn detach_from_instance(
    db: &impl ConnectionTrait,
    instance_id: Uuid,
) -> Result<(), StoreError> {
    lock_instances(db, &[instance_id]).await?;
    public_ip::Entity::update_many()
        .col_expr(public_ip::Column::InstanceId, Expr::value(Option::<Uuid>::None))
        .col_expr(public_ip::Column::AttachmentChangedAt, Expr::value(now_ms()))
        .filter(public_ip::Column::InstanceId.eq(instance_id))
        .exec(db)
        .await?;
    Ok(())
}

impl DataStore {
    /// Every pool with its size and how many of its addresses tenants hold (everyone may
    /// see them: a tenant picks a pool by name).
    pub(crate) async fn public_ip_pools(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<PublicIpPoolView>, StoreError> {
        opctx.authorize(Action::NetworkRead)?;
        let pools = public_ip_pool::Entity::find()
            .order_by_asc(public_ip_pool::Column::Name)
            .all(&self.db)
            .await?;
        let held: HashMap<Uuid, i64> = public_ip::Entity::find()
            .select_only()
            .column(public_ip::Column::PoolId)
            .column_as(public_ip::Column::Id.count(), "held")
            .group_by(public_ip::Column::PoolId)
            .into_tuple::<(Uuid, i64)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(pools
            .into_iter()
            .map(|p| pool_view(&p, held.get(&p.id).copied().unwrap_or(0)))
            .collect())
    }

    /// Adds a pool; its network may not overlap another pool's.
    pub(crate) async fn public_ip_pool_create(
        &self,
        opctx: &OpContext,
        name: &str,
        net: Ipv4Net,
    ) -> Result<PublicIpPoolView, StoreError> {
        opctx.authorize(Action::IpPoolWrite)?;
        let txn = begin_write(&self.db).await?;
        for other in public_ip_pool::Entity::find().all(&txn).await? {
            if other.cidr.parse::<Ipv4Net>().is_ok_and(|o| o.overlaps(&net)) {
                return Err(conflict(format!(
                    "{net} overlaps pool \"{}\" ({}); give each pool its own addresses.",
                    other.name, other.cidr
                )));
            }
        }
        let row = public_ip_pool::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(name.to_owned()),
            cidr: Set(net.to_string()),
            created_at: Set(now_ms()),
        }
        .insert(&txn)
        .await
        .map_err(|e| match is_unique_violation(&e) {
            true => conflict(format!("There is already a pool named \"{name}\"; pick another.")),
            false => e.into(),
        })?;
        txn.commit().await?;
        Ok(pool_view(&row, 0))
    }

    /// Deletes a pool no tenant holds an address of; returns its name.
    pub(crate) async fn public_ip_pool_delete(
        &self,
        opctx: &OpContext,
        id: PublicIpPoolUuid,
    ) -> Result<String, StoreError> {
        opctx.authorize(Action::IpPoolWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = public_ip_pool::Entity::find_by_id(id.into_untyped_uuid())
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("public IP pool", id))?;
        let held = public_ip::Entity::find()
            .filter(public_ip::Column::PoolId.eq(row.id))
            .count(&txn)
            .await?;
        if held > 0 {
            return Err(conflict(format!(
                "Tenants still hold {held} address(es) of pool \"{}\"; they must release them \
                 first.",
                row.name
            )));
        }
        public_ip_pool::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(row.name)
    }

    /// The tenant's public IPs, by name.
    pub(crate) async fn public_ips(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<PublicIpView>, StoreError> {
        let actor = opctx.authorize(Action::NetworkRead)?;
        let rows = public_ip::Entity::find()
            .filter(public_ip::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .order_by_asc(public_ip::Column::Name)
            .all(&self.db)
            .await?;
        self.public_ip_views(rows).await
    }

    /// One of the tenant's public IPs.
    pub(crate) async fn public_ip_get(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
    ) -> Result<PublicIpView, StoreError> {
        let actor = opctx.authorize(Action::NetworkRead)?;
        let row = public_ip::Entity::find_by_id(id.into_untyped_uuid())
            .filter(public_ip::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("public IP", id))?;
        Ok(self.public_ip_views(vec![row]).await?.remove(0))
    }

    /// Takes the lowest free address of `pool` (or of the first pool with one) for the
    /// tenant, within its `public_ips` quota (checked in the transaction, so concurrent
    /// requests cannot exceed it together).
    pub(crate) async fn public_ip_allocate(
        &self,
        opctx: &OpContext,
        name: &str,
        pool: Option<PublicIpPoolUuid>,
    ) -> Result<PublicIpView, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let tenant = actor.tenant_id.into_untyped_uuid();
        for _ in 0..8 {
            let txn = begin_write(&self.db).await?;
            let taken = public_ip::Entity::find()
                .filter(public_ip::Column::TenantId.eq(tenant))
                .filter(public_ip::Column::Name.eq(name))
                .count(&txn)
                .await?;
            if taken > 0 {
                return Err(conflict(format!(
                    "You already have a public IP named \"{name}\"; pick another name."
                )));
            }
            let (limits, used) = quota_budget_in(&txn, actor.tenant_id).await?;
            let limit = limits.get(QUOTA_RESOURCE).copied().unwrap_or(Some(0));
            let held = used.get(QUOTA_RESOURCE).copied().unwrap_or(0);
            if let Some(limit) = limit
                && held >= limit
            {
                return Err(conflict(format!(
                    "{} holds {held} of its quota of {limit} public IPs; release one or ask the \
                     provider for a larger quota.",
                    actor.tenant_name
                )));
            }
            let pools = match pool {
                Some(id) => vec![
                    public_ip_pool::Entity::find_by_id(id.into_untyped_uuid())
                        .one(&txn)
                        .await?
                        .ok_or_else(|| Error::not_found("public IP pool", id))?,
                ],
                None => {
                    public_ip_pool::Entity::find()
                        .order_by_asc(public_ip_pool::Column::Name)
                        .all(&txn)
                        .await?
                }
            };
            if pools.is_empty() {
                return Err(conflict(
                    "The provider has no public IP pools yet; ask them to add one.".to_owned(),
                ));
            }
            let mut found = None;
            for p in &pools {
                let net: Ipv4Net = p.cidr.parse()?;
                let used: HashSet<Ipv4Addr> = public_ip::Entity::find()
                    .select_only()
                    .column(public_ip::Column::Address)
                    .filter(public_ip::Column::PoolId.eq(p.id))
                    .into_tuple::<String>()
                    .all(&txn)
                    .await?
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect();
                if let Some(address) = free_address(net, &used) {
                    found = Some((p, address));
                    break;
                }
            }
            let Some((p, address)) = found else {
                let which = match pool {
                    Some(_) => format!("Pool \"{}\" has", pools[0].name),
                    None => "Every pool has".to_owned(),
                };
                return Err(conflict(format!(
                    "{which} no free address left; ask the provider to add addresses."
                )));
            };
            let inserted = public_ip::ActiveModel {
                id: Set(Uuid::new_v4()),
                pool_id: Set(p.id),
                tenant_id: Set(tenant),
                name: Set(name.to_owned()),
                address: Set(address.to_string()),
                instance_id: Set(None),
                created_at: Set(now_ms()),
                attachment_changed_at: Set(0),
            }
            .insert(&txn)
            .await;
            let row = match inserted {
                Ok(row) => row,
                // A concurrent request took the address or the name (PostgreSQL): the next
                // round finds out which.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
            };
            txn.commit().await?;
            return Ok(self.public_ip_views(vec![row]).await?.remove(0));
        }
        Err(Error::unavailable("public IPs are being handed out fast; try again").into())
    }

    /// Attaches a free public IP of the tenant's to one of its instances that has none.
    pub(crate) async fn public_ip_attach(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
        instance_id: InstanceUuid,
    ) -> Result<PublicIpView, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let tenant = actor.tenant_id.into_untyped_uuid();
        let txn = begin_port_write(&self.db).await?;
        let row = public_ip::Entity::find_by_id(id.into_untyped_uuid())
            .filter(public_ip::Column::TenantId.eq(tenant))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("public IP", id))?;
        let vm = instance::Entity::find_by_id(instance_id.into_untyped_uuid())
            .filter(instance::Column::TenantId.eq(tenant))
            .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("instance", instance_id))?;
        if row.instance_id == Some(vm.id) {
            txn.commit().await?;
            return Ok(self.public_ip_views(vec![row]).await?.remove(0));
        }
        if let Some(other) = row.instance_id {
            let other = instance_name(&txn, other).await?;
            return Err(conflict(format!(
                "{} is attached to {other}; detach it there first.",
                row.address
            )));
        }
        if [InstanceState::Deleting.as_str(), InstanceState::Failed.as_str()]
            .contains(&vm.state.as_str())
        {
            return Err(conflict(format!(
                "Instance \"{}\" is {}; attach public IPs to instances that are running or \
                 being launched.",
                vm.name, vm.state
            )));
        }
        if let Some(held) = public_ip::Entity::find()
            .filter(public_ip::Column::InstanceId.eq(vm.id))
            .one(&txn)
            .await?
        {
            return Err(conflict(format!(
                "Instance \"{}\" already has public IP {} ({}); detach it first.",
                vm.name, held.address, held.name
            )));
        }
        let vm_port =
            port::Entity::find().filter(port::Column::InstanceId.eq(vm.id)).one(&txn).await?;
        if vm_port.as_ref().is_some_and(|p| p.dpu_name.is_none()) {
            return Err(conflict(format!(
                "Instance \"{}\" runs on a host without a DPU, where public IPs are mapped; \
                 launch it on a host with one.",
                vm.name
            )));
        }
        lock_instances(&txn, &[vm.id]).await?;
        let mut active: public_ip::ActiveModel = row.into();
        active.instance_id = Set(Some(vm.id));
        active.attachment_changed_at = Set(now_ms());
        let row = active.update(&txn).await?;
        bump_port_of(&txn, vm.id).await?;
        txn.commit().await?;
        Ok(self.public_ip_views(vec![row]).await?.remove(0))
    }

    /// Detaches a public IP from its instance (a free one stays free).
    pub(crate) async fn public_ip_detach(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
    ) -> Result<PublicIpView, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_port_write(&self.db).await?;
        let row = public_ip::Entity::find_by_id(id.into_untyped_uuid())
            .filter(public_ip::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("public IP", id))?;
        let Some(vm) = row.instance_id else {
            txn.commit().await?;
            return Ok(self.public_ip_views(vec![row]).await?.remove(0));
        };
        lock_instances(&txn, &[vm]).await?;
        let mut active: public_ip::ActiveModel = row.into();
        active.instance_id = Set(None);
        active.attachment_changed_at = Set(now_ms());
        let row = active.update(&txn).await?;
        bump_port_of(&txn, vm).await?;
        txn.commit().await?;
        Ok(self.public_ip_views(vec![row]).await?.remove(0))
    }

    /// Gives a free public IP back to its pool; returns its address.
    pub(crate) async fn public_ip_release(
        &self,
        opctx: &OpContext,
        id: PublicIpUuid,
    ) -> Result<String, StoreError> {
        let actor = opctx.authorize(Action::NetworkWrite)?;
        let txn = begin_write(&self.db).await?;
        let row = public_ip::Entity::find_by_id(id.into_untyped_uuid())
            .filter(public_ip::Column::TenantId.eq(actor.tenant_id.into_untyped_uuid()))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::not_found("public IP", id))?;
        if let Some(vm) = row.instance_id {
            let vm = instance_name(&txn, vm).await?;
            return Err(conflict(format!(
                "{} is attached to {vm}; detach it before releasing it.",
                row.address
            )));
        }
        public_ip::Entity::delete_by_id(row.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(row.address)
    }

    /// The public IP attached to the instance, for its port's DPU.
    pub(crate) async fn public_ip_of_instance(
        &self,
        instance_id: Uuid,
    ) -> Result<Option<Ipv4Addr>, StoreError> {
        let address: Option<String> = public_ip::Entity::find()
            .select_only()
            .column(public_ip::Column::Address)
            .filter(public_ip::Column::InstanceId.eq(instance_id))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(address.and_then(|a| a.parse().ok()))
    }

    async fn public_ip_views(
        &self,
        rows: Vec<public_ip::Model>,
    ) -> Result<Vec<PublicIpView>, StoreError> {
        let pools: HashMap<Uuid, String> = public_ip_pool::Entity::find()
            .select_only()
            .column(public_ip_pool::Column::Id)
            .column(public_ip_pool::Column::Name)
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let attached: Vec<Uuid> = rows.iter().filter_map(|r| r.instance_id).collect();
        let names: HashMap<Uuid, String> = instance::Entity::find()
            .select_only()
            .column(instance::Column::Id)
            .column(instance::Column::Name)
            .filter(instance::Column::Id.is_in(attached.clone()))
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let ports: HashMap<Uuid, port::Model> = port::Entity::find()
            .filter(port::Column::InstanceId.is_in(attached))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| (p.instance_id, p))
            .collect();
        Ok(rows
            .into_iter()
            .map(|r| {
                let port = r.instance_id.and_then(|i| ports.get(&i));
                let state = match (r.instance_id, port) {
                    (None, _) => PublicIpState::Free,
                    (Some(_), Some(p))
                        if p.dpu_name.is_some() && p.applied_generation >= p.generation =>
                    {
                        PublicIpState::Attached
                    }
                    (Some(_), _) => PublicIpState::Attaching,
                };
                PublicIpView {
                    id: PublicIpUuid::from_untyped_uuid(r.id),
                    pool: pools.get(&r.pool_id).cloned().unwrap_or_default(),
                    instance: r.instance_id.map(InstanceUuid::from_untyped_uuid),
                    instance_name: r.instance_id.and_then(|i| names.get(&i).cloned()),
                    private_ip: port.map(|p| p.ip.clone()),
                    message: port
                        .filter(|_| state == PublicIpState::Attaching)
                        .and_then(|p| p.message.clone()),
                    state,
                    created_at: rfc3339(r.created_at),
                    name: r.name,
                    address: r.address,
                }
            })
            .collect())
    }
}

async fn instance_name(db: &impl ConnectionTrait, id: Uuid) -> Result<String, StoreError> {
    let name: Option<String> = instance::Entity::find_by_id(id)
        .select_only()
        .column(instance::Column::Name)
        .into_tuple()
        .one(db)
        .await?;
    Ok(name.map_or_else(|| "another instance".to_owned(), |n| format!("instance \"{n}\"")))
}

fn pool_view(p: &public_ip_pool::Model, held: i64) -> PublicIpPoolView {
    let size = p.cidr.parse::<Ipv4Net>().map_or(0, |n| n.size().saturating_sub(2));
    PublicIpPoolView {
        id: PublicIpPoolUuid::from_untyped_uuid(p.id),
        name: p.name.clone(),
        cidr: p.cidr.clone(),
        size,
        allocated: u64::try_from(held).unwrap_or(0),
        created_at: rfc3339(p.created_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_handed_out_lowest_first_skipping_held_ones() {
        let net: Ipv4Net = "203.0.113.0/29".parse().unwrap();
        let mut used = HashSet::from([Ipv4Addr::new(203, 0, 113, 1)]);
        assert_eq!(free_address(net, &used), Some(Ipv4Addr::new(203, 0, 113, 2)));
        used.extend((2..=6).map(|n| Ipv4Addr::new(203, 0, 113, n)));
        assert_eq!(free_address(net, &used), None, "the broadcast address is never handed out");
    }
}
