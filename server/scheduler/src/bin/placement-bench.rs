//! placement-bench: placement decisions on a simulated fleet of HGX H100 hosts.
//!
//! ```text
//! cargo run --release -p portal-scheduler --bin placement-bench -- \
//!     [--seed N] [--hosts N] [--ops N] [--dump FILE] [--check FILE]
//! ```
//!
//! Builds `--hosts` (5,000) standard hosts in scalable units of 32, with seeded faults (about
//! 1 % cordoned, 0.5 % unreachable, 0.5 % of GPUs unhealthy), then runs a seeded mixed trace at
//! 0 %, 50 % and 80 % GPU occupancy: each phase first fills to the target (not measured), then
//! runs `--ops` steps that create a VM (or an 8 × 8-GPU cluster group) while occupancy is at or
//! below the target and delete a random VM or group above it. Only `Scheduler::place` is timed
//! for the decision figures; commits and releases are timed separately. Single-threaded.
//!
//! Prints human-readable lines, then one JSON line with the figures. `--dump FILE` writes the
//! fleet (`{"op":"host",...}`) and every allocation and release in order as JSON lines;
//! `--check FILE` replays such a file through the independent checker.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::process::ExitCode;
use std::time::Instant;

use portal_scheduler::validate::{Checker, Strictness, validate_allocations};
use portal_scheduler::{
    Allocation, GpuShare, GroupPolicy, HGX_H100_MODEL, Host, PlacementRequest, Scheduler,
    SchedulerConfig,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

const HOSTS_PER_SU: usize = 32;
const CLUSTER_VMS: u32 = 8;
const TARGETS: [f64; 3] = [0.0, 0.5, 0.8];

/// One line of a `--dump` file.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum DumpLine {
    Host(Host),
    Allocate(Allocation),
    Release { vm: String },
}

struct Args {
    seed: u64,
    hosts: usize,
    ops: usize,
    dump: Option<String>,
    check: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { seed: 1, hosts: 5000, ops: 100_000, dump: None, check: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--seed" => args.seed = number(value()?)?,
            "--hosts" => args.hosts = number(value()?)? as usize,
            "--ops" => args.ops = number(value()?)? as usize,
            "--dump" => args.dump = Some(value()?),
            "--check" => args.check = Some(value()?),
            "-h" | "--help" => {
                return Err("usage: placement-bench [--seed N] [--hosts N] [--ops N] \
                            [--dump FILE] [--check FILE]"
                    .into());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.hosts == 0 {
        return Err("--hosts must be at least 1".into());
    }
    Ok(args)
}

/// Standard HGX H100 hosts, 32 per scalable unit, with a few seeded faults.
fn build_fleet(hosts: usize, seed: u64) -> Vec<Host> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_f1ee7);
    (0..hosts)
        .map(|i| {
            let mut host =
                Host::hgx_h100(format!("hgx-{i:05}"), format!("su-{:03}", i / HOSTS_PER_SU));
            host.cordoned = rng.random_bool(0.01);
            host.agent_reachable = !rng.random_bool(0.005);
            for gpu in &mut host.gpus {
                gpu.healthy = !rng.random_bool(0.005);
            }
            host
        })
        .collect()
}

/// The bench's instance types: n × H100 with 24 vCPUs and 220 GiB per GPU; CPU-only with
/// 2, 4 or 8 vCPUs and 4 GiB per vCPU; the cluster group is 8 × the 8-GPU type.
#[derive(Clone, Copy)]
enum Kind {
    Gpu(u32),
    Cpu(u32),
    Cluster,
}

fn draw_kind(rng: &mut StdRng) -> Kind {
    match rng.random_range(0..100) {
        0..30 => Kind::Gpu(1),
        30..45 => Kind::Gpu(2),
        45..55 => Kind::Gpu(4),
        55..70 => Kind::Gpu(8),
        70..98 => Kind::Cpu([2, 4, 8][rng.random_range(0..3)]),
        _ => Kind::Cluster,
    }
}

fn request(kind: Kind) -> PlacementRequest {
    match kind {
        Kind::Gpu(n) => PlacementRequest::gpu(HGX_H100_MODEL, n, 24 * n, 220 * n),
        Kind::Cpu(v) => PlacementRequest::cpu_only(v, 4 * v),
        Kind::Cluster => PlacementRequest::gpu(HGX_H100_MODEL, 8, 192, 1760)
            .vms(CLUSTER_VMS)
            .group(GroupPolicy::Cluster),
    }
}

/// VMs created together and deleted together.
struct Unit {
    vms: Vec<String>,
    gpus: u32,
}

