//! The claim transaction of a launch batch (see `claims`): what it reads while the scheduler
//! decides, the host generations it bumps, and the rows it writes, all in one transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::topology::GpuHealth;
use portal_types::views::{ImageView, InstanceState, InstanceType};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, IntoActiveModel, QueryFilter,
    QuerySelect, Set, SqlErr,
};
use uuid::Uuid;

use super::audit::AuditRecord;
use super::entity::{audit_log, gpu, gpu_claim, host, instance, saga};
use super::{DataStore, StoreError, begin_write};

/// Rows per INSERT, well under SQLite's and PostgreSQL's bound on statement parameters.
const INSERT_CHUNK: usize = 500;

/// One GPU a claimed instance takes: (GPU id, instance id, host id).
pub(crate) type GpuClaim = (Uuid, Uuid, Uuid);

/// An open claim transaction; dropped without [`ClaimTxn::commit`], it rolls back.
pub(crate) struct ClaimTxn(DatabaseTransaction);

/// What a claim transaction writes when the batch has decided.
pub(crate) struct ClaimRows {
    pub instances: Vec<instance::Model>,
    pub gpus: Vec<GpuClaim>,
    pub sagas: Vec<saga::ActiveModel>,
    pub audit: Vec<AuditRecord>,
}

/// Why the rows of a claim were not written.
pub(crate) enum ClaimRefused {
    /// Another replica committed first: a claim on a GPU of the batch, or an instance with
    /// one of its idempotency keys.
    Raced,
    Store(StoreError),
}

impl From<sea_orm::DbErr> for ClaimRefused {
    fn from(e: sea_orm::DbErr) -> Self {
        ClaimRefused::Store(e.into())
    }
}

impl DataStore {
    /// Begins a batch's claim transaction (a write transaction: see [`begin_write`]).
    pub(crate) async fn claim_begin(&self) -> Result<ClaimTxn, StoreError> {
        Ok(ClaimTxn(begin_write(&self.db).await?))
    }
}

impl ClaimTxn {
    /// A tenant's quota limits and usage, with the tenant locked on PostgreSQL until the
    /// transaction ends (lock tenants in id order, as every replica does).
    pub(crate) async fn quota_budget(
        &self,
        tenant_id: TenantUuid,
    ) -> Result<(BTreeMap<String, Option<u64>>, BTreeMap<String, u64>), StoreError> {
        super::quota::quota_budget_in(&self.0, tenant_id).await
    }

    pub(crate) async fn instance_types_named(
        &self,
        names: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, InstanceType>, StoreError> {
        super::instance_type::instance_types_named(&self.0, names).await
    }

    /// The active images the batch names (the empty name: the newest).
    pub(crate) async fn images_for_launch(
        &self,
        names: impl IntoIterator<Item = String>,
    ) -> Result<HashMap<String, ImageView>, StoreError> {
        super::image::images_for_launch(&self.0, names).await
    }

    /// The instances that recorded one of these idempotency keys (per tenant), by key.
    pub(crate) async fn instances_with_keys(
        &self,
        wanted: BTreeMap<TenantUuid, Vec<String>>,
    ) -> Result<HashMap<(TenantUuid, String), instance::Model>, StoreError> {
        let mut found = HashMap::new();
        for (tenant_id, keys) in wanted {
            let rows = instance::Entity::find()
                .filter(instance::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
                .filter(instance::Column::IdempotencyKey.is_in(keys))
                .all(&self.0)
                .await?;
            for row in rows {
                if let Some(key) = row.idempotency_key.clone() {
                    found.insert((tenant_id, key), row);
                }
            }
        }
        Ok(found)
    }

    /// Which of the `wanted` names (per tenant) live instances already have.
    pub(crate) async fn taken_names(
        &self,
        wanted: BTreeMap<TenantUuid, Vec<String>>,
    ) -> Result<HashSet<(TenantUuid, String)>, StoreError> {
        let mut taken = HashSet::new();
        for (tenant_id, names) in wanted {
            let found: Vec<String> = instance::Entity::find()
                .select_only()
                .column(instance::Column::Name)
                .filter(instance::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
                .filter(instance::Column::Name.is_in(names))
                .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
                .into_tuple()
                .all(&self.0)
                .await?;
            taken.extend(found.into_iter().map(|name| (tenant_id, name)));
        }
        Ok(taken)
    }

    /// Moves a host's claim generation from `generation` to the next, if it is still
    /// `generation` and the host is not cordoned: false when another replica got there first.
    /// It waits for (or locks out) a cordon being written.
    pub(crate) async fn host_generation_bump(
        &self,
        host_id: Uuid,
        generation: i64,
    ) -> Result<bool, StoreError> {
        let bumped = host::Entity::update_many()
            .col_expr(host::Column::ClaimGeneration, (generation + 1).into())
            .filter(host::Column::Id.eq(host_id))
            .filter(host::Column::ClaimGeneration.eq(generation))
            .filter(host::Column::Cordoned.eq(false))
            .exec(&self.0)
            .await?;
        Ok(bumped.rows_affected == 1)
    }

    /// The (host id, module) of every failed GPU on these hosts.
    pub(crate) async fn failed_gpus(
        &self,
        host_ids: BTreeSet<Uuid>,
    ) -> Result<Vec<(Uuid, u8)>, StoreError> {
        let failed: Vec<(Uuid, i32)> = gpu::Entity::find()
            .select_only()
            .columns([gpu::Column::HostId, gpu::Column::ModuleId])
            .filter(gpu::Column::HostId.is_in(host_ids))
            .filter(gpu::Column::Health.eq(GpuHealth::Failed.as_str()))
            .into_tuple()
            .all(&self.0)
            .await?;
        Ok(failed.into_iter().map(|(h, m)| (h, m as u8)).collect())
    }

    /// Writes the batch's rows and commits; on a GPU another replica claimed meanwhile,
    /// rolls back instead.
    pub(crate) async fn write_and_commit(self, rows: ClaimRows) -> Result<(), ClaimRefused> {
        let txn = self.0;
        for chunk in rows.instances.chunks(INSERT_CHUNK) {
            let models = chunk.iter().map(|r| r.clone().into_active_model().reset_all());
            match instance::Entity::insert_many(models).exec_without_returning(&txn).await {
                Ok(_) => {}
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    txn.rollback().await?;
                    return Err(ClaimRefused::Raced);
                }
                Err(e) => return Err(e.into()),
            }
        }
        for chunk in rows.gpus.chunks(INSERT_CHUNK) {
            let models =
                chunk.iter().map(|&(gpu_id, instance_id, host_id)| gpu_claim::ActiveModel {
                    gpu_id: Set(gpu_id),
                    instance_id: Set(instance_id),
                    host_id: Set(host_id),
                });
            match gpu_claim::Entity::insert_many(models).exec_without_returning(&txn).await {
                Ok(_) => {}
                Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
                    txn.rollback().await?;
                    return Err(ClaimRefused::Raced);
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Each launch's saga commits with its claim: no window where a claim has no saga.
        for chunk in rows.sagas.chunks(INSERT_CHUNK) {
            saga::Entity::insert_many(chunk.to_vec()).exec_without_returning(&txn).await?;
        }
        for chunk in rows.audit.chunks(INSERT_CHUNK) {
            audit_log::Entity::insert_many(chunk.iter().map(AuditRecord::row))
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    pub(crate) async fn rollback(self) -> Result<(), StoreError> {
        Ok(self.0.rollback().await?)
    }
}
