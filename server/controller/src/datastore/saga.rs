//! steno's [`SecStore`] over the `saga` and `saga_node_event` tables: the saga log that lets
//! a restarted (or another) replica resume or unwind every unfinished saga.
//!
//! Inserts are idempotent (a row that exists is success), so a saga row written in its
//! request's transaction and recorded again by steno, or an event recorded twice, is fine.
//! steno cannot take an error from `record_event`, so database errors are retried with
//! backoff until the write succeeds, as omicron does.
//!
//! Node events are group-committed: every saga of the replica hands its event to one writer
//! task and waits until it is stored; the writer inserts all the events waiting at that
//! moment in one statement. A burst of launches thus writes its saga log in a few
//! transactions instead of one per event, which the claim batches would otherwise queue
//! behind (SQLite has one writer).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sea_orm::sea_query::OnConflict;
use tokio::sync::{mpsc, oneshot};

use portal_types::ids::GenericUuid;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr,
};
use steno::{SagaCachedState, SagaCreateParams, SagaId, SagaNodeEvent, SecStore};
use uuid::Uuid;

use super::entity::{saga, saga_node_event};
use super::{DataStore, StoreError, now_ms};
use crate::sagas::Backoff;

#[derive(Debug)]
pub(crate) struct SagaStore {
    db: DatabaseConnection,
    /// This replica, the owner of the sagas it starts or adopts.
    pub(crate) owner: String,
    /// How long a saga stays this replica's without a renewal.
    pub(crate) lease: Duration,
    /// Tests: once this node's "succeeded" event is recorded, the saga stops for good, as
    /// if the replica had died right then.
    pub(crate) hang_after: Mutex<Option<(SagaId, u32)>>,
    /// Tests: told when a saga stopped there.
    pub(crate) hung: tokio::sync::Notify,
    /// The group-commit writer of node events.
    events: mpsc::UnboundedSender<EventWrite>,
    /// The names of the sagas this replica runs, for the `saga` label of the step counter
    /// (steno's events carry only the saga's id). Entered before a saga starts or resumes,
    /// removed once it ends.
    pub(crate) names: Mutex<HashMap<SagaId, String>>,
}

/// A node event waiting for the writer, and who to tell once it is stored.
#[derive(Debug)]
struct EventWrite {
    row: saga_node_event::ActiveModel,
    stored: oneshot::Sender<()>,
}

/// Events stored in one statement, at most (5 columns each, well under SQLite's limit of
/// bound variables).
const EVENTS_PER_INSERT: usize = 512;

/// Stores the events that arrive, all those waiting in one insert; ends with the store.
async fn event_writer(db: DatabaseConnection, mut queue: mpsc::UnboundedReceiver<EventWrite>) {
    let mut batch = Vec::with_capacity(EVENTS_PER_INSERT);
    while queue.recv_many(&mut batch, EVENTS_PER_INSERT).await > 0 {
        let mut backoff = Backoff::default();
        let rows = || batch.iter().map(|w: &EventWrite| w.row.clone());
        while let Err(e) = insert_events(&db, rows()).await {
            failed("node events", &e);
            backoff.sleep().await;
        }
        for write in batch.drain(..) {
            // A saga that stopped waiting (its replica is stopping) needs no answer.
            let _ = write.stored.send(());
        }
    }
}

/// Inserts node events; one already stored (a repeat) is skipped.
async fn insert_events(
    db: &DatabaseConnection,
    rows: impl IntoIterator<Item = saga_node_event::ActiveModel>,
) -> Result<(), DbErr> {
    let key = [
        saga_node_event::Column::SagaId,
        saga_node_event::Column::NodeId,
        saga_node_event::Column::EventType,
    ];
    saga_node_event::Entity::insert_many(rows)
        .on_conflict(OnConflict::columns(key).do_nothing().to_owned())
        .exec_without_returning(db)
        .await
        .map(drop)
        .or_else(|e| if matches!(e, DbErr::RecordNotInserted) { Ok(()) } else { Err(e) })
}

