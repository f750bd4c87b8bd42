//! `portal-server`: the GPU cloud portal. Starts the control plane, attaches the agents (or
//! a simulated datacenter), and serves the UI, server functions and the live event stream.

mod config;
mod csrf;
mod live;
mod startup;
mod web;

use clap::Parser;

use crate::config::{Config, LogFormat};

fn main() -> std::process::ExitCode {
    let config = Config::parse();
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(startup::run(config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One sentence a person can act on, not a backtrace.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("PORTAL_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
