//! The fleet's rows as agents report them: hosts (with their inventory facts as JSON), GPUs
//! and their health, DPUs, rail switches; and the dashboard's summary of them.

use std::collections::HashMap;

use agent_proto::AgentKind;
use agent_proto::v1::{DpuInventory, HostInventory, SwitchInventory};
use portal_types::Error;
use portal_types::ids::{GenericUuid, HostUuid};
use portal_types::topology::GpuHealth;
use portal_types::views::{AgentLink, FleetSummary, HostView};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use super::entity::{dpu, gpu, host, switch};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::authz::Action;
use crate::context::OpContext;

/// A GPU health as its agent reports it (unknown values count as failed).
pub(crate) fn gpu_health(health: i32) -> GpuHealth {
    use agent_proto::v1::GpuHealth as Reported;
    match Reported::try_from(health).unwrap_or(Reported::Unspecified) {
        Reported::Ok => GpuHealth::Ok,
        Reported::Degraded => GpuHealth::Degraded,
        Reported::Failed | Reported::Unspecified => GpuHealth::Failed,
    }
}

/// What a DPU's or switch's reported boot id means (see [`DataStore::agent_boot_record`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BootRecord {
    /// The one recorded: the agent holds what it was sent.
    Same,
    /// Its first: what it holds is unknown.
    First,
    /// Another: it restarted and holds nothing.
    Restarted,
}

impl DataStore {
    /// Creates or updates a host and its GPUs from its agent's inventory; `facts` is the
    /// placement facts' JSON.
    pub(crate) async fn host_inventory_upsert(
        &self,
        url: &str,
        inv: &HostInventory,
        facts: String,
    ) -> Result<HostUuid, StoreError> {
        // Two replicas starting together may both find no row and insert (PostgreSQL): the
        // one whose insert meets the other's row reads it and updates it instead.
        let mut tries = 0;
        loop {
            match self.host_inventory_upsert_once(url, inv, &facts).await {
                Err(StoreError::Query(e))
                    if tries < 3
                        && matches!(
                            e.sql_err(),
                            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                        ) =>
                {
                    tries += 1;
                }
                done => return done,
            }
        }
    }

    async fn host_inventory_upsert_once(
        &self,
        url: &str,
        inv: &HostInventory,
        facts: &str,
    ) -> Result<HostUuid, StoreError> {
        let txn = begin_write(&self.db).await?;
        let existing =
            host::Entity::find().filter(host::Column::Name.eq(&inv.host_id)).one(&txn).await?;
        let host_id = existing.as_ref().map(|h| h.id).unwrap_or_else(Uuid::new_v4);
        let row = host::ActiveModel {
            id: Set(host_id),
            name: Set(inv.host_id.clone()),
            scalable_unit: Set(inv.scalable_unit as i32),
            system_model: Set(inv.system_model.clone()),
            agent_url: Set(url.to_owned()),
            agent_connected: Set(true),
            cordoned: Set(existing.as_ref().is_some_and(|h| h.cordoned)),
            inventory: Set(facts.to_owned()),
            claim_generation: Set(existing.as_ref().map_or(0, |h| h.claim_generation)),
            updated_at: Set(now_ms()),
        };
        if existing.is_some() {
            row.update(&txn).await?;
        } else {
            row.insert(&txn).await?;
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
                health: Set(gpu_health(g.health).as_str().to_owned()),
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
                .await?;
        }
        txn.commit().await?;
        Ok(HostUuid::from_untyped_uuid(host_id))
    }

