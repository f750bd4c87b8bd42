//! Stray VMs: VMs a host runs that the database does not want there (no instance row, a
//! deleted one, one whose removal the host already confirmed, or one placed on another
//! host). They may hold GPUs the scheduler believes free, so provider admins see them
//! ([`Controller::stray_vm_list`]) and the reconciler removes them after a grace period
//! (`ControllerConfig::stray_grace`), which leaves an operator time to look first.
//!
//! Each replica learns them from its own watch streams and keeps them in memory: a restart
//! learns them again from the hosts' snapshots (and the grace period starts again).

use std::collections::BTreeMap;
use std::sync::Arc;

use agent_proto::v1::{RemoveVmRequest, VmState, VmStatus};
use portal_types::Error;
use portal_types::ids::InstanceUuid;

use crate::Controller;
use crate::authz::Action;
use crate::context::OpContext;
use crate::datastore::entity::instance;
use crate::datastore::{now_ms, rfc3339};

/// A VM a host runs that the database does not want there, as provider admins see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrayVm {
    pub host: String,
    pub vm_id: String,
    /// The state the host last reported (`running`, `failed`).
    pub state: String,
    /// RFC 3339: when this replica first saw it.
    pub since: String,
}

/// What a replica remembers of one stray VM.
#[derive(Debug, Clone)]
pub(crate) struct Stray {
    since_ms: i64,
    /// Removing at this generation also refuses a late EnsureVm of it.
    generation: u64,
    state: VmState,
}

/// Stray VMs by (host, VM id).
pub(crate) type Strays = std::sync::Mutex<BTreeMap<(String, String), Stray>>;

fn state_name(state: VmState) -> &'static str {
    match state {
        VmState::Running => "running",
        VmState::Failed => "failed",
        VmState::Provisioning => "provisioning",
        VmState::Stopping => "being removed",
        VmState::ShuttingDown => "shutting down",
        VmState::Stopped => "stopped",
        VmState::Starting => "starting",
        VmState::Rebooting => "rebooting",
        VmState::Deleted | VmState::Unspecified => "unknown",
    }
}

impl Controller {
    fn strays(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), Stray>> {
        self.strays.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `host` reported a VM the database does not want there (`row`: its instance, if any).
    pub(crate) fn stray_seen(&self, host: &str, status: &VmStatus, row: Option<&instance::Model>) {
        let generation = status.generation.max(row.map_or(0, |r| r.generation.max(0) as u64));
        let state = VmState::try_from(status.state).unwrap_or(VmState::Unspecified);
        let mut strays = self.strays();
        let key = (host.to_owned(), status.vm_id.clone());
        match strays.get_mut(&key) {
            Some(known) => {
                known.generation = known.generation.max(generation);
                known.state = state;
            }
            None => {
                tracing::warn!(%host, vm = %status.vm_id, instance_state = row.map_or("none", |r| r.state.as_str()), "host runs a VM the database does not want there; it is removed after the grace period");
                strays.insert(key, Stray { since_ms: now_ms(), generation, state });
            }
        }
    }

    /// `host` reported the VM deleted.
    pub(crate) fn stray_gone(&self, host: &str, vm_id: &str) {
        self.strays().remove(&(host.to_owned(), vm_id.to_owned()));
    }

    /// `host`'s full snapshot listed these VMs: strays it did not list are gone.
    pub(crate) fn strays_listed(&self, host: &str, listed: &std::collections::HashSet<String>) {
        self.strays().retain(|(h, vm), _| h != host || listed.contains(vm));
    }

    /// VMs hosts run that the database does not want there (provider admins), by host.
    pub async fn stray_vm_list(&self, opctx: &OpContext) -> Result<Vec<StrayVm>, Error> {
        opctx.authorize(Action::FleetRead)?;
        Ok(self
            .strays()
            .iter()
            .map(|((host, vm_id), s)| StrayVm {
                host: host.clone(),
                vm_id: vm_id.clone(),
                state: state_name(s.state).to_owned(),
                since: rfc3339(s.since_ms),
            })
            .collect())
    }

    /// Removes the strays seen longer ago than the grace period (one reconciler pass).
    pub(crate) async fn strays_remove(self: &Arc<Self>) {
        let before = now_ms() - self.stray_grace.as_millis() as i64;
        let due: Vec<((String, String), u64)> = self
            .strays()
            .iter()
            .filter(|(_, s)| s.since_ms <= before)
            .map(|(key, s)| (key.clone(), s.generation))
            .collect();
        for ((host, vm_id), generation) in due {
            match self.still_stray(&host, &vm_id).await {
                Some(true) => {}
                Some(false) => {
                    self.stray_gone(&host, &vm_id);
                    continue;
                }
                None => continue,
            }
            let Some(mut client) = self.agents.host(&host) else { continue };
            tracing::warn!(%host, vm = %vm_id, "removing a VM the database does not want there");
            match client.remove_vm(RemoveVmRequest { vm_id: vm_id.clone(), generation }).await {
                Ok(status) if status.get_ref().state == VmState::Deleted as i32 => {
                    self.stray_gone(&host, &vm_id);
                }
                // Stopping: the watch stream reports it deleted.
                Ok(_) => {}
                Err(s) => {
                    tracing::warn!(%host, vm = %vm_id, error = %s.message(), "cannot remove a stray VM; retrying later");
                }
            }
        }
    }

    /// Read again just before removing: whether the database still does not want the VM
    /// there; `None` when unsure (a database error), to look again at the next pass.
    async fn still_stray(&self, host: &str, vm_id: &str) -> Option<bool> {
        let Ok(id) = vm_id.parse::<InstanceUuid>() else { return Some(true) };
        match self.datastore.instance_row(id).await {
            Ok(None) => Some(true),
            Ok(Some(row)) => Some(
                crate::app::removal::unwanted(&row)
                    || crate::app::instances::host_of(&row).as_deref() != Some(host),
            ),
            Err(e) => {
                tracing::warn!(%host, vm = %vm_id, error = %e, "cannot check a stray VM");
                None
            }
        }
    }
}
