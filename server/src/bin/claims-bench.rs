//! `claims-bench`: launches through the database, end to end below HTTP.
//!
//! Starts a simulated fleet, attaches the control plane to it on SQLite (and PostgreSQL with
//! `--postgres URL`), then fires `--claims` 1-GPU launches, `--concurrency` at a time. Each
//! launch is decided by the scheduler and committed in one transaction (quota check, host
//! claim generation, instance row, GPU claims) before `instance_create` returns, so the rate
//! of returns is the rate of committed claims. Each launch then runs its `instance_create`
//! saga through the simulated host agents (whose VMs boot in 10 ms): the time until every
//! instance is running, and per VM the time from request to `running` (from the event bus)
//! less the simulated boot, which is the control plane's own share. Prints a line per
//! database, then one JSON line.
//!
//! `cargo run --release -p portal-server --bin claims-bench -- [--scalable-units 10]
//! [--claims 2000] [--concurrency 64] [--postgres postgres://…]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use portal_types::params::InstanceCreate;

#[path = "../bench_stack.rs"]
mod bench_stack;
use bench_stack::BenchStack;

struct Args {
    scalable_units: u32,
    claims: usize,
    concurrency: usize,
    postgres: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { scalable_units: 10, claims: 2000, concurrency: 64, postgres: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scalable-units" => {
                args.scalable_units =
                    value()?.parse().map_err(|e| format!("--scalable-units: {e}"))?
            }
            "--claims" => args.claims = value()?.parse().map_err(|e| format!("--claims: {e}"))?,
            "--concurrency" => {
                args.concurrency = value()?.parse().map_err(|e| format!("--concurrency: {e}"))?
            }
            "--postgres" => args.postgres = Some(value()?),
            other => {
                return Err(format!("unknown argument {other}; see the doc comment for usage"));
            }
        }
    }
    let gpus = args.scalable_units as usize * 32 * 8;
    if args.claims > gpus {
        return Err(format!(
            "{} claims do not fit in {gpus} GPUs; add --scalable-units",
            args.claims
        ));
    }
    Ok(args)
}

/// How long a simulated VM takes to boot once its host agent is asked (plus up to 10 %).
const SIM_BOOT: Duration = Duration::from_millis(10);

struct Figures {
    claims_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
    /// From the first request until every claimed instance is running.
    all_running_s: f64,
    /// Request → running, less the simulated boot: the control plane's share per VM.
    overhead_p50_ms: f64,
    overhead_p99_ms: f64,
    overhead_samples: usize,
}

async fn run(database_url: &str, args: &Args, pki: &sim_fleet::PkiDir) -> Result<Figures, String> {
    let topology = sim_fleet::Topology::hgx_h100(args.scalable_units);
    let options = sim_fleet::SimOptions { provision_delay: SIM_BOOT, ..Default::default() };
    let BenchStack { fleet, ctl, admin } =
        bench_stack::start(&topology, options, database_url, pki).await?;

    // When each instance was reported running, from the event bus.
    let mut events = ctl.events().subscribe();
    let expected = args.claims;
    let watcher = tokio::spawn(async move {
        let mut running = std::collections::HashMap::with_capacity(expected);
        while running.len() < expected {
            match events.recv().await {
                Ok(e) => {
                    if let portal_types::views::LiveEvent::Instance(v) = e.event
                        && v.state == portal_types::views::InstanceState::Running
                    {
                        running.entry(v.name.clone()).or_insert_with(Instant::now);
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
        running
    });
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.concurrency));
    let started = Instant::now();
    let tasks: Vec<_> = (0..args.claims)
        .map(|i| {
            let ctl = Arc::clone(&ctl);
            let admin = admin.clone();
            let semaphore = Arc::clone(&semaphore);
            tokio::spawn(async move {
                let _permit = semaphore.acquire_owned().await.ok()?;
                let t = Instant::now();
                let create = InstanceCreate::one(format!("b-{i}"), "h100x1");
                ctl.instance_create(&admin, &create).await.ok().map(|_| (t, t.elapsed()))
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(args.claims);
    let mut asked = std::collections::HashMap::with_capacity(args.claims);
    let mut failed = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.ok().flatten() {
            Some((at, l)) => {
                latencies.push(l);
                asked.insert(format!("b-{i}"), at);
            }
            None => failed += 1,
        }
    }
    let elapsed = started.elapsed();
    // Every claimed instance running (polled: the event watcher may have lagged).
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let list = ctl.instance_list(&admin).await.map_err(|e| e.to_string())?;
        let running =
            list.iter().filter(|v| v.state == portal_types::views::InstanceState::Running).count();
        if running >= latencies.len() {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {running} of {} running after 5 minutes", latencies.len()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_running_s = started.elapsed().as_secs_f64();
    watcher.abort();
    let running_at = watcher.await.unwrap_or_default();
    let boot = SIM_BOOT.as_secs_f64() * 1000.0;
    let mut overhead: Vec<Duration> = asked
        .iter()
        .filter_map(|(name, at)| Some(running_at.get(name)?.duration_since(*at)))
        .collect();
    overhead.sort();
    latencies.sort();
    let pct = |v: &[Duration], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let figures = Figures {
        claims_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(&latencies, 0.50),
        p99_ms: pct(&latencies, 0.99),
        failed,
        all_running_s,
        overhead_p50_ms: (pct(&overhead, 0.50) - boot).max(0.0),
        overhead_p99_ms: (pct(&overhead, 0.99) - boot).max(0.0),
        overhead_samples: overhead.len(),
    };
    fleet.shutdown().await;
    Ok(figures)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let dir = std::env::temp_dir().join(format!("claims-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let mut results = Vec::new();
    let mut databases =
        vec![("sqlite", format!("sqlite://{}?mode=rwc", dir.join("bench.db").display()))];
    if let Some(url) = &args.postgres {
        databases.push(("postgres", url.clone()));
    }
    for (name, url) in databases {
        match run(&url, &args, &sim_fleet::PkiDir::new(dir.join("pki"))).await {
            Ok(f) => {
                println!(
                    "{name}: {} claims, {} at a time: {:.0} claims/s, p50 {:.2} ms, p99 {:.2} ms, {} failed; all running after {:.2} s; per VM to running less the boot: p50 {:.1} ms, p99 {:.1} ms ({} seen)",
                    args.claims,
                    args.concurrency,
                    f.claims_per_sec,
                    f.p50_ms,
                    f.p99_ms,
                    f.failed,
                    f.all_running_s,
                    f.overhead_p50_ms,
                    f.overhead_p99_ms,
                    f.overhead_samples
                );
                results.push(format!(
                    "\"{name}\":{{\"claims_per_sec\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"failed\":{},\"all_running_s\":{:.3},\"overhead_p50_ms\":{:.2},\"overhead_p99_ms\":{:.2}}}",
                    f.claims_per_sec,
                    f.p50_ms,
                    f.p99_ms,
                    f.failed,
                    f.all_running_s,
                    f.overhead_p50_ms,
                    f.overhead_p99_ms
                ));
            }
            Err(e) => {
                eprintln!("error: the {name} run failed: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "{{\"benchmark\":\"claims\",\"hosts\":{},\"claims\":{},\"concurrency\":{},{}}}",
        args.scalable_units * 32,
        args.claims,
        args.concurrency,
        results.join(",")
    );
    std::process::ExitCode::SUCCESS
}
