//! `fabric-bench`: the tenant network's fan-out through the control plane, below HTTP.
//!
//! Starts a simulated fleet (`--scalable-units`, 4 by default: 128 hosts with 2 DPUs each,
//! 32 rail leaves), attaches the control plane on SQLite, and measures:
//!
//! 1. **A VPC spanning the fleet**: one 8-GPU VM on every host, all in the tenant's default
//!    VPC, launched at once. Per VM, the time from its launch request until its port's DPU
//!    confirmed it (the port's generation applied); per leaf, the time from the first
//!    request until it holds the VPC. (Each VM has one port, on its host's first DPU.) The
//!    VMs' SuperNICs join the tenant's GPU fabric: per leaf, the time from the first request
//!    until it holds the fabric's rail segment with every host of its unit attached.
//! 2. **500 VNIs replayed**: the VPC grows to 500 subnets (500 L2 VNIs, one L3 VNI) and
//!    reaches every leaf; then one leaf loses everything, as an agent restarted with an empty
//!    configuration does, and the control plane is told the agent is back (what attaching it
//!    does): the time until that leaf holds the VPC with all 500 segments again.
//!
//! The simulated DPUs and leaves take 5 ms per change. Ends with one JSON line.
//!
//! `cargo run --release -p portal-server --bin fabric-bench -- [--scalable-units 4]
//! [--subnets 500]`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portal_controller::Controller;
use portal_types::network::SubnetCreate;
use portal_types::params::InstanceCreate;

#[path = "../bench_stack.rs"]
mod bench_stack;
use bench_stack::BenchStack;

struct Args {
    scalable_units: u32,
    subnets: u32,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { scalable_units: 4, subnets: 500 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--scalable-units" => {
                args.scalable_units =
                    value()?.parse().map_err(|e| format!("--scalable-units: {e}"))?
            }
            "--subnets" => {
                args.subnets = value()?.parse().map_err(|e| format!("--subnets: {e}"))?
            }
            other => {
                return Err(format!("unknown argument {other}; see the doc comment for usage"));
            }
        }
    }
    if !(1..=4000).contains(&args.subnets) {
        return Err("--subnets must be 1 to 4000".into());
    }
    Ok(args)
}

