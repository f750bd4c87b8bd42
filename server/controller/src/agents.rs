//! gRPC clients for the host agents, keyed by the agent's stable id, plus the watchers that keep
//! one server-streaming `Watch` open per host agent and feed its events to the control plane.
//! Every agent is dialled with mutual TLS (see `agent_common::tls`): the control plane's
//! client certificate, and only a server certificate naming the agents file's id is accepted.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use agent_common::error::error_chain;
use agent_common::tls::ControlPlaneCredentials;
use agent_proto::v1::host_agent_client::HostAgentClient;
use agent_proto::v1::{WatchRequest, host_event};
use agent_proto::{AgentEndpoint, AgentKind};
use tonic::transport::{Channel, Endpoint};

use crate::{Controller, StartError};

/// Why an agent could not be reached at startup.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot reach the {kind} agent {id} at {url} ({detail}); start it, or remove it from the agents file"
)]
pub struct AgentUnreachable {
    pub kind: AgentKind,
    pub id: String,
    pub url: String,
    pub detail: String,
}

#[derive(Default)]
pub struct AgentRegistry {
    hosts: RwLock<HashMap<String, HostAgentClient<Channel>>>,
}

pub(crate) async fn connect(
    endpoint: &AgentEndpoint,
    tls: &ControlPlaneCredentials,
) -> Result<Channel, StartError> {
    let misconfigured = |detail: String| StartError::AgentConfig {
        kind: endpoint.kind,
        id: endpoint.id.clone(),
        url: endpoint.url.clone(),
        detail,
    };
    let unreachable = |detail: String| AgentUnreachable {
        kind: endpoint.kind,
        id: endpoint.id.clone(),
        url: endpoint.url.clone(),
        detail,
    };
    // tonic speaks plain text to an http:// URL even with a TLS configuration.
    if !endpoint.url.starts_with("https://") {
        return Err(misconfigured(
            "agents serve only mutual TLS, so write its URL as https://host:port".to_owned(),
        ));
    }
    let tls = tls
        .client_config(endpoint.kind.label(), &endpoint.id)
        .map_err(|e| misconfigured(e.to_string()))?;
    Endpoint::from_shared(endpoint.url.clone())
        .map_err(|e| misconfigured(format!("not a valid URL: {e}")))?
        .tls_config(tls)
        .map_err(|e| misconfigured(error_chain(&e)))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| unreachable(error_chain(&e)).into())
}

impl AgentRegistry {
    /// Keeps the channel to a host agent for launches, deletes and its watch stream. (DPU
    /// and switch agents are reached at attach time only until the control plane drives
    /// tenant networks.)
    pub fn insert_host(&self, id: &str, channel: Channel) {
        write(&self.hosts).insert(id.to_owned(), HostAgentClient::new(channel));
    }

    /// A client for the host agent with this id; clients are cheap clones of one channel.
    pub fn host(&self, id: &str) -> Option<HostAgentClient<Channel>> {
        read(&self.hosts).get(id).cloned()
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Keeps a `Watch` stream open to one host agent for the life of the controller: events go
/// to [`Controller::apply_host_event`]; a broken stream marks the host unreachable (so the
/// scheduler skips it) and is retried with backoff.
pub(crate) fn spawn_host_watcher(
    controller: Arc<Controller>,
    host_id: String,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let Some(mut client) = controller.agents.host(&host_id) else { return };
            match client.watch(WatchRequest {}).await {
                Ok(response) => {
                    controller.set_host_connected(&host_id, true).await;
                    backoff = Duration::from_millis(200);
                    let mut stream = response.into_inner();
                    // The VMs of the stream's first snapshot, until its end marker.
                    let mut listed = Some(HashSet::new());
                    loop {
                        match stream.message().await {
                            Ok(Some(event)) => match event.event {
                                Some(host_event::Event::Vm(status)) => {
                                    if let Some(listed) = listed.as_mut() {
                                        listed.insert(status.vm_id.clone());
                                    }
                                    controller.apply_vm_status(&host_id, status).await;
                                }
                                Some(host_event::Event::SnapshotEnd(_)) => {
                                    if let Some(listed) = listed.take() {
                                        controller.reconcile_host_snapshot(&host_id, &listed).await;
                                    }
                                }
                                Some(host_event::Event::Gpu(status)) => {
                                    controller.apply_gpu_status(&host_id, status).await;
                                }
                                None => {}
                            },
                            Ok(None) => break,
                            Err(status) => {
                                tracing::warn!(host = %host_id, error = %status.message(), "host agent watch stream broke");
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    tracing::debug!(host = %host_id, error = %status.message(), "host agent watch refused");
                }
            }
            controller.set_host_connected(&host_id, false).await;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    })
}
