//! Billing: metering the state log into usage records, and what tenants and providers see
//! of it (usage pages, invoices, budgets and their alerts, prepaid credit, prices).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

use portal_types::billing::{
    BudgetStatus, CostLine, DayCost, GpuModelUse, Invoice, MoneyFormat, PriceItem, PriceList,
    PriceSet, PriceVersion, ProviderDay, ProviderUsage, UsageSummary, parse_month,
};
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::views::LiveEvent;
use portal_types::{Error, billing};
use uuid::Uuid;

use super::metering::{
    Billed, DAY, DayUse, Exact, Line, PUBLIC_IP, Prices, RECORD_LAG_S, STOPPED_DISK, Usage, cents,
    day_start, is_extra, merge_lines, pieces, type_item,
};
use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::audit::AuditRecord;
use crate::datastore::now_ms;
use crate::datastore::usage::Metered;

/// The budget alerts, in percent of the monthly budget.
const BUDGET_ALERTS: [i64; 3] = [50, 80, 100];

/// Instances metered per round (each with its whole state log), in one transaction.
const METER_BATCH: u64 = 2_000;

/// How many records one metering pass stores before it refreshes the database's statistics
/// of the usage tables (a catch-up; a day's changes stay far below).
const ANALYZE_AFTER: usize = 50_000;

/// What metering remembers between passes on this replica.
#[derive(Default)]
pub(crate) struct MeteringState {
    /// The midnight up to which open time was last stored (each new day stores it again).
    open_stored_until: AtomicI64,
}

/// A month: its label and `[start, end)` in unix seconds (UTC).
#[derive(Clone, Debug)]
struct Month {
    label: String,
    start: i64,
    end: i64,
}

impl Month {
    fn new(year: i32, month: u8) -> Result<Month, Error> {
        let first = |y: i32, m: u8| -> Result<i64, Error> {
            let m = time::Month::try_from(m).map_err(Error::internal)?;
            let d = time::Date::from_calendar_date(y, m, 1).map_err(Error::internal)?;
            Ok(d.midnight().assume_utc().unix_timestamp())
        };
        let (ny, nm) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
        Ok(Month {
            label: format!("{year:04}-{month:02}"),
            start: first(year, month)?,
            end: first(ny, nm)?,
        })
    }

    fn holding(s: i64) -> Month {
        let date = time::OffsetDateTime::from_unix_timestamp(s)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            .date();
        Month::new(date.year(), date.month().into()).unwrap_or(Month {
            label: "1970-01".into(),
            start: 0,
            end: 31 * DAY,
        })
    }

    fn parse(text: Option<&str>, now: i64) -> Result<Month, Error> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Month::holding(now)),
            Some(text) => {
                let (y, m) = parse_month(text)?;
                Month::new(y, m)
            }
        }
    }

    /// The months from the one holding `first` to the one holding `now`, newest first.
    fn since(first: Option<i64>, now: i64) -> Vec<String> {
        let mut months = Vec::new();
        let mut m = Month::holding(now);
        let first = first.unwrap_or(now).min(now);
        while m.end > first && months.len() < 120 {
            months.push(m.label.clone());
            m = Month::holding(m.start - 1);
        }
        months
    }
}

/// `2026-12-03`.
fn day_label(s: i64) -> String {
    let mut label = billing::utc_second(s);
    label.truncate(10);
    label
}

/// The usage records of an instance's logs up to `open_until`, at their prices.
fn records(m: &Metered, open_until: i64, prices: &Prices) -> Vec<Usage> {
    pieces(&m.log, &m.ip_log, open_until)
        .into_iter()
        .flat_map(|p| {
            let (item, quantity) = match p.billed {
                Billed::Type => (type_item(&m.instance_type), 1),
                Billed::StoppedDisk => (STOPPED_DISK.to_owned(), i64::from(m.disk_gib)),
                Billed::PublicIp => (PUBLIC_IP.to_owned(), 1),
            };
            prices.cut(Usage {
                instance_id: m.id,
                tenant_id: m.tenant_id,
                instance_name: m.name.clone(),
                item,
                quantity,
                gpu_model: m.gpu_model.clone(),
                gpu_count: m.gpu_count,
                scalable_unit: m.scalable_unit,
                launched_by: m.launched_by,
                start: p.start,
                end: p.end,
                micros_per_hour: 0,
            })
        })
        .collect()
}

/// A month's usage: its invoice lines before rounding, its days, and what the instances
/// billed now cost per hour.
struct MonthUsage {
    lines: Vec<Line>,
    days: Vec<DayUse>,
    burn_micros_per_hour: i64,
}

