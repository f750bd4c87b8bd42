//! The fleet as agents report it: inventory ingest (hosts, GPUs, DPUs, switches) and the
//! summary the dashboard shows.

use std::collections::HashMap;

use agent_proto::v1::{DpuInventory, GpuHealth, GpuStatus, HostInventory, SwitchInventory};
use portal_types::Error;
use portal_types::ids::{GenericUuid, HostUuid};
use portal_types::views::{
    AgentLink, Capacity, FleetSummary, HostView, Launchable, LiveEvent, ModelCapacity,
};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::entity::{dpu, gpu, host, switch};
use crate::datastore::now_ms;

/// The parts of a host's inventory placement needs beyond the GPU rows, stored as JSON on
/// the host row. Everything comes from the agent; nothing is assumed about the hardware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    pub numa_nodes: Vec<NumaFacts>,
    pub nics: Vec<NicFacts>,
    pub partitions: Vec<PartitionFacts>,
    pub dpu_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumaFacts {
    pub id: u32,
    pub cpus: Vec<u32>,
    pub hugepages_1g_total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicFacts {
    pub index: u32,
    pub name: String,
    pub numa_node: u32,
    pub pcie_switch: String,
    pub rail: u32,
    pub leaf_switch_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionFacts {
    pub id: u32,
    pub module_ids: Vec<u32>,
}

impl From<&HostInventory> for HostFacts {
    fn from(inv: &HostInventory) -> Self {
        HostFacts {
            numa_nodes: inv
                .numa_nodes
                .iter()
                .map(|n| NumaFacts {
                    id: n.id,
                    cpus: n.cpus.clone(),
                    hugepages_1g_total: n.hugepages_1g_total,
                })
                .collect(),
            nics: inv
                .nics
                .iter()
                .map(|n| NicFacts {
                    index: n.index,
                    name: n.name.clone(),
                    numa_node: n.numa_node,
                    pcie_switch: n.pcie_switch.clone(),
                    rail: n.rail,
                    leaf_switch_id: n.leaf_switch_id.clone(),
                })
                .collect(),
            partitions: inv
                .partitions
                .iter()
                .map(|p| PartitionFacts { id: p.id, module_ids: p.module_ids.clone() })
                .collect(),
            dpu_ids: inv.dpu_ids.clone(),
        }
    }
}

pub(crate) fn health_str(health: i32) -> &'static str {
    match GpuHealth::try_from(health).unwrap_or(GpuHealth::Unspecified) {
        GpuHealth::Ok => "ok",
        GpuHealth::Degraded => "degraded",
        GpuHealth::Failed | GpuHealth::Unspecified => "failed",
    }
}

impl Controller {
    /// Records what a host agent reported, creating or updating the host and its GPUs.
    pub(crate) async fn host_inventory_ingest(
        &self,
        url: &str,
        inv: &HostInventory,
    ) -> Result<HostUuid, Error> {
        let facts = serde_json::to_string(&HostFacts::from(inv)).map_err(Error::internal)?;
        let txn = crate::datastore::begin_write(&self.db).await.map_err(Error::internal)?;
        let existing = host::Entity::find()
            .filter(host::Column::Name.eq(&inv.host_id))
            .one(&txn)
            .await
            .map_err(Error::internal)?;
        let host_id = existing.as_ref().map(|h| h.id).unwrap_or_else(Uuid::new_v4);
        let row = host::ActiveModel {
            id: Set(host_id),
            name: Set(inv.host_id.clone()),
            scalable_unit: Set(inv.scalable_unit as i32),
            system_model: Set(inv.system_model.clone()),
            agent_url: Set(url.to_owned()),
            agent_connected: Set(true),
            cordoned: Set(existing.as_ref().is_some_and(|h| h.cordoned)),
            inventory: Set(facts),
            claim_generation: Set(existing.as_ref().map_or(0, |h| h.claim_generation)),
            updated_at: Set(now_ms()),
        };
        if existing.is_some() {
            row.update(&txn).await.map_err(Error::internal)?;
        } else {
            row.insert(&txn).await.map_err(Error::internal)?;
        }
        for g in &inv.gpus {
            let row = gpu::ActiveModel {
                id: Set(Uuid::new_v4()),
                host_id: Set(host_id),
                module_id: Set(g.module_id as i32),
                smi_index: Set(g.index as i32),
                model: Set(g.model.clone()),
                pci_address: Set(g.pci_address.clone()),
                numa_node: Set(g.numa_node as i32),
                pcie_switch: Set(g.pcie_switch.clone()),
                health: Set(health_str(g.health).to_owned()),
            };
            gpu::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([gpu::Column::HostId, gpu::Column::ModuleId])
                        .update_columns([
                            gpu::Column::SmiIndex,
                            gpu::Column::Model,
                            gpu::Column::PciAddress,
                            gpu::Column::NumaNode,
                            gpu::Column::PcieSwitch,
                            gpu::Column::Health,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await
                .map_err(Error::internal)?;
        }
        txn.commit().await.map_err(Error::internal)?;
        Ok(HostUuid::from_untyped_uuid(host_id))
    }

    pub(crate) async fn dpu_inventory_ingest(
        &self,
        url: &str,
        inv: &DpuInventory,
    ) -> Result<(), Error> {
        let row = dpu::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(inv.dpu_id.clone()),
            host_name: Set(inv.host_id.clone()),
            model: Set(inv.model.clone()),
            agent_url: Set(url.to_owned()),
            agent_connected: Set(true),
            updated_at: Set(now_ms()),
        };
        upsert_by_name(
            &self.db,
            dpu::Entity::insert(row),
            dpu::Column::Name,
            &[
                dpu::Column::HostName,
                dpu::Column::Model,
                dpu::Column::AgentUrl,
                dpu::Column::AgentConnected,
                dpu::Column::UpdatedAt,
            ],
        )
        .await
    }

    pub(crate) async fn switch_inventory_ingest(
        &self,
        url: &str,
        inv: &SwitchInventory,
    ) -> Result<(), Error> {
        let row = switch::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(inv.switch_id.clone()),
            model: Set(inv.model.clone()),
            scalable_unit: Set(inv.scalable_unit as i32),
            rail: Set(inv.rail as i32),
            agent_url: Set(url.to_owned()),
            agent_connected: Set(true),
            updated_at: Set(now_ms()),
        };
        upsert_by_name(
            &self.db,
            switch::Entity::insert(row),
            switch::Column::Name,
            &[
                switch::Column::Model,
                switch::Column::ScalableUnit,
                switch::Column::Rail,
                switch::Column::AgentUrl,
                switch::Column::AgentConnected,
                switch::Column::UpdatedAt,
            ],
        )
        .await
    }

    /// A host's watch stream came up or broke: the scheduler must skip hosts it cannot reach.
    pub(crate) async fn set_host_connected(&self, name: &str, connected: bool) {
        let res = host::Entity::update_many()
            .col_expr(host::Column::AgentConnected, connected.into())
            .col_expr(host::Column::UpdatedAt, now_ms().into())
            .filter(host::Column::Name.eq(name))
            .filter(host::Column::AgentConnected.ne(connected))
            .exec(&self.db)
            .await;
        // This replica's own link decides its scheduler, also when another replica already
        // recorded the same change (then the update found nothing to change).
        if let Some(placer) = self.placer.lock().await.as_mut() {
            let _ = placer.scheduler.set_agent_reachable(name, connected);
        }
        match res {
            Ok(r) if r.rows_affected > 0 => {
                tracing::info!(host = %name, connected, "host agent link changed");
                self.events.publish(None, LiveEvent::FleetChanged);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(host = %name, error = %e, "cannot record host agent link"),
        }
    }

    pub(crate) async fn apply_gpu_status(&self, host_name: &str, status: GpuStatus) {
        let res = async {
            let txn = crate::datastore::begin_write(&self.db).await?;
            let Some(h) =
                host::Entity::find().filter(host::Column::Name.eq(host_name)).one(&txn).await?
            else {
                return Ok(0);
            };
            let r = gpu::Entity::update_many()
                .col_expr(gpu::Column::Health, health_str(status.health).into())
                .filter(gpu::Column::HostId.eq(h.id))
                .filter(gpu::Column::ModuleId.eq(status.module_id as i32))
                .filter(gpu::Column::Health.ne(health_str(status.health)))
                .exec(&txn)
                .await?;
            if r.rows_affected > 0 {
                // A claim on this host decided with the old health fails its generation check.
                host::Entity::update_many()
                    .col_expr(
                        host::Column::ClaimGeneration,
                        sea_orm::sea_query::ExprTrait::add(
                            sea_orm::sea_query::Expr::col(host::Column::ClaimGeneration),
                            1,
                        ),
                    )
                    .filter(host::Column::Id.eq(h.id))
                    .exec(&txn)
                    .await?;
            }
            txn.commit().await?;
            Ok::<_, sea_orm::DbErr>(r.rows_affected)
        }
        .await;
        // This replica's scheduler follows its own watch stream, also when another replica
        // recorded the change first.
        if let Some(placer) = self.placer.lock().await.as_mut() {
            let healthy = health_str(status.health) != "failed";
            let _ = placer.scheduler.set_gpu_healthy(host_name, status.module_id as u8, healthy);
        }
        match res {
            Ok(0) => {}
            Ok(_) => {
                self.fleet_changed(host_name).await;
                tracing::info!(host = %host_name, module = status.module_id, health = health_str(status.health), message = %status.message, "GPU health changed");
                self.events.publish(None, LiveEvent::FleetChanged);
            }
            Err(e) => tracing::error!(host = %host_name, error = %e, "cannot record GPU health"),
        }
    }

    /// The dashboard's fleet view: every host with its GPUs used, free and unhealthy.
    pub async fn fleet_summary(&self, opctx: &OpContext) -> Result<FleetSummary, Error> {
        opctx.authorize(Action::FleetRead)?;
        // Only the columns the map shows (not the topology facts), and the GPUs counted by
        // the database: a few rows per host instead of every GPU and claim.
        let hosts: Vec<(Uuid, String, i32, String, bool, bool)> = host::Entity::find()
            .select_only()
            .columns([
                host::Column::Id,
                host::Column::Name,
                host::Column::ScalableUnit,
                host::Column::SystemModel,
                host::Column::AgentConnected,
                host::Column::Cordoned,
            ])
            .order_by_asc(host::Column::Name)
            .into_tuple()
            .all(&self.db)
            .await
            .map_err(Error::internal)?;
        let backend = self.db.get_database_backend();
        let counts = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                backend,
                "SELECT gpu.host_id, gpu.model, COUNT(*) AS total, \
                 COUNT(gpu_claim.gpu_id) AS used, \
                 SUM(CASE WHEN gpu_claim.gpu_id IS NULL AND gpu.health = 'failed' \
                     THEN 1 ELSE 0 END) AS unhealthy \
                 FROM gpu LEFT JOIN gpu_claim ON gpu_claim.gpu_id = gpu.id \
                 GROUP BY gpu.host_id, gpu.model",
            ))
            .await
            .map_err(Error::internal)?;
        let mut per_host: HashMap<Uuid, (u32, u32, u32, String)> = HashMap::new();
        for row in counts {
            let count = |name: &str| -> Result<u32, Error> {
                Ok(row.try_get::<i64>("", name).map_err(Error::internal)?.max(0) as u32)
            };
            let host_id: Uuid = row.try_get("", "host_id").map_err(Error::internal)?;
            let model: String = row.try_get("", "model").map_err(Error::internal)?;
            let entry = per_host.entry(host_id).or_default();
            entry.0 += count("total")?;
            entry.1 += count("used")?;
            entry.2 += count("unhealthy")?;
            entry.3 = model;
        }
        let dpus = dpu::Entity::find().count(&self.db).await.map_err(Error::internal)? as u32;
        let switches =
            switch::Entity::find().count(&self.db).await.map_err(Error::internal)? as u32;
        Ok(FleetSummary {
            hosts: hosts
                .into_iter()
                .map(|(id, name, scalable_unit, system_model, agent_connected, cordoned)| {
                    let (total, used, unhealthy, model) =
                        per_host.get(&id).cloned().unwrap_or_default();
                    HostView {
                        id: HostUuid::from_untyped_uuid(id),
                        name,
                        scalable_unit: scalable_unit as u32,
                        system_model,
                        gpu_model: model,
                        gpus_total: total,
                        gpus_used: used,
                        gpus_unhealthy: unhealthy,
                        agent: if agent_connected {
                            AgentLink::Connected
                        } else {
                            AgentLink::Unreachable
                        },
                        cordoned,
                    }
                })
                .collect(),
            dpus,
            switches,
        })
    }
}

