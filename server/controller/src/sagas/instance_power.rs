//! `instance_power`: stop, start, reboot or power off. The request moved the instance to the
//! transitional state (`stopping`, `starting`, `rebooting`) and wrote this saga's row in one
//! transaction.
//!
//! ```text
//! requested   + sip_requested  (the mark is in the database)   - sip_requested_undo
//! power_set   + sip_set_power  (SetVmPower until the host takes it)
//! ```
//!
//! The host answers at once and reports the end (`stopped`, `running`) on its watch stream,
//! which moves the instance there (see `instances::apply_vm_status`). SetVmPower is
//! idempotent (a repeated reboot of a rebooting VM does nothing), so the step is safe to run
//! again after a crash. A host that refuses (or does not answer before the deadline) unwinds
//! the saga: the instance goes back to the state it was in, with the host's reason.

use std::sync::{Arc, LazyLock};

use agent_proto::v1::{SetVmPowerRequest, VmPowerAction};
use portal_types::Error;
use portal_types::ids::InstanceUuid;
use portal_types::params::PowerAction;
use portal_types::views::InstanceState;
use serde::{Deserialize, Serialize};
use steno::{Action, ActionError, ActionFunc, ActionRegistry, DagBuilder, Node, SagaName};

use crate::Controller;
use crate::context::OpContext;
use crate::datastore::now_ms;
use crate::sagas::executor::NewSaga;
use crate::sagas::{ActionContext, Backoff, PortalSaga, saga_action_failed, transient};

pub(crate) const NAME: &str = "instance_power";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Params {
    /// Who asked, as every action acts for them.
    pub opctx: OpContext,
    pub instance_id: InstanceUuid,
    pub action: PowerAction,
    /// The state the request moved the instance from, to go back to if the host refuses.
    pub previous: InstanceState,
    /// The transitional state the request set.
    pub marked: InstanceState,
    /// When it was asked for (ms), for its deadline.
    pub requested_at: i64,
}

static REQUESTED: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action("instance_power.requested", sip_requested, sip_requested_undo)
});
static POWER_SET: LazyLock<Arc<dyn Action<PortalSaga>>> =
    LazyLock::new(|| steno::new_action_noop_undo("instance_power.power_set", sip_set_power));

pub(crate) fn register(registry: &mut ActionRegistry<PortalSaga>) {
    for action in [&*REQUESTED, &*POWER_SET] {
        registry.register(Arc::clone(action));
    }
}

pub(crate) fn new(params: &Params) -> Result<NewSaga, Error> {
    let mut dag = DagBuilder::new(SagaName::new(NAME));
    dag.append(Node::action("requested", "MarkRequested", REQUESTED.as_ref()));
    dag.append(Node::action("power_set", "SetVmPower", POWER_SET.as_ref()));
    NewSaga::new(dag.build().map_err(|e| Error::internal(e.to_string()))?, params)
}

fn controller(ctx: &ActionContext) -> &Arc<Controller> {
    &ctx.user_data().0
}

/// The mark was made in the transaction that wrote this saga: confirm the row is there.
async fn sip_requested(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    controller(&ctx).instance_confirm(p.instance_id).await.map_err(saga_action_failed)
}

/// A power change that did not happen: back to the state it was in (if nothing else moved
/// it meanwhile), saying so; done once the instance has left the marked state.
async fn sip_requested_undo(ctx: ActionContext) -> Result<(), anyhow::Error> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    loop {
        match c.instance_row(p.instance_id).await {
            Ok(row) => {
                if row.state == p.marked.as_str() {
                    let reason = row
                        .message
                        .clone()
                        .unwrap_or_else(|| "its host did not take the request".to_owned());
                    let message =
                        format!("The {} did not happen: {reason}. Try again.", p.action.as_str());
                    c.instance_set_state(&row, p.previous, Some(message)).await;
                    // Read again (after the pause): a write that failed, e.g. on a busy
                    // database, is tried again.
                } else {
                    return Ok(());
                }
            }
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => {
                tracing::warn!(instance = %p.instance_id, error = %e, "cannot read the instance to undo its power change")
            }
        }
        backoff.sleep().await;
    }
}

/// SetVmPower, retrying transient errors until the deadline; a refusal fails the step with
/// the host's reason (kept on the row for the undo's sentence).
async fn sip_set_power(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let deadline = p.requested_at + c.provision_deadline.as_millis() as i64;
    let action = match p.action {
        PowerAction::Start => VmPowerAction::Start,
        PowerAction::Stop => VmPowerAction::Stop,
        PowerAction::Reboot => VmPowerAction::Reboot,
        PowerAction::PowerOff => VmPowerAction::PowerOff,
    };
    let mut backoff = Backoff::default();
    loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        // Still this request's to make (a report from before it may have moved the instance
        // back to where it was); not once it settled, was deleted or asked something else.
        if row.state != p.marked.as_str() && row.state != p.previous.as_str() {
            return Ok(());
        }
        let Some(host) = crate::app::instances::host_of(&row) else { return Ok(()) };
        let request = SetVmPowerRequest { vm_id: row.id.to_string(), action: action as i32 };
        let status = match c.agents.host(&host) {
            Some(mut client) => match client.set_vm_power(request).await {
                Ok(_) => return Ok(()),
                Err(status) => status,
            },
            None => tonic::Status::unavailable("its host agent is not connected"),
        };
        if transient(&status) && now_ms() < deadline {
            tracing::warn!(instance = %row.id, %host, error = %status.message(), "SetVmPower failed; retrying");
            backoff.sleep().await;
            continue;
        }
        let reason = format!("host {host} answered: {}", status.message());
        // Kept on the row (same state) for the undo's sentence.
        c.instance_set_state(&row, p.marked, Some(reason.clone())).await;
        return Err(saga_action_failed(Error::unavailable(reason)));
    }
}
