//! A VM's port on its DPU: made by the create saga (an address of the launch's subnet, its
//! security groups), sent to the DPU of the VM's host, kept up to date as rules and group
//! members change (the port reconciler, `background::ports`), and removed by the delete
//! saga. A host without a DPU (the real CPU-only host of a lab) gets the address but no
//! enforcement; its ports say "no DPU".

use agent_proto::AgentKind;
use agent_proto::v1 as pb;
use portal_types::Error;
use portal_types::ids::GenericUuid;
use uuid::Uuid;

use crate::Controller;
use crate::backoff::Backoff;
use crate::context::OpContext;
use crate::datastore::audit::AuditRecord;
use crate::datastore::entity::{instance, port};
use crate::datastore::fleet::BootRecord;
use crate::datastore::port::{PortRequest, PortWiring};

impl Controller {
    /// Makes the instance's port on `host` (idempotent: an existing port is returned): the
    /// subnet and groups its launch recorded, the tenant's defaults otherwise.
    pub(crate) async fn port_create(
        &self,
        opctx: &OpContext,
        row: &instance::Model,
        host: &str,
    ) -> Result<port::Model, Error> {
        if let Some(existing) = self.datastore.port_of_instance(row.id).await? {
            return Ok(existing);
        }
        let defaults = self.datastore.network_defaults(opctx).await?;
        let subnet_id = row.subnet_id.unwrap_or(defaults.subnet.into_untyped_uuid());
        let mut groups: Vec<Uuid> = row
            .security_groups
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default();
        if groups.is_empty() {
            groups.push(defaults.group.into_untyped_uuid());
        }
        let request = PortRequest {
            instance_id: row.id,
            tenant_id: row.tenant_id,
            subnet_id,
            groups,
            dpu_name: self.datastore.dpu_of_host(host).await?,
        };
        let port = self.datastore.port_allocate(&request).await?;
        // Its VPC may be new behind its host's leaves.
        self.network_changed.notify_one();
        Ok(port)
    }

