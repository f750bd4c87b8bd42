//! Usage: the instance state log, the usage records metering makes of it, budgets and their
//! alerts, and prepaid credit.

use std::collections::{BTreeMap, HashMap};

use portal_types::ids::{GenericUuid, TenantUuid};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, Select, Set,
};
use uuid::Uuid;

use super::entity::{
    budget_alert, credit_grant, host, instance, instance_event, metering_dirty, tenant_budget,
    usage_record,
};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::app::metering::{DayUse, Line, Usage};
use crate::authz::Action;
use crate::context::OpContext;

/// The states in which an instance is billed (see `app::metering::billed`).
const BILLED_STATES: [&str; 5] = ["running", "rebooting", "stopping", "stopped", "starting"];

/// An instance with its state log (`(state, unix seconds)` in the order entered) and what
/// its usage records carry.
pub(crate) struct Metered {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub instance_type: String,
    pub gpu_model: String,
    pub gpu_count: i32,
    pub disk_gib: i32,
    pub launched_by: Uuid,
    pub scalable_unit: Option<i32>,
    pub log: Vec<(String, i64)>,
}

/// The instances with their state logs, read in `db` (`heads_only`: only the state each is
/// in, since when).
async fn metering_inputs_in(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    heads_only: bool,
) -> Result<Vec<Metered>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let instances: Vec<(Uuid, Uuid, String, String, String, i32, i32, Uuid, Option<Uuid>)> =
            instance::Entity::find()
                .select_only()
                .columns([
                    instance::Column::Id,
                    instance::Column::TenantId,
                    instance::Column::Name,
                    instance::Column::InstanceType,
                    instance::Column::GpuModel,
                    instance::Column::GpuCount,
                    instance::Column::DiskGib,
                    instance::Column::CreatedBy,
                    instance::Column::HostId,
                ])
                .filter(instance::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(db)
                .await?;
        let host_ids: Vec<Uuid> = instances.iter().filter_map(|i| i.8).collect();
        let units: HashMap<Uuid, i32> = host::Entity::find()
            .select_only()
            .columns([host::Column::Id, host::Column::ScalableUnit])
            .filter(host::Column::Id.is_in(host_ids))
            .into_tuple()
            .all(db)
            .await?
            .into_iter()
            .collect();
        let mut query = instance_event::Entity::find().select_only().columns([
            instance_event::Column::InstanceId,
            instance_event::Column::State,
            instance_event::Column::AtMs,
        ]);
        if heads_only {
            let heads: Vec<i64> = instance_event::Entity::find()
                .select_only()
                .column_as(instance_event::Column::Id.max(), "head")
                .filter(instance_event::Column::InstanceId.is_in(chunk.iter().copied()))
                .group_by(instance_event::Column::InstanceId)
                .into_tuple()
                .all(db)
                .await?;
            query = query.filter(instance_event::Column::Id.is_in(heads));
        } else {
            query = query.filter(instance_event::Column::InstanceId.is_in(chunk.iter().copied()));
        }
        let events: Vec<(Uuid, String, i64)> =
            query.order_by_asc(instance_event::Column::Id).into_tuple().all(db).await?;
        let mut logs: HashMap<Uuid, Vec<(String, i64)>> = HashMap::new();
        for (instance, state, at_ms) in events {
            logs.entry(instance).or_default().push((state, at_ms.div_euclid(1000)));
        }
        for (id, tenant_id, name, instance_type, gpu_model, gpu_count, disk_gib, by, host) in
            instances
        {
            out.push(Metered {
                scalable_unit: host.and_then(|h| units.get(&h).copied()),
                log: logs.remove(&id).unwrap_or_default(),
                id,
                tenant_id,
                name,
                instance_type,
                gpu_model,
                gpu_count,
                disk_gib,
                launched_by: by,
            });
        }
    }
    Ok(out)
}

