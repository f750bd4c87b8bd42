//! The control plane, as a library: identity, fleet inventory, placement, provisioning and
//! live events. The portal server and its server functions are thin adapters over
//! [`Controller`]; every public method authorizes on its first line.

pub mod agents;
mod app;
pub mod authn;
pub mod authz;
mod background;
mod backoff;
pub mod context;
pub mod datastore;
pub mod events;
pub mod oidc;
mod sagas;
pub mod throttle;

use std::sync::Arc;

use agent_proto::AgentKind;
use portal_types::Error;
use portal_types::ids::UserUuid;
use portal_types::views::Me;

use crate::agents::{AgentRegistry, AgentUnreachable};
use crate::authz::{Action, Actor};
use crate::datastore::audit::AuditRecord;
use crate::events::EventBus;

pub use crate::app::console::{Console, ConsoleInput, ConsoleStream, MAX_CONSOLES_PER_USER};
pub use crate::authn::Bootstrap;
pub use crate::authz::Role;
pub use crate::background::strays::StrayVm;
pub use crate::context::OpContext;
#[doc(hidden)]
pub use crate::sagas::executor::Injection;

/// How the control plane starts.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// `sqlite://path?mode=rwc` or `postgres://…`.
    pub database_url: String,
    /// The first provider admin's password; generated and shown once when absent.
    pub admin_password: Option<String>,
    /// How long a launch may stay `provisioning` before it is undone and marked failed.
    pub provision_deadline: std::time::Duration,
    /// How long a delete may wait for the host to confirm the VM is gone before the instance
    /// is marked failed with a sentence saying so (its GPUs stay claimed until the host
    /// confirms; the removal keeps being retried).
    pub delete_deadline: std::time::Duration,
    /// How long a VM a host runs but the database does not want is shown to provider admins
    /// before the reconciler removes it.
    pub stray_grace: std::time::Duration,
    /// How often each DPU's held ports and each leaf's held VPCs are compared with the
    /// database (drift of an agent that kept running: what it lost is sent again, what the
    /// control plane did not send is removed).
    pub drift_check: std::time::Duration,
    /// How long a replica's unfinished sagas stay its own without a renewal; past it, a
    /// live replica (or this one restarted) resumes them.
    pub saga_lease: std::time::Duration,
    /// This replica's stable id, the owner of the sagas it runs: restarted with the same id,
    /// it resumes its unfinished sagas at once instead of after their lease. `None`: a new
    /// id per start.
    pub replica_id: Option<uuid::Uuid>,
    /// Failed sign-in limits and the account lockout.
    pub login_throttle: throttle::ThrottleConfig,
    /// Encrypts identity providers' client secrets at rest; the server passes
    /// [`oidc::SecretKeys::load`] of its data directory.
    pub secret_keys: oidc::SecretKeys,
    /// The provider's one currency (ISO 4217 code); prices and invoices are in it.
    pub currency: String,
}

impl ControllerConfig {
    /// The defaults for a database URL: a 10-minute launch and delete deadline, 5 minutes of
    /// grace for stray VMs, a generated password, a secret key that lives as long as the
    /// process.
    pub fn new(database_url: impl Into<String>) -> Self {
        ControllerConfig {
            database_url: database_url.into(),
            admin_password: None,
            provision_deadline: std::time::Duration::from_secs(600),
            delete_deadline: std::time::Duration::from_secs(600),
            stray_grace: std::time::Duration::from_secs(300),
            drift_check: std::time::Duration::from_secs(60),
            saga_lease: sagas::executor::DEFAULT_LEASE,
            replica_id: None,
            login_throttle: throttle::ThrottleConfig::default(),
            secret_keys: oidc::SecretKeys::ephemeral(),
            currency: "USD".to_owned(),
        }
    }
}

/// Why the control plane could not start; each reads as one sentence.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot open the database {url}: {detail}")]
    Database { url: String, detail: String },
    #[error("cannot create the first admin or the default catalog: {0}")]
    Bootstrap(Error),
    #[error(transparent)]
    AgentUnreachable(#[from] AgentUnreachable),
    #[error("cannot dial the {kind} agent {id} at {url}: {detail}")]
    AgentConfig { kind: AgentKind, id: String, url: String, detail: String },
    #[error(
        "the {kind} agent at {url} reports the id {reported}, but the agents file lists it as \
         {listed}; correct the agents file or the agent"
    )]
    AgentIdMismatch { kind: AgentKind, url: String, listed: String, reported: String },
    #[error("the {kind} agent at {url} answered its inventory call with an error: {detail}")]
    Inventory { kind: AgentKind, url: String, detail: String },
    #[error("cannot build the scheduler from the reported inventory: {0}")]
    Scheduler(String),
    #[error(transparent)]
    SecretKey(#[from] oidc::SecretKeyError),
}

