//! Starting sagas, and resuming or unwinding unfinished ones: at startup (once agents are
//! attached) and periodically, a replica adopts the unfinished sagas that are its own or
//! whose owner's lease expired (a dead replica's), and renews the leases of the ones it
//! runs.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use portal_types::Error;
use portal_types::ids::GenericUuid;
use steno::{ActionRegistry, SagaDag, SagaId, SagaResult, SecClient};
use uuid::Uuid;

use crate::Controller;
use crate::datastore::DataStore;
use crate::datastore::saga::SagaStore;
use crate::sagas::{PortalSaga, SagaContext, registry};

/// Finished sagas (their steps and times) are kept this long, then deleted.
pub(crate) const KEEP_FINISHED: Duration = Duration::from_secs(30 * 24 * 3600);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long a replica's sagas stay its own without a renewal, by default.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// A saga decided but not yet started: its id and DAG (whose row may be written in the
/// caller's transaction with [`SagaExecutor::row`]).
#[derive(Debug, Clone)]
pub(crate) struct NewSaga {
    pub id: SagaId,
    pub dag: Arc<SagaDag>,
}

impl NewSaga {
    pub(crate) fn new(dag: steno::Dag, params: &impl serde::Serialize) -> Result<Self, Error> {
        let params = serde_json::to_value(params).map_err(Error::internal)?;
        Ok(NewSaga { id: SagaId::new_v4(), dag: Arc::new(SagaDag::new(dag, params)) })
    }
}

/// Test hooks applied to the next saga this replica starts (see `test_helpers`).
#[doc(hidden)]
#[derive(Debug, Clone)]
pub enum Injection {
    /// The named node's action fails (without running).
    Error(&'static str),
    /// The named node's action runs twice, and its undo twice.
    Repeat(&'static str),
    /// The saga stops for good once the named node succeeded (a replica dying there).
    HangAfter(&'static str),
}

pub(crate) struct SagaExecutor {
    sec: SecClient,
    pub(crate) store: Arc<SagaStore>,
    registry: Arc<ActionRegistry<PortalSaga>>,
    /// Sagas this replica runs, so a periodic adoption does not start them twice.
    running: Arc<Mutex<HashSet<Uuid>>>,
    inject: Mutex<Vec<Injection>>,
}

/// steno logs through slog; this forwards its records to `tracing` (steno's info is our
/// debug: a line per node event would drown the log).
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "steno", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "steno", "{}", record.msg()),
            slog::Level::Info | slog::Level::Debug => {
                tracing::debug!(target: "steno", "{}", record.msg())
            }
            slog::Level::Trace => tracing::trace!(target: "steno", "{}", record.msg()),
        }
        Ok(())
    }
}

impl SagaExecutor {
    pub(crate) fn new(datastore: &DataStore, replica: Uuid, lease: Duration) -> Self {
        let store = Arc::new(SagaStore::new(datastore, replica, lease));
        let log = slog::Logger::root(TracingDrain, slog::o!());
        SagaExecutor {
            sec: steno::sec(log, store.clone()),
            store,
            registry: Arc::new(registry()),
            running: Arc::default(),
            inject: Mutex::default(),
        }
    }

    /// The saga row of a new saga, to insert in the transaction that decides it.
    pub(crate) fn row(
        &self,
        saga: &NewSaga,
    ) -> Result<crate::datastore::entity::saga::ActiveModel, Error> {
        let dag = serde_json::to_value(&*saga.dag).map_err(Error::internal)?;
        Ok(self.store.row(saga.id, &saga.dag.saga_name().to_string(), &dag))
    }

    pub(crate) fn inject_next(&self, injection: Injection) {
        self.inject.lock().unwrap_or_else(|p| p.into_inner()).push(injection);
    }

    /// Starts a saga whose row is committed (or writes it first) and lets it run.
    pub(crate) async fn start(
        &self,
        controller: &Arc<Controller>,
        saga: NewSaga,
    ) -> Result<(), Error> {
        let name = saga.dag.saga_name().to_string();
        let ctx = Arc::new(SagaContext(Arc::clone(controller)));
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(*saga.id.as_untyped_uuid());
        let done = self
            .sec
            .saga_create(saga.id, ctx, Arc::clone(&saga.dag), Arc::clone(&self.registry))
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        let injections: Vec<Injection> =
            self.inject.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        for injection in injections {
            self.apply(&saga, injection).await?;
        }
        tracing::info!(saga = %saga.id, %name, "saga started");
        self.run(saga.id, name, done).await
    }

