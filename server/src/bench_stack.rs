//! What the benchmark programs (`src/bin/*-bench.rs`) share: a simulated fleet, the control
//! plane on a database attached to it, and the first admin signed in.

use std::sync::Arc;

use portal_controller::{Controller, ControllerConfig, OpContext};

pub struct BenchStack {
    pub fleet: sim_fleet::SimFleet,
    pub ctl: Arc<Controller>,
    pub admin: OpContext,
}

/// Starts `topology` with `options`, opens the control plane on `database_url` and attaches
/// every agent (each must answer).
pub async fn start(
    topology: &sim_fleet::Topology,
    options: sim_fleet::SimOptions,
    database_url: &str,
    pki: &sim_fleet::PkiDir,
) -> Result<BenchStack, String> {
    let fleet =
        sim_fleet::SimFleet::start(topology, options, pki).await.map_err(|e| e.to_string())?;
    let tls = pki.control_plane().map_err(|e| e.to_string())?;
    let password = "bench-admin-password";
    let ctl = Controller::open(&ControllerConfig {
        admin_password: Some(password.to_owned()),
        ..ControllerConfig::new(database_url)
    })
    .await
    .map_err(|e| e.to_string())?;
    let unattached = ctl.attach_agents(fleet.endpoints(), &tls).await.map_err(|e| e.to_string())?;
    if let Some(problem) = unattached.first() {
        return Err(problem.to_string());
    }
    let user = ctl.login("admin", password, None).await.map_err(|e| e.to_string())?;
    let admin = ctl.actor(user).await.map_err(|e| e.to_string())?.ok_or("no admin")?;
    Ok(BenchStack { fleet, ctl, admin: OpContext::for_session(Some(admin)) })
}
