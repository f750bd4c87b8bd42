//! Startup in the order that fails fastest and clearest: data directory, listening socket,
//! database, agents; then serve until Ctrl-C or SIGTERM.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_common::tls::PkiDir;
use anyhow::{Context, anyhow};
use portal_controller::{Bootstrap, Controller, ControllerConfig, StartError};

use crate::config::{Config, GuestVirt};

/// How long a shutdown waits for requests in flight before it ends them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

pub async fn run(config: Config) -> anyhow::Result<()> {
    // The data directory holds this replica's id and the secret key, whatever the database.
    check_writable_dir(&config.data_dir)?;
    // A bad certificate stops the start before anything else is done.
    let https = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::server_config(cert, key)?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            anyhow!(
                "the address {} is already in use; stop the program using it or pass \
                 --listen with another port",
                config.listen
            )
        } else {
            anyhow!("cannot listen on {}: {e}", config.listen)
        }
    })?;
    let controller = Controller::open(&ControllerConfig {
        admin_password: config.admin_password.clone(),
        provision_deadline: Duration::from_secs(config.provision_deadline_secs),
        delete_deadline: Duration::from_secs(config.delete_deadline_secs),
        stray_grace: Duration::from_secs(config.stray_grace_secs),
        secret_keys: portal_controller::oidc::SecretKeys::load(&config.data_dir)?,
        replica_id: Some(replica_id(&config.data_dir)?),
        currency: config.currency.clone(),
        ..ControllerConfig::new(config.database_url())
    })
    .await?;

    // Keep the simulated datacenter alive as long as the portal. Either way the agents are
    // dialled with mutual TLS, with the control plane's certificate from the PKI directory.
    let pki = PkiDir::new(config.pki_dir());
    let (_sim, endpoints) = match &config.agents_file {
        Some(path) => (None, read_agents_file(path)?),
        None => {
            let topology = match &config.sim_topology {
                Some(path) => sim_fleet::Topology::from_file(path).map_err(|e| anyhow!("{e}"))?,
                None => sim_fleet::Topology::hgx_h100(config.sim_scalable_units),
            };
            let options = sim_fleet::SimOptions {
                provision_delay: Duration::from_secs_f64(config.sim_provision_secs.max(0.0)),
                state_dir: Some(config.data_dir.join("sim")),
                real_host: config.real_host.then(|| real_host(&config)).transpose()?,
                ..Default::default()
            };
            // Creates the CA and the certificates in the PKI directory on the first start.
            let fleet = sim_fleet::SimFleet::start(&topology, options, &pki)
                .await
                .map_err(|e| anyhow!("cannot start the simulated datacenter: {e}"))?;
            let endpoints = fleet.endpoints().to_vec();
            (Some(fleet), endpoints)
        }
    };
    let tls = pki.control_plane().map_err(|e| anyhow!("{e}"))?;
    let started = std::time::Instant::now();
    let unattached = controller.attach_agents(&endpoints, &tls).await?;
    tracing::info!(
        agents = endpoints.len() - unattached.len(),
        unattached = unattached.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "agents attached"
    );

    let (stopping, stop_seen) = tokio::sync::watch::channel(false);
    let app = crate::web::router(Arc::clone(&controller), &config, stop_seen.clone()).await?;
    banner(&config, controller.bootstrap(), endpoints.len(), &unattached);
    // Pages stream in several writes: without TCP_NODELAY, Nagle's algorithm and delayed
    // ACKs hold a response's tail for ~40 ms.
    use axum::serve::ListenerExt;
    match https {
        Some(tls) => {
            let listener = crate::tls::TlsListener::new(listener, tls)?.tap_io(|tls| {
                let _ = tls.get_ref().0.set_nodelay(true);
            });
            serve(listener, app, stopping, stop_seen).await?;
        }
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            serve(listener, app, stopping, stop_seen).await?;
        }
    }
    controller.stop();
    Ok(())
}

