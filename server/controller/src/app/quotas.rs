//! Per-tenant quotas: instances, vCPUs, memory and GPUs per model. Provider admins set them;
//! a tenant sees its usage against them; every launch is checked in the same transaction
//! that claims the resources, so concurrent launches cannot exceed a quota together.

use std::collections::BTreeMap;

use portal_types::Error;
use portal_types::ids::TenantUuid;
use portal_types::params::{QuotaLimit, validate_quota_resource};
use portal_types::views::{InstanceType, QuotaLine, TenantQuota};

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;

/// Inside a claim transaction: what a tenant may still launch. Each launch of the batch is
/// taken from the budget in turn, so launches committed together cannot exceed a quota
/// together either.
#[derive(Clone)]
pub(crate) struct Budget {
    limits: BTreeMap<String, Option<u64>>,
    used: BTreeMap<String, u64>,
}

impl Budget {
    /// A budget from a tenant's limits and usage (read by
    /// [`quota_budget_in`](crate::datastore::quota::quota_budget_in)).
    pub(crate) fn new(limits: BTreeMap<String, Option<u64>>, used: BTreeMap<String, u64>) -> Self {
        Budget { limits, used }
    }

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
        Ok(self.datastore.quota_get(opctx, tenant_id).await?)
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
        let result = async {
            opctx.authorize(Action::QuotaWrite)?;
            validate_quota_resource(resource)?;
            self.datastore.quota_set(opctx, tenant_id, resource, limit).await?;
            self.quota_get(opctx, Some(tenant_id)).await
        }
        .await;
        let object = format!("{tenant_id}/{resource}");
        self.audited_in(opctx, Some(tenant_id), "quota.set", "quota", &object, result).await
    }

    /// The limits every tenant gets where it has none of its own (provider admins).
    pub async fn quota_default_list(&self, opctx: &OpContext) -> Result<Vec<QuotaLine>, Error> {
        Ok(self.datastore.quota_default_list(opctx).await?)
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
            self.datastore.quota_default_set(opctx, resource, limit).await?;
            self.quota_default_list(opctx).await
        }
        .await;
        self.audited(opctx, "quota.default_set", "quota", resource, result).await
    }
}