/// The `p`-quantile of `v` (sorted) in milliseconds.
fn pct(v: &[Duration], p: f64) -> f64 {
    v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Instance id → whether its port's DPU confirmed its latest generation.
async fn ports_applied(ctl: &Controller) -> Result<Vec<(String, bool)>, String> {
    let rows = ctl.datastore().port_confirmations().await.map_err(|e| e.to_string())?;
    Ok(rows.into_iter().map(|(id, applied)| (id.to_string(), applied)).collect())
}

/// Polls `done` every 10 ms for up to `limit`.
async fn until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() > deadline {
            return Err(format!("{what} did not happen within {} s", limit.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

struct Figures {
    vms: usize,
    leaves: usize,
    port_p50_ms: f64,
    port_p99_ms: f64,
    leaf_p50_ms: f64,
    leaf_p99_ms: f64,
    gpu_fabric_leaf_p50_ms: f64,
    gpu_fabric_leaf_p99_ms: f64,
    all_acknowledged_s: f64,
    subnets_on_all_leaves_s: f64,
    replay_s: f64,
}

async fn run(database_url: &str, args: &Args, pki: &sim_fleet::PkiDir) -> Result<Figures, String> {
    let topology = sim_fleet::Topology::hgx_h100(args.scalable_units);
    let options =
        sim_fleet::SimOptions { provision_delay: Duration::from_millis(10), ..Default::default() };
    let BenchStack { fleet, ctl, admin } =
        bench_stack::start(&topology, options, database_url, pki).await?;
    let vpc = ctl.network_overview(&admin).await.map_err(|e| e.to_string())?.vpcs.remove(0);
    let vpc_id = vpc.id.to_string();

    // 1. One full-host VM per host, all at once.
    let hosts = fleet.hosts().count();
    let leaves: Vec<String> = fleet.switches().map(|s| s.switch_id().to_owned()).collect();
    let started = Instant::now();
    let launches: Vec<_> = (0..hosts)
        .map(|i| {
            let ctl = Arc::clone(&ctl);
            let admin = admin.clone();
            tokio::spawn(async move {
                let at = Instant::now();
                let made = ctl
                    .instance_create(&admin, &InstanceCreate::one(format!("f-{i}"), "h100x8"))
                    .await;
                made.map(|v| (v[0].id.to_string(), at)).map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut asked = HashMap::with_capacity(hosts);
    for launch in launches {
        let (id, at) = launch.await.map_err(|e| e.to_string())??;
        asked.insert(id, at);
    }
    let mut acknowledged: HashMap<String, Instant> = HashMap::with_capacity(hosts);
    let mut on_leaf: HashMap<String, Instant> = HashMap::with_capacity(leaves.len());
    let mut gpu_on_leaf: HashMap<String, Instant> = HashMap::with_capacity(leaves.len());
    let hosts_per_unit = hosts / args.scalable_units as usize;
    let deadline = Instant::now() + Duration::from_secs(300);
    while acknowledged.len() < asked.len()
        || on_leaf.len() < leaves.len()
        || gpu_on_leaf.len() < leaves.len()
    {
        if Instant::now() > deadline {
            return Err(format!(
                "after 5 minutes {} of {} ports, {} of {} leaves with the VPC and {} with the \
                 GPU fabric",
                acknowledged.len(),
                asked.len(),
                on_leaf.len(),
                leaves.len(),
                gpu_on_leaf.len()
            ));
        }
        let now = Instant::now();
        for (id, applied) in ports_applied(&ctl).await? {
            if applied {
                acknowledged.entry(id).or_insert(now);
            }
        }
        for leaf in fleet.switches() {
            if leaf.vpc(&vpc_id).is_some() {
                on_leaf.entry(leaf.switch_id().to_owned()).or_insert(now);
            }
            let gpu_fabric_complete = leaf.vpcs().iter().any(|v| {
                v.vrf_name.starts_with("gpu")
                    && v.segments.iter().map(|s| s.access_ports.len()).sum::<usize>()
                        == hosts_per_unit
            });
            if gpu_fabric_complete {
                gpu_on_leaf.entry(leaf.switch_id().to_owned()).or_insert(now);
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all_acknowledged_s = started.elapsed().as_secs_f64();
    let mut port_times: Vec<Duration> = asked
        .iter()
        .filter_map(|(id, at)| Some(acknowledged.get(id)?.duration_since(*at)))
        .collect();
    port_times.sort();
    let mut leaf_times: Vec<Duration> =
        on_leaf.values().map(|t| t.duration_since(started)).collect();
    leaf_times.sort();
    let mut gpu_leaf_times: Vec<Duration> =
        gpu_on_leaf.values().map(|t| t.duration_since(started)).collect();
    gpu_leaf_times.sort();

    // 2. The VPC grows to `subnets` subnets on every leaf; one leaf loses it and is replayed.
    let grown = Instant::now();
    for i in 1..args.subnets {
        let create = SubnetCreate {
            vpc: vpc.id,
            name: format!("s{i}"),
            cidr: format!("10.{}.{}.0/24", 100 + i / 256, i % 256),
        };
        ctl.subnet_create(&admin, &create).await.map_err(|e| e.to_string())?;
    }
    let segments = args.subnets as usize;
    until(Duration::from_secs(300), "every leaf holding every subnet", || {
        fleet.switches().all(|s| s.vpc(&vpc_id).is_some_and(|v| v.segments.len() == segments))
    })
    .await?;
    let subnets_on_all_leaves_s = grown.elapsed().as_secs_f64();
    let leaf = fleet.switches().next().ok_or("no leaves")?;
    // An agent that restarted with an empty configuration (fence 0: any spec is new to it).
    leaf.vpc_remove(&vpc_id, 0).await.map_err(|e| e.to_string())?;
    let replayed = Instant::now();
    ctl.testing_switch_reattached(leaf.switch_id()).await;
    until(Duration::from_secs(120), "the leaf holding the VPC again", || {
        leaf.vpc(&vpc_id).is_some_and(|v| v.segments.len() == segments)
    })
    .await?;
    let replay_s = replayed.elapsed().as_secs_f64();
    ctl.stop();
    fleet.shutdown().await;
    Ok(Figures {
        vms: asked.len(),
        leaves: leaves.len(),
        port_p50_ms: pct(&port_times, 0.50),
        port_p99_ms: pct(&port_times, 0.99),
        leaf_p50_ms: pct(&leaf_times, 0.50),
        leaf_p99_ms: pct(&leaf_times, 0.99),
        gpu_fabric_leaf_p50_ms: pct(&gpu_leaf_times, 0.50),
        gpu_fabric_leaf_p99_ms: pct(&gpu_leaf_times, 0.99),
        all_acknowledged_s,
        subnets_on_all_leaves_s,
        replay_s,
    })
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
    let dir = std::env::temp_dir().join(format!("fabric-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let result = run(&url, &args, &sim_fleet::PkiDir::new(dir.join("pki"))).await;
    let _ = std::fs::remove_dir_all(&dir);
    let f = match result {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "a VPC over {} VMs and {} leaves: every port and leaf acknowledged after {:.2} s; per port \
         p50 {:.0} ms, p99 {:.0} ms (launch request → DPU confirmed); per leaf p50 {:.0} ms, p99 \
         {:.0} ms",
        f.vms,
        f.leaves,
        f.all_acknowledged_s,
        f.port_p50_ms,
        f.port_p99_ms,
        f.leaf_p50_ms,
        f.leaf_p99_ms
    );
    println!(
        "the tenant's GPU fabric on every rail leaf with every host's SuperNIC attached: per \
         leaf p50 {:.0} ms, p99 {:.0} ms after the first launch request",
        f.gpu_fabric_leaf_p50_ms, f.gpu_fabric_leaf_p99_ms
    );
    println!(
        "{} subnets on every leaf {:.2} s after the first was added; one leaf replayed ({} L2 \
         VNIs + 1 L3 VNI) in {:.2} s",
        args.subnets, f.subnets_on_all_leaves_s, args.subnets, f.replay_s
    );
    println!(
        "{{\"benchmark\":\"fabric\",\"vms\":{},\"leaves\":{},\"dpu_ports\":{},\"all_acknowledged_s\":{:.3},\"port_p50_ms\":{:.1},\"port_p99_ms\":{:.1},\"leaf_p50_ms\":{:.1},\"leaf_p99_ms\":{:.1},\"gpu_fabric_leaf_p50_ms\":{:.1},\"gpu_fabric_leaf_p99_ms\":{:.1},\"subnets\":{},\"subnets_on_all_leaves_s\":{:.3},\"replay_vnis\":{},\"replay_s\":{:.3}}}",
        f.vms,
        f.leaves,
        f.vms,
        f.all_acknowledged_s,
        f.port_p50_ms,
        f.port_p99_ms,
        f.leaf_p50_ms,
        f.leaf_p99_ms,
        f.gpu_fabric_leaf_p50_ms,
        f.gpu_fabric_leaf_p99_ms,
        args.subnets,
        f.subnets_on_all_leaves_s,
        args.subnets + 1,
        f.replay_s
    );
    std::process::ExitCode::SUCCESS
}
