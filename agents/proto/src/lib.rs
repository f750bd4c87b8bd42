//! Generated gRPC types and services for the host, DPU and switch agents
//! (`proto/agent/v1/agent.proto`), and the agent endpoint list the control plane dials.
//! Agents and the control plane both depend on this crate and on nothing of each other.

pub mod v1 {
    tonic::include_proto!("gpucloud.agent.v1");
}

use serde::{Deserialize, Serialize};

/// Which service an agent endpoint serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    Host,
    Dpu,
    Switch,
}

impl AgentKind {
    /// The agents file's spelling (`host`, `dpu`, `switch`), also the kind in the DNS name
    /// of the agent's certificate.
    pub fn label(self) -> &'static str {
        match self {
            AgentKind::Host => "host",
            AgentKind::Dpu => "dpu",
            AgentKind::Switch => "switch",
        }
    }
}

impl std::fmt::Display for AgentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AgentKind::Host => "host",
            AgentKind::Dpu => "DPU",
            AgentKind::Switch => "switch",
        })
    }
}

/// Where the control plane reaches one agent, e.g.
/// `{ kind = "host", id = "su1-h07", url = "https://127.0.0.1:41234" }`. Agents serve only
/// mutual TLS; the agent's certificate must name `id` (see `agent_common::tls`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentEndpoint {
    pub kind: AgentKind,
    pub id: String,
    pub url: String,
}

/// The agents file: `[[agent]]` tables, written by `sim-fleet` and read by the portal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentList {
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentEndpoint>,
}
