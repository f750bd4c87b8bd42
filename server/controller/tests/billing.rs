//! Metering and billing through the control plane, on SQLite and PostgreSQL.
//!
//! - A month of history written as state changes (the database trigger logs them) becomes an
//!   invoice that matches, to the cent, the amounts worked out here from the log by hand; a
//!   price change made in advance splits the instance's line; a public IP is billed while
//!   attached (its trigger logs it); metering twice changes nothing.
//! - The tenant's page: breakdowns, budget alerts raised once each (audit log and live
//!   stream), prepaid credit that refuses a launch at zero with a sentence; another tenant
//!   sees none of it.
//! - A VM running on the simulated fleet while the control plane restarts is billed every
//!   second between the states its log records.
//! - Metering a month at once refreshes PostgreSQL's statistics of the usage tables.

mod common;

use std::time::Duration;

use common::*;
use portal_controller::datastore::entity::{
    instance, instance_event, metering_dirty, price, public_ip, public_ip_pool, usage_record,
};
use portal_controller::{Controller, ControllerConfig};
use portal_types::Error;
use portal_types::billing::{BudgetSet, CreditGrant, PriceSet};
use portal_types::ids::{GenericUuid, TenantUuid};
use portal_types::views::{InstanceState, LiveEvent};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, Statement,
};
use uuid::Uuid;

const HOUR: i64 = 3_600;
/// 2026-11-01T00:00:00Z.
const NOV: i64 = 1_793_491_200;
/// The seeded price of `h100x8`: 19.92 per hour.
const H100X8: i64 = 19_920_000;

/// An 8-GPU instance of `tenant` in `state` since `at` (unix s).
fn vm(tenant: TenantUuid, user: Uuid, name: &str, state: &str, at: i64) -> instance::Model {
    instance::Model {
        id: Uuid::new_v4(),
        tenant_id: tenant.into_untyped_uuid(),
        name: name.to_owned(),
        instance_type: "h100x8".to_owned(),
        state: state.to_owned(),
        gpu_count: 8,
        gpu_model: "H100-SXM5-80GB".to_owned(),
        vcpus: 160,
        memory_gib: 1600,
        disk_gib: 1600,
        host_id: None,
        spec: None,
        message: None,
        generation: 1,
        vm_removal: None,
        image: None,
        image_source: None,
        idempotency_key: None,
        ssh_keys: None,
        user_data: None,
        subnet_id: None,
        security_groups: None,
        price_micros_per_hour: Some(H100X8),
        created_by: user,
        created_at: at * 1000,
        updated_at: at * 1000,
    }
}

/// Writes an instance of `tenant` whose state went through `log` (`(state, unix s)`).
async fn history(
    ctl: &Controller,
    tenant: TenantUuid,
    user: Uuid,
    name: &str,
    log: &[(&str, i64)],
) -> Uuid {
    let db = ctl.datastore().connection();
    let (first, at) = log[0];
    let id =
        instance::ActiveModel::from(vm(tenant, user, name, first, at)).insert(db).await.unwrap().id;
    for (state, at) in &log[1..] {
        instance::Entity::update_many()
            .col_expr(instance::Column::State, (*state).into())
            .col_expr(instance::Column::UpdatedAt, (at * 1000).into())
            .filter(instance::Column::Id.eq(id))
            .exec(db)
            .await
            .unwrap();
    }
    id
}

/// Half up, as invoices round: `micros × quantity × seconds / 3600` in cents.
fn cents(micros: i64, quantity: i64, seconds: i64) -> i64 {
    let exact = i128::from(micros) * i128::from(quantity) * i128::from(seconds);
    let per_cent = 3_600 * 10_000;
    ((exact + per_cent / 2) / per_cent) as i64
}

async fn open(url: &str) -> std::sync::Arc<Controller> {
    let config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(url)
    };
    Controller::open(&config).await.expect("controller opens")
}

