//! Usage: the instance state log, the usage records metering makes of it, budgets and their
//! alerts, and prepaid credit.

use std::collections::{BTreeMap, HashMap};

use portal_types::ids::{GenericUuid, TenantUuid};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::entity::{
    budget_alert, credit_grant, host, instance, instance_event, tenant_budget, usage_record,
};
use super::{DataStore, StoreError, now_ms};
use crate::app::metering::Usage;
use crate::authz::Action;
use crate::context::OpContext;

/// The states in which an instance is billed (see `app::metering::billed`).
const BILLED_STATES: [&str; 5] = ["running", "rebooting", "stopping", "stopped", "starting"];

/// An instance with its state log (`(state, unix seconds)` in the order entered) and what
/// its usage records carry.
pub(crate) struct Metered {
    pub instance: instance::Model,
    pub scalable_unit: Option<i32>,
    pub log: Vec<(String, i64)>,
}

fn usage(row: usage_record::Model) -> Usage {
    Usage {
        instance_id: row.instance_id,
        tenant_id: row.tenant_id,
        instance_name: row.instance_name,
        item: row.item,
        quantity: row.quantity,
        gpu_model: row.gpu_model,
        gpu_count: row.gpu_count,
        scalable_unit: row.scalable_unit,
        launched_by: row.launched_by,
        start: row.start_s,
        end: row.end_s,
    }
}

impl DataStore {
    /// Up to `limit` state-log entries metering has not handled: `(entry id, instance id)`.
    pub(crate) async fn events_unmetered(
        &self,
        limit: u64,
    ) -> Result<Vec<(i64, Uuid)>, StoreError> {
        Ok(instance_event::Entity::find()
            .filter(instance_event::Column::Metered.eq(false))
            .order_by_asc(instance_event::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|e| (e.id, e.instance_id))
            .collect())
    }

    pub(crate) async fn events_mark_metered(&self, ids: &[i64]) -> Result<(), StoreError> {
        for chunk in ids.chunks(500) {
            instance_event::Entity::update_many()
                .col_expr(instance_event::Column::Metered, Expr::value(true))
                .filter(instance_event::Column::Id.is_in(chunk.iter().copied()))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// The instances in a billed state now (of one tenant, or all).
    pub(crate) async fn instances_billed(
        &self,
        tenant: Option<Uuid>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let mut query = instance::Entity::find()
            .select_only()
            .column(instance::Column::Id)
            .filter(instance::Column::State.is_in(BILLED_STATES));
        if let Some(tenant) = tenant {
            query = query.filter(instance::Column::TenantId.eq(tenant));
        }
        Ok(query.into_tuple::<Uuid>().all(&self.db).await?)
    }

    /// The instances with their whole state logs.
    pub(crate) async fn metering_inputs(&self, ids: &[Uuid]) -> Result<Vec<Metered>, StoreError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(500) {
            let instances = instance::Entity::find()
                .filter(instance::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.db)
                .await?;
            let host_ids: Vec<Uuid> = instances.iter().filter_map(|i| i.host_id).collect();
            let units: HashMap<Uuid, i32> = host::Entity::find()
                .filter(host::Column::Id.is_in(host_ids))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|h| (h.id, h.scalable_unit))
                .collect();
            let mut logs: HashMap<Uuid, Vec<(String, i64)>> = HashMap::new();
            let events = instance_event::Entity::find()
                .filter(instance_event::Column::InstanceId.is_in(chunk.iter().copied()))
                .order_by_asc(instance_event::Column::Id)
                .all(&self.db)
                .await?;
            for e in events {
                logs.entry(e.instance_id).or_default().push((e.state, e.at_ms.div_euclid(1000)));
            }
            for instance in instances {
                out.push(Metered {
                    scalable_unit: instance.host_id.and_then(|h| units.get(&h).copied()),
                    log: logs.remove(&instance.id).unwrap_or_default(),
                    instance,
                });
            }
        }
        Ok(out)
    }