#[derive(Default)]
struct PhaseStats {
    single_ns: Vec<u64>,
    /// Single-VM decision times by type: 1, 2, 4, 8 GPUs, CPU-only.
    by_type_ns: [Vec<u64>; 5],
    cluster_ns: Vec<u64>,
    commit_ns: Vec<u64>,
    release_ns: Vec<u64>,
    rejected: u64,
    cluster_placed: u64,
    cluster_rejected: u64,
    wall_s: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

struct Bench {
    sched: Scheduler,
    trace: StdRng,
    decide: StdRng,
    gpu_units: Vec<Unit>,
    cpu_units: Vec<Unit>,
    used_gpus: u32,
    total_gpus: u32,
    next_vm: u64,
    cpu_cap: usize,
    dump: Option<BufWriter<File>>,
}

impl Bench {
    fn occupancy(&self) -> f64 {
        f64::from(self.used_gpus) / f64::from(self.total_gpus.max(1))
    }

    fn write(&mut self, line: &DumpLine) -> Result<(), String> {
        if let Some(out) = &mut self.dump {
            serde_json::to_writer(&mut *out, line).map_err(|e| e.to_string())?;
            out.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Creates one VM or group; returns whether it was placed.
    fn create(&mut self, stats: &mut PhaseStats) -> Result<bool, String> {
        let kind = draw_kind(&mut self.trace);
        if matches!(kind, Kind::Cpu(_)) && self.cpu_units.len() >= self.cpu_cap {
            let i = self.trace.random_range(0..self.cpu_units.len());
            let unit = self.cpu_units.swap_remove(i);
            self.delete(unit, stats)?;
        }
        let req = request(kind);
        let start = Instant::now();
        let result = self.sched.place(&req, &mut self.decide);
        let ns = start.elapsed().as_nanos() as u64;
        match kind {
            Kind::Cluster => stats.cluster_ns.push(ns),
            Kind::Gpu(n) => {
                stats.single_ns.push(ns);
                stats.by_type_ns[n.trailing_zeros() as usize].push(ns);
            }
            Kind::Cpu(_) => {
                stats.single_ns.push(ns);
                stats.by_type_ns[4].push(ns);
            }
        }
        let placements = match result {
            Ok(p) => p,
            Err(_) => {
                match kind {
                    Kind::Cluster => stats.cluster_rejected += 1,
                    _ => stats.rejected += 1,
                }
                return Ok(false);
            }
        };
        let batch: Vec<Allocation> = placements
            .into_iter()
            .map(|p| {
                self.next_vm += 1;
                Allocation::new(format!("vm-{}", self.next_vm), p)
            })
            .collect();
        let gpus: u32 = batch.iter().map(|a| a.placement.gpus.len() as u32).sum();
        let vms: Vec<String> = batch.iter().map(|a| a.vm.clone()).collect();
        if self.dump.is_some() {
            for a in &batch {
                self.write(&DumpLine::Allocate(a.clone()))?;
            }
        }
        let start = Instant::now();
        self.sched.commit(batch).map_err(|e| e.to_string())?;
        stats.commit_ns.push(start.elapsed().as_nanos() as u64);
        if matches!(kind, Kind::Cluster) {
            stats.cluster_placed += 1;
        }
        self.used_gpus += gpus;
        let unit = Unit { vms, gpus };
        if gpus == 0 {
            self.cpu_units.push(unit);
        } else {
            self.gpu_units.push(unit);
        }
        Ok(true)
    }

    fn delete(&mut self, unit: Unit, stats: &mut PhaseStats) -> Result<(), String> {
        for vm in &unit.vms {
            let start = Instant::now();
            self.sched.release(vm).map_err(|e| e.to_string())?;
            stats.release_ns.push(start.elapsed().as_nanos() as u64);
            self.write(&DumpLine::Release { vm: vm.clone() })?;
        }
        self.used_gpus -= unit.gpus;
        Ok(())
    }

    fn delete_random_gpu_unit(&mut self, stats: &mut PhaseStats) -> Result<(), String> {
        if self.gpu_units.is_empty() {
            return Ok(());
        }
        let i = self.trace.random_range(0..self.gpu_units.len());
        let unit = self.gpu_units.swap_remove(i);
        self.delete(unit, stats)
    }

    fn run_phase(&mut self, target: f64, ops: usize) -> Result<PhaseStats, String> {
        // Fill to the target (not measured); give up after a long run of rejections.
        let mut fill = PhaseStats::default();
        let mut misses = 0;
        while self.occupancy() < target && misses < 2000 {
            if self.create(&mut fill)? {
                misses = 0;
            } else {
                misses += 1;
            }
        }
        while self.occupancy() > target + 0.01 {
            self.delete_random_gpu_unit(&mut fill)?;
        }
        let mut stats = PhaseStats::default();
        let start = Instant::now();
        for _ in 0..ops {
            if self.occupancy() > target {
                self.delete_random_gpu_unit(&mut stats)?;
            } else {
                self.create(&mut stats)?;
            }
        }
        stats.wall_s = start.elapsed().as_secs_f64();
        Ok(stats)
    }
}

fn run(args: &Args) -> Result<(), String> {
    let fleet = build_fleet(args.hosts, args.seed);
    let config = SchedulerConfig {
        // The 1-GPU type's needs: 24 vCPUs + the emulator CPU, 220 GiB.
        gpu_share: Some(GpuShare { cpus: 25, memory_gib: 220 }),
    };
    let built = Instant::now();
    let sched = Scheduler::new(fleet.clone(), config).map_err(|e| e.to_string())?;
    let build_ms = built.elapsed().as_secs_f64() * 1000.0;
    let total_gpus: u32 = sched.capacity().iter().map(|c| c.free_gpus).sum();
    let units = sched.scalable_units().count();
    println!(
        "fleet: {} HGX H100 hosts in {units} scalable units, {total_gpus} schedulable GPUs, \
         index built in {build_ms:.1} ms (seed {})",
        args.hosts, args.seed
    );
    let dump = match &args.dump {
        Some(path) => Some(BufWriter::new(File::create(path).map_err(|e| format!("{path}: {e}"))?)),
        None => None,
    };
    let mut bench = Bench {
        sched,
        trace: StdRng::seed_from_u64(args.seed),
        decide: StdRng::seed_from_u64(args.seed.wrapping_add(1)),
        gpu_units: Vec::new(),
        cpu_units: Vec::new(),
        used_gpus: 0,
        total_gpus,
        next_vm: 0,
        cpu_cap: args.hosts / 2,
        dump,
    };
    for host in &fleet {
        bench.write(&DumpLine::Host(host.clone()))?;
    }

    let mut phases = Vec::new();
    let mut rates = Vec::new();
    let mut p50s = Vec::new();
    for target in TARGETS {
        let mut stats = bench.run_phase(target, args.ops)?;
        for v in [
            &mut stats.single_ns,
            &mut stats.cluster_ns,
            &mut stats.commit_ns,
            &mut stats.release_ns,
        ]
        .into_iter()
        .chain(stats.by_type_ns.iter_mut())
        {
            v.sort_unstable();
        }
        let decide_s = stats.single_ns.iter().sum::<u64>() as f64 / 1e9;
        let rate = stats.single_ns.len() as f64 / decide_s.max(1e-9);
        rates.push(rate);
        p50s.push(percentile(&stats.single_ns, 0.5));
        let cap = bench.sched.capacity();
        let cap = cap.first().cloned();
        let (launchable, free, fragmented) =
            cap.map(|c| (c.launchable, c.free_gpus, c.fragmented_gpus)).unwrap_or_default();
        let steps_per_s = args.ops as f64 / stats.wall_s.max(1e-9);
        println!(
            "occupancy {:>3.0} % (target {:>2.0} %): {} single-VM decisions, {:.0}/s, \
             p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs; {} rejected",
            bench.occupancy() * 100.0,
            target * 100.0,
            stats.single_ns.len(),
            rate,
            percentile(&stats.single_ns, 0.5),
            percentile(&stats.single_ns, 0.99),
            percentile(&stats.single_ns, 1.0),
            stats.rejected,
        );
        let by_type: Vec<String> = ["1-GPU", "2-GPU", "4-GPU", "8-GPU", "CPU-only"]
            .iter()
            .zip(&stats.by_type_ns)
            .map(|(name, ns)| {
                format!(
                    "{name} {:.1}/{:.1}/{:.0}",
                    percentile(ns, 0.5),
                    percentile(ns, 0.99),
                    percentile(ns, 1.0)
                )
            })
            .collect();
        println!("    p50/p99/max µs by type: {}", by_type.join(", "));
        println!(
            "    cluster groups (8 × 8 GPUs in one SU): {} placed, {} rejected, p50 {:.1} µs, \
             p99 {:.1} µs",
            stats.cluster_placed,
            stats.cluster_rejected,
            percentile(&stats.cluster_ns, 0.5),
            percentile(&stats.cluster_ns, 0.99),
        );
        println!(
            "    commit p50 {:.1} µs, release p50 {:.1} µs, {steps_per_s:.0} trace steps/s \
             end to end; {} VMs live; {free} GPUs free, {fragmented} fragmented; {launchable}",
            percentile(&stats.commit_ns, 0.5),
            percentile(&stats.release_ns, 0.5),
            bench.sched.vm_count(),
        );
        phases.push(json!({
            "occupancy_target": target,
            "occupancy": (bench.occupancy() * 1000.0).round() / 1000.0,
            "single_vm_decisions": stats.single_ns.len(),
            "decisions_per_sec": rate.round(),
            "p50_us": percentile(&stats.single_ns, 0.5),
            "p99_us": percentile(&stats.single_ns, 0.99),
            "max_us": percentile(&stats.single_ns, 1.0),
            "rejected": stats.rejected,
            "cluster_decisions": stats.cluster_ns.len(),
            "cluster_placed": stats.cluster_placed,
            "cluster_rejected": stats.cluster_rejected,
            "cluster_p99_us": percentile(&stats.cluster_ns, 0.99),
            "commit_p50_us": percentile(&stats.commit_ns, 0.5),
            "release_p50_us": percentile(&stats.release_ns, 0.5),
            "steps_per_sec": steps_per_s.round(),
            "live_vms": bench.sched.vm_count(),
            "free_gpus": free,
            "fragmented_gpus": fragmented,
            "launchable": launchable,
        }));
    }
    if let Some(out) = &mut bench.dump {
        out.flush().map_err(|e| e.to_string())?;
    }

    let allocations: Vec<Allocation> = bench.sched.allocations().cloned().collect();
    let valid = validate_allocations(bench.sched.hosts(), &allocations, Strictness::NewDecision);
    let violations = valid.as_ref().err().map_or(0, Vec::len);
    println!(
        "validated {} live allocations against every invariant: {}",
        allocations.len(),
        if violations == 0 { "ok".to_string() } else { format!("{violations} violations") }
    );
    // Mean-based rates include any preemption of this process (2 shared cores); the p50 ratio
    // does not, so both are printed.
    let slowdown = (1.0 - rates[2] / rates[0]) * 100.0;
    let p50_slowdown = (p50s[2] / p50s[0] - 1.0) * 100.0;
    println!(
        "80 % vs 0 % occupancy: decision rate {:+.1} %, p50 latency {:+.1} %",
        -slowdown, p50_slowdown
    );
    println!(
        "{}",
        json!({
            "benchmark": "placement",
            "hosts": args.hosts,
            "scalable_units": units,
            "gpus": total_gpus,
            "seed": args.seed,
            "ops_per_phase": args.ops,
            "phases": phases,
            "min_decisions_per_sec": rates.iter().copied().fold(f64::INFINITY, f64::min).round(),
            "slowdown_80_vs_0_pct": (slowdown * 10.0).round() / 10.0,
            "p50_slowdown_80_vs_0_pct": (p50_slowdown * 10.0).round() / 10.0,
            "violations": violations,
        })
    );
    if violations > 0 {
        return Err(format!("{violations} invariant violations"));
    }
    Ok(())
}

/// Replays a `--dump` file through the independent checker.
fn check(path: &str) -> Result<(), String> {
    let file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let mut checker = Checker::default();
    let (mut hosts, mut allocations, mut releases, mut violations) = (0u64, 0u64, 0u64, 0u64);
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{path}: {e}"))?;
        let parsed: DumpLine =
            serde_json::from_str(&line).map_err(|e| format!("{path}:{}: {e}", n + 1))?;
        let result = match parsed {
            DumpLine::Host(host) => {
                hosts += 1;
                checker.set_host(host);
                Ok(())
            }
            DumpLine::Allocate(a) => {
                allocations += 1;
                checker.allocate(&a, Strictness::NewDecision)
            }
            DumpLine::Release { vm } => {
                releases += 1;
                checker.release(&vm)
            }
        };
        if let Err(v) = result {
            violations += 1;
            if violations <= 10 {
                eprintln!("{path}:{}: {v}", n + 1);
            }
        }
    }
    println!(
        "checked {hosts} hosts, {allocations} allocations, {releases} releases: {}",
        if violations == 0 { "ok".to_string() } else { format!("{violations} violations") }
    );
    println!(
        "{}",
        json!({"check": path, "hosts": hosts, "allocations": allocations,
               "releases": releases, "violations": violations})
    );
    if violations > 0 {
        return Err(format!("{violations} violations"));
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match &args.check {
        Some(path) => check(path),
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("placement-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
