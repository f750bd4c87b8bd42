//! Keeps every replica's scheduler up to date with the cordons and GPU health other replicas
//! record. Each replica keeps its own scheduler in memory (see `scheduling`); a cordon is
//! written by the replica an admin happened to reach, and a GPU-health change by the first
//! replica whose watch stream delivered it. The claim transaction refuses a host whose row
//! says otherwise (see `claims`), so a stale view never places a VM; this module makes the
//! views converge so that launches are not refused or retried for nothing:
//!
//! - PostgreSQL: the writer sends `NOTIFY portal_fleet, '<host>'` after the change commits;
//!   every replica LISTENs and reloads that host's flags. A lost listener connection is
//!   followed by a full refresh (notifications sent meanwhile are lost).
//! - SQLite (usually one replica per file, but tests run two): a full refresh every 2 s.
//!
//! Agent reachability is not taken from the database: every replica watches every host
//! itself, and the replica that places a VM is the one that must reach its host.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
};
use uuid::Uuid;

use crate::Controller;
use crate::datastore::entity::{gpu, host};

/// The PostgreSQL channel fleet changes are announced on.
const CHANNEL: &str = "portal_fleet";
/// How often SQLite replicas re-read the flags.
const SQLITE_PERIOD: Duration = Duration::from_secs(2);
/// How often PostgreSQL replicas re-read everything anyway, in case a notification was lost.
const POSTGRES_PERIOD: Duration = Duration::from_secs(60);

pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if controller.db.get_database_backend() == DbBackend::Postgres {
            controller.listen_for_fleet_changes().await;
        } else {
            let mut every = tokio::time::interval(SQLITE_PERIOD);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                controller.fleet_flags_refresh(None).await;
            }
        }
    })
}

impl Controller {
    /// Tells the other replicas that a host's cordon or GPU health changed (PostgreSQL; on
    /// SQLite they find out at their next refresh).
    pub(crate) async fn fleet_changed(&self, host_name: &str) {
        if self.db.get_database_backend() != DbBackend::Postgres {
            return;
        }
        let notify = Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [CHANNEL.into(), host_name.into()],
        );
        if let Err(e) = self.db.execute_raw(notify).await {
            // The others catch up at their periodic refresh; the claim check stays exact.
            tracing::warn!(host = %host_name, error = %e, "cannot announce a fleet change");
        }
    }

    async fn listen_for_fleet_changes(self: &Arc<Self>) {
        let pool = self.db.get_postgres_connection_pool().clone();
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut listener = match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await
            {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for fleet changes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            if let Err(e) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %e, "cannot listen for fleet changes; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(200);
            // Anything announced before LISTEN took effect.
            self.fleet_flags_refresh(None).await;
            loop {
                let next = tokio::time::timeout(POSTGRES_PERIOD, listener.try_recv()).await;
                match next {
                    Ok(Ok(Some(n))) => self.fleet_flags_refresh(Some(n.payload())).await,
                    // The connection was lost (and is re-made by the next call): what was
                    // announced meanwhile is lost, so read everything.
                    Ok(Ok(None)) | Err(_) => self.fleet_flags_refresh(None).await,
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "fleet change listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }

    /// Reads the cordon and GPU health of one host (or all) and applies what differs to this
    /// replica's scheduler.
    pub(crate) async fn fleet_flags_refresh(&self, only: Option<&str>) {
        let read = async {
            let mut hosts = host::Entity::find().select_only().columns([
                host::Column::Id,
                host::Column::Name,
                host::Column::Cordoned,
            ]);
            if let Some(name) = only {
                hosts = hosts.filter(host::Column::Name.eq(name));
            }
            let hosts: Vec<(Uuid, String, bool)> = hosts.into_tuple().all(&self.db).await?;
            let mut failed = gpu::Entity::find()
                .select_only()
                .columns([gpu::Column::HostId, gpu::Column::ModuleId])
                .filter(gpu::Column::Health.eq("failed"));
            if only.is_some() {
                failed = failed.filter(gpu::Column::HostId.is_in(hosts.iter().map(|h| h.0)));
            }
            let failed: Vec<(Uuid, i32)> = failed.into_tuple().all(&self.db).await?;
            Ok::<_, sea_orm::DbErr>((hosts, failed))
        };
        let (hosts, failed) = match read.await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the fleet's cordons and GPU health");
                return;
            }
        };
        let mut unhealthy: HashMap<Uuid, HashSet<u8>> = HashMap::new();
        for (host_id, module) in failed {
            unhealthy.entry(host_id).or_default().insert(module as u8);
        }
        let mut guard = self.placer.lock().await;
        let Some(placer) = guard.as_mut() else { return };
        let mut changed = false;
        for (id, name, cordoned) in hosts {
            let failed = unhealthy.remove(&id).unwrap_or_default();
            changed |= placer.set_flags(&name, cordoned, &failed);
        }
        drop(guard);
        if changed {
            self.events.publish(None, portal_types::views::LiveEvent::FleetChanged);
        }
    }
}