impl MonthUsage {
    /// The invoice total: the lines, each rounded once.
    fn total(&self) -> i64 {
        self.lines.iter().map(|l| cents(l.exact())).sum()
    }
}

/// Sums exact amounts per key and rounds each sum once.
fn rounded<K: Ord>(sums: BTreeMap<K, Exact>) -> impl Iterator<Item = (K, i64)> {
    sums.into_iter().map(|(k, exact)| (k, cents(exact)))
}

/// Cost lines from `(label, seconds, cents)` sums, most expensive first.
fn cost_lines(sums: BTreeMap<String, (i64, i64)>) -> Vec<CostLine> {
    let mut lines: Vec<CostLine> = sums
        .into_iter()
        .map(|(label, (seconds, cents))| CostLine { label, seconds, cents })
        .collect();
    lines.sort_by(|a, b| b.cents.cmp(&a.cents).then_with(|| a.label.cmp(&b.label)));
    lines
}

fn gpu_label(model: &str) -> String {
    if model.is_empty() { "CPU only".to_owned() } else { model.to_owned() }
}

impl Controller {
    /// The provider's currency, written the English way (server functions use the reader's).
    pub fn money_format(&self) -> MoneyFormat {
        MoneyFormat::english(&self.currency)
    }

    /// Stores usage records for every instance whose state log grew since it was metered and,
    /// once per new UTC day, the open time of every instance billed now up to the last
    /// midnight. Safe to run anywhere at any time: records are keyed, so a pass that repeats
    /// another (on a restart, or on another replica) stores nothing twice; an instance leaves
    /// the list of grown logs only with the records of the log it was read with.
    pub(crate) async fn meter(&self, now_s: i64) -> Result<(), Error> {
        let until = day_start(now_s - RECORD_LAG_S);
        let prices = self.datastore.prices_all().await?;
        let mut metered = HashSet::new();
        // Records stored since the usage tables' statistics were last refreshed.
        let mut unanalyzed = 0;
        loop {
            let ids = self.datastore.instances_unmetered(METER_BATCH).await?;
            if ids.is_empty() {
                break;
            }
            unanalyzed += self.datastore.usage_meter(&ids, |m| records(m, until, &prices)).await?;
            metered.extend(ids.iter().copied());
            if unanalyzed >= ANALYZE_AFTER {
                self.datastore.usage_analyze().await?;
                unanalyzed = 0;
            }
            if (ids.len() as u64) < METER_BATCH {
                break;
            }
        }
        if self.metering.open_stored_until.load(Ordering::Relaxed) < until {
            // Those just metered are stored up to the same midnight already.
            let mut open = self.datastore.instances_billed(None).await?;
            open.retain(|id| !metered.contains(id));
            for chunk in open.chunks(METER_BATCH as usize) {
                unanalyzed +=
                    self.datastore.usage_store(chunk, |m| records(m, until, &prices)).await?;
            }
            self.metering.open_stored_until.fetch_max(until, Ordering::Relaxed);
        }
        if unanalyzed >= ANALYZE_AFTER {
            self.datastore.usage_analyze().await?;
        }
        Ok(())
    }

    /// The usage of `[month)` (one tenant's, or all): the stored records summed by the
    /// database, and the time of instances billed now that is not stored yet, up to `now`
    /// (callers [`Self::meter`] first: then that is at most the time since the last midnight,
    /// and only the state each is in is read).
    async fn usage_of(
        &self,
        tenant: Option<Uuid>,
        month: &Month,
        now: i64,
    ) -> Result<MonthUsage, Error> {
        let prices = self.datastore.prices_all().await?;
        let stored = self.datastore.usage_lines(tenant, month.start, month.end).await?;
        let mut days = self.datastore.usage_days(tenant, month.start, month.end).await?;
        let open = self.datastore.instances_billed(tenant).await?;
        let since = day_start(now - RECORD_LAG_S);
        let kept = self.datastore.usage_starts_since(&open, since).await?;
        let (mut live, mut burn) = (Vec::new(), 0);
        for m in self.datastore.metering_heads(&open).await? {
            // What is billed in the second after `now`: each open piece's price.
            for u in records(&m, now + 1, &prices).iter().filter(|u| u.end > now) {
                burn += u.micros_per_hour * u.quantity;
            }
            live.extend(records(&m, now, &prices).into_iter().filter(|u| {
                u.start >= since.max(month.start)
                    && u.start < month.end
                    && !kept.contains(&(u.instance_id, u.item.clone(), u.start))
            }));
        }
        days.extend(live.iter().map(DayUse::of));
        Ok(MonthUsage { lines: merge_lines(stored, live), days, burn_micros_per_hour: burn })
    }

