//! The rows the admin topology pictures are drawn from: hosts, their GPUs and DPUs, rail
//! switches, and the instances that hold resources on them.

use std::collections::{BTreeSet, HashMap};

use portal_types::Error;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::entity::{dpu, gpu, host, instance, switch, tenant};
use super::{DataStore, StoreError};
use crate::authz::Action;
use crate::context::OpContext;

/// One host's rows.
pub struct HostRows {
    pub host: host::Model,
    /// By module id.
    pub gpus: Vec<gpu::Model>,
    /// By name.
    pub dpus: Vec<dpu::Model>,
}

/// One scalable unit's rows.
pub struct UnitRows {
    /// By name.
    pub hosts: Vec<host::Model>,
    pub switches: Vec<switch::Model>,
    /// By module id.
    pub gpus: Vec<gpu::Model>,
}

impl DataStore {
    pub async fn host_topology_rows(
        &self,
        opctx: &OpContext,
        host_name: &str,
    ) -> Result<HostRows, StoreError> {
        opctx.authorize(Action::FleetRead)?;
        let host = host::Entity::find()
            .filter(host::Column::Name.eq(host_name))
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("host", host_name))?;
        let gpus = gpu::Entity::find()
            .filter(gpu::Column::HostId.eq(host.id))
            .order_by_asc(gpu::Column::ModuleId)
            .all(&self.db)
            .await?;
        let dpus = dpu::Entity::find()
            .filter(dpu::Column::HostName.eq(&host.name))
            .order_by_asc(dpu::Column::Name)
            .all(&self.db)
            .await?;
        Ok(HostRows { host, gpus, dpus })
    }

    /// A unit's rows; a unit with neither hosts nor switches is not found.
    pub async fn scalable_unit_rows(
        &self,
        opctx: &OpContext,
        su: u32,
    ) -> Result<UnitRows, StoreError> {
        opctx.authorize(Action::FleetRead)?;
        let unit = su as i32;
        let hosts = host::Entity::find()
            .filter(host::Column::ScalableUnit.eq(unit))
            .order_by_asc(host::Column::Name)
            .all(&self.db)
            .await?;
        let switches = switch::Entity::find()
            .filter(switch::Column::ScalableUnit.eq(unit))
            .all(&self.db)
            .await?;
        if hosts.is_empty() && switches.is_empty() {
            return Err(Error::not_found("scalable unit", format!("su{su}")).into());
        }
        let host_ids: Vec<Uuid> = hosts.iter().map(|h| h.id).collect();
        let gpus = gpu::Entity::find()
            .filter(gpu::Column::HostId.is_in(host_ids))
            .order_by_asc(gpu::Column::ModuleId)
            .all(&self.db)
            .await?;
        Ok(UnitRows { hosts, switches, gpus })
    }

    /// Instances still holding resources (as the scheduler counts them, see
    /// `instance::holding`) on `host_ids`, oldest first, each with its tenant's name.
    pub async fn instances_holding_on(
        &self,
        opctx: &OpContext,
        host_ids: Vec<Uuid>,
    ) -> Result<Vec<(instance::Model, String)>, StoreError> {
        opctx.authorize(Action::FleetRead)?;
        let rows = instance::Entity::find()
            .filter(super::instance::holding())
            .filter(instance::Column::HostId.is_in(host_ids))
            .order_by_asc(instance::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let tenant_ids: BTreeSet<Uuid> = rows.iter().map(|r| r.tenant_id).collect();
        let tenants: HashMap<Uuid, String> = tenant::Entity::find()
            .filter(tenant::Column::Id.is_in(tenant_ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        Ok(rows
            .into_iter()
            .map(|r| {
                let name = tenants.get(&r.tenant_id).cloned().unwrap_or_default();
                (r, name)
            })
            .collect())
    }
}
