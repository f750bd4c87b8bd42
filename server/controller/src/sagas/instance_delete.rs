//! `instance_delete`: the request marked the instance `deleting` (generation bumped,
//! `vm_removal = delete`) and wrote this saga's row in one transaction.
//!
//! ```text
//! deleting     + sid_deleting     (the mark is in the database)      - sid_deleting_undo
//! vm_removed   + sid_remove_vm    (RemoveVm until the host confirms the VM is gone)
//! port_removed + sid_remove_port  (RemovePort until its DPU answers; the address is freed)
//! ```
//!
//! The host's confirmation releases the GPU claims and marks the instance `deleted` in one
//! transaction (see `removal`). Past the delete deadline the instance is marked failed with
//! a sentence saying its host has not confirmed, and the removal goes on being retried; once
//! the host confirms, it ends `deleted`. Removing a VM has no undo; if the saga unwinds
//! (only when a failure is injected) the instance is failed, to be deleted again.

use std::sync::{Arc, LazyLock};

use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::views::InstanceState;
use serde::{Deserialize, Serialize};
use steno::{Action, ActionError, ActionFunc, ActionRegistry, DagBuilder, Node, SagaName};

use crate::Controller;
use crate::context::OpContext;
use crate::datastore::now_ms;
use crate::sagas::executor::NewSaga;
use crate::sagas::{ActionContext, Backoff, PortalSaga, minutes, saga_action_failed};

pub(crate) const NAME: &str = "instance_delete";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Params {
    /// Who asked, as every action acts for them.
    pub opctx: OpContext,
    pub instance_id: InstanceUuid,
    /// When the delete was asked for (ms), for its deadline.
    pub requested_at: i64,
}

static DELETING: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action("instance_delete.deleting", sid_deleting, sid_deleting_undo)
});
static VM_REMOVED: LazyLock<Arc<dyn Action<PortalSaga>>> =
    LazyLock::new(|| steno::new_action_noop_undo("instance_delete.vm_removed", sid_remove_vm));
static PORT_REMOVED: LazyLock<Arc<dyn Action<PortalSaga>>> =
    LazyLock::new(|| steno::new_action_noop_undo("instance_delete.port_removed", sid_remove_port));

pub(crate) fn register(registry: &mut ActionRegistry<PortalSaga>) {
    for action in [&*DELETING, &*VM_REMOVED, &*PORT_REMOVED] {
        registry.register(Arc::clone(action));
    }
}

pub(crate) fn new(params: &Params) -> Result<NewSaga, Error> {
    let mut dag = DagBuilder::new(SagaName::new(NAME));
    dag.append(Node::action("deleting", "MarkDeleting", DELETING.as_ref()));
    dag.append(Node::action("vm_removed", "RemoveVm", VM_REMOVED.as_ref()));
    dag.append(Node::action("port_removed", "RemovePort", PORT_REMOVED.as_ref()));
    NewSaga::new(dag.build().map_err(|e| Error::internal(e.to_string()))?, params)
}

fn controller(ctx: &ActionContext) -> &Arc<Controller> {
    &ctx.user_data().0
}

/// The mark was made in the transaction that wrote this saga: confirm the row is there
/// (retrying database errors, as `instance_create`'s first node does).
async fn sid_deleting(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    controller(&ctx).instance_confirm(p.instance_id).await.map_err(saga_action_failed)
}

/// A delete that did not happen: failed, to be deleted again (its removal stays pending,
/// so a VM the host still runs keeps its GPUs claimed).
async fn sid_deleting_undo(ctx: ActionContext) -> Result<(), anyhow::Error> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    loop {
        match c.instance_row(p.instance_id).await {
            Ok(row) => {
                if row.state == InstanceState::Deleting.as_str() {
                    let message = "The delete did not finish. Delete this instance again.";
                    c.instance_set_state(&row, InstanceState::Failed, Some(message.into())).await;
                }
                return Ok(());
            }
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => {
                tracing::warn!(instance = %p.instance_id, error = %e, "cannot read the instance to undo its delete")
            }
        }
        backoff.sleep().await;
    }
}

/// RemoveVm until the host confirms the VM is gone (answering `deleted`, or through its
/// watch stream); past the deadline, says so on the instance and goes on.
async fn sid_remove_vm(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let deadline = p.requested_at + c.delete_deadline.as_millis() as i64;
    let mut backoff = Backoff::default();
    while !c.instance_removed(p.instance_id).await {
        if now_ms() >= deadline
            && let Ok(row) = c.instance_row(p.instance_id).await
            && row.state == InstanceState::Deleting.as_str()
        {
            overdue(c, &row).await;
        }
        backoff.sleep().await;
    }
    Ok(())
}

/// Once the VM is gone: its port leaves the DPU, then the database (both retried: a delete
/// does not give up).
async fn sid_remove_port(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let id = p.instance_id.into_untyped_uuid();
    c.port_remove_from_dpu(id).await;
    let mut backoff = Backoff::default();
    while let Err(e) = c.port_release(id).await {
        tracing::warn!(instance = %id, error = %e, "cannot release the port; retrying");
        backoff.sleep().await;
    }
    Ok(())
}

/// A delete its host has not confirmed in time: failed, with a sentence an admin can act
/// on. The GPUs stay claimed (the VM may still run on them) and the removal goes on.
async fn overdue(c: &Controller, row: &crate::datastore::entity::instance::Model) {
    tracing::warn!(instance = %row.id, name = %row.name, "delete passed its deadline");
    let host = crate::app::instances::host_of(row).unwrap_or_else(|| "its host".to_owned());
    let message = format!(
        "Could not confirm the VM is gone from {host} within {}; its GPUs stay reserved until \
         the host confirms it. Delete it again once {host} is back, or ask your provider to \
         check the host.",
        minutes(c.delete_deadline)
    );
    c.instance_set_state(row, InstanceState::Failed, Some(message)).await;
}