/// Serves until Ctrl-C or SIGTERM, then finishes what is in flight (for a while).
async fn serve<L>(
    listener: L,
    app: axum::Router,
    stopping: tokio::sync::watch::Sender<bool>,
    mut stop_seen: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    std::net::SocketAddr:
        for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let server =
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                let _ = stopping.send(true);
            });
    // Graceful means finishing what is in flight, not waiting forever for a request that
    // never ends (a stalled upload, a client that stopped reading).
    let grace = async move {
        let _ = stop_seen.wait_for(|s| *s).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = server => served.context("the web server stopped")?,
        () = grace => tracing::warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "requests were still open after the shutdown grace period; stopping anyway"
        ),
    }
    Ok(())
}

/// This machine as a real host: libvirt needs absolute paths for disks and logs.
fn real_host(config: &Config) -> anyhow::Result<sim_fleet::real_host::LibvirtConfig> {
    let absolute = |path: &Path| {
        std::path::absolute(path).map_err(|e| anyhow!("cannot resolve {}: {e}", path.display()))
    };
    let virt = match config.real_host_virt {
        GuestVirt::Kvm => sim_fleet::real_host::DomainType::Kvm,
        GuestVirt::Qemu => sim_fleet::real_host::DomainType::Qemu,
    };
    Ok(sim_fleet::real_host::this_machine(
        absolute(&config.real_host_images)?,
        absolute(&config.data_dir.join("real-host"))?,
        virt,
        config.real_host_memory_gib,
    ))
}

/// This replica's id, kept in its data directory so that a restart resumes its own
/// unfinished sagas at once. (Each replica has its own data directory.)
fn replica_id(dir: &Path) -> anyhow::Result<uuid::Uuid> {
    let path = dir.join("replica-id");
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(id) = text.trim().parse()
    {
        return Ok(id);
    }
    let id = uuid::Uuid::new_v4();
    std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, format!("{id}\n"))).map_err(
        |e| anyhow!("cannot write {}: {e}; pass --data-dir with a writable path", path.display()),
    )?;
    Ok(id)
}

fn check_writable_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| {
        anyhow!(
            "cannot create the data directory {}: {e}; pass --data-dir with a writable path",
            dir.display()
        )
    })?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").map_err(|e| {
        anyhow!(
            "the data directory {} is not writable: {e}; pass --data-dir with a writable path",
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

pub(crate) fn read_agents_file(path: &Path) -> anyhow::Result<Vec<agent_proto::AgentEndpoint>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("cannot read the agents file {}: {e}", path.display()))?;
    let list: agent_proto::AgentList = toml::from_str(&text)
        .map_err(|e| anyhow!("the agents file {} is not valid: {}", path.display(), e.message()))?;
    if list.agents.is_empty() {
        return Err(anyhow!(
            "the agents file {} lists no [[agent]]; add at least one host agent",
            path.display()
        ));
    }
    Ok(list.agents)
}

fn banner(config: &Config, bootstrap: &Bootstrap, agents: usize, unattached: &[StartError]) {
    let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", config.listen);
    let mode = match (&config.agents_file, config.real_host) {
        (Some(_), _) => "attached agents",
        (None, true) => "simulated datacenter and this machine as real host local-1",
        (None, false) => "simulated datacenter",
    };
    println!();
    println!("  GPU cloud portal is running at {url}  ({agents} agents, {mode})");
    match bootstrap {
        Bootstrap::CreatedWithGeneratedPassword(password) => {
            println!("  First start: sign in as `admin` with the one-time password: {password}");
            println!("  It is shown only now; it is stored only as an argon2id hash.");
        }
        Bootstrap::CreatedWithConfiguredPassword => {
            println!(
                "  First start: sign in as `admin` with the password from PORTAL_ADMIN_PASSWORD."
            );
        }
        Bootstrap::Existing => {
            println!("  Sign in with your account (the first admin is `admin`).");
        }
    }
    if !unattached.is_empty() {
        println!(
            "  {} of the {agents} agents are not attached yet; the portal keeps trying (their \
             hosts show as unreachable meanwhile):",
            unattached.len()
        );
        for problem in unattached {
            println!("    - {problem}");
        }
    }
    println!("  Stop with Ctrl-C.");
    println!();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