    /// The actor's tenant's usage in a month (`YYYY-MM`; none: this month).
    pub async fn usage_summary(
        &self,
        opctx: &OpContext,
        month: Option<&str>,
    ) -> Result<UsageSummary, Error> {
        let actor = opctx.authorize(Action::UsageRead)?;
        let now = now_ms().div_euclid(1000);
        let month = Month::parse(month, now)?;
        let tenant = actor.tenant_id.into_untyped_uuid();
        self.meter(now).await?;
        let usage = self.usage_of(Some(tenant), &month, now).await?;
        let total = usage.total();
        let current = (month.start..month.end).contains(&now);

        let mut days: BTreeMap<i64, Exact> = BTreeMap::new();
        let last_day = if current { day_start(now) } else { month.end - DAY };
        let mut d = month.start;
        while d <= last_day {
            days.insert(d, 0);
            d += DAY;
        }
        for day in &usage.days {
            *days.entry(day.day).or_default() += day.exact();
        }
        let (mut by_instance, mut by_model, mut by_user) =
            (BTreeMap::new(), BTreeMap::new(), BTreeMap::<Uuid, (i64, i64)>::new());
        for line in &usage.lines {
            let u = &line.usage;
            let seconds = if is_extra(&u.item) { 0 } else { line.seconds };
            let cents = cents(line.exact());
            let add = |e: &mut (i64, i64)| {
                e.0 += seconds;
                e.1 += cents;
            };
            add(by_instance.entry(u.instance_name.clone()).or_default());
            add(by_model.entry(gpu_label(&u.gpu_model)).or_default());
            add(by_user.entry(u.launched_by).or_default());
        }
        let names = self.datastore.user_names(by_user.keys().copied().collect()).await?;
        let by_user = by_user
            .into_iter()
            .map(|(id, sums)| {
                (names.get(&id).cloned().unwrap_or_else(|| "(deleted user)".to_owned()), sums)
            })
            .collect();

        let burn = if current { usage.burn_micros_per_hour } else { 0 };
        let forecast = total + cents(i128::from(burn) * i128::from(month.end - now).max(0));
        let budget = match self.datastore.budget_get(tenant).await? {
            None => None,
            Some(monthly) => {
                if current {
                    self.budget_check(actor.tenant_id, &month.label, total, monthly).await?;
                }
                Some(BudgetStatus {
                    monthly_cents: monthly,
                    used_percent: total * 100 / monthly.max(1),
                    alerts: self.datastore.budget_alerts(tenant, &month.label).await?,
                })
            }
        };
        Ok(UsageSummary {
            tenant_name: actor.tenant_name.clone(),
            month: month.label.clone(),
            current,
            format: self.money_format(),
            total_cents: total,
            forecast_cents: if current { forecast } else { total },
            burn_micros_per_hour: burn,
            days: rounded(days).map(|(d, cents)| DayCost { day: day_label(d), cents }).collect(),
            by_instance: cost_lines(by_instance),
            by_gpu_model: cost_lines(by_model),
            by_user: cost_lines(by_user),
            budget,
            credit_cents: self.credit_left(tenant, now).await?,
            months: Month::since(self.datastore.usage_first(Some(tenant)).await?, now),
        })
    }

    /// Raises the month's budget alerts the total has reached (each once), in the audit log
    /// and on the live stream.
    async fn budget_check(
        &self,
        tenant: TenantUuid,
        month: &str,
        total: i64,
        monthly: i64,
    ) -> Result<(), Error> {
        for percent in BUDGET_ALERTS {
            if total * 100 < monthly * percent {
                break;
            }
            if self
                .datastore
                .budget_alert_raise(tenant.into_untyped_uuid(), month, percent as i32)
                .await?
            {
                self.audit_write(&AuditRecord {
                    actor_id: None,
                    actor_name: "metering".to_owned(),
                    tenant_id: Some(tenant),
                    client: None,
                    action: "budget.alert".to_owned(),
                    object_kind: "budget".to_owned(),
                    object_id: format!("{month} {percent}%"),
                    outcome: "ok".to_owned(),
                })
                .await;
                self.events.publish(
                    Some(tenant),
                    LiveEvent::BudgetAlert { month: month.to_owned(), percent },
                );
            }
        }
        Ok(())
    }

