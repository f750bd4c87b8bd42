//! The tenant fabric's desired and confirmed state. A VPC belongs on every leaf of each
//! scalable unit where one of its VMs has a port (the leaves carry the tenant's traffic
//! between hosts); a tenant's GPU fabric belongs on every rail leaf one of its SuperNICs is
//! cabled to, with that rail's segment only and the NICs as its access ports
//! (`gpu_fabric`). `switch_vpc` records what each leaf confirmed of either, by id (a VPC's
//! or a GPU fabric's: both are VPCs to a leaf). The network reconciler
//! (`background::fabric`) calls these, except [`DataStore::scalable_unit_fabric_rows`]: the
//! provider admins' read-only picture of one unit's fabric.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use portal_types::Error;
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::entity::{
    dpu, fabric_nic, gpu_fabric, host, instance, port, subnet, switch, switch_vpc, tenant, vpc,
};
use super::gpu_fabric::{rail_net, rail_vni};
use super::network::vpc_generation_bump;
use super::{DataStore, StoreError};
use crate::authz::Action;
use crate::context::OpContext;

/// A tenant port of a VM on one of a unit's hosts, as the fabric picture counts it.
pub struct UnitPort {
    pub subnet_id: Uuid,
    pub dpu_name: Option<String>,
    /// True when its DPU has not confirmed its latest generation.
    pub pending: bool,
}

/// One scalable unit's fabric rows (see [`DataStore::scalable_unit_fabric_rows`]).
pub struct UnitFabricRows {
    /// By rail, then name.
    pub switches: Vec<switch::Model>,
    /// The DPUs of the unit's hosts, by host then name.
    pub dpus: Vec<dpu::Model>,
    /// The ports of VMs placed on the unit's hosts: their VPCs belong on the unit's leaves.
    pub ports: Vec<UnitPort>,
    /// What the unit's leaves confirmed.
    pub confirmed: Vec<switch_vpc::Model>,
    /// The VPCs the ports are in or the leaves confirmed (a deleted one is missing).
    pub vpcs: Vec<vpc::Model>,
    /// Every subnet of those VPCs.
    pub subnets: Vec<subnet::Model>,
    /// Tenant id → name, for those VPCs and GPU fabrics.
    pub tenants: HashMap<Uuid, String>,
    /// The GPU fabrics each leaf of the unit should hold: (leaf, fabric id, its rails' L2
    /// VNIs there).
    pub gpu_wanted: Vec<(String, Uuid, Vec<u32>)>,
    /// Those GPU fabrics and the ones the unit's leaves confirmed.
    pub gpu_fabrics: Vec<gpu_fabric::Model>,
}

/// A VPC, or a tenant's GPU fabric, as a leaf must hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FabricVpc {
    /// The VPC's id, or the GPU fabric's.
    pub vpc_id: Uuid,
    pub vni: u32,
    pub generation: i64,
    pub segments: Vec<FabricSegment>,
    pub gpu_fabric: bool,
}

/// Host NICs by (host name, NIC index).
type Attachments = Vec<(String, u32)>;

/// A subnet (or a GPU fabric's rail) on a leaf.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct FabricSegment {
    pub vni: u32,
    pub cidr: String,
    /// The host NICs whose leaf ports join it; none for a subnet.
    pub attachments: Attachments,
}

