//! Taking a VM off its host, and releasing what it held only once the host confirms it is
//! gone: RemoveVm answered `deleted`, or the host's watch stream (an event or a snapshot
//! without it) says so. Until then the VM may still run on its GPUs, so they stay claimed.
//!
//! The instance row records why the VM is to go (`vm_removal`): `delete` (the user deleted
//! it: it ends `deleted`) or `undo` (its launch was undone: it stays `failed`, with the
//! reason). Once the host confirms, `vm_removal` becomes `done` and the claims are released
//! in the same transaction. The saga that asked for the removal repeats RemoveVm until then.

use portal_types::ids::InstanceUuid;
use portal_types::views::{InstanceState, LiveEvent};
use uuid::Uuid;

use agent_proto::v1::VmState;

use crate::Controller;
use crate::app::instances::{host_of, remove_request};
use crate::datastore::entity::instance;

/// Why an instance's VM is to leave its host (the `vm_removal` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Removal {
    /// Deleted by a user: the instance ends `deleted`.
    Delete,
    /// Its launch was undone: the instance stays `failed` with the reason.
    Undo,
    /// The host confirmed the VM is gone; the instance holds nothing.
    Done,
}

impl Removal {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Removal::Delete => "delete",
            Removal::Undo => "undo",
            Removal::Done => "done",
        }
    }

    pub(crate) fn of(row: &instance::Model) -> Option<Removal> {
        match row.vm_removal.as_deref()? {
            "delete" => Some(Removal::Delete),
            "undo" => Some(Removal::Undo),
            "done" => Some(Removal::Done),
            _ => None,
        }
    }
}

/// Whether the host should no longer run this instance's VM (for VMs a host reports).
pub(crate) fn unwanted(row: &instance::Model) -> bool {
    row.state == InstanceState::Deleted.as_str() || Removal::of(row) == Some(Removal::Done)
}

/// The state an instance ends in once its host confirmed its VM gone: `deleted` for a
/// deletion, `failed` for an undone launch; `None` for a VM nobody asked to remove.
fn end_state(row: &instance::Model) -> Option<InstanceState> {
    match (InstanceState::parse(&row.state), Removal::of(row)) {
        (Some(InstanceState::Deleting), _)
        | (Some(InstanceState::Failed), Some(Removal::Delete)) => Some(InstanceState::Deleted),
        (Some(InstanceState::Failed), Some(Removal::Undo)) => Some(InstanceState::Failed),
        _ => None,
    }
}

impl Controller {
    /// A launch that is undone ends failed, with the first reason given (a later one
    /// does not overwrite it), and its VM is to be removed. A deleted or deleting instance
    /// is the delete's to finish. Not published yet: the undo shows it once the host has
    /// had a chance to confirm the removal, so pages see the failure with its GPUs released.
    pub(crate) async fn instance_launch_failed(&self, row: &instance::Model, message: &str) {
        let res = self.datastore.instance_mark_launch_failed(row.id, message).await;
        if let Err(e) = res {
            tracing::error!(instance = %row.id, error = %e, "cannot record the undo");
        }
    }

    /// Whether the instance's VM is confirmed gone and what it held released; if not yet,
    /// asks its host again (idempotent). For the sagas' removal steps.
    pub(crate) async fn instance_removed(&self, id: InstanceUuid) -> bool {
        let row = match self.datastore.instance_row(id).await {
            Ok(Some(row)) => row,
            Ok(None) => return true,
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "cannot read the instance");
                return false;
            }
        };
        if unwanted(&row) {
            return true;
        }
        Removal::of(&row).is_some() && self.instance_remove_vm(&row).await
    }

    /// Asks the host to remove the instance's VM; true when it confirmed at once and the
    /// instance was finished. A VM still stopping is confirmed by the watch stream; a failed
    /// call is repeated by the saga that asked.
    pub(crate) async fn instance_remove_vm(&self, row: &instance::Model) -> bool {
        let Some(host) = host_of(row) else {
            // Never placed: nothing runs anywhere.
            return self.instance_vm_gone(row.id).await;
        };
        let Some(mut client) = self.agents.host(&host) else {
            tracing::warn!(instance = %row.id, %host, "host agent not connected; removal waits");
            return false;
        };
        match client.remove_vm(remove_request(row)).await {
            Ok(status) if status.get_ref().state == VmState::Deleted as i32 => {
                self.instance_vm_gone(row.id).await
            }
            Ok(_) => false,
            Err(s) => {
                tracing::warn!(instance = %row.id, %host, error = %s.message(), "RemoveVm failed; retrying later");
                false
            }
        }
    }

    /// The host confirmed the instance's VM is gone: the instance ends as its removal
    /// intended (`deleted`, or `failed` for an undone launch) and its GPUs are released, in
    /// one transaction. True when this call finished it; a VM nobody asked to remove (a
    /// running one that vanished) is left to its caller.
    pub(crate) async fn instance_vm_gone(&self, id: Uuid) -> bool {
        let result = self.datastore.instance_finish_removal(id, end_state).await;
        match result {
            Ok(Some(row)) => {
                if let Some(placer) = self.placer.lock().await.as_mut() {
                    // Not placed in memory (never committed there) is fine: nothing to free.
                    let _ = placer.scheduler.release(&id.to_string());
                }
                tracing::info!(instance = %id, name = %row.name, state = %row.state, "VM gone from its host; resources released");
                self.publish_instance(&row);
                self.events.publish(None, LiveEvent::FleetChanged);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::error!(instance = %id, error = %e, "cannot record that the VM is gone");
                false
            }
        }
    }
}
