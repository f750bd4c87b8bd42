//! Usage: the instance state and public IP logs, the usage records metering makes of them,
//! budgets and their alerts, and prepaid credit.

use std::collections::{BTreeMap, HashMap, HashSet};

use portal_types::ids::{GenericUuid, TenantUuid};
use sea_orm::sea_query::{Expr, OnConflict, Query};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect, Set, TryGetable,
};
use uuid::Uuid;

use super::entity::{
    budget_alert, credit_grant, host, instance, instance_event, metering_dirty, public_ip,
    public_ip_event, tenant_budget, usage_day, usage_line, usage_record,
};
use super::{DataStore, StoreError, begin_write, now_ms};
use crate::app::metering::{DayUse, Line, Usage, billed_states, day_start, month_start};
use crate::authz::Action;
use crate::context::OpContext;

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
    /// Its public IP attachments (`(attached, unix seconds)`, in order).
    pub ip_log: Vec<(bool, i64)>,
}

/// The columns of an instance that metering reads.
#[derive(FromQueryResult)]
struct MeteredRow {
    id: Uuid,
    tenant_id: Uuid,
    name: String,
    instance_type: String,
    gpu_model: String,
    gpu_count: i32,
    disk_gib: i32,
    created_by: Uuid,
    host_id: Option<Uuid>,
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
        let instances = instance::Entity::find()
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
            .into_model::<MeteredRow>()
            .all(db)
            .await?;
        let host_ids: Vec<Uuid> = instances.iter().filter_map(|i| i.host_id).collect();
        let units: HashMap<Uuid, i32> = host::Entity::find()
            .select_only()
            .columns([host::Column::Id, host::Column::ScalableUnit])
            .filter(host::Column::Id.is_in(host_ids))
            .into_tuple()
            .all(db)
            .await?
            .into_iter()
            .collect();
        use {instance_event::Column as E, public_ip_event::Column as P};
        let mut logs = logs_of::<instance_event::Entity, String>(
            db,
            chunk,
            heads_only,
            [E::Id, E::InstanceId, E::State, E::AtMs],
        )
        .await?;
        let mut ip_logs = logs_of::<public_ip_event::Entity, bool>(
            db,
            chunk,
            heads_only,
            [P::Id, P::InstanceId, P::Attached, P::AtMs],
        )
        .await?;
        for i in instances {
            out.push(Metered {
                scalable_unit: i.host_id.and_then(|h| units.get(&h).copied()),
                log: logs.remove(&i.id).unwrap_or_default(),
                ip_log: ip_logs.remove(&i.id).unwrap_or_default(),
                id: i.id,
                tenant_id: i.tenant_id,
                name: i.name,
                instance_type: i.instance_type,
                gpu_model: i.gpu_model,
                gpu_count: i.gpu_count,
                disk_gib: i.disk_gib,
                launched_by: i.created_by,
            });
        }
    }
    Ok(out)
}

/// The instances' entries in a log table (columns: its id, the instance, the value, the
/// time in ms) as `(value, unix seconds)` in the order written (`heads_only`: each one's
/// last entry only).
async fn logs_of<E: EntityTrait, V: TryGetable>(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
    heads_only: bool,
    [id, instance, value, at_ms]: [E::Column; 4],
) -> Result<HashMap<Uuid, Vec<(V, i64)>>, StoreError> {
    let mut query = E::find().select_only().columns([instance, value, at_ms]);
    if heads_only {
        let heads: Vec<i64> = E::find()
            .select_only()
            .column_as(id.max(), "head")
            .filter(instance.is_in(ids.iter().copied()))
            .group_by(instance)
            .into_tuple()
            .all(db)
            .await?;
        query = query.filter(id.is_in(heads));
    } else {
        query = query.filter(instance.is_in(ids.iter().copied()));
    }
    // In the index's order: each instance's entries by id, with no sort of the table.
    let rows: Vec<(Uuid, V, i64)> =
        query.order_by_asc(instance).order_by_asc(id).into_tuple().all(db).await?;
    let mut logs: HashMap<Uuid, Vec<(V, i64)>> = HashMap::new();
    for (instance, v, at_ms) in rows {
        logs.entry(instance).or_default().push((v, at_ms.div_euclid(1000)));
    }
    Ok(logs)
}