impl FabricVpc {
    /// The VRF's name on the leaves: short enough for Linux (15 characters), unique.
    pub fn vrf_name(&self) -> String {
        match self.gpu_fabric {
            true => format!("gpu{}", self.vni),
            false => format!("vpc{}", self.vni),
        }
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
                let mut segments: Vec<FabricSegment> = subnets
                    .iter()
                    .filter(|s| s.vpc_id == v.id)
                    .map(|s| FabricSegment {
                        vni: s.vni as u32,
                        cidr: s.cidr.clone(),
                        attachments: Vec::new(),
                    })
                    .collect();
                segments.sort();
                (
                    v.id,
                    FabricVpc {
                        vpc_id: v.id,
                        vni: v.vni as u32,
                        generation: v.generation,
                        segments,
                        gpu_fabric: false,
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
        for (leaf, fabric) in self.gpu_fabrics_desired().await? {
            desired.entry(leaf).or_default().push(fabric);
        }
        Ok(desired)
    }

    /// Every (leaf, GPU fabric) that should exist: each fabric on the leaves its SuperNICs
    /// are cabled to, with the rails' segments those NICs are on and them attached. A leaf
    /// no switch agent registered is left out (nothing could configure it).
    async fn gpu_fabrics_desired(&self) -> Result<Vec<(String, FabricVpc)>, StoreError> {
        let leaves: BTreeSet<String> = switch::Entity::find()
            .select_only()
            .column(switch::Column::Name)
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        let nics = fabric_nic::Entity::find()
            .order_by_asc(fabric_nic::Column::HostName)
            .order_by_asc(fabric_nic::Column::NicIndex)
            .all(&self.db)
            .await?;
        if nics.is_empty() {
            return Ok(Vec::new());
        }
        let fabrics: HashMap<Uuid, gpu_fabric::Model> = gpu_fabric::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|f| (f.id, f))
            .collect();
        // (leaf, fabric) → rail → attachments.
        let mut wanted: BTreeMap<(String, Uuid), BTreeMap<u32, Attachments>> = BTreeMap::new();
        for nic in nics.into_iter().filter(|n| leaves.contains(&n.leaf)) {
            wanted
                .entry((nic.leaf, nic.fabric_id))
                .or_default()
                .entry(nic.rail as u32)
                .or_default()
                .push((nic.host_name, nic.nic_index as u32));
        }
        Ok(wanted
            .into_iter()
            .filter_map(|((leaf, id), rails)| {
                let fabric = fabrics.get(&id)?;
                let segments = rails
                    .into_iter()
                    .map(|(rail, attachments)| FabricSegment {
                        vni: rail_vni(fabric.vni, rail),
                        cidr: rail_net(rail).to_string(),
                        attachments,
                    })
                    .collect();
                let vpc = FabricVpc {
                    vpc_id: id,
                    vni: fabric.vni as u32,
                    generation: fabric.generation,
                    segments,
                    gpu_fabric: true,
                };
                Some((leaf, vpc))
            })
            .collect())
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

    /// Records that leaf `leaf`, answering as boot `boot_id`, holds the VPC at `generation`;
    /// nothing when the database knows the leaf by another boot. A restart recorded between
    /// the leaf's answer and this write has already marked everything to be sent again, and
    /// the old boot's answer must not undo that. One statement, so that the boot cannot
    /// change between the check and the write.
    pub(crate) async fn fabric_confirm(
        &self,
        leaf: &str,
        vpc_id: Uuid,
        generation: i64,
        boot_id: &str,
    ) -> Result<(), StoreError> {
        let known_boot = Query::select()
            .expr(Expr::val(1))
            .from(switch::Entity)
            .and_where(switch::Column::Name.eq(leaf))
            .cond_where(
                Condition::any()
                    .add(switch::Column::BootId.eq(boot_id))
                    .add(switch::Column::BootId.is_null()),
            )
            .to_owned();
        let row = Query::select()
            .exprs([Expr::val(leaf), Expr::val(vpc_id), Expr::val(generation)])
            .and_where(Expr::exists(known_boot))
            .to_owned();
        let upsert = Query::insert()
            .into_table(switch_vpc::Entity)
            .columns([
                switch_vpc::Column::SwitchName,
                switch_vpc::Column::VpcId,
                switch_vpc::Column::Generation,
            ])
            .select_from(row)
            .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?
            .on_conflict(
                OnConflict::columns([switch_vpc::Column::SwitchName, switch_vpc::Column::VpcId])
                    .update_column(switch_vpc::Column::Generation)
                    .to_owned(),
            )
            .to_owned();
        self.db.execute(&upsert).await?;
        Ok(())
    }

    /// The generation a leaf's removal of the VPC fences off: its current one (every later
    /// spec has a higher one, see [`fabric_forget`](Self::fabric_forget)); the highest there
    /// is once the VPC itself is deleted.
    pub(crate) async fn fabric_fence(&self, vpc_id: Uuid) -> Result<i64, StoreError> {
        if let Some(v) = vpc::Entity::find_by_id(vpc_id).one(&self.db).await? {
            return Ok(v.generation);
        }
        let fabric = gpu_fabric::Entity::find_by_id(vpc_id).one(&self.db).await?;
        Ok(fabric.map_or(i64::MAX, |f| f.generation))
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
        // The id is a VPC's or a GPU fabric's: the other bump finds no row.
        vpc_generation_bump(&txn, vpc_id).await?;
        super::gpu_fabric::bump(&txn, vpc_id).await?;
        txn.commit().await?;
        Ok(())
    }

    /// The VPCs (and GPU fabrics) leaf `leaf` confirmed and has not been asked to take again.
    pub(crate) async fn fabric_confirmed_on(&self, leaf: &str) -> Result<Vec<Uuid>, StoreError> {
        Ok(switch_vpc::Entity::find()
            .select_only()
            .column(switch_vpc::Column::VpcId)
            .filter(switch_vpc::Column::SwitchName.eq(leaf))
            .filter(switch_vpc::Column::Generation.gt(0))
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// The VPCs and GPU fabrics leaf `leaf` should hold or was told to hold (a row the
    /// reconciler will remove is still the control plane's business, not a stray).
    pub(crate) async fn fabric_known_on(&self, leaf: &str) -> Result<BTreeSet<Uuid>, StoreError> {
        let mut known: BTreeSet<Uuid> = self
            .fabric_desired()
            .await?
            .remove(leaf)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.vpc_id)
            .collect();
        let rows: Vec<Uuid> = switch_vpc::Entity::find()
            .select_only()
            .column(switch_vpc::Column::VpcId)
            .filter(switch_vpc::Column::SwitchName.eq(leaf))
            .into_tuple()
            .all(&self.db)
            .await?;
        known.extend(rows);
        Ok(known)
    }

    /// Leaf `leaf` lost VPC `vpc_id`: it is sent again.
    pub(crate) async fn fabric_replay_one(
        &self,
        leaf: &str,
        vpc_id: Uuid,
    ) -> Result<(), StoreError> {
        switch_vpc::Entity::update_many()
            .col_expr(switch_vpc::Column::Generation, Expr::value(0))
            .filter(switch_vpc::Column::SwitchName.eq(leaf))
            .filter(switch_vpc::Column::VpcId.eq(vpc_id))
            .exec(&self.db)
            .await?;
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

    /// The rows of one scalable unit's fabric picture, read only; a unit with neither hosts
    /// nor switches is not found. Separate statements: a change landing meanwhile shows up
    /// on the next read.
    pub async fn scalable_unit_fabric_rows(
        &self,
        opctx: &OpContext,
        su: u32,
    ) -> Result<UnitFabricRows, StoreError> {
        opctx.authorize(Action::FleetRead)?;
        let unit = su as i32;
        let hosts: Vec<(Uuid, String)> = host::Entity::find()
            .select_only()
            .column(host::Column::Id)
            .column(host::Column::Name)
            .filter(host::Column::ScalableUnit.eq(unit))
            .into_tuple()
            .all(&self.db)
            .await?;
        let switches = switch::Entity::find()
            .filter(switch::Column::ScalableUnit.eq(unit))
            .order_by_asc(switch::Column::Rail)
            .order_by_asc(switch::Column::Name)
            .all(&self.db)
            .await?;
        if hosts.is_empty() && switches.is_empty() {
            return Err(Error::not_found("scalable unit", format!("su{su}")).into());
        }
        let dpus = dpu::Entity::find()
            .filter(dpu::Column::HostName.is_in(hosts.iter().map(|(_, name)| name.clone())))
            .order_by_asc(dpu::Column::HostName)
            .order_by_asc(dpu::Column::Name)
            .all(&self.db)
            .await?;
        let instance_ids: Vec<Uuid> = instance::Entity::find()
            .select_only()
            .column(instance::Column::Id)
            .filter(instance::Column::HostId.is_in(hosts.iter().map(|(id, _)| *id)))
            .into_tuple()
            .all(&self.db)
            .await?;
        let port_rows: Vec<(Uuid, Option<String>, i64, i64)> = if instance_ids.is_empty() {
            Vec::new()
        } else {
            port::Entity::find()
                .select_only()
                .column(port::Column::SubnetId)
                .column(port::Column::DpuName)
                .column(port::Column::Generation)
                .column(port::Column::AppliedGeneration)
                .filter(port::Column::InstanceId.is_in(instance_ids))
                .into_tuple()
                .all(&self.db)
                .await?
        };
        let ports: Vec<UnitPort> = port_rows
            .into_iter()
            .map(|(subnet_id, dpu_name, generation, applied)| UnitPort {
                subnet_id,
                dpu_name,
                pending: applied < generation,
            })
            .collect();
        let confirmed = switch_vpc::Entity::find()
            .filter(switch_vpc::Column::SwitchName.is_in(switches.iter().map(|s| s.name.clone())))
            .all(&self.db)
            .await?;
        let unit_leaves: BTreeSet<&str> = switches.iter().map(|s| s.name.as_str()).collect();
        let gpu_wanted: Vec<(String, Uuid, Vec<u32>)> = self
            .gpu_fabrics_desired()
            .await?
            .into_iter()
            .filter(|(leaf, _)| unit_leaves.contains(leaf.as_str()))
            .map(|(leaf, f)| (leaf, f.vpc_id, f.segments.iter().map(|s| s.vni).collect()))
            .collect();
        let mut gpu_ids: BTreeSet<Uuid> = gpu_wanted.iter().map(|(_, id, _)| *id).collect();
        gpu_ids.extend(confirmed.iter().map(|c| c.vpc_id));
        let gpu_fabrics = gpu_fabric::Entity::find()
            .filter(gpu_fabric::Column::Id.is_in(gpu_ids))
            .all(&self.db)
            .await?;
        let port_subnets: BTreeSet<Uuid> = ports.iter().map(|p| p.subnet_id).collect();
        let mut vpc_ids: BTreeSet<Uuid> = if port_subnets.is_empty() {
            BTreeSet::new()
        } else {
            subnet::Entity::find()
                .select_only()
                .column(subnet::Column::VpcId)
                .filter(subnet::Column::Id.is_in(port_subnets))
                .into_tuple::<Uuid>()
                .all(&self.db)
                .await?
                .into_iter()
                .collect()
        };
        vpc_ids.extend(confirmed.iter().map(|c| c.vpc_id));
        let vpcs = vpc::Entity::find()
            .filter(vpc::Column::Id.is_in(vpc_ids.clone()))
            .all(&self.db)
            .await?;
        let subnets = subnet::Entity::find()
            .filter(subnet::Column::VpcId.is_in(vpc_ids))
            .order_by_asc(subnet::Column::Vni)
            .all(&self.db)
            .await?;
        let tenant_ids: BTreeSet<Uuid> = vpcs
            .iter()
            .map(|v| v.tenant_id)
            .chain(gpu_fabrics.iter().map(|f| f.tenant_id))
            .collect();
        let tenants = tenant::Entity::find()
            .select_only()
            .column(tenant::Column::Id)
            .column(tenant::Column::Name)
            .filter(tenant::Column::Id.is_in(tenant_ids))
            .into_tuple::<(Uuid, String)>()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(UnitFabricRows {
            switches,
            dpus,
            ports,
            confirmed,
            vpcs,
            subnets,
            tenants,
            gpu_wanted,
            gpu_fabrics,
        })
    }
}

#[cfg(test)]
mod tests {
    use agent_proto::AgentKind;
    use sea_orm::Set;

    use super::*;

    /// A leaf's confirmation counts only while the database knows the leaf by the boot that
    /// answered: the late answer of an agent that restarted since does not undo the replay
    /// its restart caused.
    #[tokio::test]
    async fn confirmations_count_only_from_the_boot_the_database_knows() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("portal.db").display());
        let ds =
            super::super::with_startup_lock(&url, |e| e, async |ds| Ok(ds.clone())).await.unwrap();
        let leaf = "su1-leaf0";
        let row = switch::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(leaf.to_owned()),
            model: Set("SN5600".to_owned()),
            scalable_unit: Set(1),
            rail: Set(0),
            agent_url: Set("https://127.0.0.1:1".to_owned()),
            agent_connected: Set(true),
            updated_at: Set(0),
            boot_id: Set(None),
        };
        switch::Entity::insert(row).exec(&ds.db).await.unwrap();
        let vpc = Uuid::new_v4();
        let confirmed =
            async || ds.fabric_confirmed().await.unwrap().get(&(leaf.into(), vpc)).copied();

        // No boot recorded yet: taken (recording one later marks everything to send again).
        ds.fabric_confirm(leaf, vpc, 3, "boot-1").await.unwrap();
        assert_eq!(confirmed().await, Some(3));
        ds.agent_boot_record(AgentKind::Switch, leaf, "boot-1").await.unwrap();
        ds.fabric_confirm(leaf, vpc, 4, "boot-1").await.unwrap();
        assert_eq!(confirmed().await, Some(4));

        // The agent restarts: the new boot is recorded and everything marked for sending.
        ds.agent_boot_record(AgentKind::Switch, leaf, "boot-2").await.unwrap();
        assert_eq!(ds.fabric_replay(leaf).await.unwrap(), 1);
        // The old boot's answer, arriving late, changes nothing; the new boot's counts.
        ds.fabric_confirm(leaf, vpc, 4, "boot-1").await.unwrap();
        assert_eq!(confirmed().await, Some(0));
        ds.fabric_confirm(leaf, vpc, 4, "boot-2").await.unwrap();
        assert_eq!(confirmed().await, Some(4));

        // A leaf the database does not know gets no record.
        ds.fabric_confirm("su9-leaf0", vpc, 4, "boot-1").await.unwrap();
        assert!(!ds.fabric_confirmed().await.unwrap().contains_key(&("su9-leaf0".into(), vpc)));
    }
}