    pub(crate) async fn dpu_inventory_upsert(
        &self,
        url: &str,
        inv: &DpuInventory,
    ) -> Result<(), StoreError> {
        let row = dpu::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(inv.dpu_id.clone()),
            host_name: Set(inv.host_id.clone()),
            model: Set(inv.model.clone()),
            agent_url: Set(url.to_owned()),
            agent_connected: Set(true),
            updated_at: Set(now_ms()),
            // Recorded by `agent_boot_record`, which decides what the agent is sent.
            boot_id: sea_orm::ActiveValue::NotSet,
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

    pub(crate) async fn switch_inventory_upsert(
        &self,
        url: &str,
        inv: &SwitchInventory,
    ) -> Result<(), StoreError> {
        let row = switch::ActiveModel {
            id: Set(Uuid::new_v4()),
            name: Set(inv.switch_id.clone()),
            model: Set(inv.model.clone()),
            scalable_unit: Set(inv.scalable_unit as i32),
            rail: Set(inv.rail as i32),
            agent_url: Set(url.to_owned()),
            agent_connected: Set(true),
            updated_at: Set(now_ms()),
            // Recorded by `agent_boot_record`, which decides what the agent is sent.
            boot_id: sea_orm::ActiveValue::NotSet,
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

    /// Records the boot id a DPU or switch agent reported and says what it means: the one
    /// recorded already, the agent's first, or another (the agent restarted). Of several
    /// replicas recording the same new id, only the first is told it changed.
    pub(crate) async fn agent_boot_record(
        &self,
        kind: AgentKind,
        name: &str,
        boot_id: &str,
    ) -> Result<BootRecord, StoreError> {
        macro_rules! swap {
            ($table:ident) => {{
                let before: Option<Option<String>> = $table::Entity::find()
                    .select_only()
                    .column($table::Column::BootId)
                    .filter($table::Column::Name.eq(name))
                    .into_tuple()
                    .one(&self.db)
                    .await?;
                let Some(before) = before else { return Ok(BootRecord::Same) };
                if before.as_deref() == Some(boot_id) {
                    return Ok(BootRecord::Same);
                }
                let unchanged = match &before {
                    Some(id) => $table::Column::BootId.eq(id.clone()),
                    None => $table::Column::BootId.is_null(),
                };
                let swapped = $table::Entity::update_many()
                    .col_expr($table::Column::BootId, boot_id.into())
                    .filter($table::Column::Name.eq(name))
                    .filter(unchanged)
                    .exec(&self.db)
                    .await?
                    .rows_affected
                    == 1;
                Ok(match (swapped, before) {
                    (false, _) => BootRecord::Same,
                    (true, None) => BootRecord::First,
                    (true, Some(_)) => BootRecord::Restarted,
                })
            }};
        }
        match kind {
            AgentKind::Dpu => swap!(dpu),
            AgentKind::Switch => swap!(switch),
            AgentKind::Host => Ok(BootRecord::Same),
        }
    }

    /// Records whether an agent is reachable; whether that changed its row (none when the
    /// agent was never attached).
    pub(crate) async fn agent_set_connected(
        &self,
        kind: AgentKind,
        name: &str,
        connected: bool,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        let changed = match kind {
            AgentKind::Host => {
                host::Entity::update_many()
                    .col_expr(host::Column::AgentConnected, connected.into())
                    .col_expr(host::Column::UpdatedAt, now.into())
                    .filter(host::Column::Name.eq(name))
                    .filter(host::Column::AgentConnected.ne(connected))
                    .exec(&self.db)
                    .await?
                    .rows_affected
            }
            AgentKind::Dpu => {
                dpu::Entity::update_many()
                    .col_expr(dpu::Column::AgentConnected, connected.into())
                    .col_expr(dpu::Column::UpdatedAt, now.into())
                    .filter(dpu::Column::Name.eq(name))
                    .filter(dpu::Column::AgentConnected.ne(connected))
                    .exec(&self.db)
                    .await?
                    .rows_affected
            }
            AgentKind::Switch => {
                switch::Entity::update_many()
                    .col_expr(switch::Column::AgentConnected, connected.into())
                    .col_expr(switch::Column::UpdatedAt, now.into())
                    .filter(switch::Column::Name.eq(name))
                    .filter(switch::Column::AgentConnected.ne(connected))
                    .exec(&self.db)
                    .await?
                    .rows_affected
            }
        };
        Ok(changed > 0)
    }

    /// Records a GPU's health; when it changed, the host's claim generation moves on too, so
    /// a claim decided with the old health fails its generation check. Whether it changed.
    pub(crate) async fn gpu_set_health(
        &self,
        host_name: &str,
        module_id: u32,
        health: GpuHealth,
    ) -> Result<bool, StoreError> {
        let txn = crate::datastore::begin_write(&self.db).await?;
        let Some(h) =
            host::Entity::find().filter(host::Column::Name.eq(host_name)).one(&txn).await?
        else {
            return Ok(false);
        };
        let r = gpu::Entity::update_many()
            .col_expr(gpu::Column::Health, health.as_str().into())
            .filter(gpu::Column::HostId.eq(h.id))
            .filter(gpu::Column::ModuleId.eq(module_id as i32))
            .filter(gpu::Column::Health.ne(health.as_str()))
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
        Ok(r.rows_affected > 0)
    }

    /// Cordons or uncordons a host.
    pub async fn host_set_cordoned(
        &self,
        opctx: &OpContext,
        host_name: &str,
        cordoned: bool,
    ) -> Result<(), StoreError> {
        opctx.authorize(Action::FleetWrite)?;
        let res = host::Entity::update_many()
            .col_expr(host::Column::Cordoned, cordoned.into())
            .filter(host::Column::Name.eq(host_name))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("host", host_name).into());
        }
        Ok(())
    }

    /// The dashboard's fleet view: every host with its GPUs used, free and unhealthy.
    pub async fn fleet_summary(&self, opctx: &OpContext) -> Result<FleetSummary, StoreError> {
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
            .await?;
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
            .await?;
        let mut per_host: HashMap<Uuid, (u32, u32, u32, String)> = HashMap::new();
        for row in counts {
            let count = |name: &str| -> Result<u32, StoreError> {
                Ok(row.try_get::<i64>("", name)?.max(0) as u32)
            };
            let host_id: Uuid = row.try_get("", "host_id")?;
            let model: String = row.try_get("", "model")?;
            let entry = per_host.entry(host_id).or_default();
            entry.0 += count("total")?;
            entry.1 += count("used")?;
            entry.2 += count("unhealthy")?;
            entry.3 = model;
        }
        let dpus = dpu::Entity::find().count(&self.db).await? as u32;
        let switches = switch::Entity::find().count(&self.db).await? as u32;
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

async fn upsert_by_name<A, C>(
    db: &impl ConnectionTrait,
    insert: sea_orm::Insert<A>,
    name: C,
    update: &[C],
) -> Result<(), StoreError>
where
    A: ActiveModelTrait,
    C: sea_orm::sea_query::IntoIden + Copy,
{
    insert
        .on_conflict(OnConflict::column(name).update_columns(update.iter().copied()).to_owned())
        .exec_without_returning(db)
        .await?;
    Ok(())
}