/// Locks the instances' rows on PostgreSQL until `db` (a transaction) ends, so that no state
/// change or other metering of theirs commits meanwhile; SQLite has one writer at a time.
pub(crate) async fn lock_instances(
    db: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<(), StoreError> {
    if db.get_database_backend() == DbBackend::Postgres {
        for chunk in ids.chunks(500) {
            instance::Entity::find()
                .select_only()
                .column(instance::Column::Id)
                .filter(instance::Column::Id.is_in(chunk.iter().copied()))
                .lock_exclusive()
                .into_tuple::<Uuid>()
                .all(db)
                .await?;
        }
    }
    Ok(())
}

/// Stores the records not stored yet (same instance, item and start: metering the same log
/// twice changes nothing) and adds them to the month and day sums, in `db`, a transaction
/// holding the instances (see [`lock_instances`]). Returns how many it stored.
async fn usage_insert(db: &impl ConnectionTrait, records: Vec<Usage>) -> Result<usize, StoreError> {
    let Some(earliest) = records.iter().map(|u| u.start).min() else { return Ok(0) };
    let ids: Vec<Uuid> =
        records.iter().map(|u| u.instance_id).collect::<HashSet<_>>().into_iter().collect();
    let mut stored: HashSet<(Uuid, String, i64)> = HashSet::new();
    for chunk in ids.chunks(500) {
        let keys: Vec<(Uuid, String, i64)> = usage_record::Entity::find()
            .select_only()
            .columns([
                usage_record::Column::InstanceId,
                usage_record::Column::Item,
                usage_record::Column::StartS,
            ])
            .filter(usage_record::Column::InstanceId.is_in(chunk.iter().copied()))
            .filter(usage_record::Column::StartS.gte(earliest))
            .into_tuple()
            .all(db)
            .await?;
        stored.extend(keys);
    }
    let new: Vec<Usage> = records
        .into_iter()
        .filter(|u| stored.insert((u.instance_id, u.item.clone(), u.start)))
        .collect();

    // 12 columns: well under SQLite's limit of bound values per statement.
    for chunk in new.chunks(1_000) {
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
        usage_record::Entity::insert_many(rows).exec_without_returning(db).await?;
    }

    let mut lines: HashMap<(i64, Uuid, String, i64, i64), usage_line::Model> = HashMap::new();
    let mut days: HashMap<(i64, Uuid, String, i64, i64), i64> = HashMap::new();
    for u in &new {
        let month = month_start(u.start);
        let line = lines
            .entry((month, u.instance_id, u.item.clone(), u.quantity, u.micros_per_hour))
            .or_insert_with(|| usage_line::Model {
                month,
                instance_id: u.instance_id,
                item: u.item.clone(),
                quantity: u.quantity,
                micros_per_hour: u.micros_per_hour,
                tenant_id: u.tenant_id,
                instance_name: u.instance_name.clone(),
                gpu_model: u.gpu_model.clone(),
                gpu_count: u.gpu_count,
                scalable_unit: u.scalable_unit,
                launched_by: u.launched_by,
                seconds: 0,
                first_s: u.start,
                last_s: u.end,
            });
        line.seconds += u.end - u.start;
        line.first_s = line.first_s.min(u.start);
        line.last_s = line.last_s.max(u.end);
        let key =
            (day_start(u.start), u.tenant_id, u.gpu_model.clone(), u.quantity, u.micros_per_hour);
        *days.entry(key).or_default() += u.end - u.start;
    }
    let lines: Vec<_> = lines.into_values().map(usage_line::ActiveModel::from).collect();
    for chunk in lines.chunks(500) {
        use usage_line::Column as L;
        usage_line::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    L::Month,
                    L::InstanceId,
                    L::Item,
                    L::Quantity,
                    L::MicrosPerHour,
                ])
                .value(L::Seconds, Expr::cust("usage_line.seconds + excluded.seconds"))
                .value(
                    L::FirstS,
                    Expr::cust(
                        "CASE WHEN excluded.first_s < usage_line.first_s \
                             THEN excluded.first_s ELSE usage_line.first_s END",
                    ),
                )
                .value(
                    L::LastS,
                    Expr::cust(
                        "CASE WHEN excluded.last_s > usage_line.last_s \
                             THEN excluded.last_s ELSE usage_line.last_s END",
                    ),
                )
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    let days: Vec<_> = days
        .into_iter()
        .map(|((day, tenant_id, gpu_model, quantity, micros_per_hour), seconds)| {
            usage_day::ActiveModel::from(usage_day::Model {
                day,
                tenant_id,
                gpu_model,
                quantity,
                micros_per_hour,
                seconds,
            })
        })
        .collect();
    for chunk in days.chunks(500) {
        use usage_day::Column as D;
        usage_day::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    D::Day,
                    D::TenantId,
                    D::GpuModel,
                    D::Quantity,
                    D::MicrosPerHour,
                ])
                .value(D::Seconds, Expr::cust("usage_day.seconds + excluded.seconds"))
                .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    Ok(new.len())
}

