//! The per-tenant GPU fabric (migration 25): the east-west network over the VMs'
//! SuperNICs, one per tenant, made when its first GPU VM launches. Rail `r` is a segment of
//! its own, `100.64.16r.0/20` with an L2 VNI derived from the fabric's L3 VNI, so every tenant
//! has the same addresses in its own VRF; the rail leaves route between rails inside it.
//! A SuperNIC joins (an address of its rail) in the create saga and leaves with the VM's
//! port ([`leave`], in `port_release`'s transaction). Every join and leave bumps the
//! fabric's generation, which the network reconciler sends to the leaves (`fabric.rs`).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use portal_types::Error;
use portal_types::network::Ipv4Net;
use portal_types::views::FabricLinkState;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{fabric_nic, gpu_fabric, switch, switch_vpc};
use super::network::{conflict, is_unique_violation};
use super::port::free_address;
use super::{DataStore, StoreError, begin_write, now_ms};

/// Fabric L3 VNIs start here, apart from VPCs' (`network::L3_VNI_BASE`) and subnets'.
const L3_VNI_BASE: i64 = 2_000_000;
/// Rail L2 VNIs: `L2_VNI_BASE + RAILS × (L3 VNI − L3_VNI_BASE) + rail`.
const L2_VNI_BASE: i64 = 3_000_000;
/// Rails a fabric has room for: the /16 holds 16 rail subnets of /20.
pub const RAILS: u32 = 16;
/// Every tenant's fabric addresses (shared address space, carrier-grade NAT's range, so
/// tenants' own VPC subnets rarely meet it); `subnet_create` keeps VPCs out of it.
pub const FABRIC_NET: Ipv4Addr = Ipv4Addr::new(100, 64, 0, 0);
pub const FABRIC_PREFIX: u8 = 16;
const RAIL_PREFIX: u8 = 20;

/// The network every tenant's GPU fabric uses.
pub fn fabric_net() -> Ipv4Net {
    Ipv4Net::new(FABRIC_NET, FABRIC_PREFIX).expect("a valid network")
}

/// Rail `rail`'s subnet (`rail` < [`RAILS`]).
pub fn rail_net(rail: u32) -> Ipv4Net {
    let base = u32::from(FABRIC_NET) + (rail << (32 - RAIL_PREFIX));
    Ipv4Net::new(Ipv4Addr::from(base), RAIL_PREFIX).expect("a valid network")
}

/// Rail `rail`'s L2 VNI in the fabric whose L3 VNI is `vni`.
pub fn rail_vni(vni: i64, rail: u32) -> u32 {
    (L2_VNI_BASE + i64::from(RAILS) * (vni - L3_VNI_BASE) + i64::from(rail)) as u32
}

/// One SuperNIC of a launching VM, from its host's inventory.
pub(crate) struct NicJoin {
    pub nic_index: u32,
    pub rail: u32,
    pub leaf: String,
    pub mac: String,
}

/// The tenant's fabric, made if it has none.
async fn fabric_of(
    txn: &DatabaseTransaction,
    tenant: Uuid,
) -> Result<gpu_fabric::Model, StoreError> {
    if let Some(found) =
        gpu_fabric::Entity::find().filter(gpu_fabric::Column::TenantId.eq(tenant)).one(txn).await?
    {
        return Ok(found);
    }
    let max: Option<Option<i64>> = gpu_fabric::Entity::find()
        .select_only()
        .column_as(gpu_fabric::Column::Vni.max(), "max")
        .into_tuple()
        .one(txn)
        .await?;
    let vni = max.flatten().map_or(L3_VNI_BASE, |m| Ord::max(m, L3_VNI_BASE - 1) + 1);
    Ok(gpu_fabric::ActiveModel {
        id: Set(Uuid::new_v4()),
        tenant_id: Set(tenant),
        vni: Set(vni),
        generation: Set(1),
        created_at: Set(now_ms()),
    }
    .insert(txn)
    .await?)
}

/// Moves the fabric to a new generation: its leaves must see the change.
pub(crate) async fn bump<C: ConnectionTrait>(db: &C, fabric: Uuid) -> Result<(), StoreError> {
    gpu_fabric::Entity::update_many()
        .col_expr(gpu_fabric::Column::Generation, Expr::col(gpu_fabric::Column::Generation).add(1))
        .filter(gpu_fabric::Column::Id.eq(fabric))
        .exec(db)
        .await?;
    Ok(())
}

