//! `instance_create`: the launch of one VM, after the claim batch (see `claims`) committed
//! its instance row, GPU claims and this saga's row in one transaction.
//!
//! ```text
//! claimed              + sic_claimed             (the claim is in the database)
//!                      - sic_undo_launch
//! port_created         + sic_create_port         (an address of its subnet, its groups)
//!                      - sic_release_port
//! port_attached        + sic_attach_port         (DPU agent EnsurePort; no DPU: none)
//!                      - sic_detach_port
//! fabric_joined        + sic_join_fabric         (SuperNICs on the tenant's GPU fabric, until
//!                                                 their rail leaves confirm; none: none)
//!                      - (nothing: the addresses go with the port, `sic_release_port`)
//! partition_activated  + sic_activate_partition  (host agent ActivatePartition; CPU-only: none)
//!                      - sic_deactivate_partition
//! vm_ensured           + sic_ensure_vm           (host agent EnsureVm)
//!                      - sic_undo_launch
//! running              + sic_wait_running        (until the host reports running, or the deadline)
//! ```
//!
//! `sic_undo_launch` is idempotent: mark the launch failed (keeping the first reason given),
//! then RemoveVm until the host confirms the VM is gone; the confirmation releases the GPU
//! claims in its transaction (see `removal`), so GPUs are never released while a VM may
//! still run on them. The partition's undo first does the same (a failed EnsureVm may have
//! defined the VM, and a partition is deactivated only after its VM is gone), then
//! DeactivatePartition.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use agent_proto::v1::{ActivatePartitionRequest, DeactivatePartitionRequest, EnsureVmRequest};
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::views::{InstanceState, LiveEvent};
use serde::{Deserialize, Serialize};
use steno::{Action, ActionError, ActionFunc, ActionRegistry, DagBuilder, Node, SagaName};

use crate::Controller;
use crate::app::scheduling::allocation_of;
use crate::context::OpContext;
use crate::datastore::now_ms;
use crate::sagas::executor::NewSaga;
use crate::sagas::{ActionContext, Backoff, PortalSaga, minutes, saga_action_failed, transient};

pub(crate) const NAME: &str = "instance_create";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Params {
    /// Who asked, as every action acts for them.
    pub opctx: OpContext,
    pub instance_id: InstanceUuid,
}

static CLAIMED: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action("instance_create.claimed", sic_claimed, sic_undo_launch)
});
static PORT_CREATED: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action("instance_create.port_created", sic_create_port, sic_release_port)
});
static PORT_ATTACHED: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action("instance_create.port_attached", sic_attach_port, sic_detach_port)
});
static FABRIC_JOINED: LazyLock<Arc<dyn Action<PortalSaga>>> =
    LazyLock::new(|| steno::new_action_noop_undo("instance_create.fabric_joined", sic_join_fabric));
static PARTITION_ACTIVATED: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action(
        "instance_create.partition_activated",
        sic_activate_partition,
        sic_deactivate_partition,
    )
});
static VM_ENSURED: LazyLock<Arc<dyn Action<PortalSaga>>> = LazyLock::new(|| {
    ActionFunc::new_action("instance_create.vm_ensured", sic_ensure_vm, sic_undo_launch)
});
static RUNNING: LazyLock<Arc<dyn Action<PortalSaga>>> =
    LazyLock::new(|| steno::new_action_noop_undo("instance_create.running", sic_wait_running));

pub(crate) fn register(registry: &mut ActionRegistry<PortalSaga>) {
    for action in [
        &*CLAIMED,
        &*PORT_CREATED,
        &*PORT_ATTACHED,
        &*FABRIC_JOINED,
        &*PARTITION_ACTIVATED,
        &*VM_ENSURED,
        &*RUNNING,
    ] {
        registry.register(Arc::clone(action));
    }
}

/// The saga for one claimed instance.
pub(crate) fn new(params: &Params) -> Result<NewSaga, Error> {
    let mut dag = DagBuilder::new(SagaName::new(NAME));
    dag.append(Node::action("claimed", "Claim", CLAIMED.as_ref()));
    dag.append(Node::action("port_created", "CreatePort", PORT_CREATED.as_ref()));
    dag.append(Node::action("port_attached", "EnsurePort", PORT_ATTACHED.as_ref()));
    dag.append(Node::action("fabric_joined", "JoinGpuFabric", FABRIC_JOINED.as_ref()));
    dag.append(Node::action(
        "partition_activated",
        "ActivatePartition",
        PARTITION_ACTIVATED.as_ref(),
    ));
    dag.append(Node::action("vm_ensured", "EnsureVm", VM_ENSURED.as_ref()));
    dag.append(Node::action("running", "WaitRunning", RUNNING.as_ref()));
    NewSaga::new(dag.build().map_err(|e| Error::internal(e.to_string()))?, params)
}

