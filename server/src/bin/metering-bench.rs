//! `metering-bench`: a month of state changes of 10,000 instances metered into invoices.
//!
//! Writes November 2026 into a fresh database (SQLite, or PostgreSQL with `--postgres URL`):
//! `--instances` 8-GPU instances spread over `--tenants` tenants, each running about 12
//! hours a day and stopped overnight (4 state changes a day); at the end of the month half are
//! deleted and half keep running. Then times what the control plane does with it: metering the
//! whole log into usage records (a control plane catching up on the month), every tenant's
//! invoice for the month, the provider's usage page over all of it and one tenant's usage
//! page. Checks that the invoices add up to the provider's total. Prints a line per figure,
//! then one JSON line.
//!
//! `cargo run --release -p portal-server --bin metering-bench -- [--instances 10000]
//! [--tenants 100] [--postgres postgres://…]`

use std::time::Instant;

use portal_controller::datastore::entity::instance;
use portal_controller::{Controller, ControllerConfig, OpContext};
use portal_types::ids::{GenericUuid, TenantUuid};
use uuid::Uuid;

/// 2026-11-01T00:00:00Z, in seconds.
const NOV: i64 = 1_793_491_200;
const DAY: i64 = 86_400;
const DAYS: i64 = 30;

struct Args {
    instances: usize,
    tenants: usize,
    postgres: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { instances: 10_000, tenants: 100, postgres: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--instances" => {
                args.instances = value()?.parse().map_err(|e| format!("--instances: {e}"))?
            }
            "--tenants" => {
                args.tenants = value()?.parse().map_err(|e| format!("--tenants: {e}"))?
            }
            "--postgres" => args.postgres = Some(value()?),
            other => {
                return Err(format!("unknown argument {other}; see the doc comment for usage"));
            }
        }
    }
    if args.tenants == 0 || args.instances < args.tenants {
        return Err("give at least one tenant and one instance per tenant".to_owned());
    }
    Ok(args)
}

/// A month of one instance's states, in unix ms: up at about 08:00, down at about 20:00
/// (minutes of jitter from its number), deleted on the 30th when `i` is even.
fn month_of(i: usize) -> Vec<(String, i64)> {
    let jitter = (i as i64 * 7_919) % 3_600;
    let mut log =
        vec![("provisioning".to_owned(), NOV + jitter), ("running".to_owned(), NOV + jitter + 40)];
    for day in 0..DAYS {
        let evening = NOV + day * DAY + 20 * 3_600 + jitter;
        let morning = NOV + (day + 1) * DAY + 8 * 3_600 + jitter;
        if day == DAYS - 1 {
            if i.is_multiple_of(2) {
                log.push(("deleting".to_owned(), evening));
                log.push(("deleted".to_owned(), evening + 5));
            }
            break;
        }
        log.push(("stopping".to_owned(), evening));
        log.push(("stopped".to_owned(), evening + 15));
        log.push(("starting".to_owned(), morning));
        log.push(("running".to_owned(), morning + 20));
    }
    log.into_iter().map(|(s, at)| (s, at * 1000)).collect()
}