/// The instance's SuperNICs leave its fabric (part of releasing its port); nothing to do
/// for a VM that had none.
pub(crate) async fn leave<C: ConnectionTrait>(db: &C, instance_id: Uuid) -> Result<(), StoreError> {
    let fabrics: Vec<Uuid> = fabric_nic::Entity::find()
        .select_only()
        .column(fabric_nic::Column::FabricId)
        .filter(fabric_nic::Column::InstanceId.eq(instance_id))
        .distinct()
        .into_tuple()
        .all(db)
        .await?;
    if fabrics.is_empty() {
        return Ok(());
    }
    fabric_nic::Entity::delete_many()
        .filter(fabric_nic::Column::InstanceId.eq(instance_id))
        .exec(db)
        .await?;
    for fabric in fabrics {
        bump(db, fabric).await?;
    }
    Ok(())
}

impl DataStore {
    /// Joins the instance's SuperNICs to its tenant's fabric (made on first use), each with
    /// the lowest free address of its rail. Idempotent: NICs that joined before (a saga
    /// step run again) keep their addresses. Returns the fabric's generation after, which
    /// the leaves must confirm.
    pub(crate) async fn fabric_join(
        &self,
        instance_id: Uuid,
        tenant_id: Uuid,
        host_name: &str,
        nics: &[NicJoin],
    ) -> Result<(Uuid, i64), StoreError> {
        if let Some(nic) = nics.iter().find(|n| n.rail >= RAILS) {
            return Err(Error::invalid(format!(
                "NIC {} of host {host_name} is on rail {}; the GPU fabric has rails 0 to {}. \
                 Fix the host's inventory.",
                nic.nic_index,
                nic.rail,
                RAILS - 1
            ))
            .into());
        }
        for _ in 0..8 {
            let txn = begin_write(&self.db).await?;
            let fabric = match fabric_of(&txn, tenant_id).await {
                Ok(fabric) => fabric,
                // Another first launch of the tenant made it (PostgreSQL): read it.
                Err(StoreError::Query(e)) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e),
            };
            let rows = fabric_nic::Entity::find()
                .filter(fabric_nic::Column::FabricId.eq(fabric.id))
                .all(&txn)
                .await?;
            let joined: HashSet<i32> =
                rows.iter().filter(|r| r.instance_id == instance_id).map(|r| r.nic_index).collect();
            let mut used: HashSet<Ipv4Addr> =
                rows.iter().filter_map(|r| r.ip.parse().ok()).collect();
            let mut added = false;
            let mut inserted = Ok(());
            for nic in nics.iter().filter(|n| !joined.contains(&(n.nic_index as i32))) {
                let net = rail_net(nic.rail);
                // The rail's first address is kept for its leaf's gateway, as a subnet's.
                let ip = free_address(net, &used).ok_or_else(|| {
                    conflict(format!(
                        "Rail {} of your GPU fabric ({net}) has no free address left; delete \
                         GPU VMs you no longer need.",
                        nic.rail
                    ))
                })?;
                used.insert(ip);
                let row = fabric_nic::ActiveModel {
                    instance_id: Set(instance_id),
                    nic_index: Set(nic.nic_index as i32),
                    fabric_id: Set(fabric.id),
                    rail: Set(nic.rail as i32),
                    host_name: Set(host_name.to_owned()),
                    leaf: Set(nic.leaf.clone()),
                    mac: Set(nic.mac.clone()),
                    ip: Set(ip.to_string()),
                };
                if let Err(e) = row.insert(&txn).await {
                    inserted = Err(e);
                    break;
                }
                added = true;
            }
            match inserted {
                // A concurrent join took the address (PostgreSQL): pick again.
                Err(e) if is_unique_violation(&e) => continue,
                Err(e) => return Err(e.into()),
                Ok(()) => {}
            }
            if added {
                bump(&txn, fabric.id).await?;
            }
            let generation = fabric.generation + i64::from(added);
            txn.commit().await?;
            return Ok((fabric.id, generation));
        }
        Err(Error::unavailable("GPU fabric addresses are being handed out fast; try again").into())
    }

    /// Of `leaves`, those a switch agent registered (the others no agent configures) that
    /// have not confirmed the fabric at `generation` or later.
    pub(crate) async fn fabric_leaves_behind(
        &self,
        fabric_id: Uuid,
        generation: i64,
        leaves: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let known: Vec<String> = switch::Entity::find()
            .select_only()
            .column(switch::Column::Name)
            .filter(switch::Column::Name.is_in(leaves.iter().cloned()))
            .into_tuple()
            .all(&self.db)
            .await?;
        let confirmed: HashSet<String> = switch_vpc::Entity::find()
            .select_only()
            .column(switch_vpc::Column::SwitchName)
            .filter(switch_vpc::Column::VpcId.eq(fabric_id))
            .filter(switch_vpc::Column::Generation.gte(generation))
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(known.into_iter().filter(|leaf| !confirmed.contains(leaf)).collect())
    }

    /// The instance's SuperNICs on its tenant's fabric with their leaves' state, by NIC index.
    pub(crate) async fn fabric_nic_states(
        &self,
        instance_id: Uuid,
    ) -> Result<Vec<(fabric_nic::Model, FabricLinkState)>, StoreError> {
        let nics = self.fabric_nics_of(instance_id).await?;
        let Some(first) = nics.first() else { return Ok(Vec::new()) };
        let generation = gpu_fabric::Entity::find_by_id(first.fabric_id)
            .one(&self.db)
            .await?
            .map_or(i64::MAX, |f| f.generation);
        let leaves: Vec<String> = nics.iter().map(|n| n.leaf.clone()).collect();
        let known: HashSet<String> = switch::Entity::find()
            .select_only()
            .column(switch::Column::Name)
            .filter(switch::Column::Name.is_in(leaves))
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let confirmed: std::collections::HashMap<String, i64> = switch_vpc::Entity::find()
            .filter(switch_vpc::Column::VpcId.eq(first.fabric_id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (r.switch_name, r.generation))
            .collect();
        Ok(nics
            .into_iter()
            .map(|nic| {
                let state = match confirmed.get(&nic.leaf) {
                    _ if !known.contains(&nic.leaf) => FabricLinkState::Unmanaged,
                    Some(&g) if g >= generation => FabricLinkState::Ready,
                    Some(&g) if g > 0 => FabricLinkState::Updating,
                    _ => FabricLinkState::Pending,
                };
                (nic, state)
            })
            .collect())
    }

    /// The instance's SuperNICs on its tenant's fabric, by NIC index.
    pub(crate) async fn fabric_nics_of(
        &self,
        instance_id: Uuid,
    ) -> Result<Vec<fabric_nic::Model>, StoreError> {
        Ok(fabric_nic::Entity::find()
            .filter(fabric_nic::Column::InstanceId.eq(instance_id))
            .order_by_asc(fabric_nic::Column::NicIndex)
            .all(&self.db)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rails_have_disjoint_subnets_and_vnis_inside_the_fabric() {
        let fabric = fabric_net();
        assert_eq!(rail_net(0).to_string(), "100.64.0.0/20");
        assert_eq!(rail_net(3).to_string(), "100.64.48.0/20");
        assert_eq!(rail_net(RAILS - 1).to_string(), "100.64.240.0/20");
        for a in 0..RAILS {
            assert!(fabric.overlaps(&rail_net(a)) && fabric.contains(rail_net(a).broadcast()));
            for b in a + 1..RAILS {
                assert!(!rail_net(a).overlaps(&rail_net(b)));
            }
        }
        assert_eq!(rail_vni(L3_VNI_BASE, 0), 3_000_000);
        assert_eq!(rail_vni(L3_VNI_BASE + 1, 0), rail_vni(L3_VNI_BASE, RAILS - 1) + 1);
        // The largest fabric VNI a 24-bit VNI space leaves room for.
        let last = L3_VNI_BASE + (0xFF_FFFF - L2_VNI_BASE) / i64::from(RAILS) - 1;
        assert!(rail_vni(last, RAILS - 1) <= 0xFF_FFFF);
    }

    #[test]
    fn addresses_skip_the_network_and_gateway() {
        let used = HashSet::from([Ipv4Addr::new(100, 64, 16, 2)]);
        assert_eq!(free_address(rail_net(1), &used), Some(Ipv4Addr::new(100, 64, 16, 3)));
    }
}