fn controller(ctx: &ActionContext) -> &Arc<Controller> {
    &ctx.user_data().0
}

/// The claim was made in the transaction that wrote this saga: confirm its row is there
/// (retrying database errors: steno runs no undo for the node that fails, and this node's
/// undo is what releases the claim).
async fn sic_claimed(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    controller(&ctx).instance_confirm(p.instance_id).await.map_err(saga_action_failed)
}

/// Gives the VM its port: an address of the subnet its launch picked, its security groups
/// and its host's DPU (idempotent: a port made before a crash is found). A full subnet marks
/// the launch failed with a sentence.
async fn sic_create_port(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            return Ok(());
        }
        let allocation = allocation_of(&row)
            .ok_or_else(|| saga_action_failed(Error::internal("the instance has no placement")))?;
        match c.port_create(&p.opctx, &row, &allocation.placement.host).await {
            Ok(_) => return Ok(()),
            Err(e @ (Error::InvalidRequest { .. } | Error::Conflict { .. })) => {
                let message = format!("The launch failed: {e}");
                c.instance_launch_failed(&row, &message).await;
                return Err(saga_action_failed(Error::unavailable(message)));
            }
            Err(e) if now_ms() < c.launch_deadline(&row) => {
                tracing::warn!(instance = %row.id, error = %e, "cannot make the port; retrying");
                backoff.sleep().await;
            }
            Err(e) => {
                let message = format!(
                    "The launch failed: its network port could not be made ({e}). Delete this \
                     instance and launch again."
                );
                c.instance_launch_failed(&row, &message).await;
                return Err(saga_action_failed(Error::unavailable(message)));
            }
        }
    }
}

/// Undo of the port: off its DPU (the network reconciler may have sent it before this saga
/// did; the removal fences off any later send), then the address and memberships go (both
/// retried: an undo may not fail).
async fn sic_release_port(ctx: ActionContext) -> Result<(), anyhow::Error> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    c.port_remove_from_dpu(p.instance_id.into_untyped_uuid()).await;
    let mut backoff = Backoff::default();
    while let Err(e) = c.port_release(p.instance_id.into_untyped_uuid()).await {
        tracing::warn!(instance = %p.instance_id, error = %e, "cannot release the port; retrying");
        backoff.sleep().await;
    }
    Ok(())
}

/// Sends the port to its DPU (EnsurePort), so the VM starts with its network and security
/// groups in place; transient errors are retried until the launch deadline.
async fn sic_attach_port(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            return Ok(());
        }
        let port = c.port_of(row.id).await.map_err(saga_action_failed)?;
        let Some(port) = port else { return Ok(()) };
        let dpu = port.dpu_name.clone().unwrap_or_default();
        let status = match c.port_push(port).await {
            Ok(()) => return Ok(()),
            Err(status) => status,
        };
        if transient(&status) && now_ms() < c.launch_deadline(&row) {
            tracing::warn!(instance = %row.id, %dpu, error = %status.message(), "EnsurePort failed; retrying");
            backoff.sleep().await;
            continue;
        }
        let message = format!(
            "The launch failed: DPU {dpu} could not connect its network port: {}. Delete this \
             instance and launch again.",
            status.message()
        );
        c.instance_launch_failed(&row, &message).await;
        return Err(saga_action_failed(Error::unavailable(message)));
    }
}

/// Undo of EnsurePort: RemovePort until the DPU answers.
async fn sic_detach_port(ctx: ActionContext) -> Result<(), anyhow::Error> {
    let p: Params = ctx.saga_params()?;
    controller(&ctx).port_remove_from_dpu(p.instance_id.into_untyped_uuid()).await;
    Ok(())
}