pub struct Controller {
    datastore: datastore::DataStore,
    events: EventBus,
    agents: AgentRegistry,
    /// Present once agents are attached; launches wait on its lock (see `scheduling`).
    placer: tokio::sync::Mutex<Option<app::scheduling::Placer>>,
    /// Launches wait here for the claim task (see `claims`).
    claims: app::claims::ClaimQueue,
    /// Runs, resumes and adopts sagas (see `sagas`).
    sagas: sagas::executor::SagaExecutor,
    /// The agent watchers and attachers, the reconciler and saga adoption, which
    /// [`Controller::stop`] ends (and then sets to `None`).
    background: std::sync::Mutex<Option<Vec<tokio::task::AbortHandle>>>,
    provision_deadline: std::time::Duration,
    delete_deadline: std::time::Duration,
    stray_grace: std::time::Duration,
    drift_check: std::time::Duration,
    /// VMs hosts run that the database does not want there (see `strays`).
    strays: background::strays::Strays,
    login_throttle: throttle::LoginThrottle,
    /// Wakes the network reconciler: a DPU or leaf has something new to see.
    network_changed: tokio::sync::Notify,
    /// Told whenever a leaf confirmed a change (what launches waiting for their GPU fabric
    /// wait on, besides a periodic look for other replicas' confirmations).
    fabric_confirmed: tokio::sync::Notify,
    bootstrap: Bootstrap,
    secret_keys: oidc::SecretKeys,
    currency: String,
    metering: app::billing::MeteringState,
}

impl Controller {
    /// Opens (and migrates) the database and makes sure a first admin exists.
    pub async fn open(config: &ControllerConfig) -> Result<Arc<Self>, StartError> {
        let database_error = |e: datastore::StoreError| StartError::Database {
            url: redact_url(&config.database_url),
            detail: e.detail(),
        };
        // Replicas starting together take turns: one migrates and creates the first admin
        // and the seed catalog, the others find them.
        let bootstrap =
            datastore::with_startup_lock(&config.database_url, database_error, async |db| {
                let bootstrap = authn::bootstrap_admin(db, config.admin_password.as_deref())
                    .await
                    .map_err(StartError::Bootstrap)?;
                datastore::instance_type::instance_type_seed(
                    db.connection(),
                    &app::catalog::default_catalog(),
                )
                .await
                .map_err(|e| StartError::Bootstrap(e.into()))?;
                datastore::image::image_seed(db.connection(), &app::images::default_images())
                    .await
                    .map_err(|e| StartError::Bootstrap(e.into()))?;
                oidc::seal_all(db, &config.secret_keys).await?;
                Ok::<_, StartError>(bootstrap)
            })
            .await?;
        let datastore =
            datastore::DataStore::open(&config.database_url).await.map_err(database_error)?;
        let replica = config.replica_id.unwrap_or_else(uuid::Uuid::new_v4);
        let sagas = sagas::executor::SagaExecutor::new(&datastore, replica, config.saga_lease);
        let (events, outbox) = if datastore.is_postgres() {
            let (bus, outbox) = EventBus::relayed();
            (bus, Some(outbox))
        } else {
            (EventBus::default(), None)
        };
        let controller = Arc::new_cyclic(|controller| Self {
            datastore,
            events,
            agents: AgentRegistry::default(),
            placer: tokio::sync::Mutex::new(None),
            claims: app::claims::ClaimQueue::start(controller.clone()),
            sagas,
            background: std::sync::Mutex::new(Some(Vec::new())),
            provision_deadline: config.provision_deadline,
            delete_deadline: config.delete_deadline,
            stray_grace: config.stray_grace,
            drift_check: config.drift_check,
            strays: background::strays::Strays::default(),
            login_throttle: throttle::LoginThrottle::new(config.login_throttle),
            network_changed: tokio::sync::Notify::new(),
            fabric_confirmed: tokio::sync::Notify::new(),
            bootstrap,
            secret_keys: config.secret_keys.clone(),
            currency: config.currency.clone(),
            metering: Default::default(),
        });
        if let Some(outbox) = outbox {
            let relay = background::event_relay::spawn(Arc::clone(&controller), replica, outbox);
            relay.into_iter().for_each(|task| controller.keep_running(task));
        }
        Ok(controller)
    }

    /// What the first start did about the admin account (for the startup banner).
    pub fn bootstrap(&self) -> &Bootstrap {
        &self.bootstrap
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Stops watching the agents and reconciling, as a control plane that goes down does
    /// (for a graceful shutdown). Another controller on the same database takes over from
    /// the agents' snapshots and the instance rows, and resumes this one's unfinished sagas
    /// once their lease expires (sagas already running here go on until they finish).
    pub fn stop(&self) {
        let tasks = self.background.lock().unwrap_or_else(|p| p.into_inner()).take();
        for task in tasks.into_iter().flatten() {
            task.abort();
        }
    }

    /// Keeps a background task until [`Controller::stop`] (which it does not outlive, even
    /// when started after the stop).
    fn keep_running(&self, task: tokio::task::JoinHandle<()>) {
        match self.background.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            Some(tasks) => tasks.push(task.abort_handle()),
            None => task.abort(),
        }
    }