/// The nodes of a DAG as steno serializes it (a petgraph graph of `InternalNode`s, in index
/// order: the index is the `node_id` of its events).
fn dag_nodes(dag: &serde_json::Value) -> &[serde_json::Value] {
    dag.pointer("/graph/nodes").and_then(|n| n.as_array()).map_or(&[], Vec::as_slice)
}

/// The `instance_id` parameter of a saga (its start node's), if it has one.
pub(crate) fn instance_of(dag: &serde_json::Value) -> Option<Uuid> {
    dag_nodes(dag)
        .iter()
        .find_map(|n| n.pointer("/Start/params/instance_id")?.as_str()?.parse().ok())
}

/// The names of a DAG's action nodes by node id (`None`: the start and end nodes).
pub(crate) fn node_names(dag: &serde_json::Value) -> Vec<Option<String>> {
    dag_nodes(dag).iter().map(|n| Some(n.pointer("/Action/name")?.as_str()?.to_owned())).collect()
}

/// An insert that found its row already there succeeded.
fn already_there(e: &DbErr) -> bool {
    matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

impl SagaStore {
    pub(crate) fn new(datastore: &DataStore, replica: Uuid, lease: Duration) -> Self {
        let (events, queue) = mpsc::unbounded_channel();
        tokio::spawn(event_writer(datastore.connection().clone(), queue));
        SagaStore {
            db: datastore.connection().clone(),
            owner: replica.to_string(),
            lease,
            hang_after: Mutex::new(None),
            hung: tokio::sync::Notify::new(),
            events,
            names: Mutex::default(),
        }
    }

    /// The saga row for a new saga owned by this replica (inserted by [`Self::insert`], or
    /// in the transaction of the request that starts it).
    pub(crate) fn row(&self, id: SagaId, name: &str, dag: &serde_json::Value) -> saga::ActiveModel {
        let now = now_ms();
        saga::ActiveModel {
            id: Set(*id.as_untyped_uuid()),
            name: Set(name.to_owned()),
            dag: Set(dag.to_string()),
            state: Set(<&str>::from(&SagaCachedState::Running).to_owned()),
            owner: Set(self.owner.clone()),
            lease_expires_at: Set(now + self.lease.as_millis() as i64),
            created_at: Set(now),
            updated_at: Set(now),
            instance_id: Set(instance_of(dag)),
        }
    }

    /// Inserts a saga row unless it exists.
    pub(crate) async fn insert(
        db: &impl ConnectionTrait,
        row: saga::ActiveModel,
    ) -> Result<(), DbErr> {
        match saga::Entity::insert(row).exec_without_returning(db).await {
            Err(e) if !already_there(&e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Extends the lease of every unfinished saga this replica owns.
    pub(crate) async fn renew(&self) -> Result<(), StoreError> {
        let now = now_ms();
        saga::Entity::update_many()
            .col_expr(saga::Column::LeaseExpiresAt, (now + self.lease.as_millis() as i64).into())
            .filter(saga::Column::Owner.eq(&self.owner))
            .filter(saga::Column::State.ne("done"))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Deletes finished sagas (and their node events) last updated before `before` (Unix
    /// ms); how many.
    pub(crate) async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        let old = saga::Entity::find()
            .select_only()
            .column(saga::Column::Id)
            .filter(saga::Column::State.eq("done"))
            .filter(saga::Column::UpdatedAt.lt(before))
            .limit(1000)
            .into_tuple::<Uuid>()
            .all(&self.db)
            .await?;
        if old.is_empty() {
            return Ok(0);
        }
        let txn = super::begin_write(&self.db).await?;
        saga_node_event::Entity::delete_many()
            .filter(saga_node_event::Column::SagaId.is_in(old.clone()))
            .exec(&txn)
            .await?;
        let deleted =
            saga::Entity::delete_many().filter(saga::Column::Id.is_in(old)).exec(&txn).await?;
        txn.commit().await?;
        Ok(deleted.rows_affected)
    }

    /// Takes over the unfinished sagas that are this replica's or whose owner's lease has
    /// expired (a compare-and-set each, so two replicas never adopt the same saga), and
    /// returns each with its log. `skip`: sagas this replica already runs.
    pub(crate) async fn adopt(
        &self,
        skip: &std::collections::HashSet<Uuid>,
    ) -> Result<Vec<(saga::Model, Vec<SagaNodeEvent>)>, StoreError> {
        let now = now_ms();
        let candidates = saga::Entity::find()
            .filter(saga::Column::State.ne("done"))
            .filter(
                sea_orm::Condition::any()
                    .add(saga::Column::Owner.eq(&self.owner))
                    .add(saga::Column::LeaseExpiresAt.lt(now)),
            )
            .order_by_asc(saga::Column::CreatedAt)
            .all(&self.db)
            .await?;
        let mut adopted = Vec::new();
        for row in candidates.into_iter().filter(|r| !skip.contains(&r.id)) {
            let taken = saga::Entity::update_many()
                .col_expr(saga::Column::Owner, self.owner.clone().into())
                .col_expr(
                    saga::Column::LeaseExpiresAt,
                    (now + self.lease.as_millis() as i64).into(),
                )
                .filter(saga::Column::Id.eq(row.id))
                .filter(saga::Column::Owner.eq(row.owner.clone()))
                .filter(saga::Column::LeaseExpiresAt.eq(row.lease_expires_at))
                .exec(&self.db)
                .await?;
            if taken.rows_affected != 1 {
                continue;
            }
            let events = saga_node_event::Entity::find()
                .filter(saga_node_event::Column::SagaId.eq(row.id))
                .order_by_asc(saga_node_event::Column::At)
                .all(&self.db)
                .await?
                .into_iter()
                .filter_map(|e| serde_json::from_str(e.data.as_deref()?).ok())
                .collect();
            adopted.push((row, events));
        }
        Ok(adopted)
    }
}

/// What `/metrics` reports of the database at scrape time: bounded aggregate counts only
/// (no tenant's data), so there is no actor to authorize; the portal's operators decide who
/// may scrape.
#[derive(Debug, Clone, Default)]
pub struct OperationsCounts {
    /// Sagas not done (running or unwinding), of every replica.
    pub unfinished_sagas: u64,
    /// Instances per state (the stored state's name).
    pub instances: Vec<(String, u64)>,
    /// Agents per kind ("host", "dpu", "switch") and link (connected or not).
    pub agents: Vec<(&'static str, bool, u64)>,
}

impl DataStore {
    /// Counts for `/metrics`: three grouped queries, whatever the size of the fleet.
    pub async fn operations_counts(&self) -> Result<OperationsCounts, StoreError> {
        let db = self.connection();
        let backend = db.get_database_backend();
        let query = |sql: &str| db.query_all_raw(sea_orm::Statement::from_string(backend, sql));
        let count = |row: &sea_orm::QueryResult| -> Result<u64, StoreError> {
            Ok(row.try_get::<i64>("", "n")?.max(0) as u64)
        };
        let mut counts = OperationsCounts::default();
        for row in query("SELECT COUNT(*) AS n FROM saga WHERE state <> 'done'").await? {
            counts.unfinished_sagas = count(&row)?;
        }
        for row in query("SELECT state, COUNT(*) AS n FROM instance GROUP BY state").await? {
            counts.instances.push((row.try_get("", "state")?, count(&row)?));
        }
        for kind in ["host", "dpu", "switch"] {
            let sql = format!(
                "SELECT CASE WHEN agent_connected THEN 1 ELSE 0 END AS connected, \
                 COUNT(*) AS n FROM {kind} GROUP BY agent_connected"
            );
            for row in query(&sql).await? {
                let connected = row.try_get::<i32>("", "connected")? != 0;
                counts.agents.push((kind, connected, count(&row)?));
            }
        }
        Ok(counts)
    }

    /// The database answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let db = self.connection();
        db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), "SELECT 1"))
            .await?;
        Ok(())
    }
}

/// Logs a saga-log write that failed; the caller retries it (see the module comment).
fn failed(what: &str, e: &DbErr) {
    tracing::warn!(error = %e, what, "cannot write the saga log; retrying");
}

#[async_trait::async_trait]
impl SecStore for SagaStore {
    async fn saga_create(&self, params: SagaCreateParams) -> Result<(), anyhow::Error> {
        let name = params.name.to_string();
        self.names.lock().unwrap_or_else(|p| p.into_inner()).insert(params.id, name.clone());
        let row = self.row(params.id, &name, &params.dag);
        Self::insert(&self.db, row).await?;
        Ok(())
    }

    async fn record_event(&self, event: SagaNodeEvent) {
        let node = u32::from(event.node_id);
        let data = serde_json::to_string(&event).ok();
        let saga_id = *event.saga_id.as_untyped_uuid();
        let label = event.event_type.label();
        let row = saga_node_event::ActiveModel {
            saga_id: Set(saga_id),
            node_id: Set(i64::from(node)),
            event_type: Set(label.to_owned()),
            data: Set(data),
            at: Set(now_ms()),
        };
        let (stored, done) = oneshot::channel();
        let queued = self.events.send(EventWrite { row: row.clone(), stored }).is_ok();
        // The writer lives as long as this store; should it be gone, write directly.
        if !queued || done.await.is_err() {
            let mut backoff = Backoff::default();
            while let Err(e) = insert_events(&self.db, [row.clone()]).await {
                failed("node event", &e);
                backoff.sleep().await;
            }
        }
        // Counted once stored (a no-op without a metrics recorder, as in tests).
        let saga =
            self.names.lock().unwrap_or_else(|p| p.into_inner()).get(&event.saga_id).cloned();
        metrics::counter!(
            "portal_saga_steps_total",
            "saga" => saga.unwrap_or_else(|| "unknown".to_owned()),
            "event" => label,
        )
        .increment(1);
        let hang = *self.hang_after.lock().unwrap_or_else(|p| p.into_inner());
        if label == "succeeded" && hang == Some((event.saga_id, node)) {
            tracing::warn!(saga = %event.saga_id, node, "saga stopped here for a test");
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
    }

    async fn saga_update(&self, id: SagaId, update: SagaCachedState) {
        let state = <&str>::from(&update).to_owned();
        let mut backoff = Backoff::default();
        while let Err(e) = saga::Entity::update_many()
            .col_expr(saga::Column::State, state.clone().into())
            .col_expr(saga::Column::UpdatedAt, now_ms().into())
            .filter(saga::Column::Id.eq(*id.as_untyped_uuid()))
            .exec(&self.db)
            .await
        {
            failed("saga state", &e);
            backoff.sleep().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only finished sagas older than the cut are deleted, with their node events.
    #[tokio::test]
    async fn pruning_deletes_old_finished_sagas_and_their_events() {
        let dir = std::env::temp_dir().join(format!("portal-prune-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("portal.db").display());
        let store = super::super::with_startup_lock(
            &url,
            |e| e,
            async |ds| Ok(SagaStore::new(ds, Uuid::new_v4(), Duration::from_secs(30))),
        )
        .await
        .unwrap();
        let dag = serde_json::json!({});
        let mut ids = Vec::new();
        for (state, updated_at) in [("done", 1_000), ("running", 1_000), ("done", 5_000)] {
            let id = SagaId::new_v4();
            let mut row = store.row(id, "test", &dag);
            row.state = Set(state.to_owned());
            row.updated_at = Set(updated_at);
            SagaStore::insert(&store.db, row).await.unwrap();
            let event = saga_node_event::ActiveModel {
                saga_id: Set(*id.as_untyped_uuid()),
                node_id: Set(0),
                event_type: Set("started".to_owned()),
                data: Set(None),
                at: Set(updated_at),
            };
            saga_node_event::Entity::insert(event).exec_without_returning(&store.db).await.unwrap();
            ids.push(*id.as_untyped_uuid());
        }
        assert_eq!(store.prune(2_000).await.unwrap(), 1);
        let left: Vec<Uuid> =
            saga::Entity::find().all(&store.db).await.unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(left.len(), 2);
        assert!(!left.contains(&ids[0]) && left.contains(&ids[1]) && left.contains(&ids[2]));
        let events = saga_node_event::Entity::find().all(&store.db).await.unwrap();
        assert!(events.iter().all(|e| e.saga_id != ids[0]) && events.len() == 2);
        assert_eq!(store.prune(2_000).await.unwrap(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
