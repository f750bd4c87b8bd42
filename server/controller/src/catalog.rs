//! The instance-type catalog: what users can launch, at what price. Provider admins edit it;
//! every signed-in user reads it.

use std::collections::HashMap;

use portal_scheduler::GpuShare;
use portal_types::views::InstanceType;
use portal_types::{Error, params};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait,
    PaginatorTrait, QueryFilter, Set,
};
use uuid::Uuid;

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::entity::instance_type;
use crate::datastore::now_ms;

/// The GPU model the simulated HGX H100 hosts report.
pub const H100: &str = "H100-SXM5-80GB";

/// The catalog a new installation starts with: per H100 20 vCPUs and 200 GiB (a NUMA node of
/// an HGX H100 host has 28 CPUs and 240 GiB of hugepages per GPU), which leaves each node
/// room for the two CPU-only sizes even while all its GPUs are free.
fn default_catalog() -> Vec<params::InstanceTypeCreate> {
    let gpu = |gpus: u32| params::InstanceTypeCreate {
        name: format!("h100x{gpus}"),
        gpu_model: H100.to_owned(),
        gpu_count: gpus,
        vcpus: 20 * gpus,
        memory_gib: 200 * gpus,
        disk_gib: 200 * gpus,
        price_cents_per_hour: 249 * u64::from(gpus),
    };
    let cpu = |vcpus: u32, price: u64| params::InstanceTypeCreate {
        name: format!("c{vcpus}m{}", vcpus * 4),
        gpu_model: String::new(),
        gpu_count: 0,
        vcpus,
        memory_gib: vcpus * 4,
        disk_gib: 100,
        price_cents_per_hour: price,
    };
    vec![gpu(1), gpu(2), gpu(4), gpu(8), cpu(8, 24), cpu(16, 48)]
}

fn view(row: &instance_type::Model) -> InstanceType {
    InstanceType {
        name: row.name.clone(),
        gpu_model: row.gpu_model.clone(),
        gpu_count: row.gpu_count as u32,
        vcpus: row.vcpus as u32,
        memory_gib: row.memory_gib as u32,
        disk_gib: row.disk_gib as u32,
        price_cents_per_hour: row.price_cents_per_hour as u64,
    }
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
        price_cents_per_hour: Set(create.price_cents_per_hour as i64),
        created_at: Set(now_ms()),
    }
}

/// On an empty catalog, adds the default one.
pub(crate) async fn seed(db: &DatabaseConnection) -> Result<(), Error> {
    if instance_type::Entity::find().count(db).await.map_err(Error::internal)? > 0 {
        return Ok(());
    }
    for create in default_catalog() {
        instance_type::Entity::insert(row(&create))
            .on_conflict(OnConflict::column(instance_type::Column::Name).do_nothing().to_owned())
            .exec_without_returning(db)
            .await
            .map_err(Error::internal)?;
    }
    Ok(())
}

/// What each free GPU keeps back from CPU-only VMs so they never strand it: the per-GPU
/// vCPUs (plus an emulator CPU) and memory of the smallest GPU type.
pub(crate) async fn gpu_share(db: &DatabaseConnection) -> Result<Option<GpuShare>, Error> {
    let types = instance_type::Entity::find()
        .filter(instance_type::Column::GpuCount.gt(0))
        .all(db)
        .await
        .map_err(Error::internal)?;
    Ok(types.iter().min_by_key(|t| t.gpu_count).map(|t| GpuShare {
        cpus: (t.vcpus / t.gpu_count) as u32 + 1,
        memory_gib: (t.memory_gib / t.gpu_count) as u32,
    }))
}

/// The named instance types that exist (a launch batch reads its types in its transaction,
/// so a type deleted meanwhile is not launched).
pub(crate) async fn find_many(
    db: &impl ConnectionTrait,
    names: impl IntoIterator<Item = String>,
) -> Result<HashMap<String, InstanceType>, Error> {
    Ok(instance_type::Entity::find()
        .filter(instance_type::Column::Name.is_in(names))
        .all(db)
        .await
        .map_err(Error::internal)?
        .iter()
        .map(|r| (r.name.clone(), view(r)))
        .collect())
}

impl Controller {
    pub async fn instance_type_list(&self, opctx: &OpContext) -> Result<Vec<InstanceType>, Error> {
        opctx.authorize(Action::CatalogRead)?;
        let rows = instance_type::Entity::find().all(&self.db).await.map_err(Error::internal)?;
        let mut types: Vec<InstanceType> = rows.iter().map(view).collect();
        // GPU types first, smallest first; CPU-only types after them.
        types.sort_by_key(|t| (t.gpu_count == 0, t.gpu_count, t.vcpus, t.name.clone()));
        Ok(types)
    }

    pub async fn instance_type_create(
        &self,
        opctx: &OpContext,
        create: &params::InstanceTypeCreate,
    ) -> Result<InstanceType, Error> {
        let result = self.instance_type_create_unaudited(opctx, create).await;
        self.audited(opctx, "instance_type.create", "instance_type", &create.name, result).await
    }

    async fn instance_type_create_unaudited(
        &self,
        opctx: &OpContext,
        create: &params::InstanceTypeCreate,
    ) -> Result<InstanceType, Error> {
        opctx.authorize(Action::CatalogWrite)?;
        create.validate()?;
        let exists = instance_type::Entity::find()
            .filter(instance_type::Column::Name.eq(&create.name))
            .one(&self.db)
            .await
            .map_err(Error::internal)?;
        if exists.is_some() {
            return Err(Error::Conflict {
                message: format!(
                    "An instance type named \"{}\" already exists; pick another name.",
                    create.name
                ),
            });
        }
        let inserted = row(create).insert(&self.db).await.map_err(Error::internal)?;
        Ok(view(&inserted))
    }

    /// Removes a type from the catalog; instances already running keep their shape.
    pub async fn instance_type_delete(&self, opctx: &OpContext, name: &str) -> Result<(), Error> {
        let result = self.instance_type_delete_unaudited(opctx, name).await;
        self.audited(opctx, "instance_type.delete", "instance_type", name, result).await
    }

    async fn instance_type_delete_unaudited(
        &self,
        opctx: &OpContext,
        name: &str,
    ) -> Result<(), Error> {
        opctx.authorize(Action::CatalogWrite)?;
        let res = instance_type::Entity::delete_many()
            .filter(instance_type::Column::Name.eq(name))
            .exec(&self.db)
            .await
            .map_err(Error::internal)?;
        if res.rows_affected == 0 {
            return Err(Error::not_found("instance type", name));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_catalog_is_valid_and_fits_an_hgx_h100_numa_node() {
        for t in super::default_catalog() {
            t.validate().unwrap();
            // 112 CPUs and 960 hugepages per NUMA node, 4 GPUs per node.
            if let (Some(cpus), Some(gib)) =
                (t.vcpus.checked_div(t.gpu_count), t.memory_gib.checked_div(t.gpu_count))
            {
                assert!(cpus < 28, "{}", t.name);
                assert!(gib <= 240, "{}", t.name);
            }
        }
    }
}