    /// Tests: a failure, repetition or stop injected into the next saga this replica starts.
    #[doc(hidden)]
    pub fn testing_inject_next_saga(&self, injection: Injection) {
        self.sagas.inject_next(injection);
    }

    /// Benchmarks: what attaching a switch agent again does (its leaf is sent every tenant
    /// VPC it should hold), without dialling it.
    #[doc(hidden)]
    pub async fn testing_switch_reattached(&self, leaf: &str) {
        let _ = self.network_replay(agent_proto::AgentKind::Switch, leaf).await;
    }

    /// Benchmarks: meters the state log as the metering task does at `now_s`.
    #[doc(hidden)]
    pub async fn testing_meter(&self, now_s: i64) -> Result<(), Error> {
        self.meter(now_s).await
    }

    /// Tests: waits until a saga stopped at its [`Injection::HangAfter`] node.
    #[doc(hidden)]
    pub async fn testing_saga_stopped(&self) {
        self.sagas.store.hung.notified().await;
    }

    /// Checks a local account's password (see [`authn::verify_login`]), refusing early when
    /// the account or the client address has failed too often (see [`throttle`]).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<std::net::IpAddr>,
    ) -> Result<UserUuid, Error> {
        let now = datastore::now_ms();
        let mut tenant = None;
        let result = match self.login_throttle.reserve(&self.datastore, username, client, now).await
        {
            Ok(reservation) => {
                let result = match authn::verify_login(&self.datastore, username, password).await {
                    Ok(user) => match self.actor(user).await {
                        Ok(Some(actor)) => {
                            tenant = Some(actor.tenant_id);
                            Ok(user)
                        }
                        // Right password, but no tenant to act in (suspended, or none).
                        Ok(None) => Err(Error::forbidden(
                            "this account's tenant is suspended or it belongs to none; ask \
                             your provider",
                        )),
                        Err(e) => Err(e),
                    },
                    other => other,
                };
                let throttle = &self.login_throttle;
                let recorded = match &result {
                    Ok(_) => throttle.succeeded(&self.datastore, username, reservation).await,
                    Err(Error::BadCredentials) => {
                        throttle.failed(&self.datastore, reservation, now).await
                    }
                    Err(_) => throttle.release(&self.datastore, reservation).await,
                };
                if let Err(e) = recorded {
                    tracing::error!(error = %e, "cannot record the sign-in for throttling");
                }
                result
            }
            Err(throttled) => Err(throttled),
        };
        let user = result.as_ref().ok().copied();
        self.audit_write(&AuditRecord {
            actor_id: user,
            actor_name: username.to_owned(),
            tenant_id: tenant,
            client,
            action: "session.sign_in".to_owned(),
            object_kind: "user".to_owned(),
            object_id: username.to_owned(),
            outcome: app::audit::outcome(&result),
        })
        .await;
        result
    }

    /// The actor for a session's user, or `None` when the user no longer may sign in.
    pub async fn actor(&self, user_id: UserUuid) -> Result<Option<Actor>, Error> {
        Ok(self.datastore.actor_load(user_id, None, None).await?)
    }

    /// The actor for a user acting in `tenant` (if they belong to it).
    pub async fn actor_in(
        &self,
        user_id: UserUuid,
        tenant: Option<portal_types::ids::TenantUuid>,
    ) -> Result<Option<Actor>, Error> {
        Ok(self.datastore.actor_load(user_id, tenant, None).await?)
    }

    /// The signed-in user with every tenant they may act in.
    pub async fn me(&self, opctx: &OpContext) -> Result<Me, Error> {
        let actor = opctx.authorize(Action::AccountRead)?;
        let memberships = self.datastore.user_memberships(opctx).await?;
        Ok(Me {
            user_id: actor.user_id,
            username: actor.username.clone(),
            provider_admin: actor.provider_admin,
            tenant_id: actor.tenant_id,
            tenant_name: actor.tenant_name.clone(),
            role: actor.role,
            memberships,
            must_change_password: actor.must_change_password,
        })
    }

    /// The datastore, for the web layer's session store.
    pub fn datastore(&self) -> &datastore::DataStore {
        &self.datastore
    }
}

/// A database URL without its password, for messages.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://portal:s3cret@127.0.0.1/portal"),
            "postgres://portal:***@127.0.0.1/portal"
        );
        assert_eq!(super::redact_url("sqlite://data/portal.db"), "sqlite://data/portal.db");
    }
}
