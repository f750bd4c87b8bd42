//! What the in-memory scheduler is built from and kept in step with: hosts with their
//! facts, GPUs and their health, and the instances that hold resources.

use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::topology::GpuHealth;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect};
use uuid::Uuid;

use super::entity::{gpu, host, instance};
use super::{DataStore, StoreError};

impl DataStore {
    /// Every host and every GPU.
    pub(crate) async fn placement_hosts(
        &self,
    ) -> Result<(Vec<host::Model>, Vec<gpu::Model>), StoreError> {
        let hosts = host::Entity::find().all(&self.db).await?;
        let gpus = gpu::Entity::find().all(&self.db).await?;
        Ok((hosts, gpus))
    }

    pub(crate) async fn host_row(&self, id: Uuid) -> Result<Option<host::Model>, StoreError> {
        Ok(host::Entity::find_by_id(id).one(&self.db).await?)
    }

    /// Instances that hold host resources (see `instance::holding`), on one host or all.
    pub(crate) async fn instances_holding(
        &self,
        host_id: Option<Uuid>,
    ) -> Result<Vec<instance::Model>, StoreError> {
        let mut query = instance::Entity::find().filter(super::instance::holding());
        if let Some(id) = host_id {
            query = query.filter(instance::Column::HostId.eq(id));
        }
        Ok(query.all(&self.db).await?)
    }

    /// An instance's row by id, whatever its state (for background checks).
    pub(crate) async fn instance_row(
        &self,
        id: InstanceUuid,
    ) -> Result<Option<instance::Model>, StoreError> {
        Ok(instance::Entity::find_by_id(id.into_untyped_uuid()).one(&self.db).await?)
    }

    /// `(id, name, cordoned)` of one host by name, or of all; and `(host id, module id)` of
    /// their failed GPUs.
    pub(crate) async fn host_flags(
        &self,
        only: Option<&str>,
    ) -> Result<(Vec<(Uuid, String, bool)>, Vec<(Uuid, i32)>), StoreError> {
        let mut hosts = host::Entity::find().select_only().columns([
            host::Column::Id,
            host::Column::Name,
            host::Column::Cordoned,
        ]);
        if let Some(name) = only {
            hosts = hosts.filter(host::Column::Name.eq(name));
        }
        let hosts: Vec<(Uuid, String, bool)> = hosts.into_tuple().all(&self.db).await?;
        let mut failed = gpu::Entity::find()
            .select_only()
            .columns([gpu::Column::HostId, gpu::Column::ModuleId])
            .filter(gpu::Column::Health.eq(GpuHealth::Failed.as_str()));
        if only.is_some() {
            failed = failed.filter(gpu::Column::HostId.is_in(hosts.iter().map(|h| h.0)));
        }
        let failed: Vec<(Uuid, i32)> = failed.into_tuple().all(&self.db).await?;
        Ok((hosts, failed))
    }
}