    /// Stores usage records; ones stored already (same instance, item and start) stay as they
    /// are, so metering the same log twice changes nothing.
    pub(crate) async fn usage_insert(&self, records: Vec<Usage>) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        for chunk in records.chunks(200) {
            let rows = chunk.iter().map(|u| usage_record::ActiveModel {
                instance_id: Set(u.instance_id),
                item: Set(u.item.clone()),
                start_s: Set(u.start),
                end_s: Set(u.end),
                quantity: Set(u.quantity),
                tenant_id: Set(u.tenant_id),
                instance_name: Set(u.instance_name.clone()),
                gpu_model: Set(u.gpu_model.clone()),
                gpu_count: Set(u.gpu_count),
                scalable_unit: Set(u.scalable_unit),
                launched_by: Set(u.launched_by),
            });
            usage_record::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        usage_record::Column::InstanceId,
                        usage_record::Column::Item,
                        usage_record::Column::StartS,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// The usage records starting in `[from, to)` (unix seconds), of one tenant or all.
    pub(crate) async fn usage_between(
        &self,
        tenant: Option<Uuid>,
        from: i64,
        to: i64,
    ) -> Result<Vec<Usage>, StoreError> {
        let mut query = usage_record::Entity::find()
            .filter(usage_record::Column::StartS.gte(from))
            .filter(usage_record::Column::StartS.lt(to));
        if let Some(tenant) = tenant {
            query = query.filter(usage_record::Column::TenantId.eq(tenant));
        }
        Ok(query.all(&self.db).await?.into_iter().map(usage).collect())
    }

    /// The first second of usage recorded (of one tenant, or all).
    pub(crate) async fn usage_first(
        &self,
        tenant: Option<Uuid>,
    ) -> Result<Option<i64>, StoreError> {
        let mut query = usage_record::Entity::find()
            .select_only()
            .column_as(usage_record::Column::StartS.min(), "first");
        if let Some(tenant) = tenant {
            query = query.filter(usage_record::Column::TenantId.eq(tenant));
        }
        Ok(query.into_tuple::<Option<i64>>().one(&self.db).await?.flatten())
    }

    /// The tenant's monthly budget in cents.
    pub(crate) async fn budget_get(&self, tenant: Uuid) -> Result<Option<i64>, StoreError> {
        Ok(tenant_budget::Entity::find_by_id(tenant).one(&self.db).await?.map(|b| b.monthly_cents))
    }

    /// Sets or removes the actor's tenant's budget (tenant admins).
    pub async fn budget_set(
        &self,
        opctx: &OpContext,
        monthly_cents: Option<i64>,
    ) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::BudgetWrite)?;
        let tenant = actor.tenant_id.into_untyped_uuid();
        match monthly_cents {
            None => {
                tenant_budget::Entity::delete_by_id(tenant).exec(&self.db).await?;
            }
            Some(cents) => {
                tenant_budget::Entity::insert(tenant_budget::ActiveModel {
                    tenant_id: Set(tenant),
                    monthly_cents: Set(cents),
                })
                .on_conflict(
                    OnConflict::column(tenant_budget::Column::TenantId)
                        .update_column(tenant_budget::Column::MonthlyCents)
                        .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await?;
            }
        }
        Ok(())
    }

    /// Every tenant with a budget: `(tenant, monthly cents)`.
    pub(crate) async fn budgets_all(&self) -> Result<Vec<(Uuid, i64)>, StoreError> {
        Ok(tenant_budget::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|b| (b.tenant_id, b.monthly_cents))
            .collect())
    }

    /// Records a budget alert; true when it is new (each is raised once per month).
    pub(crate) async fn budget_alert_raise(
        &self,
        tenant: Uuid,
        month: &str,
        percent: i32,
    ) -> Result<bool, StoreError> {
        let inserted = budget_alert::Entity::insert(budget_alert::ActiveModel {
            tenant_id: Set(tenant),
            month: Set(month.to_owned()),
            percent: Set(percent),
            at: Set(now_ms()),
        })
        .on_conflict(
            OnConflict::columns([
                budget_alert::Column::TenantId,
                budget_alert::Column::Month,
                budget_alert::Column::Percent,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok(inserted > 0)
    }

    /// The alerts raised for a tenant in a month, in percent.
    pub(crate) async fn budget_alerts(
        &self,
        tenant: Uuid,
        month: &str,
    ) -> Result<Vec<i64>, StoreError> {
        Ok(budget_alert::Entity::find()
            .filter(budget_alert::Column::TenantId.eq(tenant))
            .filter(budget_alert::Column::Month.eq(month))
            .order_by_asc(budget_alert::Column::Percent)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|a| i64::from(a.percent))
            .collect())
    }

    /// Gives (or, negative, takes back) prepaid credit (provider admins).
    pub async fn credit_grant(
        &self,
        opctx: &OpContext,
        tenant: TenantUuid,
        cents: i64,
        note: &str,
    ) -> Result<(), StoreError> {
        let actor = opctx.authorize(Action::CreditWrite)?;
        if self.tenant_lookup_by_id(tenant.into_untyped_uuid()).await?.is_none() {
            return Err(portal_types::Error::not_found("tenant", tenant).into());
        }
        credit_grant::Entity::insert(credit_grant::ActiveModel {
            id: Set(Uuid::new_v4()),
            tenant_id: Set(tenant.into_untyped_uuid()),
            cents: Set(cents),
            note: Set(note.trim().to_owned()),
            created_by: Set(Some(actor.user_id.into_untyped_uuid())),
            created_at: Set(now_ms()),
        })
        .exec_without_returning(&self.db)
        .await?;
        Ok(())
    }

    /// The credit a tenant was given in all, if it ever was (a tenant without is postpaid).
    pub(crate) async fn credit_total(&self, tenant: Uuid) -> Result<Option<i64>, StoreError> {
        let grants = credit_grant::Entity::find()
            .filter(credit_grant::Column::TenantId.eq(tenant))
            .all(&self.db)
            .await?;
        Ok((!grants.is_empty()).then(|| grants.iter().map(|g| g.cents).sum()))
    }

    /// User names by id (for breakdowns per user).
    pub(crate) async fn user_names(
        &self,
        ids: Vec<Uuid>,
    ) -> Result<HashMap<Uuid, String>, StoreError> {
        Ok(super::entity::user::Entity::find()
            .filter(super::entity::user::Column::Id.is_in(ids))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|u| (u.id, u.username))
            .collect())
    }

    /// Tenant names by id (for the provider's breakdowns).
    pub(crate) async fn tenant_names(&self) -> Result<BTreeMap<Uuid, String>, StoreError> {
        Ok(super::entity::tenant::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect())
    }
}
