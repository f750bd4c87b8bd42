//! Keeps instances from staying in a transitional state: every few seconds, instances that
//! have been `provisioning` or `deleting` for a while get their agent call sent again (both
//! are idempotent, so a call lost to a crash or a broken stream is simply repeated), and an
//! instance still `provisioning` past the deadline is undone and marked failed with a reason.

use std::sync::Arc;
use std::time::Duration;

use portal_types::views::InstanceState;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::Controller;
use crate::db::entity::instance;
use crate::db::now_ms;

/// How often the reconciler looks, and how long a transition may take before a retry.
const PERIOD: Duration = Duration::from_secs(5);
const RETRY_AFTER: Duration = Duration::from_secs(10);

pub(crate) fn spawn(controller: Arc<Controller>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PERIOD);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = controller.reconcile_transitional().await {
                tracing::warn!(error = %e, "instance reconciler pass failed");
            }
        }
    })
}

impl Controller {
    /// One reconciler pass.
    async fn reconcile_transitional(self: &Arc<Self>) -> Result<(), sea_orm::DbErr> {
        let now = now_ms();
        let retry_before = now - RETRY_AFTER.as_millis() as i64;
        let deadline_before = now - self.provision_deadline.as_millis() as i64;
        let stuck =
            instance::Entity::find()
                .filter(instance::Column::State.is_in([
                    InstanceState::Provisioning.as_str(),
                    InstanceState::Deleting.as_str(),
                ]))
                .filter(instance::Column::UpdatedAt.lt(retry_before.max(deadline_before)))
                .all(&self.db)
                .await?;
        for row in stuck {
            let this = Arc::clone(self);
            match InstanceState::parse(&row.state) {
                Some(InstanceState::Provisioning) if row.updated_at < deadline_before => {
                    let minutes = self.provision_deadline.as_secs().div_ceil(60);
                    tracing::warn!(instance = %row.id, name = %row.name, "launch passed its deadline; undoing");
                    let message = format!(
                        "The VM did not start within {minutes} minute{}; it was removed. Delete this \
                         instance and launch again.",
                        if minutes == 1 { "" } else { "s" }
                    );
                    tokio::spawn(async move { this.instance_undo_launch(&row, &message).await });
                }
                Some(InstanceState::Provisioning) if row.updated_at < retry_before => {
                    tokio::spawn(async move { this.instance_ensure_on_host(row).await });
                }
                Some(InstanceState::Deleting) if row.updated_at < retry_before => {
                    tokio::spawn(async move { this.instance_remove_from_host(row).await });
                }
                _ => {}
            }
        }
        Ok(())
    }
}
