//! Attaching agents: read the inventory (its id must be the agents file's), record it, keep
//! a host's channel and open its watch stream. The control plane starts whatever agents
//! answer: one unreachable at startup (or reporting another id) is named, shown unreachable
//! when the database knows it, and attached later by a task that retries with backoff.

use std::sync::Arc;
use std::time::Duration;

use agent_common::tls::ControlPlaneCredentials;
use agent_proto::v1::InventoryRequest;
use agent_proto::v1::dpu_agent_client::DpuAgentClient;
use agent_proto::v1::host_agent_client::HostAgentClient;
use agent_proto::v1::switch_agent_client::SwitchAgentClient;
use agent_proto::{AgentEndpoint, AgentKind};
use futures::StreamExt;
use portal_types::Error;
use portal_types::views::LiveEvent;
use tonic::transport::Endpoint;

use super::connect::{connect, dialer};
use super::watch::{spawn_host_watcher, spawn_network_watcher};
use crate::app::scheduling::Placer;
use crate::background::{fleet_sync, network, reconciler};
use crate::backoff::Backoff;
use crate::{Controller, StartError};

/// Agents that do not answer are tried again after 1 s, doubling up to this.
const RETRY_CAP: Duration = Duration::from_secs(30);

impl Controller {
    /// Attaches every agent of the agents file (`tls`: the control plane's certificate and
    /// the agents' CA), then starts the background work. An entry that can never work (a
    /// plain-text URL, unusable certificates) is an error; an agent that cannot be reached,
    /// or whose certificate or inventory names another id, is returned as a sentence naming
    /// it and attached later, with backoff.
    pub async fn attach_agents(
        self: &Arc<Self>,
        agents: &[AgentEndpoint],
        tls: &ControlPlaneCredentials,
    ) -> Result<Vec<StartError>, StartError> {
        let dialers: Vec<(AgentEndpoint, Endpoint)> = agents
            .iter()
            .map(|a| Ok((a.clone(), dialer(a, tls)?)))
            .collect::<Result<_, StartError>>()?;
        let attempts: Vec<(AgentEndpoint, Endpoint, Result<(), StartError>)> =
            futures::stream::iter(dialers)
                .map(async |(agent, dialer)| {
                    let result = self.attach_agent(&agent, &dialer).await;
                    (agent, dialer, result)
                })
                .buffer_unordered(64)
                .collect()
                .await;
        let placer = Placer::load(&self.datastore).await.map_err(|e| {
            StartError::Scheduler(e.internal_detail().unwrap_or(&e.to_string()).to_owned())
        })?;
        *self.placer.lock().await = Some(placer);
        let mut problems = Vec::new();
        for (agent, dialer, result) in attempts {
            match result {
                Ok(()) if agent.kind == AgentKind::Host => {
                    self.keep_running(spawn_host_watcher(Arc::clone(self), agent.id));
                }
                Ok(()) => {
                    self.keep_running(spawn_network_watcher(
                        Arc::clone(self),
                        agent.kind,
                        agent.id,
                    ));
                }
                Err(problem) => {
                    tracing::warn!(agent = %agent.id, error = %problem, "agent not attached; retrying in the background");
                    if agent.kind == AgentKind::Host {
                        self.set_host_connected(&agent.id, false).await;
                    } else {
                        self.set_agent_connected(agent.kind, &agent.id, false).await;
                    }
                    self.keep_running(spawn_attacher(Arc::clone(self), agent, dialer));
                    problems.push(problem);
                }
            }
        }
        self.keep_running(reconciler::spawn(Arc::clone(self)));
        // Resume or unwind unfinished sagas (at once, then periodically with the lease
        // renewals); a step whose agent is not attached yet retries until it is.
        self.keep_running(crate::sagas::executor::spawn(Arc::clone(self)));
        self.keep_running(fleet_sync::spawn(Arc::clone(self)));
        self.keep_running(network::spawn(Arc::clone(self)));
        self.keep_running(crate::background::metering::spawn(Arc::clone(self)));
        Ok(problems)
    }

