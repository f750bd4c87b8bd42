//! Instances: launch (claim in a batched transaction, see `claims`, then the
//! `instance_create` saga), delete (the `instance_delete` saga: RemoveVm, then release once
//! the host confirms, see `removal`), and the state changes host agents report.
//!
//! A launch stays `provisioning` until the host's watch stream says `running`.

use std::collections::HashSet;
use std::sync::Arc;

use agent_proto::v1::{FabricNic, RemoveVmRequest, VmNic, VmSpec, VmState, VmStatus};
use portal_types::Error;
use portal_types::ids::{GenericUuid, InstanceUuid};
use portal_types::network::PortView;
use portal_types::params::{self, PowerAction};
use portal_types::views::{
    InstanceDetail, InstanceGpu, InstanceNic, InstanceState, InstanceView, LiveEvent, TimelineEntry,
};

use crate::Controller;
use crate::app::claims::Claimed;
use crate::app::fleet::HostFacts;
use crate::app::scheduling::allocation_of;
use crate::authz::{Action, Actor};
use crate::context::OpContext;
use crate::datastore::entity::{fabric_nic, instance, saga_node_event};
use crate::datastore::gpu_fabric::rail_net;
use crate::datastore::saga::node_names;
use crate::datastore::{now_ms, rfc3339};
use portal_scheduler::Placement;

fn view(row: &instance::Model) -> InstanceView {
    InstanceView {
        id: InstanceUuid::from_untyped_uuid(row.id),
        name: row.name.clone(),
        instance_type: row.instance_type.clone(),
        state: InstanceState::parse(&row.state).unwrap_or(InstanceState::Failed),
        gpu_count: row.gpu_count as u32,
        gpu_model: row.gpu_model.clone(),
        vcpus: row.vcpus as u32,
        memory_gib: row.memory_gib as u32,
        host_name: host_of(row),
        image: row.image.clone(),
        ssh_keys: recorded_keys(row).into_iter().map(|(name, _)| name).collect(),
        message: row.message.clone(),
        created_at: rfc3339(row.created_at),
    }
}

/// The image file of instances launched before the image catalog existed.
const LEGACY_IMAGE: &str = "ubuntu-24.04-cuda-12.8.qcow2";

/// What the host needs to make the VM: its placement, image, config drive, NICs (one per
/// tenant port, `ports`) and GPU fabric addresses (`fabric`).
pub(crate) fn vm_spec(
    row: &instance::Model,
    placement: &Placement,
    ports: &[PortView],
    fabric: &[fabric_nic::Model],
) -> VmSpec {
    VmSpec {
        vm_id: row.id.to_string(),
        name: row.name.clone(),
        generation: row.generation as u64,
        partition_id: placement.partition.map(u32::from),
        gpu_module_ids: placement.gpus.iter().map(|&m| u32::from(m)).collect(),
        nic_indices: placement.nics.iter().map(|&n| u32::from(n)).collect(),
        vcpu_pins: placement.vcpus.clone(),
        emulator_cpu: placement.emulator_cpu,
        numa_nodes: placement.numa_nodes.clone(),
        memory_mib: u64::from(placement.memory_gib()) * 1024,
        disk_gib: row.disk_gib as u64,
        image: row.image_source.clone().unwrap_or_else(|| LEGACY_IMAGE.to_owned()),
        // The guest's host name is the instance's (a DNS label, see `params::validate_name`).
        hostname: row.name.clone(),
        ssh_authorized_keys: recorded_keys(row).into_iter().map(|(_, line)| line).collect(),
        user_data: row.user_data.clone().unwrap_or_default(),
        nics: ports.iter().map(vm_nic).collect(),
        fabric_nics: fabric
            .iter()
            .map(|n| FabricNic {
                nic_index: n.nic_index as u32,
                mac: n.mac.clone(),
                ip: n.ip.clone(),
                prefix_len: u32::from(rail_net(n.rail as u32).prefix()),
            })
            .collect(),
    }
}

