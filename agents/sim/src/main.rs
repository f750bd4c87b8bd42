//! `sim-fleet`: serves a simulated HGX fleet on loopback until Ctrl-C, and writes the agents
//! file (`[[agent]]` kind/id/`https://` url) the portal reads. Every agent serves only mutual
//! TLS with a certificate from `--pki-dir` (created there if missing).
//!
//! ```text
//! sim-fleet [--topology FILE] [--scalable-units N] [--agents-file OUT] [--pki-dir DIR]
//!           [--provision-delay-ms MS] [--remove-delay-ms MS] [--seed N]
//! ```
//!
//! Bad arguments or a bad topology print one sentence and exit with status 2; a failure to
//! start or to write the agents file exits with status 1.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use sim_fleet::{SimFleet, SimOptions, Topology};
use tracing::info;

#[derive(Debug, Parser)]
#[command(
    name = "sim-fleet",
    version,
    about = "Serve a simulated HGX H100 fleet: one gRPC agent per host, DPU and leaf switch, \
             on loopback"
)]
struct Args {
    /// Topology file (TOML); default: the built-in HGX H100 topology.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Number of scalable units (32 hosts each in the built-in topology).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    scalable_units: Option<u32>,
    /// Where to write the agents file (TOML); default: standard output.
    #[arg(long, value_name = "OUT")]
    agents_file: Option<PathBuf>,
    /// Directory of the agents' CA and certificates: a CA, one certificate per agent and the
    /// control plane's client certificate are created there when missing. The default is
    /// where the portal looks with its default data directory.
    #[arg(long, value_name = "DIR", default_value = "data/pki")]
    pki_dir: PathBuf,
    /// How long a new VM stays PROVISIONING, in milliseconds.
    #[arg(long, value_name = "MS")]
    provision_delay_ms: Option<u64>,
    /// How long a removed VM stays STOPPING, in milliseconds.
    #[arg(long, value_name = "MS")]
    remove_delay_ms: Option<u64>,
    /// Seed for the deterministic jitter of VM transitions.
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Keep the hosts' VMs across restarts in this directory (`hosts/<host_id>.json`);
    /// default: in memory only. Delete the directory to start afresh.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

const USAGE_ERROR: u8 = 2;

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => return argument_error(&err),
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let topology = match load_topology(&args) {
        Ok(topology) => topology,
        Err(message) => {
            eprintln!("sim-fleet: {message}");
            return ExitCode::from(USAGE_ERROR);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("sim-fleet: cannot start the async runtime: {err}; check the process limits");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, &topology)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sim-fleet: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Prints clap's verdict as one line (help and version print in full).
fn argument_error(err: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        print!("{err}");
        return ExitCode::SUCCESS;
    }
    let rendered = err.to_string();
    let first =
        rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    eprintln!("sim-fleet: {first}; run sim-fleet --help for usage");
    ExitCode::from(USAGE_ERROR)
}

fn load_topology(args: &Args) -> Result<Topology, String> {
    let topology = match &args.topology {
        Some(path) => Topology::from_file(path),
        None => Topology::try_hgx_h100(args.scalable_units.unwrap_or(2)),
    }
    .map_err(|err| err.to_string())?;
    match (args.scalable_units, &args.topology) {
        (Some(units), Some(_)) => {
            topology.with_scalable_units(units).map_err(|err| err.to_string())
        }
        _ => Ok(topology),
    }
}

async fn run(args: &Args, topology: &Topology) -> Result<(), String> {
    let defaults = SimOptions::default();
    let options = SimOptions {
        provision_delay: args
            .provision_delay_ms
            .map_or(defaults.provision_delay, Duration::from_millis),
        remove_delay: args.remove_delay_ms.map_or(defaults.remove_delay, Duration::from_millis),
        seed: args.seed.unwrap_or(defaults.seed),
        state_dir: args.state_dir.clone(),
        ..defaults
    };
    let pki = agent_common::tls::PkiDir::new(&args.pki_dir);
    let fleet = SimFleet::start(topology, options, &pki).await.map_err(|err| err.to_string())?;
    let agents = toml::to_string(&fleet.agent_list())
        .map_err(|err| format!("cannot encode the agents file: {err}"))?;
    match &args.agents_file {
        Some(path) => {
            write_atomically(path, &agents)?;
            info!(path = %path.display(), agents = fleet.endpoints().len(), "agents file written");
        }
        None => print!("{agents}"),
    }
    info!("serving {} agents; press Ctrl-C to stop", fleet.endpoints().len());
    wait_for_stop_signal().await?;
    info!("stopping");
    fleet.shutdown().await;
    Ok(())
}

/// Writes next to the target and renames, so a reader never sees half a file.
fn write_atomically(path: &Path, contents: &str) -> Result<(), String> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, contents).and_then(|()| std::fs::rename(&temporary, path)).map_err(
        |err| {
            format!(
                "cannot write the agents file {}: {err}; check that its directory exists and is \
                 writable",
                path.display()
            )
        },
    )
}

/// Ctrl-C, or SIGTERM on Unix (how scripts and service managers stop it).
async fn wait_for_stop_signal() -> Result<(), String> {
    let failed = |err: std::io::Error| format!("cannot listen for Ctrl-C: {err}");
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).map_err(failed)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(failed),
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(failed)
    }
}
