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

use uuid::Uuid;

use crate::Controller;

/// The PostgreSQL channel fleet changes are announced on.
const CHANNEL: &str = "portal_fleet";
/// How often SQLite replicas re-read the flags.
const SQLITE_PERIOD: Duration = Duration::from_secs(2);
/// How often PostgreSQL replicas re-read everything anyway, in case a notification was lost.
const POSTGRES_PERIOD: Duration = Duration::from_secs(60);

pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if controller.datastore.is_postgres() {
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
        if !self.datastore.is_postgres() {
            return;
        }
        if let Err(e) = self.datastore.notify(CHANNEL, host_name).await {
            // The others catch up at their periodic refresh; the claim check stays exact.
            tracing::warn!(host = %host_name, error = %e, "cannot announce a fleet change");
        }
    }

    async fn listen_for_fleet_changes(self: &Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut listener = match self.datastore.listen(CHANNEL).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for fleet changes; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            // Anything announced before LISTEN took effect.
            self.fleet_flags_refresh(None).await;
            loop {
                let next = tokio::time::timeout(POSTGRES_PERIOD, listener.recv()).await;
                match next {
                    Ok(Ok(Some(host))) => self.fleet_flags_refresh(Some(&host)).await,
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
        // Read under the placer's lock: flags read before a claim's reload or a watch
        // stream's GPU event and applied after it would undo them (a VM was placed on a
        // failed GPU that way: the claim's generation check passed, the view was stale).
        let mut guard = self.placer.lock().await;
        let (hosts, failed) = match self.datastore.host_flags(only).await {
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