/// A port as the guest's NIC: its address with the subnet's prefix length and gateway.
fn vm_nic(port: &PortView) -> VmNic {
    let prefix_len = port.cidr.split_once('/').and_then(|(_, p)| p.parse().ok()).unwrap_or(32);
    VmNic {
        port_id: port.id.to_string(),
        mac: port.mac.clone(),
        ip: port.ip.clone(),
        prefix_len,
        gateway: port.gateway.clone(),
    }
}

/// The SSH keys (name, public key line) the launch recorded with the instance.
fn recorded_keys(row: &instance::Model) -> Vec<(String, String)> {
    row.ssh_keys.as_deref().and_then(|json| serde_json::from_str(json).ok()).unwrap_or_default()
}

/// Why a power action is not possible now, with what is.
fn power_refused(name: &str, state: InstanceState, action: PowerAction) -> Error {
    let allowed: Vec<&str> = state.power_actions().iter().map(|a| a.as_str()).collect();
    let now = if allowed.is_empty() {
        match state {
            InstanceState::Provisioning | InstanceState::Starting | InstanceState::Rebooting => {
                "wait until it runs".to_owned()
            }
            _ => "delete it instead".to_owned(),
        }
    } else {
        format!("you can {} it now", allowed.join(" or "))
    };
    Error::Conflict {
        message: format!("{name} is {state}, so it cannot {}; {now}.", action.as_str()),
    }
}

/// RemoveVm at the row's generation: a launch retry still in flight (at the generation of
/// the launch, not above) cannot bring the VM back afterwards.
pub(crate) fn remove_request(row: &instance::Model) -> RemoveVmRequest {
    RemoveVmRequest { vm_id: row.id.to_string(), generation: row.generation.max(0) as u64 }
}

/// The host an instance was placed on, from its placement (no database read; host names
/// never change).
pub(crate) fn host_of(row: &instance::Model) -> Option<String> {
    allocation_of(row).map(|a| a.placement.host)
}

/// RFC 3339 with exactly three fractional digits, so that the timeline's times sort as text
/// and line up in the table.
fn rfc3339_ms(ms: i64) -> String {
    let whole = rfc3339(ms - ms.rem_euclid(1000));
    match whole.strip_suffix('Z') {
        Some(seconds) => format!("{seconds}.{:03}Z", ms.rem_euclid(1000)),
        None => whole,
    }
}

/// Where a saga's event falls among others recorded in the same millisecond.
fn event_rank(event: &str) -> u8 {
    match event {
        "started" => 0,
        "succeeded" | "failed" => 1,
        "undo_started" => 2,
        _ => 3,
    }
}

/// The steps of an instance's sagas, saga by saga (oldest first), each in the order its
/// events happened; start and end nodes are steno's, not steps, and are left out.
fn timeline(
    sagas: Vec<(crate::datastore::entity::saga::Model, Vec<saga_node_event::Model>)>,
) -> Vec<TimelineEntry> {
    let mut out = Vec::new();
    for (saga, mut events) in sagas {
        let dag: serde_json::Value = serde_json::from_str(&saga.dag).unwrap_or_default();
        let names = node_names(&dag);
        events.sort_by_key(|e| (e.at, e.node_id, event_rank(&e.event_type)));
        out.extend(events.into_iter().filter_map(|e| {
            let step = names.get(usize::try_from(e.node_id).ok()?)?.clone()?;
            Some(TimelineEntry {
                saga: saga.name.clone(),
                step,
                event: e.event_type,
                at: rfc3339_ms(e.at),
            })
        }));
    }
    out
}

