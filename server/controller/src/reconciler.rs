//! Keeps instances from staying in a transitional state: every few seconds, instances that
//! have been `provisioning` or `deleting` for a while get their agent call sent again (both
//! are idempotent, so a call lost to a crash or a broken stream is simply repeated), an
//! instance still `provisioning` past the deadline is undone and marked failed with a reason,
//! and one still `deleting` past its deadline is marked failed with a sentence saying its
//! host has not confirmed the VM is gone (its GPUs stay claimed, the removal is retried).
//! Failed instances whose removal the host has not confirmed get RemoveVm again, and stray
//! VMs past their grace period are removed (see `strays`).

use std::sync::Arc;
use std::time::Duration;

use portal_types::views::InstanceState;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};

use crate::Controller;
use crate::datastore::entity::instance;
use crate::datastore::now_ms;

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
            controller.strays_remove().await;
        }
    })
}

/// "N minute(s)", rounded up.
fn minutes(d: Duration) -> String {
    let n = d.as_secs().div_ceil(60);
    format!("{n} minute{}", if n == 1 { "" } else { "s" })
}

impl Controller {
    /// One reconciler pass.
    async fn reconcile_transitional(self: &Arc<Self>) -> Result<(), sea_orm::DbErr> {
        let now = now_ms();
        let retry_before = now - RETRY_AFTER.as_millis() as i64;
        let deadline_before = now - self.provision_deadline.as_millis() as i64;
        let delete_deadline_before = now - self.delete_deadline.as_millis() as i64;
        let stuck = instance::Entity::find()
            .filter(
                Condition::any()
                    .add(instance::Column::State.is_in([
                        InstanceState::Provisioning.as_str(),
                        InstanceState::Deleting.as_str(),
                    ]))
                    .add(crate::removal::failed_pending_removal()),
            )
            .filter(
                instance::Column::UpdatedAt
                    .lt(retry_before.max(deadline_before).max(delete_deadline_before)),
            )
            .all(&self.db)
            .await?;
        for row in stuck {
            let this = Arc::clone(self);
            match InstanceState::parse(&row.state) {
                Some(InstanceState::Provisioning) if row.updated_at < deadline_before => {
                    tracing::warn!(instance = %row.id, name = %row.name, "launch passed its deadline; undoing");
                    let message = format!(
                        "The VM did not start within {}; it was removed. Delete this instance \
                         and launch again.",
                        minutes(self.provision_deadline)
                    );
                    tokio::spawn(async move { this.instance_undo_launch(&row, &message).await });
                }
                Some(InstanceState::Provisioning) if row.updated_at < retry_before => {
                    tokio::spawn(async move { this.instance_ensure_on_host(row).await });
                }
                Some(InstanceState::Deleting) if row.updated_at < delete_deadline_before => {
                    tracing::warn!(instance = %row.id, name = %row.name, "delete passed its deadline");
                    tokio::spawn(async move { this.instance_delete_overdue(&row).await });
                }
                Some(InstanceState::Deleting | InstanceState::Failed)
                    if row.updated_at < retry_before =>
                {
                    tokio::spawn(async move { this.instance_remove_from_host(row).await });
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A delete its host has not confirmed in time: failed, with a sentence an admin can act
    /// on. The GPUs stay claimed (the VM may still run on them) and the removal is retried;
    /// once the host confirms, the instance ends deleted.
    async fn instance_delete_overdue(&self, row: &instance::Model) {
        let host = crate::instances::host_of(row).unwrap_or_else(|| "its host".to_owned());
        let message = format!(
            "Could not confirm the VM is gone from {host} within {}; its GPUs stay reserved \
             until the host confirms it. Delete it again once {host} is back, or ask your \
             provider to check the host.",
            minutes(self.delete_deadline)
        );
        self.instance_set_state(row, InstanceState::Failed, Some(message)).await;
    }
}
