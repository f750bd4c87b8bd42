//! The instance-type catalog's rows.

use std::collections::HashMap;

use portal_scheduler::GpuShare;
use portal_types::views::InstanceType;
use portal_types::{Error, params};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use super::entity::instance_type;
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::app::metering::type_item;
use crate::authz::Action;
use crate::context::OpContext;
use portal_types::billing::MICROS_PER_CENT;

/// The type with its price now (none set: 0).
fn view(row: &instance_type::Model, prices: &HashMap<String, i64>) -> InstanceType {
    InstanceType {
        name: row.name.clone(),
        gpu_model: row.gpu_model.clone(),
        gpu_count: row.gpu_count as u32,
        vcpus: row.vcpus as u32,
        memory_gib: row.memory_gib as u32,
        disk_gib: row.disk_gib as u32,
        price_micros_per_hour: prices.get(&type_item(&row.name)).copied().unwrap_or(0),
    }
}

/// The current prices of these types.
async fn type_prices(
    db: &impl ConnectionTrait,
    rows: &[instance_type::Model],
) -> Result<HashMap<String, i64>, StoreError> {
    super::price::prices_now(db, rows.iter().map(|r| type_item(&r.name)), now_ms()).await
}

fn row(create: &params::InstanceTypeCreate) -> instance_type::ActiveModel {
    instance_type::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set(create.name.clone()),
        gpu_model: Set(create.gpu_model.trim().to_owned()),
        gpu_count: Set(create.gpu_count as i32),
        vcpus: Set(create.vcpus as i32),
        memory_gib: Set(create.memory_gib as i32),
        disk_gib: Set(create.disk_gib as i32),
        created_at: Set(now_ms()),
    }
}

/// On an empty catalog, adds `catalog` with its prices in effect from the beginning (at the
/// first start, with the database to itself).
pub(crate) async fn instance_type_seed(
    db: &impl ConnectionTrait,
    catalog: &[params::InstanceTypeCreate],
) -> Result<(), StoreError> {
    if instance_type::Entity::find().count(db).await? > 0 {
        return Ok(());
    }
    for create in catalog {
        instance_type::Entity::insert(row(create))
            .on_conflict(OnConflict::column(instance_type::Column::Name).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        let micros = create.price_cents_per_hour as i64 * MICROS_PER_CENT;
        super::price::price_insert(db, &type_item(&create.name), micros, 0, None).await?;
    }
    Ok(())
}

/// The named instance types that exist, read in `db` (a launch batch reads its types in its
/// transaction, so a type deleted meanwhile is not launched).
pub(crate) async fn instance_types_named(
    db: &impl ConnectionTrait,
    names: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, InstanceType>, StoreError> {
    let rows = instance_type::Entity::find()
        .filter(instance_type::Column::Name.is_in(names))
        .all(db)
        .await?;
    let prices = type_prices(db, &rows).await?;
    Ok(rows.iter().map(|r| (r.name.clone(), view(r, &prices))).collect())
}

impl DataStore {
    /// What each free GPU keeps back from CPU-only VMs so they never strand it: the per-GPU
    /// vCPUs (plus an emulator CPU) and memory of the smallest GPU type.
    pub(crate) async fn instance_type_gpu_share(&self) -> Result<Option<GpuShare>, StoreError> {
        let types = instance_type::Entity::find()
            .filter(instance_type::Column::GpuCount.gt(0))
            .all(&self.db)
            .await?;
        Ok(types.iter().min_by_key(|t| t.gpu_count).map(|t| GpuShare {
            cpus: (t.vcpus / t.gpu_count) as u32 + 1,
            memory_gib: (t.memory_gib / t.gpu_count) as u32,
        }))
    }

    pub async fn instance_type_list(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<InstanceType>, StoreError> {
        opctx.authorize(Action::CatalogRead)?;
        let rows = instance_type::Entity::find().all(&self.db).await?;
        let prices = type_prices(&self.db, &rows).await?;
        Ok(rows.iter().map(|r| view(r, &prices)).collect())
    }

    /// Adds a validated type with its first price, in effect from now; a taken name is a
    /// conflict.
    pub async fn instance_type_create(
        &self,
        opctx: &OpContext,
        create: &params::InstanceTypeCreate,
    ) -> Result<InstanceType, StoreError> {
        opctx.authorize(Action::CatalogWrite)?;
        let exists = instance_type::Entity::find()
            .filter(instance_type::Column::Name.eq(&create.name))
            .one(&self.db)
            .await?;
        if exists.is_some() {
            return Err(Error::Conflict {
                message: format!(
                    "An instance type named \"{}\" already exists; pick another name.",
                    create.name
                ),
            }
            .into());
        }
        let txn = begin_write(&self.db).await?;
        let row = row(create).insert(&txn).await?;
        let micros = create.price_cents_per_hour as i64 * MICROS_PER_CENT;
        super::price::price_insert(&txn, &type_item(&create.name), micros, now_ms(), None).await?;
        txn.commit().await?;
        Ok(view(&row, &HashMap::from([(type_item(&create.name), micros)])))
    }

    pub async fn instance_type_delete(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(), StoreError> {
        opctx.authorize(Action::CatalogWrite)?;
        let res = instance_type::Entity::delete_many()
            .filter(instance_type::Column::Name.eq(name))
            .exec(&self.db)
            .await?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("instance type", name).into());
        }
        Ok(())
    }
}