    /// Connects to one agent and records its inventory; a host's channel is kept.
    async fn attach_agent(
        &self,
        agent: &AgentEndpoint,
        dialer: &Endpoint,
    ) -> Result<(), StartError> {
        let channel = connect(agent, dialer).await?;
        // The certificate already names the agents file's id; an inventory that disagrees
        // is a misconfigured agent, and must not register under another host's name.
        let check_id = |reported: &str| {
            if reported == agent.id {
                Ok(())
            } else {
                Err(StartError::AgentIdMismatch {
                    kind: agent.kind,
                    url: agent.url.clone(),
                    listed: agent.id.clone(),
                    reported: reported.to_owned(),
                })
            }
        };
        let inventory_error = |s: tonic::Status| StartError::Inventory {
            kind: agent.kind,
            url: agent.url.clone(),
            detail: s.message().to_owned(),
        };
        let ingest_error = |e: Error| StartError::Inventory {
            kind: agent.kind,
            url: agent.url.clone(),
            detail: e.internal_detail().unwrap_or(&e.to_string()).to_owned(),
        };
        let request = InventoryRequest {};
        match agent.kind {
            AgentKind::Host => {
                let mut client = HostAgentClient::new(channel.clone());
                let inv = client.get_inventory(request).await.map_err(inventory_error)?;
                let inv = inv.into_inner();
                check_id(&inv.host_id)?;
                self.host_inventory_ingest(&agent.url, &inv).await.map_err(ingest_error)?;
                self.agents.insert_host(&agent.id, channel);
            }
            AgentKind::Dpu => {
                let mut client = DpuAgentClient::new(channel.clone());
                let inv = client.get_inventory(request).await.map_err(inventory_error)?;
                let inv = inv.into_inner();
                check_id(&inv.dpu_id)?;
                self.dpu_inventory_ingest(&agent.url, &inv).await.map_err(ingest_error)?;
                self.agents.insert_dpu(&agent.id, channel);
                // Unless it is the agent that was sent its ports (the same boot id), it gets
                // every port the database gives it.
                self.network_agent_booted(agent.kind, &agent.id, &inv.boot_id).await;
            }
            AgentKind::Switch => {
                let mut client = SwitchAgentClient::new(channel.clone());
                let inv = client.get_inventory(request).await.map_err(inventory_error)?;
                let inv = inv.into_inner();
                check_id(&inv.switch_id)?;
                self.switch_inventory_ingest(&agent.url, &inv).await.map_err(ingest_error)?;
                self.agents.insert_switch(&agent.id, channel);
                // Like a DPU: a new or restarted leaf gets every tenant VPC it should hold.
                self.network_agent_booted(agent.kind, &agent.id, &inv.boot_id).await;
            }
        }
        Ok(())
    }

    /// A host attached after startup: the scheduler learns it (or its new inventory) and
    /// its watch stream opens, which marks it reachable.
    async fn host_attached_late(self: &Arc<Self>, host_id: &str) -> Result<(), Error> {
        let mut guard = self.placer.lock().await;
        if let Some(placer) = guard.as_mut() {
            // Rebuilt rather than patched: its inventory may be new or have changed, and
            // this happens once per late agent. The other hosts keep the reachability this
            // replica's own watch streams found; this one just answered.
            let mut rebuilt = Placer::load(&self.datastore).await?;
            for host in placer.scheduler.hosts().iter().filter(|h| h.id != host_id) {
                let _ = rebuilt.scheduler.set_agent_reachable(&host.id, host.agent_reachable);
            }
            *placer = rebuilt;
        }
        drop(guard);
        self.keep_running(spawn_host_watcher(Arc::clone(self), host_id.to_owned()));
        self.events.publish(None, LiveEvent::FleetChanged);
        Ok(())
    }
}

/// Tries to attach an agent until it succeeds (logging each new reason it does not).
fn spawn_attacher(
    controller: Arc<Controller>,
    agent: AgentEndpoint,
    dialer: Endpoint,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_secs(1), RETRY_CAP);
        let mut last = String::new();
        loop {
            backoff.sleep().await;
            let problem = match controller.attach_agent(&agent, &dialer).await {
                Ok(()) if agent.kind == AgentKind::Host => {
                    match controller.host_attached_late(&agent.id).await {
                        Ok(()) => break,
                        Err(e) => e.to_string(),
                    }
                }
                Ok(()) => {
                    controller.events.publish(None, LiveEvent::FleetChanged);
                    let watcher = spawn_network_watcher(
                        Arc::clone(&controller),
                        agent.kind,
                        agent.id.clone(),
                    );
                    controller.keep_running(watcher);
                    break;
                }
                Err(e) => e.to_string(),
            };
            if problem != last {
                tracing::warn!(agent = %agent.id, error = %problem, "agent still not attached; retrying");
                last = problem;
            }
        }
        tracing::info!(agent = %agent.id, kind = %agent.kind, "agent attached");
    })
}