impl DataStore {
    /// Up to `limit` instances whose state or public IP log grew since metering last read it.
    pub(crate) async fn instances_unmetered(&self, limit: u64) -> Result<Vec<Uuid>, StoreError> {
        Ok(metering_dirty::Entity::find()
            .select_only()
            .column(metering_dirty::Column::InstanceId)
            .limit(limit)
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?)
    }

    /// In one transaction holding the instances (see [`lock_instances`]): reads their whole
    /// state logs, stores the usage records `records` makes of each, and takes them off the
    /// list of grown logs, so no state change commits between the read and the removal.
    /// Returns how many records it stored.
    pub(crate) async fn usage_meter(
        &self,
        ids: &[Uuid],
        records: impl Fn(&Metered) -> Vec<Usage>,
    ) -> Result<usize, StoreError> {
        let txn = begin_write(&self.db).await?;
        lock_instances(&txn, ids).await?;
        let inputs = metering_inputs_in(&txn, ids, false).await?;
        let stored = usage_insert(&txn, inputs.iter().flat_map(&records).collect()).await?;
        for chunk in ids.chunks(500) {
            metering_dirty::Entity::delete_many()
                .filter(metering_dirty::Column::InstanceId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(stored)
    }

    /// Stores the usage records `records` makes of the instances' whole logs; returns how
    /// many.
    pub(crate) async fn usage_store(
        &self,
        ids: &[Uuid],
        records: impl Fn(&Metered) -> Vec<Usage>,
    ) -> Result<usize, StoreError> {
        let txn = begin_write(&self.db).await?;
        lock_instances(&txn, ids).await?;
        let inputs = metering_inputs_in(&txn, ids, false).await?;
        let stored = usage_insert(&txn, inputs.iter().flat_map(&records).collect()).await?;
        txn.commit().await?;
        Ok(stored)
    }

    /// Refreshes PostgreSQL's statistics of the usage tables. Until autovacuum gets to a
    /// table that a catch-up just filled, the planner reads it by sequential scans: a usage
    /// page took 100 ms instead of 2 after a month was metered at once.
    pub(crate) async fn usage_analyze(&self) -> Result<(), StoreError> {
        if self.db.get_database_backend() == DbBackend::Postgres {
            self.db.execute_unprepared("ANALYZE usage_record, usage_line, usage_day").await?;
        }
        Ok(())
    }

    /// The instances billed now, in a billed state or holding a public IP (of one tenant,
    /// or all).
    pub(crate) async fn instances_billed(
        &self,
        tenant: Option<Uuid>,
    ) -> Result<Vec<Uuid>, StoreError> {
        // An instance holds only its own tenant's public IPs: the tenant filter covers both.
        let holding = Query::select()
            .column(public_ip::Column::InstanceId)
            .from(public_ip::Entity)
            .and_where(public_ip::Column::InstanceId.is_not_null())
            .to_owned();
        let mut query = instance::Entity::find().select_only().column(instance::Column::Id).filter(
            Condition::any()
                .add(instance::Column::State.is_in(billed_states()))
                .add(instance::Column::Id.in_subquery(holding)),
        );
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

    /// The invoice lines (before rounding) of the months starting in `[from, to)`.
    pub(crate) async fn usage_lines(
        &self,
        tenant: Option<Uuid>,
        from: i64,
        to: i64,
    ) -> Result<Vec<Line>, StoreError> {
        let mut query = usage_line::Entity::find()
            .filter(usage_line::Column::Month.gte(from))
            .filter(usage_line::Column::Month.lt(to));
        if let Some(tenant) = tenant {
            query = query.filter(usage_line::Column::TenantId.eq(tenant));
        }
        Ok(query
            .all(&self.db)
            .await?
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
                    start: r.first_s,
                    end: r.last_s,
                    micros_per_hour: r.micros_per_hour,
                },
                seconds: r.seconds,
                from: r.first_s,
                to: r.last_s,
            })
            .collect())
    }

    /// The usage of the UTC days in `[from, to)` per GPU model, price and quantity.
    pub(crate) async fn usage_days(
        &self,
        tenant: Option<Uuid>,
        from: i64,
        to: i64,
    ) -> Result<Vec<DayUse>, StoreError> {
        let mut query = usage_day::Entity::find()
            .filter(usage_day::Column::Day.gte(from))
            .filter(usage_day::Column::Day.lt(to));
        if let Some(tenant) = tenant {
            query = query.filter(usage_day::Column::TenantId.eq(tenant));
        }
        Ok(query
            .all(&self.db)
            .await?
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
        let mut query = usage_line::Entity::find()
            .select_only()
            .column_as(usage_line::Column::FirstS.min(), "first");
        if let Some(tenant) = tenant {
            query = query.filter(usage_line::Column::TenantId.eq(tenant));
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