/// The scheduler's capacity figures as the portal shows them.
pub(crate) fn capacity_view(m: &portal_scheduler::ModelCapacity) -> ModelCapacity {
    let l = m.launchable;
    ModelCapacity {
        model: m.model.clone(),
        launchable: Launchable { x8: l.x8, x4: l.x4, x2: l.x2, x1: l.x1 },
        free_gpus: m.free_gpus,
        fragmented_gpus: m.fragmented_gpus,
    }
}

impl Controller {
    /// Takes a host out of scheduling for maintenance (its VMs stay) or puts it back.
    pub async fn host_set_cordoned(
        &self,
        opctx: &OpContext,
        host_name: &str,
        cordoned: bool,
    ) -> Result<(), Error> {
        let result = self.host_set_cordoned_unaudited(opctx, host_name, cordoned).await;
        self.audited(
            opctx,
            if cordoned { "host.cordon" } else { "host.uncordon" },
            "host",
            host_name,
            result,
        )
        .await
    }

    async fn host_set_cordoned_unaudited(
        &self,
        opctx: &OpContext,
        host_name: &str,
        cordoned: bool,
    ) -> Result<(), Error> {
        opctx.authorize(Action::FleetWrite)?;
        // Under the placer's lock, so no launch decides between the row and the scheduler.
        let mut placer = self.placer.lock().await;
        let res = host::Entity::update_many()
            .col_expr(host::Column::Cordoned, cordoned.into())
            .filter(host::Column::Name.eq(host_name))
            .exec(&self.db)
            .await
            .map_err(Error::internal)?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("host", host_name));
        }
        if let Some(placer) = placer.as_mut() {
            placer.scheduler.set_cordoned(host_name, cordoned).map_err(Error::internal)?;
        }
        drop(placer);
        self.fleet_changed(host_name).await;
        tracing::info!(host = %host_name, cordoned, "host cordon changed");
        self.events.publish(None, LiveEvent::FleetChanged);
        Ok(())
    }

    /// "Still launchable: a×8, b×4, c×2, d×1" fleet-wide for everyone; per scalable unit for
    /// provider admins.
    pub async fn capacity(&self, opctx: &OpContext) -> Result<Capacity, Error> {
        let actor = opctx.authorize(Action::CapacityRead)?;
        let guard = self.placer.lock().await;
        let Some(placer) = guard.as_ref() else { return Ok(Capacity::default()) };
        let scheduler = &placer.scheduler;
        let scalable_units = if actor.provider_admin {
            scheduler
                .scalable_units()
                .map(|su| {
                    let models = scheduler.scalable_unit_capacity(su).unwrap_or_default();
                    (su.to_owned(), models.iter().map(capacity_view).collect())
                })
                .collect()
        } else {
            Vec::new()
        };
        Ok(Capacity {
            fleet: scheduler.capacity().iter().map(capacity_view).collect(),
            scalable_units,
        })
    }
}

async fn upsert_by_name<A, C>(
    db: &impl ConnectionTrait,
    insert: sea_orm::Insert<A>,
    name: C,
    update: &[C],
) -> Result<(), Error>
where
    A: ActiveModelTrait,
    C: sea_orm::sea_query::IntoIden + Copy,
{
    insert
        .on_conflict(OnConflict::column(name).update_columns(update.iter().copied()).to_owned())
        .exec_without_returning(db)
        .await
        .map_err(Error::internal)?;
    Ok(())
}