/// Stores usage records in `db`; ones stored already (same instance, item and start) stay as
/// they are, so metering the same log twice changes nothing.
async fn usage_insert(db: &impl ConnectionTrait, records: Vec<Usage>) -> Result<(), StoreError> {
    // 12 columns: well under SQLite's limit of bound values per statement.
    for chunk in records.chunks(1_000) {
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
            micros_per_hour: Set(u.micros_per_hour),
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
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// A line's sums, as the database adds them up.
#[derive(FromQueryResult)]
struct LineRow {
    instance_id: Uuid,
    item: String,
    quantity: i64,
    micros_per_hour: i64,
    tenant_id: Uuid,
    instance_name: String,
    gpu_model: String,
    gpu_count: i32,
    scalable_unit: Option<i32>,
    launched_by: Uuid,
    seconds: i64,
    first: i64,
    last: i64,
}

#[derive(FromQueryResult)]
struct DayRow {
    day: i64,
    gpu_model: String,
    micros_per_hour: i64,
    quantity: i64,
    seconds: i64,
}

/// The records starting in `[from, to)`, of one tenant or all.
fn records_between(tenant: Option<Uuid>, from: i64, to: i64) -> Select<usage_record::Entity> {
    let mut query = usage_record::Entity::find()
        .select_only()
        .filter(usage_record::Column::StartS.gte(from))
        .filter(usage_record::Column::StartS.lt(to));
    if let Some(tenant) = tenant {
        query = query.filter(usage_record::Column::TenantId.eq(tenant));
    }
    query
}

/// Seconds summed as a 64-bit integer (PostgreSQL's `SUM` of bigints is a numeric).
fn seconds_sum() -> sea_orm::sea_query::SimpleExpr {
    Expr::cust("CAST(SUM(end_s - start_s) AS BIGINT)")
}

impl DataStore {
    /// Up to `limit` instances whose state log grew since metering last read it.
    pub(crate) async fn instances_unmetered(&self, limit: u64) -> Result<Vec<Uuid>, StoreError> {
        Ok(metering_dirty::Entity::find()
            .select_only()
            .column(metering_dirty::Column::InstanceId)
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?)
    }

    /// In one transaction: reads the instances' whole state logs, stores the usage records
    /// `records` makes of each, and takes them off the list of grown logs. On PostgreSQL the
    /// instance rows
    /// are locked first, so no state change of theirs commits between the read and the mark
    /// (SQLite has one writer at a time).
    pub(crate) async fn usage_meter(
        &self,
        ids: &[Uuid],
        records: impl Fn(&Metered) -> Vec<Usage>,
    ) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            instance::Entity::find()
                .select_only()
                .column(instance::Column::Id)
                .filter(instance::Column::Id.is_in(ids.iter().copied()))
                .lock_exclusive()
                .into_tuple::<Uuid>()
                .all(&txn)
                .await?;
        }
        let inputs = metering_inputs_in(&txn, ids, false).await?;
        usage_insert(&txn, inputs.iter().flat_map(&records).collect()).await?;
        for chunk in ids.chunks(500) {
            metering_dirty::Entity::delete_many()
                .filter(metering_dirty::Column::InstanceId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(())
    }

    /// Stores the usage records `records` makes of the instances' whole logs.
    pub(crate) async fn usage_store(
        &self,
        ids: &[Uuid],
        records: impl Fn(&Metered) -> Vec<Usage>,
    ) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        let inputs = metering_inputs_in(&txn, ids, false).await?;
        usage_insert(&txn, inputs.iter().flat_map(&records).collect()).await?;
        txn.commit().await?;
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

    /// Which records of these instances start at `since` or later: `(instance, item, start)`.
    pub(crate) async fn usage_starts_since(
        &self,
        ids: &[Uuid],
        since: i64,
    ) -> Result<std::collections::HashSet<(Uuid, String, i64)>, StoreError> {
        let mut found = std::collections::HashSet::new();
        for chunk in ids.chunks(500) {
            let rows: Vec<(Uuid, String, i64)> = usage_record::Entity::find()
                .select_only()
                .columns([
                    usage_record::Column::InstanceId,
                    usage_record::Column::Item,
                    usage_record::Column::StartS,
                ])
                .filter(usage_record::Column::InstanceId.is_in(chunk.iter().copied()))
                .filter(usage_record::Column::StartS.gte(since))
                .into_tuple()
                .all(&self.db)
                .await?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// The instances with only the state each is in, since when.
    pub(crate) async fn metering_heads(&self, ids: &[Uuid]) -> Result<Vec<Metered>, StoreError> {
        metering_inputs_in(&self.db, ids, true).await
    }

    /// The records starting in `[from, to)` summed per instance, item, quantity and price.
    pub(crate) async fn usage_lines(
        &self,
        tenant: Option<Uuid>,
        from: i64,
        to: i64,
    ) -> Result<Vec<Line>, StoreError> {
        use usage_record::Column as C;
        let group = [
            C::InstanceId,
            C::Item,
            C::Quantity,
            C::MicrosPerHour,
            C::TenantId,
            C::InstanceName,
            C::GpuModel,
            C::GpuCount,
            C::ScalableUnit,
            C::LaunchedBy,
        ];
        let mut query = records_between(tenant, from, to).columns(group);
        for column in group {
            query = query.group_by(column);
        }
        let rows = query
            .column_as(seconds_sum(), "seconds")
            .column_as(C::StartS.min(), "first")
            .column_as(C::EndS.max(), "last")
            .into_model::<LineRow>()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| Line {
                usage: Usage {
                    instance_id: r.instance_id,
                    tenant_id: r.tenant_id,
                    instance_name: r.instance_name,
                    item: r.item,
                    quantity: r.quantity,
                    gpu_model: r.gpu_model,
                    gpu_count: r.gpu_count,
                    scalable_unit: r.scalable_unit,
                    launched_by: r.launched_by,
                    start: r.first,
                    end: r.last,
                    micros_per_hour: r.micros_per_hour,
                },
                seconds: r.seconds,
                from: r.first,
                to: r.last,
            })
            .collect())
    }

    /// The records starting in `[from, to)` summed per UTC day, GPU model, price and quantity.
    pub(crate) async fn usage_days(
        &self,
        tenant: Option<Uuid>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayUse>, StoreError> {
        use usage_record::Column as C;
        let day = Expr::cust("(start_s / 86400) * 86400");
        let rows = records_between(tenant, from, to)
            .column_as(day.clone(), "day")
            .columns([C::GpuModel, C::MicrosPerHour, C::Quantity])
            .column_as(seconds_sum(), "seconds")
            .group_by(day)
            .group_by(C::GpuModel)
            .group_by(C::MicrosPerHour)
            .group_by(C::Quantity)
            .into_model::<DayRow>()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DayUse {
                day: r.day,
                gpu_model: r.gpu_model,
                micros_per_hour: r.micros_per_hour,
                quantity: r.quantity,
                seconds: r.seconds,
            })
            .collect())
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

    /// Benchmarks: writes instances with a history, in one transaction: each row is inserted
    /// in its log's first state, the middle of the log written as it stands, and the last
    /// state set on the row (the trigger logs the first and the last). Logs are `(state,
    /// unix ms)`, at least two entries each.
    #[doc(hidden)]
    pub async fn testing_history(
        &self,
        rows: Vec<(instance::Model, Vec<(String, i64)>)>,
    ) -> Result<(), StoreError> {
        let txn = begin_write(&self.db).await?;
        for chunk in rows.chunks(500) {
            let instances = chunk.iter().map(|(row, log)| {
                let mut row = row.clone();
                (row.state, row.updated_at) = log[0].clone();
                instance::ActiveModel::from(row)
            });
            instance::Entity::insert_many(instances).exec_without_returning(&txn).await?;
            let middle: Vec<_> = chunk
                .iter()
                .flat_map(|(row, log)| {
                    log[1..log.len() - 1].iter().map(|(state, at)| instance_event::ActiveModel {
                        instance_id: Set(row.id),
                        state: Set(state.clone()),
                        at_ms: Set(*at),
                        ..Default::default()
                    })
                })
                .collect();
            for events in middle.chunks(1_000) {
                instance_event::Entity::insert_many(events.to_vec())
                    .exec_without_returning(&txn)
                    .await?;
            }
            for (row, log) in chunk {
                let (state, at) = log[log.len() - 1].clone();
                instance::Entity::update_many()
                    .col_expr(instance::Column::State, Expr::value(state))
                    .col_expr(instance::Column::UpdatedAt, Expr::value(at))
                    .filter(instance::Column::Id.eq(row.id))
                    .exec(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(())
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