    /// The budget alerts every budgeted tenant has reached this month (metering's loop).
    pub(crate) async fn budget_check_all(&self, now: i64) -> Result<(), Error> {
        let month = Month::holding(now);
        let budgets = self.datastore.budgets_all().await?;
        if budgets.is_empty() {
            return Ok(());
        }
        self.meter(now).await?;
        for (tenant, monthly) in budgets {
            let total = self.usage_of(Some(tenant), &month, now).await?.total();
            self.budget_check(TenantUuid::from_untyped_uuid(tenant), &month.label, total, monthly)
                .await?;
        }
        Ok(())
    }

    /// Prepaid credit left (none: the tenant is postpaid): every grant less everything used
    /// (after [`Self::meter`]).
    async fn credit_left(&self, tenant: Uuid, now: i64) -> Result<Option<i64>, Error> {
        let Some(granted) = self.datastore.credit_total(tenant).await? else {
            return Ok(None);
        };
        let all = Month { label: String::new(), start: 0, end: i64::MAX };
        let used = self.usage_of(Some(tenant), &all, now).await?.total();
        Ok(Some(granted - used))
    }

    /// Refuses a launch when the tenant's prepaid credit is used up.
    pub(crate) async fn credit_check(&self, tenant: TenantUuid) -> Result<(), Error> {
        let now = now_ms().div_euclid(1000);
        let tenant = tenant.into_untyped_uuid();
        // Postpaid tenants (most) launch without metering first.
        if self.datastore.credit_total(tenant).await?.is_none() {
            return Ok(());
        }
        self.meter(now).await?;
        match self.credit_left(tenant, now).await? {
            Some(left) if left <= 0 => Err(Error::Conflict {
                message: format!(
                    "Your prepaid credit is used up ({} left); ask your provider for more \
                     credit before launching.",
                    self.money_format().cents(left)
                ),
            }),
            _ => Ok(()),
        }
    }

    /// An invoice of the actor's tenant (provider admins: of any tenant), a draft while the
    /// month runs.
    pub async fn invoice(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        month: &str,
    ) -> Result<Invoice, Error> {
        let actor = opctx.authorize(Action::UsageRead)?;
        let tenant = crate::authz::managed_tenant(actor, tenant)?;
        let tenant_row = self
            .datastore
            .tenant_lookup_by_id(tenant.into_untyped_uuid())
            .await?
            .ok_or_else(|| Error::not_found("tenant", tenant))?;
        let now = now_ms().div_euclid(1000);
        let month = Month::parse(Some(month), now)?;
        self.meter(now).await?;
        let usage = self.usage_of(Some(tenant.into_untyped_uuid()), &month, now).await?;
        let lines: Vec<_> = usage.lines.iter().map(Line::invoice_line).collect();
        Ok(Invoice {
            tenant_id: tenant,
            tenant_name: tenant_row.name,
            month: month.label,
            draft: now < month.end,
            format: self.money_format(),
            total_cents: lines.iter().map(|l| l.cents).sum(),
            lines,
        })
    }

