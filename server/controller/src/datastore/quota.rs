//! Per-tenant quota limits, the provider's defaults, and what a tenant's live instances and
//! public IPs use.

use std::collections::BTreeMap;

use portal_types::Error;
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::params::QuotaLimit;
use portal_types::views::{InstanceState, QuotaLine, TenantQuota};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, QuerySelect,
    Set,
};

use super::entity::{default_quota, instance, public_ip, quota, tenant};
use super::{DataStore, StoreError};
use crate::authz::Action;
use crate::context::OpContext;

/// What a tenant's live instances use, by quota resource.
async fn usage(
    db: &impl ConnectionTrait,
    tenant_id: TenantUuid,
) -> Result<BTreeMap<String, u64>, StoreError> {
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
        .await?;
    let mut used = BTreeMap::from([
        ("instances".to_owned(), 0u64),
        ("vcpus".to_owned(), 0),
        ("memory_gib".to_owned(), 0),
    ]);
    let public_ips = public_ip::Entity::find()
        .filter(public_ip::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
        .count(db)
        .await?;
    used.insert(super::public_ip::QUOTA_RESOURCE.to_owned(), public_ips);
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
) -> Result<BTreeMap<String, (Option<u64>, bool)>, StoreError> {
    let mut out: BTreeMap<String, (Option<u64>, bool)> = default_quota::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|d| (d.resource, (limit_of(d.max_value), true)))
        .collect();
    for q in quota::Entity::find()
        .filter(quota::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
        .all(db)
        .await?
    {
        out.insert(q.resource, (limit_of(q.max_value), false));
    }
    Ok(out)
}

/// A tenant's limits (`None`: unlimited; a resource missing allows nothing) and usage, read
/// in a claim transaction. On PostgreSQL the tenant row is locked first so that launches of
/// one tenant from several replicas are checked one after the other; SQLite's write
/// transactions are serial already. Callers lock tenants in id order.
pub(crate) async fn quota_budget_in(
    txn: &impl ConnectionTrait,
    tenant_id: TenantUuid,
) -> Result<(BTreeMap<String, Option<u64>>, BTreeMap<String, u64>), StoreError> {
    if txn.get_database_backend() == DbBackend::Postgres {
        tenant::Entity::find_by_id(tenant_id.into_untyped_uuid()).lock_exclusive().one(txn).await?;
    }
    let limits = limits(txn, tenant_id).await?.into_iter().map(|(r, (l, _))| (r, l)).collect();
    Ok((limits, usage(txn, tenant_id).await?))
}

impl DataStore {
    /// A tenant's usage against its quota: its own tenant for everyone, any tenant for
    /// provider admins (another tenant is not found for the others).
    pub async fn quota_get(
        &self,
        opctx: &OpContext,
        tenant_id: Option<TenantUuid>,
    ) -> Result<TenantQuota, StoreError> {
        let actor = opctx.authorize(Action::QuotaRead)?;
        let tenant_id = tenant_id.unwrap_or(actor.tenant_id);
        if tenant_id != actor.tenant_id && !actor.provider_admin {
            return Err(Error::not_found("tenant", tenant_id).into());
        }
        let t = tenant::Entity::find_by_id(tenant_id.into_untyped_uuid())
            .one(&self.db)
            .await?
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

    /// Sets one quota limit of a tenant (a validated resource), or with
    /// [`QuotaLimit::Default`] gives it back to the provider's default.
    pub async fn quota_set(
        &self,
        opctx: &OpContext,
        tenant_id: TenantUuid,
        resource: &str,
        limit: QuotaLimit,
    ) -> Result<(), StoreError> {
        opctx.authorize(Action::QuotaWrite)?;
        let exists = tenant::Entity::find_by_id(tenant_id.into_untyped_uuid())
            .select_only()
            .column(tenant::Column::Id)
            .into_tuple::<uuid::Uuid>()
            .one(&self.db)
            .await?;
        if exists.is_none() {
            return Err(Error::not_found("tenant", tenant_id).into());
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
                    .await?;
            }
            None => {
                quota::Entity::delete_many()
                    .filter(quota::Column::TenantId.eq(tenant_id.into_untyped_uuid()))
                    .filter(quota::Column::Resource.eq(resource))
                    .exec(&self.db)
                    .await?;
            }
        }
        Ok(())
    }

    /// The limits every tenant gets where it has none of its own (provider admins).
    pub async fn quota_default_list(
        &self,
        opctx: &OpContext,
    ) -> Result<Vec<QuotaLine>, StoreError> {
        opctx.authorize(Action::QuotaWrite)?;
        let rows = default_quota::Entity::find().all(&self.db).await?;
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

    /// Sets one default limit; [`QuotaLimit::Default`] removes it.
    pub async fn quota_default_set(
        &self,
        opctx: &OpContext,
        resource: &str,
        limit: QuotaLimit,
    ) -> Result<(), StoreError> {
        opctx.authorize(Action::QuotaWrite)?;
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
                    .await?;
            }
            None => {
                default_quota::Entity::delete_by_id(resource.to_owned()).exec(&self.db).await?;
            }
        }
        Ok(())
    }
}
