//! `guest-bench`: a real guest, click to running, and how much of it is the portal's.
//!
//! Starts one simulated scalable unit with this machine beside it as a real CPU-only host
//! (the host agent's libvirt backend on `qemu:///system`; libvirtd must be running and the
//! tiny test guest built: `.ci/serve` does both, or `source .ci/lib.sh; install_guest_deps;
//! start_libvirtd; build_tiny_guest`), attaches the control plane on SQLite, and launches
//! the tiny guest `--runs` times one after the other. Per run: the time from the launch
//! call until the instance is `running` (the guest kernel printed on its serial console),
//! and the host's part of it (from the saga's timeline: EnsureVm sent, then overlay, config
//! drive, define, start, and the guest's boot until its first console line, until the host's
//! watch stream said running); the rest is the portal's share (claim, saga steps, network
//! port, events). Ends with one JSON line.
//!
//! `cargo run --release -p portal-server --bin guest-bench -- [--image-dir target/images]
//! [--virt qemu|kvm] [--runs 3]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use portal_controller::{Controller, OpContext};
use portal_types::params::InstanceCreate;
use portal_types::views::{InstanceState, LiveEvent, TimelineEntry};
use sim_fleet::real_host::{DomainType, REAL_HOST_ID};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[path = "../bench_stack.rs"]
mod bench_stack;
use bench_stack::BenchStack;

struct Args {
    image_dir: PathBuf,
    virt: DomainType,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { image_dir: PathBuf::from("target/images"), virt: DomainType::Qemu, runs: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--image-dir" => args.image_dir = PathBuf::from(value()?),
            "--virt" => {
                args.virt = match value()?.as_str() {
                    "qemu" => DomainType::Qemu,
                    "kvm" => DomainType::Kvm,
                    other => return Err(format!("--virt {other}: use qemu or kvm")),
                }
            }
            "--runs" => args.runs = value()?.parse().map_err(|e| format!("--runs: {e}"))?,
            other => {
                return Err(format!("unknown argument {other}; see the doc comment for usage"));
            }
        }
    }
    if !args.image_dir.join("tiny-test.qcow2").is_file() {
        return Err(format!(
            "{} has no tiny-test.qcow2; build it with agents/host/guest/build-tiny-guest.sh {}",
            args.image_dir.display(),
            args.image_dir.display()
        ));
    }
    if !(1..=20).contains(&args.runs) {
        return Err("--runs must be 1 to 20".into());
    }
    Ok(args)
}

/// The host's part of a launch, from its saga's timeline: from the `vm_ensured` node's start
/// (EnsureVm sent: overlay, config drive, define, start) until the `running` node succeeded
/// (the guest printed on its console and the host's watch stream said so).
fn host_time(timeline: &[TimelineEntry]) -> Option<Duration> {
    let at = |step: &str, event: &str| {
        timeline
            .iter()
            .find(|t| t.saga == "instance_create" && t.step == step && t.event == event)
            .and_then(|t| OffsetDateTime::parse(&t.at, &Rfc3339).ok())
    };
    let took = at("running", "succeeded")? - at("vm_ensured", "started")?;
    Duration::try_from(took).ok()
}

struct Run {
    total: Duration,
    host: Duration,
}

async fn launch_once(
    ctl: &std::sync::Arc<Controller>,
    admin: &OpContext,
    name: &str,
) -> Result<Run, String> {
    let mut events = ctl.events().subscribe();
    let create = InstanceCreate { image: "tiny-test".into(), ..InstanceCreate::one(name, "c1m1") };
    let clicked = Instant::now();
    let vm = ctl.instance_create(admin, &create).await.map_err(|e| e.to_string())?.remove(0);
    if vm.host_name.as_deref() != Some(REAL_HOST_ID) {
        return Err(format!("the guest went to {:?}, not the real host", vm.host_name));
    }
    let running = tokio::time::timeout(Duration::from_secs(300), async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let LiveEvent::Instance(v) = e.event
                        && v.id == vm.id
                    {
                        match v.state {
                            InstanceState::Running => return Ok(()),
                            InstanceState::Failed => return Err(v.message.unwrap_or_default()),
                            _ => {}
                        }
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await;
    let total = clicked.elapsed();
    match running {
        Ok(Ok(())) => {}
        Ok(Err(why)) => return Err(format!("the launch failed: {why}")),
        Err(_) => return Err("the guest was not running after 5 minutes".into()),
    }
    let detail = ctl.instance_get(admin, vm.id).await.map_err(|e| e.to_string())?;
    let host =
        host_time(&detail.timeline).ok_or("the timeline has no EnsureVm or WaitRunning step")?;
    ctl.instance_delete(admin, vm.id).await.map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    // Deleted instances are not found any more.
    while ctl
        .instance_get(admin, vm.id)
        .await
        .is_ok_and(|d| d.instance.state != InstanceState::Deleted)
    {
        if Instant::now() > deadline {
            return Err("the guest was not deleted after 2 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Run { total, host })
}

async fn run(args: &Args, dir: &std::path::Path) -> Result<Vec<Run>, String> {
    let image_dir = std::fs::canonicalize(&args.image_dir).map_err(|e| e.to_string())?;
    let real_host = sim_fleet::real_host::this_machine(image_dir, dir.join("vms"), args.virt, 2);
    let options = sim_fleet::SimOptions {
        provision_delay: Duration::from_millis(10),
        real_host: Some(real_host),
        ..Default::default()
    };
    let pki = sim_fleet::PkiDir::new(dir.join("pki"));
    let url = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let BenchStack { fleet, ctl, admin } =
        bench_stack::start(&sim_fleet::Topology::hgx_h100(1), options, &url, &pki)
            .await
            .map_err(|e| format!("the real host did not start (is libvirtd running?): {e}"))?;
    let mut runs = Vec::with_capacity(args.runs);
    for i in 0..args.runs {
        let result = launch_once(&ctl, &admin, &format!("guest-{i}")).await;
        match result {
            Ok(r) => runs.push(r),
            Err(e) => {
                ctl.stop();
                fleet.shutdown().await;
                return Err(e);
            }
        }
    }
    ctl.stop();
    fleet.shutdown().await;
    Ok(runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
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
    let dir = std::env::temp_dir().join(format!("guest-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return std::process::ExitCode::FAILURE;
    }
    let result = run(&args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    let runs = match result {
        Ok(runs) => runs,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (i, r) in runs.iter().enumerate() {
        println!(
            "run {}: click to running {:.0} ms; the host (EnsureVm until the guest printed) {:.0} \
             ms; the portal's share {:.0} ms",
            i + 1,
            ms(r.total),
            ms(r.host),
            ms(r.total.saturating_sub(r.host))
        );
    }
    let total = median(runs.iter().map(|r| ms(r.total)).collect());
    let portal = median(runs.iter().map(|r| ms(r.total.saturating_sub(r.host))).collect());
    let host = median(runs.iter().map(|r| ms(r.host)).collect());
    println!(
        "{{\"benchmark\":\"guest\",\"runs\":{},\"click_to_running_ms\":{total:.0},\"host_ms\":{host:.0},\"portal_ms\":{portal:.0},\"portal_share\":{:.3}}}",
        runs.len(),
        if total > 0.0 { portal / total } else { 0.0 }
    );
    std::process::ExitCode::SUCCESS
}
