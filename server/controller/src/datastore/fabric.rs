//! The tenant fabric's desired and confirmed state. A VPC belongs on every leaf of each
//! scalable unit where one of its VMs has a port (the leaves carry the tenant's traffic
//! between hosts); `switch_vpc` records what each leaf confirmed. Only the network
//! reconciler (`background::fabric`) calls these: no request reaches them.

use std::collections::{BTreeMap, HashMap};

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};
use uuid::Uuid;

use super::entity::{host, instance, port, subnet, switch, switch_vpc, vpc};
use super::network::vpc_generation_bump;
use super::{DataStore, StoreError};

/// A VPC as a leaf must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FabricVpc {
    pub vpc_id: Uuid,
    pub vni: u32,
    pub generation: i64,
    /// (L2 VNI, CIDR) of each subnet.
    pub segments: Vec<(u32, String)>,
}

impl FabricVpc {
    /// The VRF's name on the leaves: short enough for Linux (15 characters), unique.
    pub fn vrf_name(&self) -> String {
        format!("vpc{}", self.vni)
    }
}

impl DataStore {
    /// Every (leaf, VPC) that should exist: the VPCs with ports on hosts of a scalable unit,
    /// on each leaf of that unit.
    pub(crate) async fn fabric_desired(
        &self,
    ) -> Result<BTreeMap<String, Vec<FabricVpc>>, StoreError> {
        let ports: Vec<(Uuid, Uuid)> = port::Entity::find()
            .select_only()
            .column(port::Column::InstanceId)
            .column(port::Column::SubnetId)
            .into_tuple()
            .all(&self.db)
            .await?;
        if ports.is_empty() {
            return Ok(BTreeMap::new());
        }
        let hosts_of: HashMap<Uuid, Option<Uuid>> = instance::Entity::find()
            .select_only()
            .column(instance::Column::Id)
            .column(instance::Column::HostId)
            .filter(instance::Column::Id.is_in(ports.iter().map(|(i, _)| *i)))
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let unit_of: HashMap<Uuid, i32> = host::Entity::find()
            .select_only()
            .column(host::Column::Id)
            .column(host::Column::ScalableUnit)
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let subnets = subnet::Entity::find().all(&self.db).await?;
        let vpc_of: HashMap<Uuid, Uuid> = subnets.iter().map(|s| (s.id, s.vpc_id)).collect();
        // (unit, vpc) pairs with at least one port.
        let mut wanted: BTreeMap<i32, Vec<Uuid>> = BTreeMap::new();
        for (instance_id, subnet_id) in &ports {
            let unit = hosts_of.get(instance_id).copied().flatten().and_then(|h| unit_of.get(&h));
            if let (Some(unit), Some(vpc)) = (unit, vpc_of.get(subnet_id)) {
                let vpcs = wanted.entry(*unit).or_default();
                if !vpcs.contains(vpc) {
                    vpcs.push(*vpc);
                }
            }
        }
        let vpcs: HashMap<Uuid, FabricVpc> = vpc::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|v| {
                let mut segments: Vec<(u32, String)> = subnets
                    .iter()
                    .filter(|s| s.vpc_id == v.id)
                    .map(|s| (s.vni as u32, s.cidr.clone()))
                    .collect();
                segments.sort();
                (
                    v.id,
                    FabricVpc {
                        vpc_id: v.id,
                        vni: v.vni as u32,
                        generation: v.generation,
                        segments,
                    },
                )
            })
            .collect();
        let leaves: Vec<(String, i32)> = switch::Entity::find()
            .select_only()
            .column(switch::Column::Name)
            .column(switch::Column::ScalableUnit)
            .into_tuple()
            .all(&self.db)
            .await?;
        let mut desired: BTreeMap<String, Vec<FabricVpc>> = BTreeMap::new();
        for (leaf, unit) in leaves {
            let on_leaf: Vec<FabricVpc> = wanted
                .get(&unit)
                .into_iter()
                .flatten()
                .filter_map(|id| vpcs.get(id).cloned())
                .collect();
            if !on_leaf.is_empty() {
                desired.insert(leaf, on_leaf);
            }
        }
        Ok(desired)
    }

    /// What every leaf confirmed: (leaf, VPC) → generation (0: to be sent again).
    pub(crate) async fn fabric_confirmed(
        &self,
    ) -> Result<HashMap<(String, Uuid), i64>, StoreError> {
        Ok(switch_vpc::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| ((r.switch_name, r.vpc_id), r.generation))
            .collect())
    }

    pub(crate) async fn fabric_confirm(
        &self,
        leaf: &str,
        vpc_id: Uuid,
        generation: i64,
    ) -> Result<(), StoreError> {
        let row = switch_vpc::ActiveModel {
            switch_name: sea_orm::Set(leaf.to_owned()),
            vpc_id: sea_orm::Set(vpc_id),
            generation: sea_orm::Set(generation),
        };
        switch_vpc::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([switch_vpc::Column::SwitchName, switch_vpc::Column::VpcId])
                    .update_column(switch_vpc::Column::Generation)
                    .to_owned(),
            )
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The generation a leaf's removal of the VPC fences off: its current one (every later
    /// spec has a higher one, see [`fabric_forget`](Self::fabric_forget)); the highest there
    /// is once the VPC itself is deleted.
    pub(crate) async fn fabric_fence(&self, vpc_id: Uuid) -> Result<i64, StoreError> {
        let row = vpc::Entity::find_by_id(vpc_id).one(&self.db).await?;
        Ok(row.map_or(i64::MAX, |v| v.generation))
    }

    /// The leaf dropped the VPC: its record goes, and the VPC moves to a new generation so
    /// that sending it to this leaf again is never refused by the fence.
    pub(crate) async fn fabric_forget(&self, leaf: &str, vpc_id: Uuid) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        switch_vpc::Entity::delete_many()
            .filter(switch_vpc::Column::SwitchName.eq(leaf))
            .filter(switch_vpc::Column::VpcId.eq(vpc_id))
            .exec(&txn)
            .await?;
        vpc_generation_bump(&txn, vpc_id).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A leaf's agent (re)attached: everything it should hold is sent again.
    pub(crate) async fn fabric_replay(&self, leaf: &str) -> Result<u64, StoreError> {
        let done = switch_vpc::Entity::update_many()
            .col_expr(switch_vpc::Column::Generation, Expr::value(0))
            .filter(switch_vpc::Column::SwitchName.eq(leaf))
            .exec(&self.db)
            .await?;
        Ok(done.rows_affected)
    }
}