    /// Sets or removes the tenant's monthly budget (tenant admins).
    pub async fn budget_set(
        &self,
        opctx: &OpContext,
        set: &billing::BudgetSet,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::BudgetWrite)?;
            let cents = set.parse()?;
            Ok(self.datastore.budget_set(opctx, cents).await?)
        }
        .await;
        self.audited(opctx, "budget.set", "budget", set.monthly.trim(), result).await
    }

    /// Gives or takes back a tenant's prepaid credit (provider admins).
    pub async fn credit_grant(
        &self,
        opctx: &OpContext,
        tenant: TenantUuid,
        grant: &billing::CreditGrant,
    ) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::CreditWrite)?;
            let cents = grant.parse()?;
            Ok(self.datastore.credit_grant(opctx, tenant, cents, &grant.note).await?)
        }
        .await;
        self.audited_in(opctx, Some(tenant), "credit.grant", "tenant", &tenant.to_string(), result)
            .await
    }

    /// Every price item with its versions (provider admins see it to change it).
    pub async fn price_list(&self, opctx: &OpContext) -> Result<PriceList, Error> {
        opctx.authorize(Action::PriceWrite)?;
        let now = now_ms().div_euclid(1000);
        let prices = self.datastore.prices_all().await?;
        let items = self
            .datastore
            .price_items()
            .await?
            .into_iter()
            .map(|item| {
                let versions = prices.0.get(&item).cloned().unwrap_or_default();
                let current = versions.iter().rposition(|(from, _)| *from <= now);
                PriceItem {
                    unit: match item.as_str() {
                        STOPPED_DISK => "per GiB-hour stopped",
                        PUBLIC_IP => "per hour attached",
                        _ => "per hour running",
                    }
                    .to_owned(),
                    versions: versions
                        .iter()
                        .enumerate()
                        .map(|(i, (from, micros))| PriceVersion {
                            effective_from: from * 1000,
                            micros_per_hour: *micros,
                            current: Some(i) == current,
                        })
                        .collect(),
                    item,
                }
            })
            .collect();
        Ok(PriceList { format: self.money_format(), items })
    }

    /// Adds a price version, effective now or later (provider admins).
    pub async fn price_set(&self, opctx: &OpContext, set: &PriceSet) -> Result<(), Error> {
        let result = async {
            opctx.authorize(Action::PriceWrite)?;
            let now = now_ms();
            let (micros, from) = set.parse(now)?;
            Ok(self.datastore.price_set(opctx, &set.item, micros, from.unwrap_or(now)).await?)
        }
        .await;
        self.audited(opctx, "price.set", "price", &set.item, result).await
    }

    /// Revenue and GPU use across the fleet in a month (provider admins).
    pub async fn provider_usage(
        &self,
        opctx: &OpContext,
        month: Option<&str>,
    ) -> Result<ProviderUsage, Error> {
        opctx.authorize(Action::ProviderUsageRead)?;
        let now = now_ms().div_euclid(1000);
        let month = Month::parse(month, now)?;
        self.meter(now).await?;
        let usage = self.usage_of(None, &month, now).await?;
        let current = (month.start..month.end).contains(&now);

        let (mut by_unit, mut by_tenant) = (BTreeMap::new(), BTreeMap::<Uuid, (i64, i64)>::new());
        let mut models: BTreeMap<String, (i64, i64)> = BTreeMap::new();
        for line in &usage.lines {
            let u = &line.usage;
            let cents = cents(line.exact());
            let (seconds, gpu_seconds) = if is_extra(&u.item) {
                (0, 0)
            } else {
                (line.seconds, line.seconds * i64::from(u.gpu_count))
            };
            let unit =
                u.scalable_unit.map_or_else(|| "no unit".to_owned(), |su| format!("SU {su}"));
            let e = by_unit.entry(unit).or_insert((0, 0));
            e.0 += seconds;
            e.1 += cents;
            let e = by_tenant.entry(u.tenant_id).or_default();
            e.0 += seconds;
            e.1 += cents;
            let e = models.entry(gpu_label(&u.gpu_model)).or_default();
            e.0 += cents;
            e.1 += gpu_seconds;
        }
        let names = self.datastore.tenant_names().await?;
        let by_tenant = by_tenant
            .into_iter()
            .map(|(id, sums)| {
                (names.get(&id).cloned().unwrap_or_else(|| "(deleted tenant)".to_owned()), sums)
            })
            .collect();

        // GPUs per model now, and how many no instance holds.
        let fleet = self.datastore.fleet_summary(opctx).await?;
        let mut gpus: HashMap<String, (i64, i64)> = HashMap::new();
        for h in &fleet.hosts {
            if h.gpus_total > 0 {
                let e = gpus.entry(h.gpu_model.clone()).or_default();
                e.0 += i64::from(h.gpus_total);
                e.1 += i64::from(h.gpus_total - h.gpus_used);
            }
        }
        let elapsed = now.clamp(month.start, month.end) - month.start;
        let mut model_names: BTreeSet<String> = models.keys().cloned().collect();
        model_names.extend(gpus.keys().cloned());
        let gpu_models = model_names
            .into_iter()
            .map(|model| {
                let (cents, gpu_seconds) = models.get(&model).copied().unwrap_or_default();
                let (total, idle) = gpus.get(&model).copied().unwrap_or_default();
                GpuModelUse {
                    gpu_model: model,
                    cents,
                    gpu_seconds,
                    capacity_gpu_seconds: total * elapsed,
                    gpus: total,
                    idle_gpus: idle,
                }
            })
            .collect();

        let mut days: BTreeMap<(i64, String), Exact> = BTreeMap::new();
        for day in &usage.days {
            *days.entry((day.day, gpu_label(&day.gpu_model))).or_default() += day.exact();
        }
        let mut per_day: BTreeMap<i64, Vec<(String, i64)>> = BTreeMap::new();
        for ((day, model), cents) in rounded(days) {
            per_day.entry(day).or_default().push((model, cents));
        }
        Ok(ProviderUsage {
            month: month.label.clone(),
            current,
            format: self.money_format(),
            total_cents: usage.total(),
            gpu_models,
            by_unit: cost_lines(by_unit),
            by_tenant: cost_lines(by_tenant),
            days: per_day
                .into_iter()
                .map(|(day, by_model)| ProviderDay { day: day_label(day), by_model })
                .collect(),
            months: Month::since(self.datastore.usage_first(None).await?, now),
        })
    }

    /// The month's usage as CSV: one row per invoice line of every tenant (provider admins).
    pub async fn provider_usage_csv(
        &self,
        opctx: &OpContext,
        month: Option<&str>,
    ) -> Result<String, Error> {
        opctx.authorize(Action::ProviderUsageRead)?;
        let now = now_ms().div_euclid(1000);
        let month = Month::parse(month, now)?;
        self.meter(now).await?;
        let usage = self.usage_of(None, &month, now).await?;
        let names = self.datastore.tenant_names().await?;
        let mut rows: Vec<_> = usage
            .lines
            .iter()
            .map(|line| {
                let tenant = names.get(&line.usage.tenant_id).cloned().unwrap_or_default();
                (tenant, line.invoice_line(), &line.usage)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let mut csv = String::from(
            "tenant,instance,instance_id,item,quantity,gpu_model,gpus,scalable_unit,from,to,seconds,price_per_hour,amount\n",
        );
        for (tenant, l, u) in rows {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_field(&tenant),
                csv_field(&l.instance_name),
                l.instance_id,
                csv_field(&l.item),
                l.quantity,
                csv_field(&u.gpu_model),
                u.gpu_count,
                u.scalable_unit.map(|s| s.to_string()).unwrap_or_default(),
                crate::datastore::rfc3339(l.from * 1000),
                crate::datastore::rfc3339(l.to * 1000),
                l.seconds,
                plain_micros(l.micros_per_hour),
                plain_cents(l.cents),
            ));
        }
        Ok(csv)
    }
}

