//! `portal-server`: the GPU cloud portal. Starts the control plane, attaches the agents (or
//! a simulated datacenter), and serves the UI, server functions and the live event stream.

mod backup;
mod billing_csv;
mod client_ip;
mod config;
mod config_file;
mod console;
mod csrf;
mod live;
mod metrics;
mod oidc_routes;
mod pki;
mod protect;
mod render;
mod request_id;
mod rest;
mod startup;
mod tls;
mod web;

use crate::config::{Command, LogFormat};

fn main() -> std::process::ExitCode {
    let config = match config_file::load() {
        Ok(config) => config,
        Err(config_file::LoadError::Arguments(e)) => e.exit(),
        Err(config_file::LoadError::File(message)) => {
            eprintln!("error: {message}");
            return std::process::ExitCode::from(2);
        }
    };
    if config.print_routes {
        print_routes();
        return std::process::ExitCode::SUCCESS;
    }
    if let Some(Command::Pki { agents_file, pki_dir }) = &config.command {
        let dir = pki_dir.clone().unwrap_or_else(|| config.pki_dir());
        return match pki::run(agents_file, &dir) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::Backup { .. } | Command::Restore { .. }) = &config.command {
        return one_off(&config);
    }
    init_tracing(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(startup::run(config));
    // Tasks still running (a request that would not end) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One sentence a person can act on, not a backtrace.
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `backup` or `restore`, with a runtime of their own.
fn one_off(config: &config::Config) -> std::process::ExitCode {
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| {
            rt.block_on(async {
                match &config.command {
                    Some(Command::Backup { to }) => backup::backup(config, to).await,
                    Some(Command::Restore { from, force }) => {
                        backup::restore(config, from, *force).await
                    }
                    _ => Ok(()),
                }
            })
        });
    match done {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every server function and REST route, one `METHOD /path` per line, sorted.
fn print_routes() {
    let mut routes: Vec<String> = leptos::server_fn::axum::server_fn_paths()
        .map(|(path, method)| format!("{method} {path}"))
        .chain(web::REST_ROUTES.iter().map(|(method, path)| format!("{method} {path}")))
        .chain(rest::operations())
        .collect();
    routes.sort();
    for route in routes {
        println!("{route}");
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