fn instance_row(tenant: TenantUuid, user: Uuid, i: usize) -> instance::Model {
    instance::Model {
        id: Uuid::new_v4(),
        tenant_id: tenant.into_untyped_uuid(),
        name: format!("vm-{i}"),
        instance_type: "h100x8".to_owned(),
        state: String::new(),
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
        price_micros_per_hour: Some(19_920_000),
        created_by: user,
        created_at: NOV * 1000,
        updated_at: NOV * 1000,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn run(database_url: &str, args: &Args) -> Result<serde_json::Value, String> {
    let password = "bench-admin-password";
    let ctl = Controller::open(&ControllerConfig {
        admin_password: Some(password.to_owned()),
        ..ControllerConfig::new(database_url)
    })
    .await
    .map_err(|e| e.to_string())?;
    let user = ctl.login("admin", password, None).await.map_err(|e| e.to_string())?;
    let actor = ctl.actor(user).await.map_err(|e| e.to_string())?.ok_or("no admin")?;
    let admin = OpContext::for_session(Some(actor.clone()));

    // The admin's own tenant is the first, so its usage page can be measured too.
    let mut tenants = vec![actor.tenant_id];
    for t in 1..args.tenants {
        tenants.push(
            ctl.tenant_create(&admin, &format!("tenant-{t}")).await.map_err(|e| e.to_string())?.id,
        );
    }
    let written = Instant::now();
    let mut state_changes = 0;
    let rows: Vec<_> = (0..args.instances)
        .map(|i| {
            let log = month_of(i);
            state_changes += log.len();
            (instance_row(tenants[i % tenants.len()], user.into_untyped_uuid(), i), log)
        })
        .collect();
    ctl.datastore().testing_history(rows).await.map_err(|e| e.to_string())?;
    println!(
        "  wrote {} instances with {state_changes} state changes in {:.1} s",
        args.instances,
        written.elapsed().as_secs_f64()
    );

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let started = Instant::now();
    ctl.testing_meter(now).await.map_err(|e| e.to_string())?;
    let meter_s = started.elapsed().as_secs_f64();

    let invoiced = Instant::now();
    let mut invoice_ms = Vec::new();
    let mut invoiced_cents = 0;
    let mut lines = 0;
    for tenant in &tenants {
        let one = Instant::now();
        let invoice =
            ctl.invoice(&admin, Some(*tenant), "2026-11").await.map_err(|e| e.to_string())?;
        invoice_ms.push(one.elapsed().as_secs_f64() * 1000.0);
        invoiced_cents += invoice.total_cents;
        lines += invoice.lines.len();
    }
    let invoices_s = invoiced.elapsed().as_secs_f64();
    invoice_ms.sort_by(f64::total_cmp);

    let provider = Instant::now();
    let all = ctl.provider_usage(&admin, Some("2026-11")).await.map_err(|e| e.to_string())?;
    let provider_ms = provider.elapsed().as_secs_f64() * 1000.0;
    if all.total_cents != invoiced_cents {
        return Err(format!(
            "the invoices add up to {invoiced_cents} cents but the provider's total is {}",
            all.total_cents
        ));
    }
    let mut page_ms = Vec::new();
    for _ in 0..5 {
        let page = Instant::now();
        ctl.usage_summary(&admin, Some("2026-11")).await.map_err(|e| e.to_string())?;
        page_ms.push(page.elapsed().as_secs_f64() * 1000.0);
    }
    page_ms.sort_by(f64::total_cmp);

    println!(
        "  metering the month: {meter_s:.2} s; {} invoices ({lines} lines): {invoices_s:.2} s",
        tenants.len()
    );
    println!(
        "  invoice p50 {:.1} ms, p99 {:.1} ms; provider page {provider_ms:.0} ms; tenant page p50 {:.1} ms",
        percentile(&invoice_ms, 0.5),
        percentile(&invoice_ms, 0.99),
        percentile(&page_ms, 0.5)
    );
    println!("  total invoiced: {}", ctl.money_format().cents(invoiced_cents));
    Ok(serde_json::json!({
        "state_changes": state_changes,
        "meter_s": (meter_s * 100.0).round() / 100.0,
        "invoices_s": (invoices_s * 100.0).round() / 100.0,
        "meter_and_invoices_s": ((meter_s + invoices_s) * 100.0).round() / 100.0,
        "invoice_lines": lines,
        "invoice_p50_ms": (percentile(&invoice_ms, 0.5) * 10.0).round() / 10.0,
        "invoice_p99_ms": (percentile(&invoice_ms, 0.99) * 10.0).round() / 10.0,
        "provider_page_ms": provider_ms.round(),
        "tenant_page_p50_ms": (percentile(&page_ms, 0.5) * 10.0).round() / 10.0,
        "invoiced_cents": invoiced_cents,
    }))
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("metering-bench: {e}");
            std::process::exit(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("metering-bench-{}", Uuid::new_v4()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("metering-bench: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    let mut results = serde_json::Map::new();
    let mut databases =
        vec![("sqlite", format!("sqlite://{}?mode=rwc", dir.join("portal.db").display()))];
    if let Some(url) = &args.postgres {
        databases.push(("postgres", url.clone()));
    }
    let mut failed = false;
    for (name, url) in databases {
        println!("{name}:");
        match run(&url, &args).await {
            Ok(figures) => {
                results.insert(name.to_owned(), figures);
            }
            Err(e) => {
                eprintln!("metering-bench on {name}: {e}");
                failed = true;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{}",
        serde_json::json!({
            "bench": "metering",
            "instances": args.instances,
            "tenants": args.tenants,
            "days": DAYS,
            "target_s": 10,
            "results": results,
        })
    );
    if failed {
        std::process::exit(1);
    }
}