impl Controller {
    /// One instance of the actor's tenant with its placement (GPUs with their PCI
    /// addresses, NICs, NUMA nodes, pinned CPUs), image and default user, SSH keys and the
    /// steps of its sagas. Another tenant's instance is not found.
    pub async fn instance_get(
        &self,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<InstanceDetail, Error> {
        opctx.authorize(Action::InstanceRead)?;
        let rows = self.datastore.instance_get(opctx, id).await?;
        let sagas = self.datastore.instance_timeline(opctx, id).await?;
        let placement = allocation_of(&rows.instance).map(|a| a.placement);
        let facts: Option<HostFacts> =
            rows.host.as_ref().and_then(|h| serde_json::from_str(&h.inventory).ok());
        let gpus = rows
            .gpus
            .iter()
            .map(|g| InstanceGpu {
                module_id: g.module_id as u32,
                model: g.model.clone(),
                pci_address: g.pci_address.clone(),
                numa_node: g.numa_node as u32,
            })
            .collect();
        let fabric = self.datastore.fabric_nic_states(rows.instance.id).await?;
        let nics = match (&placement, &facts) {
            (Some(p), Some(f)) => p
                .nics
                .iter()
                .filter_map(|&i| f.nics.iter().find(|n| n.index == u32::from(i)))
                .map(|n| {
                    let joined = fabric.iter().find(|(f, _)| f.nic_index as u32 == n.index);
                    InstanceNic {
                        index: n.index,
                        name: n.name.clone(),
                        pci_address: n.pci_address.clone(),
                        rail: n.rail,
                        fabric_address: joined
                            .map(|(f, _)| format!("{}/{}", f.ip, rail_net(f.rail as u32).prefix())),
                        fabric_leaf: joined.map(|(f, _)| f.leaf.clone()),
                        fabric_state: joined.map(|(_, state)| *state),
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let instance = view(&rows.instance);
        let ports = self.datastore.port_views(rows.instance.id).await?;
        let default_user = rows.image.map(|i| i.default_user);
        // Its public IP where it has one; otherwise reachable from inside the VPC only (a
        // bastion or another VM).
        let ssh_command = ports.first().zip(default_user.as_ref()).map(|(port, user)| {
            format!("ssh {user}@{}", port.public_ip.as_deref().unwrap_or(&port.ip))
        });
        Ok(InstanceDetail {
            host: placement.as_ref().map(|p| p.host.clone()),
            gpus,
            nics,
            numa_nodes: placement.as_ref().map(|p| p.numa_nodes.clone()).unwrap_or_default(),
            vcpu_pins: placement.as_ref().map(|p| p.vcpus.clone()).unwrap_or_default(),
            emulator_cpu: placement.as_ref().map(|p| p.emulator_cpu),
            partition: placement.as_ref().and_then(|p| p.partition).map(u32::from),
            image: instance.image.clone(),
            default_user,
            ssh_keys: instance.ssh_keys.clone(),
            ports,
            ssh_command,
            timeline: timeline(sagas),
            instance,
        })
    }

    /// The instances of the actor's tenant, newest first, without deleted ones.
    pub async fn instance_list(&self, opctx: &OpContext) -> Result<Vec<InstanceView>, Error> {
        let rows = self.datastore.instance_list(opctx).await?;
        Ok(rows.iter().map(view).collect())
    }

    /// Launches one VM, or a group of `count` VMs (`name-1` … `name-N`) placed together
    /// (`cluster`: one scalable unit) or apart (`spread`: distinct hosts), all or nothing.
    /// Returns as soon as the claims are committed, in state `provisioning`.
    pub async fn instance_create(
        self: &Arc<Self>,
        opctx: &OpContext,
        params: &params::InstanceCreate,
    ) -> Result<Vec<InstanceView>, Error> {
        match self.instance_create_unaudited(opctx, params).await {
            // A launch that claimed was recorded in its claim's transaction.
            Ok(views) => Ok(views),
            refused => {
                self.audited(opctx, "instance.create", "instance", &params.name, refused).await
            }
        }
    }

    async fn instance_create_unaudited(
        self: &Arc<Self>,
        opctx: &OpContext,
        params: &params::InstanceCreate,
    ) -> Result<Vec<InstanceView>, Error> {
        let actor = opctx.authorize(Action::InstanceCreate)?;
        params.validate()?;
        self.credit_check(actor.tenant_id).await?;
        let ssh_keys = self.ssh_keys_for_launch(opctx, &params.ssh_keys).await?;
        let network =
            self.network_for_launch(opctx, params.subnet, &params.security_groups).await?;
        let claimed = self.claims.claim(opctx, actor, params, ssh_keys, network).await?;
        Ok(claimed.iter().map(|(row, _, _)| view(row)).collect())
    }

    /// After a claim commits: tell the tenant's pages and start each VM's launch saga (its
    /// row is committed with the claim: if this replica dies first, another resumes it).
    pub(crate) async fn instances_claimed(self: &Arc<Self>, actor: &Actor, claimed: &[Claimed]) {
        // Repeats of an earlier launch (same idempotency key) changed nothing.
        let new: Vec<_> =
            claimed.iter().filter_map(|(r, h, s)| Some((r, h, s.as_ref()?))).collect();
        if new.is_empty() {
            return;
        }
        for (row, host, saga) in new {
            tracing::info!(instance = %row.id, name = %row.name, host = %host, "instance claimed");
            self.events.publish(Some(actor.tenant_id), LiveEvent::Instance(Box::new(view(row))));
            if let Err(e) = self.sagas.start(self, saga.clone()).await {
                tracing::error!(instance = %row.id, error = %e, "cannot start the launch saga; it resumes with the next adoption");
            }
        }
        self.events.publish(None, LiveEvent::FleetChanged);
    }

    /// An instance by id (for sagas: they carry ids, not rows).
    pub(crate) async fn instance_row(&self, id: InstanceUuid) -> Result<instance::Model, Error> {
        self.datastore.instance_row(id).await?.ok_or_else(|| Error::not_found("instance", id))
    }

    /// A saga's first node: the row its transaction wrote is there. Database errors are
    /// retried; only a missing row fails it.
    pub(crate) async fn instance_confirm(&self, id: InstanceUuid) -> Result<(), Error> {
        let mut backoff = crate::sagas::Backoff::default();
        loop {
            match self.instance_row(id).await {
                Err(e @ Error::NotFound { .. }) => return Err(e),
                Err(e) => {
                    tracing::warn!(instance = %id, error = %e, "cannot read the instance; retrying")
                }
                Ok(_) => return Ok(()),
            }
            backoff.sleep().await;
        }
    }

    /// When a launch that is still `provisioning` fails (ms).
    pub(crate) fn launch_deadline(&self, row: &instance::Model) -> i64 {
        row.created_at + self.provision_deadline.as_millis() as i64
    }

    pub(crate) fn publish_instance(&self, row: &instance::Model) {
        let v = view(row);
        self.events.publish(
            Some(portal_types::ids::TenantUuid::from_untyped_uuid(row.tenant_id)),
            LiveEvent::Instance(Box::new(v)),
        );
    }

    /// Deletes an instance of the actor's tenant: the host agent removes the VM, and once the
    /// host confirms it is gone the claims are released. Deleting twice is fine.
    pub async fn instance_delete(
        self: &Arc<Self>,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<InstanceView, Error> {
        let result = self.instance_delete_unaudited(opctx, id).await;
        self.audited(opctx, "instance.delete", "instance", &id.to_string(), result).await
    }

    async fn instance_delete_unaudited(
        self: &Arc<Self>,
        opctx: &OpContext,
        id: InstanceUuid,
    ) -> Result<InstanceView, Error> {
        let actor = opctx.authorize(Action::InstanceDelete)?;
        let row = self.datastore.instance_fetch_for(opctx, id, Action::InstanceDelete).await?;
        let requested_at = now_ms();
        let saga = crate::sagas::instance_delete::new(&crate::sagas::instance_delete::Params {
            opctx: opctx.for_saga(),
            instance_id: InstanceUuid::from_untyped_uuid(row.id),
            requested_at,
        })?;
        // The mark and the saga row in one transaction: once committed, the delete finishes
        // even if this replica dies (another resumes the saga).
        let saga_row = self.sagas.row(&saga)?;
        let row = self.datastore.instance_mark_deleting(&row, requested_at, saga_row).await?;
        tracing::info!(instance = %row.id, name = %row.name, "instance delete requested");
        let out = view(&row);
        self.events.publish(Some(actor.tenant_id), LiveEvent::Instance(Box::new(out.clone())));
        if let Err(e) = self.sagas.start(self, saga).await {
            tracing::error!(instance = %row.id, error = %e, "cannot start the delete saga; it resumes with the next adoption");
        }
        Ok(out)
    }

    /// Stops, starts, reboots or powers off an instance (see `sagas::instance_power`):
    /// answers with its transitional state; the host's watch stream brings the end state.
    pub async fn instance_power(
        self: &Arc<Self>,
        opctx: &OpContext,
        id: InstanceUuid,
        action: PowerAction,
    ) -> Result<InstanceView, Error> {
        let result = self.instance_power_unaudited(opctx, id, action).await;
        let what = format!("instance.{}", action.as_str());
        self.audited(opctx, &what, "instance", &id.to_string(), result).await
    }

    async fn instance_power_unaudited(
        self: &Arc<Self>,
        opctx: &OpContext,
        id: InstanceUuid,
        action: PowerAction,
    ) -> Result<InstanceView, Error> {
        let actor = opctx.authorize(Action::InstancePower)?;
        let row = self.datastore.instance_fetch_for(opctx, id, Action::InstancePower).await?;
        let current = InstanceState::parse(&row.state).unwrap_or(InstanceState::Failed);
        if !current.power_actions().contains(&action) {
            return Err(power_refused(&row.name, current, action));
        }
        let marked = match action {
            PowerAction::Stop | PowerAction::PowerOff => InstanceState::Stopping,
            PowerAction::Start => InstanceState::Starting,
            PowerAction::Reboot => InstanceState::Rebooting,
        };
        let requested_at = now_ms();
        let saga = crate::sagas::instance_power::new(&crate::sagas::instance_power::Params {
            opctx: opctx.for_saga(),
            instance_id: id,
            action,
            previous: current,
            marked,
            requested_at,
        })?;
        let saga_row = self.sagas.row(&saga)?;
        let Some(row) =
            self.datastore.instance_mark_power(&row, marked, requested_at, saga_row).await?
        else {
            return Err(Error::Conflict {
                message: format!("{} changed meanwhile; look at it again and retry.", row.name),
            });
        };
        tracing::info!(instance = %row.id, name = %row.name, action = action.as_str(), "instance power change requested");
        let out = view(&row);
        self.events.publish(Some(actor.tenant_id), LiveEvent::Instance(Box::new(out.clone())));
        if let Err(e) = self.sagas.start(self, saga).await {
            tracing::error!(instance = %row.id, error = %e, "cannot start the power saga; it resumes with the next adoption");
        }
        Ok(out)
    }

    /// A host agent reported a VM's state (from its watch stream); ignored unless the VM is
    /// placed on that host.
    pub(crate) async fn apply_vm_status(&self, host_name: &str, status: VmStatus) {
        let reported = VmState::try_from(status.state).unwrap_or(VmState::Unspecified);
        if reported == VmState::Deleted {
            self.stray_gone(host_name, &status.vm_id);
        }
        let Ok(id) = status.vm_id.parse::<InstanceUuid>() else {
            tracing::warn!(host = %host_name, vm = %status.vm_id, "agent reported a VM id that is not a UUID");
            return;
        };
        // Provisioning and stopping (being removed) echo what we asked for.
        if matches!(reported, VmState::Provisioning | VmState::Stopping | VmState::Unspecified) {
            return;
        }
        let row = match self.datastore.instance_row(id).await {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.stray_seen(host_name, &status, None);
                return;
            }
            Err(e) => {
                tracing::error!(vm = %id, error = %e, "cannot read instance");
                return;
            }
        };
        // Only the VM's own host speaks for it: another host reporting the same id (a
        // misbehaving or compromised agent) must not fail or delete someone's instance.
        let placed_on = host_of(&row);
        if placed_on.as_deref() != Some(host_name) {
            tracing::warn!(host = %host_name, vm = %id, placed_on = placed_on.as_deref().unwrap_or("nowhere"), "ignored a VM status from a host the VM is not placed on");
            if reported != VmState::Deleted {
                self.stray_seen(host_name, &status, Some(&row));
            }
            return;
        }
        if reported != VmState::Deleted && crate::app::removal::unwanted(&row) {
            self.stray_seen(host_name, &status, Some(&row));
            return;
        }
        let current = InstanceState::parse(&row.state).unwrap_or(InstanceState::Failed);
        // Where the power states the host reports take an instance that is on it.
        let powered = match reported {
            VmState::Running => Some(InstanceState::Running),
            VmState::ShuttingDown => Some(InstanceState::Stopping),
            VmState::Stopped => Some(InstanceState::Stopped),
            VmState::Starting => Some(InstanceState::Starting),
            VmState::Rebooting => Some(InstanceState::Rebooting),
            _ => None,
        };
        // A report from before the host took our request (a snapshot after a reconnect, an
        // event in flight) must not undo the transition the request started.
        let stale = match (current, reported) {
            (InstanceState::Stopping, VmState::Running) => status.message.is_empty(),
            (InstanceState::Starting, VmState::Stopped | VmState::ShuttingDown) => true,
            _ => false,
        };
        match (current, reported) {
            (InstanceState::Provisioning, VmState::Running) => {
                self.instance_set_state(&row, InstanceState::Running, None).await;
            }
            (current, _)
                if current.on_host() && !stale && powered.is_some_and(|p| p != current) =>
            {
                // A refused stop or reboot comes back as running, with the host's reason.
                let message = (!status.message.is_empty()).then(|| status.message.clone());
                if let Some(state) = powered {
                    self.instance_set_state(&row, state, message).await;
                }
            }
            (current, VmState::Failed)
                if current == InstanceState::Provisioning || current.on_host() =>
            {
                let message = format!(
                    "The host reported the VM failed: {}. Delete this instance and launch again.",
                    status.message
                );
                self.instance_set_state(&row, InstanceState::Failed, Some(message)).await;
            }
            (InstanceState::Deleting | InstanceState::Failed, VmState::Deleted) => {
                // A failed one only if its removal was asked for (see `removal`).
                self.instance_vm_gone(row.id).await;
            }
            (current, VmState::Deleted) if current.on_host() => {
                let message =
                    "The VM disappeared from its host. Delete this instance and launch again.";
                self.instance_set_state(&row, InstanceState::Failed, Some(message.into())).await;
            }
            _ => {}
        }
    }

    /// After a host's full snapshot (`listed`: the VM ids it holds): instances the database
    /// places on the host that it did not list are gone, e.g. the host restarted while no
    /// control plane watched. A running one has failed; a deleting one, or a failed one whose
    /// removal was asked for, is finished and its claims released. Provisioning ones are left
    /// to their launch saga (and its deadline), and so is any row changed since `asked_at`.
    pub(crate) async fn reconcile_host_snapshot(
        &self,
        host_name: &str,
        listed: &HashSet<String>,
        asked_at: i64,
    ) {
        self.strays_listed(host_name, listed);
        let rows = self.datastore.instances_expected_on_host(host_name).await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(host = %host_name, error = %e, "cannot reconcile the host's snapshot");
                return;
            }
        };
        // A row that changed since the snapshot was asked for (a VM another replica started
        // meanwhile) may be missing from it rightly: only older rows are judged.
        let missing = rows
            .into_iter()
            .filter(|r| r.updated_at < asked_at && !listed.contains(&r.id.to_string()));
        for row in missing {
            tracing::warn!(instance = %row.id, name = %row.name, host = %host_name, state = %row.state, "VM missing from its host's snapshot");
            let on_host = InstanceState::parse(&row.state).is_some_and(InstanceState::on_host);
            if !on_host {
                self.instance_vm_gone(row.id).await;
            } else {
                let message = "The VM is no longer on its host (the host may have restarted \
                               while the portal was not watching). Delete this instance and \
                               launch again.";
                self.instance_set_state(&row, InstanceState::Failed, Some(message.into())).await;
            }
        }
    }

    /// Compare-and-set on the state, so a late event cannot overwrite a newer state.
    pub(crate) async fn instance_set_state(
        &self,
        row: &instance::Model,
        state: InstanceState,
        message: Option<String>,
    ) {
        let updated_at = now_ms();
        let res = self
            .datastore
            .instance_set_state_if(row.id, &row.state, state, message.clone(), updated_at)
            .await;
        match res {
            Ok(true) => {
                tracing::info!(instance = %row.id, name = %row.name, from = %row.state, to = %state, "instance state changed");
                let updated = instance::Model {
                    state: state.as_str().to_owned(),
                    message,
                    updated_at,
                    ..row.clone()
                };
                self.publish_instance(&updated);
            }
            Ok(false) => {}
            Err(e) => {
                tracing::error!(instance = %row.id, error = %e, "cannot record instance state")
            }
        }
    }
}
