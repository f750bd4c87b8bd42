//! Per-tenant quotas: instances, vCPUs, memory and GPUs per model. Provider admins set them;
//! a tenant sees its usage against them; every launch is checked in the same transaction
//! that claims the resources, so concurrent launches cannot exceed a quota together.

use std::collections::BTreeMap;

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::params::{QuotaLimit, validate_quota_resource};
use portal_types::views::{InstanceState, InstanceType, QuotaLine, TenantQuota};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Set,
};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::entity::{default_quota, instance, quota, tenant};

/// What a tenant's live instances use, by quota resource.
async fn usage(
    db: &impl ConnectionTrait,
    tenant_id: TenantUuid,
) -> Result<BTreeMap<String, u64>, Error> {
    // One row per GPU model (empty for CPU-only): instances, vCPUs, memory, GPUs.
    let rows: Vec<(String, i64, i64, i64, i64)> = instance::Entity::find()
        .select_only()
        .column(instance::Column::GpuModel)
        .column_as(instance::Column::Id.count(), "instances")
        .column_as(instance::Column::Vcpus.sum(), "vcpus")
        .column_as(instance::Column::MemoryGib.sum(), "memory_gib")
        .column_as(instance::Column::GpuCount.sum(), "gpus")
        .filter(instance::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
        .filter(instance::Column::State.ne(InstanceState::Deleted.as_str()))
        .group_by(instance::Column::GpuModel)
        .into_tuple()
        .all(db)
        .await
        .map_err(Error::internal)?;
    let mut used = BTreeMap::from([
        ("instances".to_owned(), 0u64),
        ("vcpus".to_owned(), 0),
        ("memory_gib".to_owned(), 0),
    ]);
    for (model, instances, vcpus, memory_gib, gpus) in rows {
        *used.entry("instances".into()).or_default() += instances.max(0) as u64;
        *used.entry("vcpus".into()).or_default() += vcpus.max(0) as u64;
        *used.entry("memory_gib".into()).or_default() += memory_gib.max(0) as u64;
        if gpus > 0 {
            *used.entry(format!("gpus:{model}")).or_default() += gpus as u64;
        }
    }
    Ok(used)
}

/// `max_value` of an explicit "unlimited".
const UNLIMITED: i64 = -1;

fn limit_of(max_value: i64) -> Option<u64> {
    (max_value >= 0).then_some(max_value as u64)
}

fn max_value_of(limit: QuotaLimit) -> Option<i64> {
    match limit {
        QuotaLimit::Default => None,
        QuotaLimit::Unlimited => Some(UNLIMITED),
        QuotaLimit::Max(n) => Some(n.min(i64::MAX as u64) as i64),
    }
}

/// A tenant's limits: its own over the provider's defaults, each with whether it is a
/// default. `None` is unlimited; a resource missing here allows nothing.
async fn limits(
    db: &impl ConnectionTrait,
    tenant_id: TenantUuid,
) -> Result<BTreeMap<String, (Option<u64>, bool)>, Error> {
    let mut out: BTreeMap<String, (Option<u64>, bool)> = default_quota::Entity::find()
        .all(db)
        .await
        .map_err(Error::internal)?
        .into_iter()
        .map(|d| (d.resource, (limit_of(d.max_value), true)))
        .collect();
    for q in quota::Entity::find()
        .filter(quota::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
        .all(db)
        .await
        .map_err(Error::internal)?
    {
        out.insert(q.resource, (limit_of(q.max_value), false));
    }
    Ok(out)
}

/// Inside a claim transaction: what a tenant may still launch. Each launch of the batch is
/// taken from the budget in turn, so launches committed together cannot exceed a quota
/// together either.
#[derive(Clone)]
pub(crate) struct Budget {
    limits: BTreeMap<String, Option<u64>>,
    used: BTreeMap<String, u64>,
}

/// Loads a tenant's budget in the claim transaction. On PostgreSQL the tenant row is locked
/// first so that launches of one tenant from several replicas are checked one after the
/// other; SQLite's write transactions are serial already. Callers lock tenants in id order.
pub(crate) async fn budget(
    txn: &impl ConnectionTrait,
    tenant_id: TenantUuid,
) -> Result<Budget, Error> {
    if txn.get_database_backend() == DbBackend::Postgres {
        tenant::Entity::find_by_id(tenant_id.into_untyped_uuid())
            .lock_exclusive()
            .one(txn)
            .await
            .map_err(Error::internal)?;
    }
    let limits = limits(txn, tenant_id).await?.into_iter().map(|(r, (l, _))| (r, l)).collect();
    Ok(Budget { limits, used: usage(txn, tenant_id).await? })
}

impl Budget {
    /// Takes `count` VMs of type `t` from the budget, or refuses without taking anything.
    pub(crate) fn take(
        &mut self,
        tenant_name: &str,
        t: &InstanceType,
        count: u32,
    ) -> Result<(), Error> {
        let count = u64::from(count);
        let mut wanted = vec![
            ("instances".to_owned(), count, "instances".to_owned()),
            ("vcpus".to_owned(), t.vcpus as u64 * count, "vCPUs".to_owned()),
            ("memory_gib".to_owned(), t.memory_gib as u64 * count, "GiB of memory".to_owned()),
        ];
        if t.gpu_count > 0 {
            wanted.push((
                format!("gpus:{}", t.gpu_model),
                t.gpu_count as u64 * count,
                format!("{} GPUs", t.gpu_model),
            ));
        }
        for (resource, want, label) in &wanted {
            // Unlimited only when said so; no limit at all allows nothing.
            let Some(limit) = self.limits.get(resource).copied().unwrap_or(Some(0)) else {
                continue;
            };
            let now = self.used.get(resource).copied().unwrap_or(0);
            if now + want > limit {
                return Err(Error::Conflict {
                    message: format!(
                        "This launch needs {want} {label} but {tenant_name} has {} of its quota of \
                         {limit} left; delete an instance or ask the provider for a larger quota.",
                        limit.saturating_sub(now)
                    ),
                });
            }
        }
        for (resource, want, _) in wanted {
            *self.used.entry(resource).or_default() += want;
        }
        Ok(())
    }
}

impl Controller {
    /// A tenant's usage against its quota: its own tenant for everyone, any tenant for
    /// provider admins (another tenant is not found for the others).
    pub async fn quota_get(
        &self,
        opctx: &OpContext,
        tenant_id: Option<TenantUuid>,
    ) -> Result<TenantQuota, Error> {
        let actor = opctx.authorize(Action::QuotaRead)?;
        let tenant_id = tenant_id.unwrap_or(actor.tenant_id);
        if tenant_id != actor.tenant_id && !actor.provider_admin {
            return Err(Error::not_found("tenant", tenant_id));
        }
        let t = tenant::Entity::find_by_id(tenant_id.into_untyped_uuid())
            .one(&self.db)
            .await
            .map_err(Error::internal)?
            .ok_or_else(|| Error::not_found("tenant", tenant_id))?;
        let used = usage(&self.db, tenant_id).await?;
        let limits = limits(&self.db, tenant_id).await?;
        let mut resources: Vec<String> = used.keys().chain(limits.keys()).cloned().collect();
        resources.sort();
        resources.dedup();
        Ok(TenantQuota {
            tenant_id,
            tenant_name: t.name,
            lines: resources
                .into_iter()
                .map(|r| {
                    let (limit, default) = limits.get(&r).copied().unwrap_or((Some(0), false));
                    QuotaLine {
                        used: used.get(&r).copied().unwrap_or(0),
                        limit,
                        default,
                        resource: r,
                    }
                })
                .collect(),
        })
    }

    /// Sets one quota limit of a tenant, or with [`QuotaLimit::Default`] gives it back to
    /// the provider's default.
    pub async fn quota_set(
        &self,
        opctx: &OpContext,
        tenant_id: TenantUuid,
        resource: &str,
        limit: QuotaLimit,
    ) -> Result<TenantQuota, Error> {
        let result = self.quota_set_unaudited(opctx, tenant_id, resource, limit).await;
        let object = format!("{tenant_id}/{resource}");
        self.audited_in(opctx, Some(tenant_id), "quota.set", "quota", &object, result).await
    }

    async fn quota_set_unaudited(
        &self,
        opctx: &OpContext,
        tenant_id: TenantUuid,
        resource: &str,
        limit: QuotaLimit,
    ) -> Result<TenantQuota, Error> {
        opctx.authorize(Action::QuotaWrite)?;
        validate_quota_resource(resource)?;
        let exists = tenant::Entity::find_by_id(tenant_id.into_untyped_uuid())
            .select_only()
            .column(tenant::Column::Id)
            .into_tuple::<uuid::Uuid>()
            .one(&self.db)
            .await
            .map_err(Error::internal)?;
        if exists.is_none() {
            return Err(Error::not_found("tenant", tenant_id));
        }
        match max_value_of(limit) {
            Some(max_value) => {
                let row = quota::ActiveModel {
                    tenant_id: Set(tenant_id.into_untyped_uuid()),
                    resource: Set(resource.to_owned()),
                    max_value: Set(max_value),
                };
                quota::Entity::insert(row)
                    .on_conflict(
                        OnConflict::columns([quota::Column::TenantId, quota::Column::Resource])
                            .update_column(quota::Column::MaxValue)
                            .to_owned(),
                    )
                    .exec_without_returning(&self.db)
                    .await
                    .map_err(Error::internal)?;
            }
            None => {
                quota::Entity::delete_many()
                    .filter(quota::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
                    .filter(quota::Column::Resource.eq(resource))
                    .exec(&self.db)
                    .await
                    .map_err(Error::internal)?;
            }
        }
        self.quota_get(opctx, Some(tenant_id)).await
    }

    /// The limits every tenant gets where it has none of its own (provider admins).
    pub async fn quota_default_list(&self, opctx: &OpContext) -> Result<Vec<QuotaLine>, Error> {
        opctx.authorize(Action::QuotaWrite)?;
        let rows = default_quota::Entity::find().all(&self.db).await.map_err(Error::internal)?;
        let mut lines: Vec<QuotaLine> = rows
            .into_iter()
            .map(|d| QuotaLine {
                resource: d.resource,
                used: 0,
                limit: limit_of(d.max_value),
                default: true,
            })
            .collect();
        lines.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(lines)
    }

    /// Sets one default limit; [`QuotaLimit::Default`] removes it, so tenants without their
    /// own limit get none of that resource.
    pub async fn quota_default_set(
        &self,
        opctx: &OpContext,
        resource: &str,
        limit: QuotaLimit,
    ) -> Result<Vec<QuotaLine>, Error> {
        let result = async {
            opctx.authorize(Action::QuotaWrite)?;
            validate_quota_resource(resource)?;
            match max_value_of(limit) {
                Some(max_value) => {
                    let row = default_quota::ActiveModel {
                        resource: Set(resource.to_owned()),
                        max_value: Set(max_value),
                    };
                    default_quota::Entity::insert(row)
                        .on_conflict(
                            OnConflict::column(default_quota::Column::Resource)
                                .update_column(default_quota::Column::MaxValue)
                                .to_owned(),
                        )
                        .exec_without_returning(&self.db)
                        .await
                        .map_err(Error::internal)?;
                }
                None => {
                    default_quota::Entity::delete_by_id(resource.to_owned())
                        .exec(&self.db)
                        .await
                        .map_err(Error::internal)?;
                }
            }
            self.quota_default_list(opctx).await
        }
        .await;
        self.audited(opctx, "quota.default_set", "quota", resource, result).await
    }
}