/// Activates the VM's Fabric Manager partition before its VM is defined (idempotent for the
/// same VM), retrying transient errors until the launch deadline; a refusal (an overlapping
/// partition still active, a failed GPU) marks the launch failed with the host's reason.
async fn sic_activate_partition(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            return Ok(());
        }
        let allocation = allocation_of(&row)
            .ok_or_else(|| saga_action_failed(Error::internal("the instance has no placement")))?;
        let Some(partition) = allocation.placement.partition else { return Ok(()) };
        let host = &allocation.placement.host;
        let request = ActivatePartitionRequest {
            vm_id: row.id.to_string(),
            partition_id: u32::from(partition),
            generation: row.generation.max(0) as u64,
        };
        let status = match c.agents.host(host) {
            Some(mut client) => match client.activate_partition(request).await {
                Ok(_) => return Ok(()),
                Err(status) => status,
            },
            None => tonic::Status::unavailable("its host agent is not connected"),
        };
        if transient(&status) && now_ms() < c.launch_deadline(&row) {
            tracing::warn!(instance = %row.id, %host, error = %status.message(), "ActivatePartition failed; retrying");
            backoff.sleep().await;
            continue;
        }
        let message = format!(
            "The launch failed: host {host} could not connect its GPUs (NVLink partition \
             {partition}): {}. Delete this instance and launch again.",
            status.message()
        );
        c.instance_launch_failed(&row, &message).await;
        return Err(saga_action_failed(Error::unavailable(message)));
    }
}

/// Undo of the partition's activation: the VM goes first (see the module comment), then
/// DeactivatePartition until the host answers (inactive, or held by another VM: done).
async fn sic_deactivate_partition(ctx: ActionContext) -> Result<(), anyhow::Error> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    // Which partition, read before the VM's removal releases the placement.
    let mut backoff = Backoff::default();
    let held = loop {
        match c.instance_row(p.instance_id).await {
            Ok(row) => {
                break allocation_of(&row)
                    .and_then(|a| Some((a.placement.host, a.placement.partition?)));
            }
            Err(Error::NotFound { .. }) => break None,
            Err(e) => {
                tracing::warn!(instance = %p.instance_id, error = %e, "cannot read the instance to deactivate its partition");
                backoff.sleep().await;
            }
        }
    };
    undo_launch(c, p.instance_id).await;
    let Some((host, partition)) = held else { return Ok(()) };
    loop {
        let request = DeactivatePartitionRequest {
            vm_id: p.instance_id.to_string(),
            partition_id: u32::from(partition),
        };
        let result = match c.agents.host(&host) {
            Some(mut client) => client.deactivate_partition(request).await.map(|_| ()),
            None => Err(tonic::Status::unavailable("its host agent is not connected")),
        };
        match result {
            Ok(()) => return Ok(()),
            Err(status) => {
                tracing::warn!(instance = %p.instance_id, %host, error = %status.message(), "DeactivatePartition failed; retrying");
                backoff.sleep().await;
            }
        }
    }
}

/// How often a join looks whether its leaves confirmed without being told (a confirmation
/// by another replica's reconciler).
const FABRIC_POLL: Duration = Duration::from_secs(1);

/// Joins the VM's SuperNICs to its tenant's GPU fabric (addresses of their rails) and waits
/// until every rail leaf they are cabled to holds the tenant's segment with them, so the VM
/// starts with its fabric up. A full rail fails the launch with a sentence; leaves that do
/// not confirm by the launch deadline fail it naming them.
async fn sic_join_fabric(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    let joined = loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            return Ok(());
        }
        let allocation = allocation_of(&row)
            .ok_or_else(|| saga_action_failed(Error::internal("the instance has no placement")))?;
        match c.fabric_join(&row, &allocation.placement).await {
            Ok(None) => return Ok(()),
            Ok(Some(joined)) => break joined,
            Err(e @ (Error::InvalidRequest { .. } | Error::Conflict { .. })) => {
                let message = format!("The launch failed: {e}");
                c.instance_launch_failed(&row, &message).await;
                return Err(saga_action_failed(Error::unavailable(message)));
            }
            Err(e) if now_ms() < c.launch_deadline(&row) => {
                tracing::warn!(instance = %row.id, error = %e, "cannot join the GPU fabric; retrying");
                backoff.sleep().await;
            }
            Err(e) => {
                let message = format!(
                    "The launch failed: its GPU fabric addresses could not be given ({e}). \
                     Delete this instance and launch again."
                );
                c.instance_launch_failed(&row, &message).await;
                return Err(saga_action_failed(Error::unavailable(message)));
            }
        }
    };
    loop {
        // Listening before looking: a confirmation in between is not missed.
        let confirmation = c.fabric_confirmed.notified();
        tokio::pin!(confirmation);
        confirmation.as_mut().enable();
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            return Ok(());
        }
        let behind = match c.fabric_leaves_behind(&joined).await {
            Ok(behind) if behind.is_empty() => return Ok(()),
            Ok(behind) => behind.join(", "),
            Err(e) => e.to_string(),
        };
        if now_ms() >= c.launch_deadline(&row) {
            let message = format!(
                "The launch failed: rail leaves {behind} did not put its GPU fabric in place in \
                 time. Ask your provider to check their switch agents, then launch again."
            );
            c.instance_launch_failed(&row, &message).await;
            return Err(saga_action_failed(Error::unavailable(message)));
        }
        let _ = tokio::time::timeout(FABRIC_POLL, confirmation).await;
    }
}