async fn billing_from_history(url: &str) {
    let ctl = open(url).await;
    let user = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin = ctl.actor(user).await.unwrap().unwrap();
    let admin_op = &op(&admin);
    let acme = ctl.tenant_create(admin_op, "acme").await.unwrap().id;
    let alice = member(&ctl, &admin, acme, "alice", "member").await;
    let other = ctl.tenant_create(admin_op, "other").await.unwrap().id;
    let olga = member(&ctl, &admin, other, "olga", "tenant-admin").await;
    let alice_id = alice.user_id.into_untyped_uuid();

    // The price of h100x8 changes on Nov 10, set in advance (as a provider would).
    price::ActiveModel {
        item: Set("type:h100x8".to_owned()),
        effective_from_ms: Set((NOV + 9 * 86_400) * 1000),
        micros_per_hour: Set(24_000_000),
        created_by: Set(None),
        created_at: Set(NOV * 1000),
    }
    .insert(ctl.datastore().connection())
    .await
    .unwrap();

    let d = |day: i64, h: i64, m: i64, s: i64| NOV + (day - 1) * 86_400 + h * HOUR + m * 60 + s;
    let train = history(
        &ctl,
        acme,
        alice_id,
        "train",
        &[
            ("provisioning", d(3, 9, 59, 0)),
            ("running", d(3, 10, 0, 0)),
            ("stopping", d(5, 12, 30, 0)),
            ("stopped", d(5, 12, 30, 15)),
            ("starting", d(6, 0, 0, 0)),
            ("running", d(6, 0, 0, 10)),
            ("deleting", d(20, 8, 0, 0)),
            ("deleted", d(20, 8, 0, 3)),
        ],
    )
    .await;
    // A public IP attached to it from Nov 4 to Nov 8 at noon, stopped or not.
    let db = ctl.datastore().connection();
    let pool = public_ip_pool::ActiveModel {
        id: Set(Uuid::new_v4()),
        name: Set("internet".to_owned()),
        cidr: Set("203.0.113.0/29".to_owned()),
        created_at: Set(NOV * 1000),
    }
    .insert(db)
    .await
    .unwrap();
    let ip = public_ip::ActiveModel {
        id: Set(Uuid::new_v4()),
        pool_id: Set(pool.id),
        tenant_id: Set(acme.into_untyped_uuid()),
        name: Set("web".to_owned()),
        address: Set("203.0.113.1".to_owned()),
        instance_id: Set(None),
        created_at: Set(NOV * 1000),
        attachment_changed_at: Set(0),
    }
    .insert(db)
    .await
    .unwrap();
    for (to, at) in [(Some(train), d(4, 0, 0, 0)), (None, d(8, 12, 0, 0))] {
        public_ip::Entity::update_many()
            .col_expr(public_ip::Column::InstanceId, to.into())
            .col_expr(public_ip::Column::AttachmentChangedAt, (at * 1000).into())
            .filter(public_ip::Column::Id.eq(ip.id))
            .exec(db)
            .await
            .unwrap();
    }
    // Another tenant's VM in the same month.
    history(
        &ctl,
        other,
        olga.user_id.into_untyped_uuid(),
        "theirs",
        &[("running", d(4, 0, 0, 0)), ("deleted", d(4, 1, 0, 0))],
    )
    .await;

    let invoice = ctl.invoice(&op(&alice), None, "2026-11").await.unwrap();
    assert!(!invoice.draft, "November is over");
    let running_before = (d(5, 12, 30, 15) - d(3, 10, 0, 0)) + (d(10, 0, 0, 0) - d(6, 0, 0, 10));
    let running_after = d(20, 8, 0, 0) - d(10, 0, 0, 0);
    let stopped = d(6, 0, 0, 10) - d(5, 12, 30, 15);
    let attached = d(8, 12, 0, 0) - d(4, 0, 0, 0);
    let got: Vec<_> = invoice
        .lines
        .iter()
        .map(|l| (l.item.as_str(), l.quantity, l.seconds, l.micros_per_hour, l.cents))
        .collect();
    assert_eq!(
        got,
        vec![
            ("h100x8", 1, running_before, H100X8, cents(H100X8, 1, running_before)),
            ("h100x8", 1, running_after, 24_000_000, cents(24_000_000, 1, running_after)),
            ("public IP", 1, attached, 5_000, cents(5_000, 1, attached)),
            ("stopped disk", 1600, stopped, 137, cents(137, 1600, stopped)),
        ],
        "one line per price, stopping billed as running, starting as stopped, the public IP \
         while attached"
    );
    assert_eq!(got[2].4, 54, "4.5 days at 0.005 per hour");
    assert!(invoice.lines.iter().all(|l| *l.instance_id.as_untyped_uuid() == train));
    let total: i64 = got.iter().map(|g| g.4).sum();
    assert_eq!(invoice.total_cents, total);

    // Metering again (a restart: a new controller on the same database) changes nothing.
    drop(ctl);
    let ctl = open(url).await;
    let again = ctl.invoice(&op(&alice), None, "2026-11").await.unwrap();
    assert_eq!(again.lines, invoice.lines);
    let events = instance_event::Entity::find()
        .filter(instance_event::Column::InstanceId.eq(train))
        .order_by_asc(instance_event::Column::Id)
        .all(ctl.datastore().connection())
        .await
        .unwrap();
    assert_eq!(events.len(), 8, "every state change is in the log, once");
    let dirty = metering_dirty::Entity::find().all(ctl.datastore().connection()).await.unwrap();
    assert!(dirty.is_empty(), "metering read every grown log: {dirty:?}");
    // The invoice is the records summed: every record of the VM is in one of its lines.
    let records = usage_record::Entity::find()
        .filter(usage_record::Column::InstanceId.eq(train))
        .all(ctl.datastore().connection())
        .await
        .unwrap();
    let recorded: i64 = records.iter().map(|r| r.end_s - r.start_s).sum();
    assert_eq!(recorded, invoice.lines.iter().map(|l| l.seconds).sum::<i64>());
    assert!(records.iter().all(|r| r.end_s <= r.start_s - r.start_s.rem_euclid(86_400) + 86_400));

    // The month's page agrees with the invoice; the other tenant sees only its own.
    let page = ctl.usage_summary(&op(&alice), Some("2026-11")).await.unwrap();
    assert_eq!(page.total_cents, total);
    assert_eq!(page.by_instance.len(), 1);
    assert_eq!(page.by_instance[0].seconds, running_before + running_after);
    assert_eq!(page.by_user[0].label, "alice");
    assert_eq!(page.by_gpu_model[0].label, "H100-SXM5-80GB");
    assert_eq!(page.days.len(), 30);
    assert_eq!(page.days[0].cents, 0);
    assert!(page.months.contains(&"2026-11".to_owned()));
    let theirs = ctl.usage_summary(&op(&olga), Some("2026-11")).await.unwrap();
    assert_eq!(theirs.total_cents, cents(H100X8, 1, HOUR));
    assert!(matches!(
        ctl.invoice(&op(&olga), Some(acme), "2026-11").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(ctl.provider_usage(&op(&alice), None).await, Err(Error::Forbidden { .. })));
    let provider = ctl.provider_usage(&op(&admin), Some("2026-11")).await.unwrap();
    assert_eq!(provider.total_cents, total + theirs.total_cents);
    assert_eq!(
        provider.by_tenant.iter().map(|t| t.label.as_str()).collect::<Vec<_>>(),
        ["acme", "other"]
    );
    let csv = ctl.provider_usage_csv(&op(&admin), Some("2026-11")).await.unwrap();
    assert_eq!(csv.lines().count(), 1 + 5, "a header and one row per invoice line: {csv}");
    assert!(csv.contains(",public IP,"), "{csv}");
    assert!(csv.contains(",train,") && csv.contains(",19.920000,"), "{csv}");
    assert!(matches!(
        ctl.usage_summary(&op(&alice), Some("2026-13")).await,
        Err(Error::InvalidRequest { .. })
    ));

    // Prices: a change starts now or later, and only provider admins make one.
    let set = |price: &str, from: &str| PriceSet {
        item: "type:h100x8".into(),
        price: price.into(),
        effective_from: from.into(),
    };
    assert!(matches!(
        ctl.price_set(&op(&alice), &set("1", "")).await,
        Err(Error::Forbidden { .. })
    ));
    let past = ctl.price_set(admin_op, &set("1", "2026-11-15T00:00")).await.unwrap_err();
    assert!(past.to_string().contains("starts now or later"), "{past}");
    ctl.price_set(admin_op, &set("25.50", "2099-01-01T00:00")).await.unwrap();
    let list = ctl.price_list(admin_op).await.unwrap();
    let h100 = list.items.iter().find(|i| i.item == "type:h100x8").unwrap();
    assert_eq!(h100.versions.len(), 3, "the seed's, Nov 10 and 2099: {h100:?}");
    let current: Vec<_> = h100.versions.iter().filter(|v| v.current).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0].micros_per_hour, 24_000_000);
    let again = ctl.invoice(&op(&alice), None, "2026-11").await.unwrap();
    assert_eq!(again.total_cents, total, "a new price never rewrites the past");

    // This month: a VM running for 4 hours at 24.00 against a 100.00 budget reaches 50 % and
    // 80 % (unless the month began less than 4 hours ago).
    let today = time::OffsetDateTime::now_utc();
    let now = today.unix_timestamp();
    let month_start = today.replace_day(1).unwrap().replace_time(time::Time::MIDNIGHT);
    let mut events = ctl.events().subscribe();
    let alice_op = &op(&alice);
    assert!(
        matches!(
            ctl.budget_set(alice_op, &BudgetSet { monthly: "100".into() }).await,
            Err(Error::Forbidden { .. })
        ),
        "members do not set budgets"
    );
    let ann = member(&ctl, &admin, acme, "ann", "tenant-admin").await;
    let bad = ctl.budget_set(&op(&ann), &BudgetSet { monthly: "lots".into() }).await.unwrap_err();
    assert!(bad.to_string().contains("number"), "{bad}");
    ctl.budget_set(&op(&ann), &BudgetSet { monthly: "100.00".into() }).await.unwrap();
    let start = (now - 4 * HOUR).max(month_start.unix_timestamp());
    let burning = history(&ctl, acme, alice_id, "burning", &[("running", start)]).await;
    // The public IP, attached to it since then too, burns beside the type.
    public_ip::Entity::update_many()
        .col_expr(public_ip::Column::InstanceId, Some(burning).into())
        .col_expr(public_ip::Column::AttachmentChangedAt, (start * 1000).into())
        .filter(public_ip::Column::Id.eq(ip.id))
        .exec(ctl.datastore().connection())
        .await
        .unwrap();
    let page = ctl.usage_summary(alice_op, None).await.unwrap();
    assert!(page.current);
    assert_eq!(page.burn_micros_per_hour, 24_000_000 + 5_000);
    let later = time::OffsetDateTime::now_utc().unix_timestamp();
    let live = |until: i64| cents(24_000_000, 1, until - start) + cents(5_000, 1, until - start);
    let burning_line = page.by_instance.iter().find(|l| l.label == "burning").unwrap();
    assert!(
        (live(now)..=live(later)).contains(&burning_line.cents),
        "the time not stored yet is added live, the public IP's too: {page:?}"
    );
    let budget = page.budget.expect("a budget");
    if start == now - 4 * HOUR {
        assert_eq!(budget.alerts, [50, 80], "{budget:?}");
        let mut seen = Vec::new();
        while let Ok(Ok(e)) = tokio::time::timeout(Duration::from_secs(2), events.recv()).await {
            if let LiveEvent::BudgetAlert { percent, .. } = e.event {
                seen.push(percent);
            }
        }
        assert_eq!(seen, [50, 80], "the alerts reach the live stream");
        let audit =
            ctl.audit_list(&op(&ann), Some("budget.alert"), None, &newest()).await.unwrap().items;
        assert_eq!(audit.len(), 2, "{audit:?}");
        // Raised once each: the page again raises nothing new.
        ctl.usage_summary(alice_op, None).await.unwrap();
        assert_eq!(
            ctl.audit_list(&op(&ann), Some("budget.alert"), None, &newest())
                .await
                .unwrap()
                .items
                .len(),
            audit.len()
        );
    }
    assert!(page.forecast_cents >= page.total_cents);
    assert!(page.forecast_cents > page.total_cents || !page.current);

    // An instance its state does not bill, holding a public IP, burns for the address alone.
    let waiting = history(&ctl, acme, alice_id, "waiting", &[("provisioning", now)]).await;
    let db = ctl.datastore().connection();
    let spare = public_ip::ActiveModel {
        id: Set(Uuid::new_v4()),
        pool_id: Set(pool.id),
        tenant_id: Set(acme.into_untyped_uuid()),
        name: Set("spare".to_owned()),
        address: Set("203.0.113.2".to_owned()),
        instance_id: Set(None),
        created_at: Set(now * 1000),
        attachment_changed_at: Set(0),
    }
    .insert(db)
    .await
    .unwrap();
    public_ip::Entity::update_many()
        .col_expr(public_ip::Column::InstanceId, Some(waiting).into())
        .col_expr(public_ip::Column::AttachmentChangedAt, (now * 1000).into())
        .filter(public_ip::Column::Id.eq(spare.id))
        .exec(db)
        .await
        .unwrap();
    let page = ctl.usage_summary(alice_op, None).await.unwrap();
    assert_eq!(page.burn_micros_per_hour, 24_000_000 + 2 * 5_000);

    // Prepaid credit: less than used refuses a launch with a sentence; more allows it again.
    ctl.credit_grant(admin_op, acme, &CreditGrant { amount: "10.00".into(), note: "trial".into() })
        .await
        .unwrap();
    let refused = ctl.instance_create(alice_op, &launch("more", "h100x1")).await.unwrap_err();
    assert!(refused.to_string().contains("prepaid credit is used up"), "{refused}");
    assert!(matches!(
        ctl.credit_grant(&op(&ann), acme, &CreditGrant { amount: "1".into(), note: String::new() })
            .await,
        Err(Error::Forbidden { .. })
    ));
    ctl.credit_grant(admin_op, acme, &CreditGrant { amount: "100000".into(), note: String::new() })
        .await
        .unwrap();
    let left = ctl.usage_summary(alice_op, None).await.unwrap().credit_cents.expect("prepaid");
    assert!(left > 0, "{left}");
    // (No fleet here: the launch gets past the credit check, then finds no capacity.)
    let passed = tokio::time::timeout(
        Duration::from_secs(5),
        ctl.instance_create(alice_op, &launch("more", "h100x1")),
    )
    .await;
    assert!(!matches!(&passed, Ok(Err(e)) if e.to_string().contains("credit")), "{passed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn billing_from_history_on_sqlite() {
    billing_from_history(&sqlite_url("billing")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn billing_from_history_on_postgres() {
    let Some(url) = postgres_url("billing").await else { return };
    billing_from_history(&url).await;
}

/// A VM on the simulated fleet, running while its control plane restarts: every second
/// between running and stopped in its log is billed, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_loses_no_second() {
    let url = sqlite_url("billing-restart");
    let stack = start(&url, 1).await;
    let ctl = &stack.controller;
    let admin = &op(&stack.admin);
    let id = ctl.instance_create(admin, &launch("steady", "h100x1")).await.unwrap()[0].id;
    eventually(20, "running", async || {
        ctl.instance_get(admin, id).await.unwrap().instance.state == InstanceState::Running
    })
    .await;
    ctl.usage_summary(admin, None).await.unwrap();
    ctl.stop();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    let again = open(&url).await;
    attach_all(&again, &stack.fleet, &stack.tls).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    again.instance_power(admin, id, portal_types::params::PowerAction::Stop).await.unwrap();
    eventually(20, "stopped", async || {
        again.instance_get(admin, id).await.unwrap().instance.state == InstanceState::Stopped
    })
    .await;

    let log = instance_event::Entity::find()
        .filter(instance_event::Column::InstanceId.eq(id.into_untyped_uuid()))
        .order_by_asc(instance_event::Column::Id)
        .all(again.datastore().connection())
        .await
        .unwrap();
    let at = |state: &str| {
        log.iter().find(|e| e.state == state).map(|e| e.at_ms.div_euclid(1000)).expect(state)
    };
    let running = at("stopped") - at("running");
    assert!(running >= 2, "it ran across the restart: {log:?}");
    let month = time::OffsetDateTime::from_unix_timestamp(at("running")).unwrap();
    let month = format!("{:04}-{:02}", month.year(), u8::from(month.month()));
    let invoice = again.invoice(admin, None, &month).await.unwrap();
    let billed: i64 = invoice.lines.iter().filter(|l| l.item == "h100x1").map(|l| l.seconds).sum();
    assert_eq!(billed, running, "{invoice:?}");
}

/// Metering a month at once (a control plane catching up) refreshes PostgreSQL's statistics
/// of the usage tables, so usage pages do not read them by sequential scans until autovacuum
/// comes by.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_refreshes_the_usage_statistics_on_postgres() {
    let Some(url) = postgres_url("billing-analyze").await else { return };
    let ctl = open(&url).await;
    let user = ctl.login("admin", PASSWORD, None).await.unwrap();
    let admin = ctl.actor(user).await.unwrap().unwrap();
    // 600 instances up 12 hours a day through November: over 50,000 records.
    let rows = (0..600)
        .map(|i| {
            let mut log = vec![("running".to_owned(), NOV * 1000)];
            for day in 0..30 {
                let evening = NOV + day * 86_400 + 20 * HOUR;
                log.push(("stopped".to_owned(), evening * 1000));
                log.push(("running".to_owned(), (evening + 12 * HOUR) * 1000));
            }
            let row = vm(admin.tenant_id, user.into_untyped_uuid(), &format!("vm-{i}"), "", NOV);
            (row, log)
        })
        .collect();
    ctl.datastore().testing_history(rows).await.unwrap();
    let analyzed = || async {
        let row = ctl
            .datastore()
            .connection()
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT last_analyze IS NOT NULL AS analyzed FROM pg_stat_user_tables \
                 WHERE relname = 'usage_record'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<bool>("", "analyzed").unwrap()
    };
    assert!(!analyzed().await, "nothing ran ANALYZE before");
    ctl.testing_meter(time::OffsetDateTime::now_utc().unix_timestamp()).await.unwrap();
    eventually(5, "the usage tables analyzed", async || analyzed().await).await;
}
