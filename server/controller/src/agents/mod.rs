//! The control plane's side of the agents: dialling them (`connect`), attaching them
//! (inventory in, then a host's watch stream; agents unreachable at startup are attached
//! later, with backoff: `attach`), the watch streams (`watch`: a host's events, a DPU's or
//! switch's link and restarts), and the clients launches and deletes use.

mod attach;
mod connect;
mod watch;

use std::collections::HashMap;
use std::sync::RwLock;

use agent_proto::v1::dpu_agent_client::DpuAgentClient;
use agent_proto::v1::host_agent_client::HostAgentClient;
use agent_proto::v1::switch_agent_client::SwitchAgentClient;
use tonic::transport::Channel;

pub use connect::AgentUnreachable;

/// The clients of the attached agents, keyed by the agent's stable id.
#[derive(Default)]
pub struct AgentRegistry {
    hosts: RwLock<HashMap<String, HostAgentClient<Channel>>>,
    dpus: RwLock<HashMap<String, DpuAgentClient<Channel>>>,
    switches: RwLock<HashMap<String, SwitchAgentClient<Channel>>>,
}

impl AgentRegistry {
    /// Keeps the channel to a host agent for launches, deletes and its watch stream.
    pub fn insert_host(&self, id: &str, channel: Channel) {
        let mut hosts = self.hosts.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts.insert(id.to_owned(), HostAgentClient::new(channel));
    }

    /// A client for the host agent with this id (none until it is attached); clients are
    /// cheap clones of one channel.
    pub fn host(&self, id: &str) -> Option<HostAgentClient<Channel>> {
        self.hosts.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(id).cloned()
    }

    /// Keeps the channel to a DPU agent for the ports of its host's VMs.
    pub fn insert_dpu(&self, id: &str, channel: Channel) {
        let mut dpus = self.dpus.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        dpus.insert(id.to_owned(), DpuAgentClient::new(channel));
    }

    /// A client for the DPU agent with this id (none until it is attached).
    pub fn dpu(&self, id: &str) -> Option<DpuAgentClient<Channel>> {
        self.dpus.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(id).cloned()
    }

    /// Keeps the channel to a switch agent for the tenant VPCs its leaf carries.
    pub fn insert_switch(&self, id: &str, channel: Channel) {
        let mut switches = self.switches.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        switches.insert(id.to_owned(), SwitchAgentClient::new(channel));
    }

    /// A client for the switch agent with this id (none until it is attached).
    pub fn switch(&self, id: &str) -> Option<SwitchAgentClient<Channel>> {
        self.switches.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(id).cloned()
    }
}