    async fn apply(&self, saga: &NewSaga, injection: Injection) -> Result<(), Error> {
        let node =
            |name: &str| saga.dag.get_index(name).map_err(|e| Error::internal(format!("{e:#}")));
        let result = match injection {
            Injection::Error(n) => self.sec.saga_inject_error(saga.id, node(n)?).await,
            Injection::Repeat(n) => {
                let twice = std::num::NonZeroU32::new(2).expect("2 is not zero");
                let repeat = steno::RepeatInjected { action: twice, undo: twice };
                self.sec.saga_inject_repeat(saga.id, node(n)?, repeat).await
            }
            Injection::HangAfter(n) => {
                let index = node(n)?.index() as u32;
                *self.store.hang_after.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((saga.id, index));
                Ok(())
            }
        };
        result.map_err(|e| Error::internal(format!("{e:#}")))
    }

    async fn run(
        &self,
        id: SagaId,
        name: String,
        done: BoxFuture<'static, SagaResult>,
    ) -> Result<(), Error> {
        // The step counter's `saga` label (steno's node events carry only the id).
        self.store.names.lock().unwrap_or_else(|p| p.into_inner()).insert(id, name.clone());
        let running = Arc::clone(&self.running);
        let count_running = |running: &Mutex<HashSet<Uuid>>| {
            let n = running.lock().unwrap_or_else(|p| p.into_inner()).len();
            metrics::gauge!("portal_sagas_running").set(n as f64);
        };
        count_running(&running);
        if let Err(e) = self.sec.saga_start(id).await {
            self.store.names.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(Error::internal(format!("{e:#}")));
        }
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let result = done.await;
            let outcome = match result.kind {
                Ok(_) => {
                    tracing::info!(saga = %id, %name, "saga finished");
                    "finished"
                }
                Err(e) => {
                    tracing::info!(saga = %id, %name, node = %e.error_node_name.as_ref(), error = %e.error_source, "saga unwound");
                    "unwound"
                }
            };
            metrics::counter!("portal_sagas_total", "saga" => name, "result" => outcome)
                .increment(1);
            store.names.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            running.lock().unwrap_or_else(|p| p.into_inner()).remove(id.as_untyped_uuid());
            count_running(&running);
        });
        Ok(())
    }

    /// Resumes (or goes on unwinding) every unfinished saga this replica may take: its own
    /// and those whose owner's lease expired; renews the leases of those it runs.
    pub(crate) async fn adopt(&self, controller: &Arc<Controller>) -> Result<(), Error> {
        self.store.renew().await?;
        let skip = self.running.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let adopted = self.store.adopt(&skip).await?;
        for (row, events) in adopted {
            let id = SagaId::from_untyped_uuid(row.id);
            // One saga that cannot resume (a start racing this adoption: steno refuses the
            // second) does not hold up the others.
            if let Err(e) = self.resume(controller, id, &row, events).await {
                tracing::warn!(saga = %id, name = %row.name, error = %e, "cannot resume the saga");
            }
        }
        Ok(())
    }

    async fn resume(
        &self,
        controller: &Arc<Controller>,
        id: SagaId,
        row: &crate::datastore::entity::saga::Model,
        events: Vec<steno::SagaNodeEvent>,
    ) -> Result<(), Error> {
        let dag: serde_json::Value = serde_json::from_str(&row.dag).map_err(Error::internal)?;
        let ctx = Arc::new(SagaContext(Arc::clone(controller)));
        self.running.lock().unwrap_or_else(|p| p.into_inner()).insert(row.id);
        let done = self
            .sec
            .saga_resume(id, ctx, dag, Arc::clone(&self.registry), events)
            .await
            .map_err(|e| Error::internal(format!("{e:#}")))?;
        tracing::info!(saga = %id, name = %row.name, state = %row.state, "saga resumed");
        self.run(id, row.name.clone(), done).await
    }
}

/// Adopts and renews every `period` (a third of the lease) until the controller stops, and
/// about hourly deletes sagas finished more than [`KEEP_FINISHED`] ago.
pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(controller.sagas.store.lease / 3);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pruned = std::time::Instant::now();
        loop {
            every.tick().await;
            if let Err(e) = controller.sagas.adopt(&controller).await {
                tracing::warn!(error = %e, "cannot resume or renew sagas");
            }
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = std::time::Instant::now();
                let before = crate::datastore::now_ms() - KEEP_FINISHED.as_millis() as i64;
                match controller.sagas.store.prune(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sagas = n, "deleted old finished sagas"),
                    Err(e) => tracing::warn!(error = %e, "cannot delete old finished sagas"),
                }
            }
        }
    })
}
