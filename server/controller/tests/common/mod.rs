//! Shared by the control-plane integration tests: a simulated fleet on loopback (mutual TLS,
//! certificates in a per-test PKI directory), the control plane attached to it, and per-test
//! SQLite or PostgreSQL databases.
#![allow(dead_code)] // each test binary uses a different subset

use std::sync::Arc;
use std::time::Duration;

use agent_common::tls::{ControlPlaneCredentials, PkiDir};
pub use portal_controller::OpContext;
use portal_controller::authz::Actor;
use portal_controller::{Controller, ControllerConfig};
use portal_types::params::InstanceCreate;
use portal_types::views::{InstanceState, LiveEvent};
use sea_orm::{ConnectionTrait, Database};

pub const PASSWORD: &str = "correct horse battery staple";

/// The first page of the audit log, large enough for any test's log.
pub fn newest() -> portal_types::page::PageQuery {
    portal_types::page::PageQuery::first(1000)
}

/// The caller `actor` through a portal session.
pub fn op(actor: &Actor) -> OpContext {
    OpContext::for_session(Some(actor.clone()))
}

/// Invites `username` into `tenant` with `role` and signs them in with a password of their own.
pub async fn member(
    ctl: &Controller,
    admin: &Actor,
    tenant: portal_types::ids::TenantUuid,
    username: &str,
    role: &str,
) -> Actor {
    let invited = ctl.user_invite(&op(admin), Some(tenant), username, role).await.unwrap();
    let given = invited.one_time_password;
    let user = ctl.login(username, &given, None).await.expect("signs in");
    let actor = ctl.actor(user).await.unwrap().expect("has an actor");
    let own = format!("{given}-own");
    ctl.password_change(&op(&actor), &given, &own, &own).await.expect("chooses a password");
    ctl.actor(user).await.unwrap().expect("has an actor")
}

pub fn launch(name: &str, instance_type: &str) -> InstanceCreate {
    InstanceCreate::one(name, instance_type)
}

pub struct Stack {
    pub controller: Arc<Controller>,
    pub fleet: sim_fleet::SimFleet,
    pub admin: Actor,
    /// What the control plane dials the fleet's agents with.
    pub tls: ControlPlaneCredentials,
}

/// A fresh, empty PKI directory under the system's temporary directory.
pub fn temp_pki(name: &str) -> PkiDir {
    let dir = std::env::temp_dir().join(format!("portal-test-pki-{name}-{}", uuid::Uuid::new_v4()));
    PkiDir::new(dir)
}

/// A host agent client as the control plane dials it (mutual TLS, the agent's own name).
pub async fn host_client(
    stack: &Stack,
    id: &str,
) -> agent_proto::v1::host_agent_client::HostAgentClient<tonic::transport::Channel> {
    let channel = stack.fleet.control_plane_channel(id).await.expect("connect to the host agent");
    agent_proto::v1::host_agent_client::HostAgentClient::new(channel)
}

pub async fn start(database_url: &str, scalable_units: u32) -> Stack {
    start_with_deadline(database_url, scalable_units, Duration::from_secs(600)).await
}

/// A stack whose launches are undone when they stay `provisioning` past `deadline`.
pub async fn start_with_deadline(
    database_url: &str,
    scalable_units: u32,
    deadline: Duration,
) -> Stack {
    start_with(database_url, scalable_units, |c| c.provision_deadline = deadline).await
}

/// A stack whose control plane's configuration `configure` changes.
pub async fn start_with(
    database_url: &str,
    scalable_units: u32,
    configure: impl FnOnce(&mut ControllerConfig),
) -> Stack {
    let topology = sim_fleet::Topology::hgx_h100(scalable_units);
    let options =
        sim_fleet::SimOptions { provision_delay: Duration::from_millis(50), ..Default::default() };
    let pki = temp_pki("stack");
    let fleet =
        sim_fleet::SimFleet::start(&topology, options, &pki).await.expect("sim fleet starts");
    let tls = pki.control_plane().expect("control-plane certificate");
    let mut config = ControllerConfig {
        admin_password: Some(PASSWORD.to_owned()),
        ..ControllerConfig::new(database_url)
    };
    configure(&mut config);
    let controller = Controller::open(&config).await.expect("controller opens");
    attach_all(&controller, &fleet, &tls).await;
    let user = controller.login("admin", PASSWORD, None).await.expect("admin signs in");
    let admin = controller.actor(user).await.unwrap().expect("admin actor");
    Stack { controller, fleet, admin, tls }
}

/// Attaches every agent of the simulated fleet; each must answer now.
pub async fn attach_all(
    controller: &Arc<Controller>,
    fleet: &sim_fleet::SimFleet,
    tls: &ControlPlaneCredentials,
) {
    let unattached = controller.attach_agents(fleet.endpoints(), tls).await.expect("agents attach");
    assert!(unattached.is_empty(), "agents not attached: {unattached:?}");
}

/// A fresh PostgreSQL database for one test, or `None` when the run has no PostgreSQL.
pub async fn postgres_url(name: &str) -> Option<String> {
    let Ok(admin_url) = std::env::var("PORTAL_TEST_POSTGRES_URL") else {
        eprintln!("PORTAL_TEST_POSTGRES_URL is not set; skipping the PostgreSQL variant of {name}");
        return None;
    };
    // PostgreSQL cuts names at 63 bytes: keep the whole UUID, cut the test's name.
    let short: String = name.chars().take(22).collect();
    let db_name = format!("portal_{short}_{}", uuid::Uuid::new_v4().simple());
    let admin = Database::connect(&admin_url).await.expect("PostgreSQL reachable");
    admin.execute_unprepared(&format!("CREATE DATABASE \"{db_name}\"")).await.unwrap();
    let base = admin_url.rsplit_once('/').map(|(b, _)| b).unwrap();
    Some(format!("{base}/{db_name}"))
}

pub fn sqlite_url(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("portal-test-{name}-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    format!("sqlite://{}?mode=rwc", dir.join("portal.db").display())
}

/// Waits up to `secs` seconds for `check` to hold, polling.
pub async fn eventually<F: AsyncFnMut() -> bool>(secs: u64, what: &str, mut check: F) {
    let waited = tokio::time::timeout(Duration::from_secs(secs), async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what} did not happen within {secs} s"));
}

pub async fn wait_for_state(
    events: &mut tokio::sync::broadcast::Receiver<portal_controller::events::BusEvent>,
    name: &str,
    state: InstanceState,
) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let LiveEvent::Instance(v) = e.event
                        && v.name == name
                        && v.state == state
                    {
                        return;
                    }
                }
                Err(e) => panic!("event bus: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name} never became {state}"));
}