/// EnsureVm (idempotent by VM id and generation), retrying transient errors until the
/// launch deadline; a refusal marks the launch failed with the host's reason.
async fn sic_ensure_vm(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut backoff = Backoff::default();
    loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            // Deleted or failed meanwhile: not this saga's to start.
            return Ok(());
        }
        let allocation = allocation_of(&row)
            .ok_or_else(|| saga_action_failed(Error::internal("the instance has no placement")))?;
        let host = &allocation.placement.host;
        let ports =
            c.datastore.port_views(row.id).await.map_err(|e| saga_action_failed(e.into()))?;
        let fabric =
            c.datastore.fabric_nics_of(row.id).await.map_err(|e| saga_action_failed(e.into()))?;
        let spec = crate::app::instances::vm_spec(&row, &allocation.placement, &ports, &fabric);
        let result = match c.agents.host(host) {
            Some(mut client) => client.ensure_vm(EnsureVmRequest { spec: Some(spec) }).await,
            None => Err(tonic::Status::unavailable("its host agent is not connected")),
        };
        let status = match result {
            Ok(_) => return Ok(()),
            Err(status) => status,
        };
        if transient(&status) && now_ms() < c.launch_deadline(&row) {
            tracing::warn!(instance = %row.id, %host, error = %status.message(), "EnsureVm failed; retrying");
            backoff.sleep().await;
            continue;
        }
        let message = format!(
            "The launch failed: host {host} refused to start it: {}. Delete this instance and \
             launch again.",
            status.message()
        );
        c.instance_launch_failed(&row, &message).await;
        return Err(saga_action_failed(Error::unavailable(message)));
    }
}

/// Until the host reports the VM running (the watch stream moves the instance on). Past the
/// launch deadline the launch fails and the saga unwinds. An instance that left
/// `provisioning` otherwise (the host reported it failed, or it was deleted) ends the saga:
/// what follows is the delete saga's.
async fn sic_wait_running(ctx: ActionContext) -> Result<(), ActionError> {
    let p: Params = ctx.saga_params()?;
    let c = controller(&ctx);
    let mut events = c.events.subscribe();
    loop {
        let row = c.instance_row(p.instance_id).await.map_err(saga_action_failed)?;
        if row.state != InstanceState::Provisioning.as_str() {
            return Ok(());
        }
        let left = c.launch_deadline(&row) - now_ms();
        if left <= 0 {
            let message = format!(
                "The VM did not start within {}; it was removed. Delete this instance and \
                 launch again.",
                minutes(c.provision_deadline)
            );
            tracing::warn!(instance = %row.id, name = %row.name, "launch passed its deadline; undoing");
            c.instance_launch_failed(&row, &message).await;
            return Err(saga_action_failed(Error::unavailable(message)));
        }
        // Woken by this instance's next change; a periodic look covers missed events.
        let wait = Duration::from_millis(left.min(2_000) as u64);
        let _ = tokio::time::timeout(wait, async {
            loop {
                match events.recv().await {
                    Ok(e) if matches!(&e.event, LiveEvent::Instance(v) if *v.id.as_untyped_uuid() == row.id) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    _ => {}
                }
            }
        })
        .await;
    }
}

/// Undo of the claim and of EnsureVm (see the module comment). Retries until the host
/// confirms: steno cannot unwind past an undo that fails.
async fn sic_undo_launch(ctx: ActionContext) -> Result<(), anyhow::Error> {
    let p: Params = ctx.saga_params()?;
    undo_launch(controller(&ctx), p.instance_id).await;
    Ok(())
}

async fn undo_launch(c: &Arc<Controller>, instance_id: InstanceUuid) {
    let mut backoff = Backoff::default();
    let mut shown = false;
    loop {
        match c.instance_row(instance_id).await {
            Ok(row) => {
                c.instance_launch_failed(
                    &row,
                    "The launch was undone. Delete this instance and launch again.",
                )
                .await;
                if c.instance_removed(instance_id).await {
                    return;
                }
                // Not confirmed at once: show the failure now; the release follows the host.
                if !shown && let Ok(row) = c.instance_row(instance_id).await {
                    c.publish_instance(&row);
                    shown = true;
                }
            }
            Err(Error::NotFound { .. }) => return,
            Err(e) => {
                tracing::warn!(instance = %instance_id, error = %e, "cannot read the instance to undo its launch")
            }
        }
        backoff.sleep().await;
    }
}
