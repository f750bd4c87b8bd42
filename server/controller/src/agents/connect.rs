//! Dialling an agent: only over mutual TLS, with the control plane's client certificate, and
//! only to a server whose certificate names the agents file's id (see `agent_common::tls`).

use std::time::Duration;

use agent_common::error::error_chain;
use agent_common::tls::ControlPlaneCredentials;
use agent_proto::{AgentEndpoint, AgentKind};
use tonic::transport::{Channel, Endpoint};

use crate::StartError;

/// Why an agent could not be reached.
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

/// How to dial an agent; an entry of the agents file that can never work (a plain-text URL,
/// unusable certificates) is an error naming it.
pub(crate) fn dialer(
    agent: &AgentEndpoint,
    tls: &ControlPlaneCredentials,
) -> Result<Endpoint, StartError> {
    let misconfigured = |detail: String| StartError::AgentConfig {
        kind: agent.kind,
        id: agent.id.clone(),
        url: agent.url.clone(),
        detail,
    };
    // tonic speaks plain text to an http:// URL even with a TLS configuration.
    if !agent.url.starts_with("https://") {
        return Err(misconfigured(
            "agents serve only mutual TLS, so write its URL as https://host:port".to_owned(),
        ));
    }
    let tls = tls
        .client_config(agent.kind.label(), &agent.id)
        .map_err(|e| misconfigured(e.to_string()))?;
    Ok(Endpoint::from_shared(agent.url.clone())
        .map_err(|e| misconfigured(format!("not a valid URL: {e}")))?
        .tls_config(tls)
        .map_err(|e| misconfigured(error_chain(&e)))?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true))
}

/// Opens a channel to the agent (which then reconnects by itself when the link drops).
pub(crate) async fn connect(
    agent: &AgentEndpoint,
    dialer: &Endpoint,
) -> Result<Channel, StartError> {
    dialer.connect().await.map_err(|e| {
        AgentUnreachable {
            kind: agent.kind,
            id: agent.id.clone(),
            url: agent.url.clone(),
            detail: error_chain(&e),
        }
        .into()
    })
}