impl Controller {
    /// An invoice as CSV: a row per line and a total row.
    pub async fn invoice_csv(
        &self,
        opctx: &OpContext,
        tenant: Option<TenantUuid>,
        month: &str,
    ) -> Result<String, Error> {
        let invoice = self.invoice(opctx, tenant, month).await?;
        let mut csv = format!(
            "# invoice of {} for {}{} in {}\n\
             instance,instance_id,item,quantity,from,to,seconds,price_per_hour,amount\n",
            csv_field(&invoice.tenant_name),
            invoice.month,
            if invoice.draft { " (draft)" } else { "" },
            invoice.format.currency,
        );
        for l in &invoice.lines {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{}\n",
                csv_field(&l.instance_name),
                l.instance_id,
                csv_field(&l.item),
                l.quantity,
                crate::datastore::rfc3339(l.from * 1000),
                crate::datastore::rfc3339(l.to * 1000),
                l.seconds,
                plain_micros(l.micros_per_hour),
                plain_cents(l.cents),
            ));
        }
        csv.push_str(&format!("total,,,,,,,,{}\n", plain_cents(invoice.total_cents)));
        Ok(csv)
    }
}

/// `19.920000`: a price for machines (CSV).
fn plain_micros(micros: i64) -> String {
    format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000)
}

/// `1234.56`: an amount for machines (CSV).
fn plain_cents(cents: i64) -> String {
    format!("{}{}.{:02}", if cents < 0 { "-" } else { "" }, cents.abs() / 100, cents.abs() % 100)
}

/// A CSV field, quoted when it must be; a leading `=`, `+`, `-` or `@` is defused so a
/// spreadsheet never runs a tenant-chosen name as a formula.
pub fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_utc_calendar_months() {
        let dec = Month::new(2026, 12).unwrap();
        assert_eq!((dec.start, dec.end), (1_796_083_200, 1_798_761_600));
        let feb = Month::parse(Some("2028-02"), 0).unwrap();
        assert_eq!((feb.end - feb.start) / DAY, 29);
        assert_eq!(Month::holding(dec.end - 1).label, "2026-12");
        assert_eq!(Month::since(Some(dec.start - 1), dec.start + 5), vec!["2026-12", "2026-11"]);
        assert_eq!(day_label(dec.start + DAY), "2026-12-02");
    }

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(csv_field("plain"), "plain");
    }
}
