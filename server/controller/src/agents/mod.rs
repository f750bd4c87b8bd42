//! The control plane's side of the agents: dialling them (`connect`), attaching them
//! (inventory in, then a host's watch stream; agents unreachable at startup are attached
//! later, with backoff: `attach`), the watch streams (`watch`), and the clients launches and
//! deletes use.

mod attach;
mod connect;
mod watch;

use std::collections::HashMap;
use std::sync::RwLock;

use agent_proto::v1::host_agent_client::HostAgentClient;
use tonic::transport::Channel;

pub use connect::AgentUnreachable;

/// The clients of the attached host agents, keyed by the agent's stable id.
#[derive(Default)]
pub struct AgentRegistry {
    hosts: RwLock<HashMap<String, HostAgentClient<Channel>>>,
}

impl AgentRegistry {
    /// Keeps the channel to a host agent for launches, deletes and its watch stream. (DPU
    /// and switch agents are reached at attach time only until the control plane drives
    /// tenant networks.)
    pub fn insert_host(&self, id: &str, channel: Channel) {
        let mut hosts = self.hosts.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        hosts.insert(id.to_owned(), HostAgentClient::new(channel));
    }

    /// A client for the host agent with this id (none until it is attached); clients are
    /// cheap clones of one channel.
    pub fn host(&self, id: &str) -> Option<HostAgentClient<Channel>> {
        self.hosts.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(id).cloned()
    }
}