    /// Sends the port's latest generation to its DPU (EnsurePort, idempotent) and records the
    /// DPU's confirmation. A port without a DPU has nothing to send.
    pub(crate) async fn port_push(&self, port: port::Model) -> Result<(), tonic::Status> {
        let Some(dpu) = port.dpu_name.clone() else { return Ok(()) };
        let mut client = self.agents.dpu(&dpu).ok_or_else(|| {
            tonic::Status::unavailable(format!("DPU agent {dpu} is not connected"))
        })?;
        let wiring = self
            .datastore
            .port_wiring(port)
            .await
            .map_err(|e| tonic::Status::unavailable(e.detail()))?;
        let (id, generation) = (wiring.port.id, wiring.port.generation);
        let sent =
            client.ensure_port(pb::EnsurePortRequest { spec: Some(port_spec(&wiring)) }).await;
        let answered = match sent {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                // Only a generation conflict is settled by a newer generation; another refusal
                // (a DPU without an uplink for a public IP) is retried as it is, with backoff.
                let conflict = status.code() == tonic::Code::FailedPrecondition
                    && status.message().contains("generation");
                if !conflict {
                    return Err(status);
                }
                // Two senders (the saga and the reconciler) built the same generation at
                // different moments, a group's members changing in between: a new generation,
                // built from the rules as they are now, settles it.
                self.datastore
                    .port_bump(id)
                    .await
                    .map_err(|e| tonic::Status::unavailable(e.detail()))?;
                self.network_changed.notify_one();
                return Err(tonic::Status::unavailable(format!(
                    "DPU {dpu} holds another version of the port ({}); sending a newer one",
                    status.message()
                )));
            }
        };
        self.datastore
            .port_mark_applied(id, generation, &answered.boot_id)
            .await
            .map_err(|e| tonic::Status::unavailable(e.detail()))?;
        Ok(())
    }

    /// Removes the port from its DPU (RemovePort, idempotent).
    pub(crate) async fn port_unplug(&self, port: &port::Model) -> Result<(), tonic::Status> {
        let Some(dpu) = &port.dpu_name else { return Ok(()) };
        let mut client = self.agents.dpu(dpu).ok_or_else(|| {
            tonic::Status::unavailable(format!("DPU agent {dpu} is not connected"))
        })?;
        client
            .remove_port(pb::RemovePortRequest {
                port_id: port.id.to_string(),
                // Port ids are never reused: fence off every later EnsurePort, whatever
                // generation a rule change gave it meanwhile.
                generation: i64::MAX as u64,
            })
            .await?;
        Ok(())
    }

    /// The instance's port, if it has one.
    pub(crate) async fn port_of(&self, instance_id: Uuid) -> Result<Option<port::Model>, Error> {
        Ok(self.datastore.port_of_instance(instance_id).await?)
    }

    /// Removes the instance's port from its DPU, retrying until the DPU answers (an undo and
    /// a delete may not give up; a port without a DPU has nothing to remove).
    pub(crate) async fn port_remove_from_dpu(&self, instance_id: Uuid) {
        let mut backoff = Backoff::default();
        loop {
            let error = match self.port_of(instance_id).await {
                Ok(None) => return,
                Ok(Some(port)) => match self.port_unplug(&port).await {
                    Ok(()) => return,
                    Err(status) => status.message().to_owned(),
                },
                Err(e) => e.to_string(),
            };
            tracing::warn!(instance = %instance_id, %error, "RemovePort failed; retrying");
            backoff.sleep().await;
        }
    }

    /// Deletes the instance's port from the database (its address is free again).
    pub(crate) async fn port_release(&self, instance_id: Uuid) -> Result<(), Error> {
        if self.datastore.port_release(instance_id).await?.is_some() {
            // Groups naming the port's groups lost a member.
            self.network_changed.notify_one();
        }
        Ok(())
    }

    /// A DPU or switch agent answered with its boot id (attached, or its watch stream
    /// opened again). The one recorded: it holds what it was sent, nothing to do. Its first:
    /// what it holds is unknown, so it is sent everything. Another: it restarted (agents
    /// keep nothing across a restart), so it is sent everything the database gives it, no
    /// more, and provider admins find the drift in the audit log (`dpu.restarted`,
    /// `switch.restarted`).
    /// Whether it was the agent on record (nothing sent).
    pub(crate) async fn network_agent_booted(
        &self,
        kind: AgentKind,
        id: &str,
        boot_id: &str,
    ) -> bool {
        let record = match self.datastore.agent_boot_record(kind, id, boot_id).await {
            Ok(BootRecord::Same) => return true,
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(agent = %id, %kind, error = %e, "cannot record the agent's boot id; sending it everything");
                BootRecord::First
            }
        };
        let replayed = self.network_replay(kind, id).await;
        if record != BootRecord::Restarted {
            return false;
        }
        let what = if kind == AgentKind::Dpu { "ports" } else { "tenant VPCs" };
        let outcome = match replayed {
            Ok(n) => format!("restarted holding none of its {n} {what}; all sent again"),
            Err(e) => format!("restarted; its {what} could not be marked for sending: {e}"),
        };
        tracing::warn!(agent = %id, %kind, %outcome, "agent restarted");
        self.audit_agent(kind, "restarted", id, outcome).await;
        false
    }

    /// Compares the ports DPU `id` holds with the database, for an agent that kept running
    /// (a restart is the boot id's business): a port it confirmed but no longer holds is
    /// sent again; one it holds that the database does not have is removed. Provider admins
    /// find either in the audit log (`dpu.drift`). The database is read before the DPU, so a
    /// port confirmed in between is not taken for lost, and a port the DPU holds is read
    /// again before it is called a stray (ports are written before they are sent).
    pub(crate) async fn dpu_drift_check(&self, id: &str) {
        let confirmed = match self.datastore.ports_confirmed_on(id).await {
            Ok(ports) => ports,
            Err(e) => {
                tracing::warn!(dpu = %id, error = %e, "cannot read the DPU's ports for the drift check");
                return;
            }
        };
        let Some(mut client) = self.agents.dpu(id) else { return };
        let Ok(inventory) = client.get_inventory(pb::InventoryRequest {}).await else { return };
        let inventory = inventory.into_inner();
        if !self.network_agent_booted(AgentKind::Dpu, id, &inventory.boot_id).await {
            return;
        }
        let held: std::collections::HashSet<Uuid> =
            inventory.ports.iter().filter_map(|p| p.port_id.parse().ok()).collect();
        let lost: Vec<Uuid> = confirmed.into_iter().filter(|p| !held.contains(p)).collect();
        let unknown: Vec<Uuid> = held.into_iter().collect();
        let strays = match self.datastore.ports_existing(&unknown).await {
            Ok(known) => unknown.into_iter().filter(|p| !known.contains(p)).collect(),
            Err(_) => Vec::new(),
        };
        if lost.is_empty() && strays.is_empty() {
            return;
        }
        for port in &lost {
            if let Err(e) = self.datastore.port_replay(*port).await {
                tracing::warn!(dpu = %id, %port, error = %e, "cannot mark a lost port for sending");
            }
        }
        self.network_changed.notify_one();
        let mut removed = 0;
        for port in &strays {
            let request =
                pb::RemovePortRequest { port_id: port.to_string(), generation: i64::MAX as u64 };
            match client.remove_port(request).await {
                Ok(_) => removed += 1,
                Err(e) => {
                    tracing::warn!(dpu = %id, %port, error = %e.message(), "cannot remove a stray port")
                }
            }
        }
        let outcome = format!(
            "held {} port(s) the database does not have ({removed} removed) and lacked {} it \
             had confirmed (sent again)",
            strays.len(),
            lost.len()
        );
        tracing::warn!(dpu = %id, %outcome, "DPU drift");
        self.audit_agent(AgentKind::Dpu, "drift", id, outcome).await;
    }

    /// [`dpu_drift_check`](Self::dpu_drift_check) for a leaf: a VPC (or GPU fabric) it
    /// confirmed but no longer holds is sent again; one it holds that the control plane
    /// neither wants there nor sent is removed. Audited as `switch.drift`. The confirmations
    /// are read before the leaf and what is known after it, so a VPC being sent meanwhile is
    /// neither lost nor a stray.
    pub(crate) async fn switch_drift_check(&self, id: &str) {
        let confirmed = match self.datastore.fabric_confirmed_on(id).await {
            Ok(vpcs) => vpcs,
            Err(e) => {
                tracing::warn!(leaf = %id, error = %e, "cannot read the leaf's VPCs for the drift check");
                return;
            }
        };
        let Some(mut client) = self.agents.switch(id) else { return };
        let Ok(inventory) = client.get_inventory(pb::InventoryRequest {}).await else { return };
        let inventory = inventory.into_inner();
        if !self.network_agent_booted(AgentKind::Switch, id, &inventory.boot_id).await {
            return;
        }
        let held: std::collections::HashSet<Uuid> =
            inventory.vpcs.iter().filter_map(|v| v.vpc_id.parse().ok()).collect();
        let lost: Vec<Uuid> = confirmed.into_iter().filter(|v| !held.contains(v)).collect();
        let strays: Vec<Uuid> = match self.datastore.fabric_known_on(id).await {
            Ok(known) => held.into_iter().filter(|v| !known.contains(v)).collect(),
            Err(_) => Vec::new(),
        };
        if lost.is_empty() && strays.is_empty() {
            return;
        }
        for vpc in &lost {
            if let Err(e) = self.datastore.fabric_replay_one(id, *vpc).await {
                tracing::warn!(leaf = %id, %vpc, error = %e, "cannot mark a lost VPC for sending");
            }
        }
        self.network_changed.notify_one();
        let mut removed = 0;
        for vpc in &strays {
            let request =
                pb::RemoveVpcRequest { vpc_id: vpc.to_string(), generation: i64::MAX as u64 };
            match client.remove_vpc(request).await {
                Ok(_) => removed += 1,
                Err(e) => {
                    tracing::warn!(leaf = %id, %vpc, error = %e.message(), "cannot remove a stray VPC")
                }
            }
        }
        let outcome = format!(
            "held {} VPC(s) the control plane did not send ({removed} removed) and lacked {} \
             it had confirmed (sent again)",
            strays.len(),
            lost.len()
        );
        tracing::warn!(leaf = %id, %outcome, "leaf drift");
        self.audit_agent(AgentKind::Switch, "drift", id, outcome).await;
    }

    /// An audit entry by the control plane about agent `id`: `<kind>.<what>`.
    async fn audit_agent(&self, kind: AgentKind, what: &str, id: &str, outcome: String) {
        let record = AuditRecord {
            actor_id: None,
            actor_name: "control plane".to_owned(),
            tenant_id: None,
            client: None,
            action: format!("{}.{what}", kind.label()),
            object_kind: kind.label().to_owned(),
            object_id: id.to_owned(),
            outcome,
        };
        self.audit_write(&record).await;
    }

    /// Marks everything the database gives agent `id` (a DPU's ports, a leaf's tenant VPCs)
    /// for the network reconciler to send again; how many.
    pub(crate) async fn network_replay(&self, kind: AgentKind, id: &str) -> Result<u64, Error> {
        let replayed = match kind {
            AgentKind::Dpu => self.datastore.ports_replay(id).await,
            AgentKind::Switch => self.datastore.fabric_replay(id).await,
            AgentKind::Host => return Ok(0),
        };
        match &replayed {
            Ok(0) => {}
            Ok(n) => {
                tracing::info!(agent = %id, %kind, count = n, "sending the agent its state again");
                self.network_changed.notify_one();
            }
            Err(e) => {
                tracing::warn!(agent = %id, %kind, error = %e, "cannot mark the agent's state for sending")
            }
        }
        Ok(replayed?)
    }
}

fn port_spec(w: &PortWiring) -> pb::PortSpec {
    pb::PortSpec {
        port_id: w.port.id.to_string(),
        vm_id: w.port.instance_id.to_string(),
        generation: w.port.generation.max(0) as u64,
        vni: w.vni,
        mac: w.port.mac.clone(),
        ip: w.port.ip.clone(),
        gateway: w.subnet.nth(1).map(|g| g.to_string()).unwrap_or_default(),
        prefix_len: u32::from(w.subnet.prefix()),
        public_ip: w.public_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        rules: w
            .rules
            .iter()
            .map(|r| pb::SecurityRule {
                direction: r.direction.as_str().to_owned(),
                protocol: r.protocol.as_str().to_owned(),
                port_min: r.ports.map_or(0, |p| u32::from(p.0)),
                port_max: r.ports.map_or(0, |p| u32::from(p.1)),
                cidr: r.cidr.to_string(),
            })
            .collect(),
    }
}
